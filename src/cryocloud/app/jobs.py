"""Find, cancel and refresh jobs: what `status`, `cancel` and `costs` of every face call."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cryocloud.backends.base import Handle, get_backend
from cryocloud.errors import JobNotFound
from cryocloud.jobs import control, runlog
from cryocloud.jobs.spec import JobSpec
from cryocloud.jobs.states import State
from cryocloud.ledger import JobRow, Ledger
from cryocloud.monitor.loop import ensure_monitor
from cryocloud.monitor.passes import dispatch, has_active, open_ledger, reconcile
from cryocloud.settings import Settings


def find_job(ledger: Ledger, ref: str, cwd: Path) -> JobRow:
    """A job by ledger id, or by RELION job folder (`Class3D/job012/`, relative to cwd, or absolute)."""
    if ref.isdigit():
        job = ledger.job(int(ref))
        if job is None:
            raise JobNotFound(f"no job {ref} in the ledger", "`cryocloud status` lists the jobs")
        return job
    path = (cwd / ref).resolve()
    for job in ledger.jobs():
        if (Path(job.project_dir) / job.job_dir).resolve() == path:
            return job
    raise JobNotFound(
        f"no cryocloud job for folder {ref}",
        "give the job id or a RELION job folder such as Class2D/job002/ from the project folder",
    )


def job_record(j: JobRow) -> dict[str, Any]:
    """A job as data for any face (`status --json`, the REST API)."""
    return {"id": j.id, "name": j.name, "job_type": j.job_type, "project_dir": j.project_dir,
            "profile": j.profile, "backend": j.backend, "state": j.state, "message": j.message,
            "submitted_at": j.submitted_at, "started_at": j.started_at, "ended_at": j.ended_at,
            "wall_seconds": j.wall_seconds, "machine": j.machine, "exit_code": j.exit_code}


def cancel_job(settings: Settings, ref: str, cwd: Path, wait: float = 15.0) -> JobRow:
    """Stop a job; it ends as aborted (RELION's marker too). Waits up to `wait` s for the agent to finish."""
    ledger = open_ledger(settings)
    try:
        job = find_job(ledger, ref, cwd)
        if not job.active:
            return job
        spec = JobSpec.from_json(job.spec)
        if job.state == State.QUEUED:
            with ledger.transaction():
                ledger.update_job(job.id, state=State.ABORTED, ended_at=time.time(), message="cancelled before start")
                ledger.event(job.id, "cancelled before start")
            runlog.end_in_client_view(spec.folder, spec.client, State.ABORTED, "cancelled before it started")
        else:
            cdir = Path(job.control_dir)
            (cdir / control.CANCEL).touch()
            attempt = ledger.last_attempt(job.id)
            if attempt is not None:
                backend = get_backend(settings.profile(job.profile), settings)
                backend.cancel(Handle(attempt.backend, attempt.handle_data))
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                reconcile(settings, ledger)
                current = ledger.job(job.id)
                if current is not None and not current.active:
                    break
                time.sleep(0.2)
        final = ledger.job(job.id)
        assert final is not None
        return final
    finally:
        ledger.close()


def refresh(settings: Settings) -> Ledger:
    """Open the ledger after one reconcile+dispatch pass, so what is shown is current."""
    ledger = open_ledger(settings)
    reconcile(settings, ledger)
    dispatch(settings, ledger)
    if has_active(ledger):
        ensure_monitor(settings)  # e.g. after a reboot killed it: queued jobs must not wait forever
    return ledger


def sweep_findings(settings: Settings, hours: float = 24.0) -> list[tuple[float, str]]:
    """What the monitor's sweep ended in the last `hours` (monitor/sweep.py), as (time, line), oldest first."""
    from cryocloud.monitor.sweep import findings_since

    return [(f.at, f.line()) for f in findings_since(settings, time.time() - hours * 3600)]
