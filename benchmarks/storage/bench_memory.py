"""P2b: peak memory (RSS) and time of `cryocloud storage push` and `pull` as a project grows.

    .venv/bin/python benchmarks/storage/bench_memory.py [--files 10000,100000,1000000] [--size 100]

Tiny files (a RELION project's many STAR and log files) in a local folder store, so that what is measured is
cryocloud's own per-file state (the scan, the stat cache, the manifest, pack plans, pending tasks), not a
server. Each size runs the CLI as a child in a fresh CRYOCLOUD_HOME (cold caches) and reads the child's peak
RSS from wait4's rusage. Every pull is compared file by file with its source (untimed). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def make_files(root: Path, n: int, size: int) -> None:
    """n files of `size` bytes, 1,000 per folder (as RELION's per-micrograph job folders hold them)."""
    payload = os.urandom(size)
    for i in range(n):
        if i % 1000 == 0:
            folder = root / f"mic{i // 1000:04d}"
            folder.mkdir(parents=True)
        (folder / f"m{i:07d}.star").write_bytes(i.to_bytes(8, "little") + payload)  # all different


def measured(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one child process."""
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env)
    _pid, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({status})")
    return seconds, usage.ru_maxrss / 1024  # Linux: KiB


def same_files(a: Path, b: Path) -> bool:
    for path in a.rglob("*"):
        if path.is_file() and (b / path.relative_to(a)).read_bytes() != path.read_bytes():
            return False
    return sum(1 for p in b.rglob("*") if p.is_file()) == sum(1 for p in a.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", default="10000,100000,1000000")
    p.add_argument("--size", type=int, default=100, help="bytes per file")
    p.add_argument("--no-check", action="store_true", help="skip the byte-for-byte comparison of each pull")
    a = p.parse_args(argv)
    rows = []
    for n in (int(x) for x in a.files.split(",")):
        work = Path(tempfile.mkdtemp(prefix="ccmem-", dir=os.environ.get("TMPDIR")))
        try:
            src, store, dest = work / "project", work / "store", work / "restore"
            make_files(src, n, a.size)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYOCLOUD_", "AWS_"))}
            env["CRYOCLOUD_HOME"] = str(work / "home")
            cc = str(BIN / "cryocloud")
            up_s, up_mb = measured([cc, "storage", "push", str(src), "--to", str(store), "--name", "p", "-q"], env)
            down_s, down_mb = measured([cc, "storage", "pull", "p", str(dest), "--from", str(store), "-q"], env)
            if not a.no_check and not same_files(src, dest):
                raise SystemExit(f"{n} files: the pull differs from the source")
            rows.append((n, up_s, up_mb, down_s, down_mb))
            print(f"{n} files: push {up_s:.1f} s {up_mb:.0f} MB, pull {down_s:.1f} s {down_mb:.0f} MB",
                  file=sys.stderr, flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{a.size}-byte files in a folder store; peak RSS of the CLI process; cold caches\n")
    print("| files | push s | push files/s | push peak RSS MB | pull s | pull files/s | pull peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for n, up_s, up_mb, down_s, down_mb in rows:
        print(f"| {n:,} | {up_s:.1f} | {n / up_s:,.0f} | {up_mb:.0f} | {down_s:.1f} | {n / down_s:,.0f} | {down_mb:.0f} |")
    if len(rows) > 1:
        (n0, _, u0, _, d0), (n1, _, u1, _, d1) = rows[0], rows[-1]
        print(f"\nper file (from {n0:,} to {n1:,}): push {1024 * (u1 - u0) / (n1 - n0):.2f} KB, "
              f"pull {1024 * (d1 - d0) / (n1 - n0):.2f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
