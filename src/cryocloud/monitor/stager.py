"""Uploading staged jobs' inputs beside the monitor's loop, so that one job's upload never stalls another job's
submission, dispatch or status. A job whose profile stages (nodes without the lab's disk) is dispatched only
once its inputs are in the store (staging.staged_for); the Stager starts that upload in a worker thread and,
on a later pass, fails the job (run.err, marker, ledger) if it could not be staged. Workers touch only the job's
files and the store; every ledger write happens on the loop's thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from cryocloud.errors import CryocloudError
from cryocloud.jobs import runlog
from cryocloud.jobs.spec import JobSpec
from cryocloud.jobs.states import State
from cryocloud.ledger import JobRow, Ledger
from cryocloud.monitor import staging
from cryocloud.monitor.passes import finish
from cryocloud.settings import Settings

WORKERS = 2  # uploads at once (each one is itself parallel inside)


class Stager:
    def __init__(self, workers: int = WORKERS) -> None:
        """`workers=0`: stage in the caller's thread (a one-off pass, tests)."""
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="stage") if workers else None
        self.running: dict[int, tuple[Future[object], JobSpec]] = {}

    def step(self, settings: Settings, ledger: Ledger, clock: Callable[[], float] = time.time) -> None:
        """Record the uploads that ended; start those of queued jobs not staged yet (oldest first)."""
        for job_id, (future, spec) in list(self.running.items()):
            if future.done():
                del self.running[job_id]
                error = future.exception()
                if error is not None:
                    _failed(ledger, job_id, spec, error, clock)
        for job in reversed(ledger.jobs(states=(State.QUEUED,))):
            if job.id in self.running or not (url := _needs_staging(settings, job)):
                continue
            spec = JobSpec.from_json(job.spec)
            args = (settings, url, job.id, spec, Path(job.control_dir))
            if self.pool is None:
                try:
                    staging.stage_job(*args)
                except (CryocloudError, OSError) as e:
                    _failed(ledger, job.id, spec, e, clock)
            else:
                self.running[job.id] = (self.pool.submit(staging.stage_job, *args), spec)

    def close(self) -> None:
        """Leave: uploads under way are abandoned (a manifest is written last, so nothing half-done counts)."""
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


def _needs_staging(settings: Settings, job: JobRow) -> str | None:
    try:
        url = staging.store_url(settings, settings.profile(job.profile))
    except CryocloudError:
        return None  # dispatch reports a broken profile
    return url if url is not None and staging.staged_for(Path(job.control_dir)) != job.spec else None


def _failed(ledger: Ledger, job_id: int, spec: JobSpec, error: BaseException, clock: Callable[[], float]) -> None:
    e = error if isinstance(error, CryocloudError) else CryocloudError(str(error), "check the job's files")
    with ledger.transaction():
        current = ledger.job(job_id)
        if current is None or current.state != State.QUEUED:
            return
        finish(ledger, current, None, {"state": State.FAILED, "message": f"staging failed: {e.message}",
                                       "ended_at": clock()})
    runlog.fail_in_client_view(spec.folder, spec.client, f"staging failed: {e.message}", e.hint)
