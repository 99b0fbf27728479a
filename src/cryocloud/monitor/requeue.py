"""Requeue after the platform interrupted a job (Slurm PREEMPTED or NODE_FAIL): the monitor's side.

When a backend reports a job `interrupted` and the job can continue (jobs/resume.py), the monitor closes the
attempt as "requeued" in the ledger, clears stale markers and the agent's old reports, rewrites the job's
commands to continue (`--continue <last>_optimiser.star` / `--only_do_unfinished`), writes a dated line to
run.out ("preempted at it012; resuming") and puts the job back in the queue; the next dispatch starts it as a
new attempt. A job that cannot continue, or that was requeued `max_requeues` times (profile key, default 3),
is not requeued: the caller fails it with the reason and the hint returned here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from cryocloud.backends.base import Backend, BackendStatus, Handle
from cryocloud.jobs import control, runlog
from cryocloud.jobs.markers import FAMILIES
from cryocloud.jobs.resume import plan_resume
from cryocloud.jobs.spec import JobSpec
from cryocloud.jobs.states import State
from cryocloud.ledger import AttemptRow, JobRow, Ledger, compute_usd
from cryocloud.monitor import staging
from cryocloud.settings import Settings

DEFAULT_MAX_REQUEUES = 3
REQUEUED = State.REQUEUED  # the state of an attempt that ended this way


def max_requeues(settings: Settings, profile: str) -> int:
    value = settings.profile(profile).options.get("max_requeues", DEFAULT_MAX_REQUEUES)
    return value if isinstance(value, int) and not isinstance(value, bool) else DEFAULT_MAX_REQUEUES


def requeue(settings: Settings, ledger: Ledger, job: JobRow, attempt: AttemptRow, status: BackendStatus,
            backend: Backend, clock: Callable[[], float] = time.time) -> str | None:
    """Put an interrupted job back in the queue to continue. Returns None when requeued, else why not (a hint
    for the user, the job then ends as failed)."""
    spec = JobSpec.from_json(job.spec)
    cdir = Path(job.control_dir)
    what = status.interrupted
    if spec.tasks > 1:
        return f"{what}; a fan-out job is not requeued: resubmit it"
    if (cdir / control.CANCEL).exists():
        return f"{what} after a cancel: not requeued"
    limit = max_requeues(settings, job.profile)
    done = sum(1 for a in ledger.attempts(job.id) if a.state == REQUEUED)
    if done >= limit:
        return (f"{what} again; not requeued: it was requeued {done} times already (profile max_requeues = "
                f"{limit}); resubmit it (RELION: Continue from the last iteration)")
    plan = plan_resume(spec)
    if plan.commands is None:
        return f"{what}; cannot continue: {plan.where}; resubmit it"
    with ledger.transaction():  # dispatch and other reconcilers wait: the job is requeued once, whole
        current, last = ledger.job(job.id), ledger.last_attempt(job.id)
        if current is None or not current.active or last is None or last.id != attempt.id or last.state == REQUEUED:
            return None  # another reconciler handled it already
        backend.cleanup(Handle(attempt.backend, attempt.handle_data))  # nothing of the old attempt left behind
        job_dir = spec.folder
        FAMILIES[spec.client].clear(job_dir)  # stale markers go before a resume
        for name in (control.RESULT, control.AGENT, staging.VERIFIED, staging.PULLED):
            (cdir / name).unlink(missing_ok=True)
        resumed = replace(spec, commands=plan.commands)
        launch = control.read_json(cdir / control.LAUNCH) or {}
        control.write_json(cdir / control.LAUNCH, {**launch, "spec": asdict(resumed)})
        now = clock()
        started = attempt.started_at if attempt.started_at is not None else now
        ledger.update_attempt(attempt.id, state=REQUEUED, ended_at=now,
                              compute_usd=compute_usd(attempt.usd_per_hour, started, now))
        ledger.update_job(job.id, state=State.QUEUED, spec=resumed.to_json(), message=f"{what}; requeued")
        ledger.event(job.id, f"{what} at {plan.where}; requeued (requeue {done + 1} of at most {limit})")
        runlog.note(spec.folder, f"{what} at {plan.where}; resuming (requeue {done + 1} of at most {limit})")
        runlog.note(spec.folder, "resumed with: " + " && ".join(c for c in plan.commands if c.strip())[:1000])
    return None
