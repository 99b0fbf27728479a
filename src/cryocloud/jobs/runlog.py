"""What users read besides the programs' own output: the dated `[cryocloud YYYY-MM-DD HH:MM:SS] ...` lines in a
job's run.out / run.err, and the one way to end a job in its client's view (RELION, the CCP-EM Pipeliner).

Every writer of such a line calls `note` (or `stamp` for a stream it holds open); every place that fails a job
for RELION calls `end_in_client_view`. Nothing here raises for a job folder the user deleted: nobody is left
to read it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from cryocloud.jobs.markers import FAMILIES
from cryocloud.jobs.states import State

OUT, ERR = "run.out", "run.err"
STAMP_PREFIX = "[cryocloud "  # a dated line: "[cryocloud YYYY-MM-DD HH:MM:SS] ..."


def stamp(msg: str) -> str:
    """One dated line, newline included."""
    return f"{STAMP_PREFIX}{time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}\n"


@contextlib.contextmanager
def locked(job_dir: Path) -> Iterator[None]:
    """Hold the job folder's log lock (a flock on the folder itself: no file is made, and replacing run.out does
    not change it): a dated line appended by one process (a `status` query, the monitor) and the lab's merge of a
    pulled run.out in another never interleave, so no line is lost. Not re-entrant: nothing inside may call
    `note` on the same folder."""
    try:
        fd = os.open(job_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # no folder (deleted, or not made yet): nothing to keep in order
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def note(job_dir: Path, msg: str, stream: str = OUT, *, make: bool = False) -> None:
    """Append a dated line to the job's run.out (or `stream`). `make`: create the folder first (node scratch)."""
    with contextlib.suppress(OSError):
        if make:
            job_dir.mkdir(parents=True, exist_ok=True)
        with locked(job_dir), open(job_dir / stream, "a", encoding="utf-8") as f:
            f.write(stamp(msg))


def with_hint(message: str, hint: str = "") -> str:
    return f"{message} (hint: {hint})" if hint else message


def end_in_client_view(job_dir: Path, client: str, state: str, line: str = "") -> None:
    """What the client sees when cryocloud, not the job, ends it: a dated run.err line (if any) and the exit
    marker of the client's family for `state` (unless the job wrote one itself)."""
    if line:
        note(job_dir, line, ERR)
    FAMILIES[client].write(job_dir, state)


def fail_in_client_view(job_dir: Path, client: str, message: str, hint: str = "") -> None:
    end_in_client_view(job_dir, client, State.FAILED, with_hint(message, hint))


def _when(line: str) -> str | None:
    return line[len(STAMP_PREFIX):len(STAMP_PREFIX) + 19] if line.startswith(STAMP_PREFIX) else None


def merge(ours: str, theirs: str) -> str:
    """`theirs` (a node's copy of run.out, just pulled) with every dated line of `ours` (the lab's copy) that it
    lacks, each put before the first of their dated lines that is later: the lab's "launched ...", "running"
    and the node's own output are both kept, in time order (lines without a date stay where the node wrote them)."""
    have = set(theirs.splitlines())
    missing = [ln for ln in ours.splitlines() if _when(ln) and ln not in have]
    if not missing:
        return theirs
    out: list[str] = []
    for line in theirs.splitlines():
        when = _when(line)
        while missing and when is not None and (_when(missing[0]) or "") < when:
            out.append(missing.pop(0))
        out.append(line)
    out.extend(missing)
    return "\n".join(out) + "\n"
