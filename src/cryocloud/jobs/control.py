"""The job's control folder: how an agent and the lab side talk without a ledger or a network.

Files (all written atomically):
  launch.json   what to run (JobSpec, MPI launcher), written by the lab side before launch
  agent.json    the agent's pid, host and start time, written when it starts
  result.json   the final state, exit code and times, written when it ends
  cancel        present when a user asked to cancel (so a SIGTERM means "aborted", not "failed"); its text,
                if any, says why cryocloud stopped the job (e.g. over budget)
  stalled.json  a cloud node's agent saw no new output and no CPU use for the profile's stall_minutes (when,
                how long); it travels back with the job folder and `status` shows it
  pulled_bytes  a staged job: the bytes the lab has downloaded of its outputs so far (what a cloud bills as
                transfer out)
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

LAUNCH, AGENT, RESULT, CANCEL = "launch.json", "agent.json", "result.json", "cancel"
FAILED_TRY = "failed_try.json"  # a fan-out task's failed run that will be retried (not its result)
INHERIT = "inherit"  # a task's launch.json key: the rest is the job's launch.json, one folder up
FINAL = "final"  # a fan-out's last pass (RELION's --only_do_unfinished), in its own control folder
PULLED_BYTES = "pulled_bytes"
STALLED = "stalled.json"


def write_json(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def read_launch(cdir: Path) -> dict[str, Any] | None:
    """A control folder's launch.json, a fan-out task's completed by its job's (one folder up)."""
    launch = read_json(cdir / LAUNCH)
    if launch is not None and launch.get(INHERIT):
        launch = {**(read_json(cdir.parent / LAUNCH) or {}), **launch}
    return launch


def task_dir(cdir: Path, index: int) -> Path:
    """The control folder of a fan-out's task `index` (each shard reports there, never to the job's own)."""
    return cdir / f"task{index}"


def control_dir_for(project_dir: Path, job_dir: str, job_id: int) -> Path:
    return project_dir / job_dir / ".cryocloud" / f"job{job_id}"
