"""What users read besides the programs' own output: the dated `[cryocloud YYYY-MM-DD HH:MM:SS] ...` lines in a
job's run.out / run.err, and the one way to end a job in its client's view (RELION, the CCP-EM Pipeliner).

Every writer of such a line calls `note` (or `stamp` for a stream it holds open); every place that fails a job
for RELION calls `end_in_client_view`. Nothing here raises for a job folder the user deleted: nobody is left
to read it.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from cryocloud.jobs.markers import FAMILIES
from cryocloud.jobs.states import State

OUT, ERR = "run.out", "run.err"


def stamp(msg: str) -> str:
    """One dated line, newline included."""
    return f"[cryocloud {time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}\n"


def note(job_dir: Path, msg: str, stream: str = OUT, *, make: bool = False) -> None:
    """Append a dated line to the job's run.out (or `stream`). `make`: create the folder first (node scratch)."""
    with contextlib.suppress(OSError):
        if make:
            job_dir.mkdir(parents=True, exist_ok=True)
        with open(job_dir / stream, "a", encoding="utf-8") as f:
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
