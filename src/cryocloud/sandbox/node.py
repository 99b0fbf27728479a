"""Inside a simulated instance's mount namespace: hide the lab, then become the instance's user-data.

    python -m cryocloud.sandbox.node --workdir W [--hide DIR]... [--keep DIR]... -- PROGRAM

Run by the simulator under `unshare --mount --propagation private` (plus a user namespace when not root). Each
--hide folder is covered by an empty tmpfs, so the lab's projects and cryocloud's home read empty in here and a job
can only get its data through S3, as on EC2. A --keep folder that a hidden one would cover (the instance's own
working folder, the Python that plays the machine image's) is bind-mounted back. Then PROGRAM runs with the
environment it was given (the simulator's clean one), in W.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cryocloud.proc import run_command


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cryocloud.sandbox.node")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--hide", type=Path, action="append", default=[])
    p.add_argument("--keep", type=Path, action="append", default=[])
    p.add_argument("program", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    program = [x for x in a.program if x != "--"] if a.program[:1] == ["--"] else a.program
    hide = [h.resolve() for h in a.hide if h.exists()]
    hide = [h for h in hide if not any(o != h and _under(h, o) for o in hide)]  # inside another: covered already
    keep = [k.resolve() for k in a.keep if any(_under(k.resolve(), h) for h in hide)]
    stash = Path("/tmp") if not any(_under(Path("/tmp"), h) for h in hide) else a.workdir.resolve().parent
    held = []
    for i, k in enumerate(keep):  # a handle on each kept folder before its parent is covered
        spot = stash / f".cryocloud-keep-{os.getpid()}-{i}"
        spot.mkdir(exist_ok=True)
        run_command(["mount", "--bind", str(k), str(spot)])
        held.append((spot, k))
    for h in sorted(hide, key=lambda x: len(x.parts)):
        run_command(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "cryocloud-hidden", str(h)])
    for spot, k in held:
        k.mkdir(parents=True, exist_ok=True)
        run_command(["mount", "--bind", str(spot), str(k)])
        run_command(["umount", str(spot)])
        spot.rmdir()  # (the folder was made on the shared file system; its mount was only in here)
    os.chdir(a.workdir)
    os.execve(program[0], program, dict(os.environ))
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
