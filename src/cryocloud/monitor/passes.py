"""One pass of the monitor: start queued jobs when their backend has room (dispatch), and record what agents
report (reconcile), including agents that died without reporting: their jobs end as failed, with a marker.

The loop (loop.py) runs these passes; every `status`/`costs` call runs one too, so the ledger is right without
a monitor.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from cryocloud.backends.base import Backend, Bill, Handle, Launch, get_backend
from cryocloud.errors import CryocloudError
from cryocloud.jobs import control, environment, runlog
from cryocloud.jobs.environment import job_environment
from cryocloud.jobs.markers import FAMILIES
from cryocloud.jobs.spec import JobSpec
from cryocloud.jobs.states import ACTIVE, STARTED, State
from cryocloud.ledger import JobRow, Ledger, compute_usd
from cryocloud.monitor import fanout, staging
from cryocloud.monitor.requeue import requeue
from cryocloud.planner import learn
from cryocloud.settings import Profile, Settings


def open_ledger(settings: Settings) -> Ledger:
    return Ledger(settings.ledger_path)


Clock = Callable[[], float]
BackendFor = Callable[[Profile, Settings], Backend]  # get_backend; tests hand in a fake (tests/monitor/fake.py)


class _Backends:
    """One backend per profile for one pass."""

    def __init__(self, settings: Settings, backend_for: BackendFor | None) -> None:
        self.settings, self.make = settings, backend_for or get_backend
        self.cache: dict[str, Backend] = {}

    def __call__(self, job: JobRow) -> Backend:
        if job.profile not in self.cache:
            self.cache[job.profile] = self.make(self.settings.profile(job.profile), self.settings)
        return self.cache[job.profile]


def dispatch(settings: Settings, ledger: Ledger, clock: Clock = time.time,
             backend_for: BackendFor | None = None) -> list[int]:
    """Start queued jobs, oldest first, while their backend has room. Returns the ids started. A job whose
    profile stages is not started before its inputs are in the store (the monitor's Stager uploads them)."""
    started: list[int] = []
    backends = _Backends(settings, backend_for)
    with ledger.transaction():
        environment.forget_ended(settings.run_dir, {j.id for j in ledger.jobs(states=ACTIVE)})
        running: dict[str, list[JobSpec]] = {}
        for job in ledger.jobs(states=STARTED):
            running.setdefault(job.profile, []).append(JobSpec.from_json(job.spec))
        blocked: set[str] = set()  # first in, first out: a job that waits holds back later ones
        for job in reversed(ledger.jobs(states=(State.QUEUED,))):
            if job.profile in blocked:
                continue
            spec = JobSpec.from_json(job.spec)
            try:
                if staging.store_url(settings, settings.profile(job.profile)) is not None and \
                        staging.staged_for(Path(job.control_dir)) != job.spec:
                    blocked.add(job.profile)  # its inputs are not in the store yet: never launch before staging
                    continue
                backend = backends(job)
                if not backend.has_room(spec, running.get(job.profile, [])):
                    blocked.add(job.profile)
                    continue
                cdir = Path(job.control_dir)
                env = _job_env(settings, job)
                launch = Launch(job.id, spec, cdir, env)
                handle = backend.submit(launch)
            except CryocloudError as e:
                finish(ledger, job, None, {"state": State.FAILED, "message": e.message, "ended_at": clock()})
                runlog.fail_in_client_view(spec.folder, spec.client, f"error: {e.message}", e.hint)
                continue
            data = {**handle.data, "control_dir": str(cdir)}
            ledger.add_attempt(job.id, backend=backend.name, handle=json.dumps(data), machine=backend.machine,
                               usd_per_hour=backend.usd_per_hour(spec), price_source=backend.name,
                               started_at=None, state=State.STARTING)
            # starting: handed to the backend, which may queue it (a PENDING Slurm job); running, and billed,
            # from when the backend says it runs (reconcile)
            ledger.update_job(job.id, state=State.STARTING, machine=backend.machine)
            ledger.event(job.id, f"started on {backend.name} ({backend.machine})")
            running.setdefault(job.profile, []).append(spec)
            started.append(job.id)
    return started


def _job_env(settings: Settings, job: JobRow) -> dict[str, str]:
    """What the job's processes get of the submitter's environment (kept at submit, never on disk in the project)."""
    return (environment.kept(settings.run_dir, job.id)
            or job_environment(os.environ, settings.profile(job.profile).pass_env()))


def finish(ledger: Ledger, job: JobRow, attempt_id: int | None, result: dict[str, object],
            clock: Clock = time.time) -> None:
    state = str(result.get("state", State.FAILED))
    ended = float(result.get("ended_at") or clock())  # type: ignore[arg-type]
    started = job.started_at if job.started_at is not None else ended
    agent_start = result.get("started_at")
    if isinstance(agent_start, int | float):
        started = float(agent_start)
    message = str(result.get("message") or "")
    reason = Path(job.control_dir) / control.CANCEL
    if state == State.ABORTED and reason.exists() and reason.stat().st_size:
        message = reason.read_text().strip()  # why cryocloud stopped it (e.g. over budget)
    bill = result.get("bill")
    if isinstance(bill, Bill):  # the backend's own account of the machine's time (e.g. EC2 from launch)
        started, ended = bill.started_at, bill.ended_at
    cols: dict[str, object] = {"state": state, "ended_at": ended, "started_at": started, "message": message}
    if result.get("exit_code") is not None:
        cols["exit_code"] = result["exit_code"]
    ledger.update_job(job.id, **cols)
    if attempt_id is not None:
        attempt = next(a for a in ledger.attempts(job.id) if a.id == attempt_id)
        ledger.update_attempt(attempt_id, state=state, started_at=started, ended_at=ended,
                              compute_usd=bill.usd if isinstance(bill, Bill) else
                              compute_usd(attempt.usd_per_hour, started, ended))
        if isinstance(bill, Bill) and bill.detail:
            ledger.event(job.id, f"billed {bill.usd:.4f} USD: {bill.detail}", at=ended)
    ledger.event(job.id, f"{state}" + (f": {cols['message']}" if cols["message"] else ""), at=ended)


def reconcile(settings: Settings, ledger: Ledger, clock: Clock = time.time,
              backend_for: BackendFor | None = None) -> None:
    """One pass over started jobs: record what their agents reported, and fail those whose agent vanished."""
    backends = _Backends(settings, backend_for)
    for job in ledger.jobs(states=STARTED):
        cdir = Path(job.control_dir)
        attempt = ledger.last_attempt(job.id)
        spec = JobSpec.from_json(job.spec)
        staged = staging.staged(cdir)  # the node pushes its outputs back: the lab writes RELION's marker
        result = staging.read_result(settings, spec, cdir)
        shards = int(attempt.handle_data.get("tasks", spec.tasks)) if attempt is not None else spec.tasks
        if result is None and shards > 1:  # every shard reported: the job's end (or its final pass starts)
            result = fanout.gather(cdir, spec, shards, None, clock, _job_env(settings, job))
            if result is None and fanout.final_running(cdir):
                continue  # the shards are done; RELION's final pass runs at the lab
        if result is not None and result.get("marker_deferred") and attempt is not None:
            # the agent was stopped by a signal it cannot explain (preemption? time limit?) and left the
            # marker to us: the backend's end state says why, and whether the job goes on
            try:
                status = backends(job).status(Handle(attempt.backend, attempt.handle_data))
            except CryocloudError:
                continue
            if status.state in (State.QUEUED, State.RUNNING):
                continue  # Slurm has not recorded the end yet
            why = None
            if status.interrupted:
                why = requeue(settings, ledger, job, attempt, status, backends(job), clock)
                if why is None:
                    continue
            msg = "; ".join(m for m in (str(result.get("message") or ""), status.message, why) if m)
            aborted = (cdir / control.CANCEL).exists() or status.state == State.ABORTED
            result = {**result, "message": msg, **({"state": State.ABORTED} if aborted else {})}
            state = str(result.get("state", State.FAILED))
            runlog.end_in_client_view(spec.folder, spec.client, state, f"job {state}: {msg}")
        if result is None and attempt is not None:
            try:
                status = backends(job).status(Handle(attempt.backend, attempt.handle_data))
            except CryocloudError:
                continue  # backend unreachable now: ask again next pass, never guess an end
            if status.state in (State.QUEUED, State.RUNNING):
                if status.state == State.RUNNING and job.state != State.RUNNING:
                    now = clock()
                    ledger.update_job(job.id, state=State.RUNNING, started_at=now)
                    ledger.update_attempt(attempt.id, state=State.RUNNING, started_at=now)
                    if staged:  # the lab's side of a remote node: its state changes are run.out lines too
                        runlog.note(spec.folder, f"running ({status.message})" if status.message else "running")
                if staged and status.state == State.RUNNING:
                    _forward_abort(spec, cdir, backends(job), attempt.handle_data)
                    _note_stall(ledger, job, cdir)
                if shards > 1 and (line := fanout.progress(cdir, shards)) and line != job.message:
                    ledger.update_job(job.id, message=line)  # `status` says how many tasks ended, and how
                watch_budget(settings, ledger, job, backends(job), attempt.handle_data, clock)
                continue
            result = staging.read_result(settings, spec, cdir)  # it may have landed meanwhile
            if result is not None and result.get("marker_deferred"):
                continue  # the agent left the marker to us: the next pass asks the backend why (above)
            if result is None and shards > 1:  # the array ended: shards without a report failed
                why = status.message or "ended without reporting (killed or crashed)"
                result = fanout.gather(cdir, spec, shards, why, clock, _job_env(settings, job))
                if result is None:
                    continue  # the final pass started now
                _end_machine(backends(job), attempt.handle_data, spec)  # what tasks that did not report left running
            if result is None:
                why = None
                if status.interrupted:
                    why = requeue(settings, ledger, job, attempt, status, backends(job), clock)
                    if why is None:
                        continue  # back in the queue: the next dispatch starts the new attempt
                ended_machine, bill = _end_machine(backends(job), attempt.handle_data, spec)
                if not ended_machine:
                    continue
                cancelled = (cdir / control.CANCEL).exists()
                state = State.ABORTED if cancelled or status.state == State.ABORTED else State.FAILED
                msg = status.message or "the job's agent ended without reporting (killed or crashed)"
                if why:
                    msg = f"{msg}; {why}"
                result = {"state": state, "message": msg, "ended_at": clock(), "exit_code": status.exit_code,
                          **({"bill": bill} if bill else {})}
                runlog.end_in_client_view(spec.folder, spec.client, state, f"job {state}: {msg}")
        if result is not None and staged and attempt is not None and "bill" not in result:
            # a remote node (a cloud instance) is ended, and its bill taken, before the job counts as ended
            ended_machine, bill = _end_machine(backends(job), attempt.handle_data, spec)
            if not ended_machine:
                continue
            if bill is not None:
                result = {**result, "bill": bill}
        if result is not None:
            with ledger.transaction():
                current = ledger.job(job.id)
                if current is not None and current.active:
                    finish(ledger, current, attempt.id if attempt else None, result, clock)
                    if staged:  # outputs verified against their manifest: now RELION may see the end
                        runlog.end_in_client_view(spec.folder, spec.client, str(result.get("state", State.FAILED)))
            ended = ledger.job(job.id)
            if ended is not None and ended.state == State.SUCCEEDED and ended.model_hours is None:
                from cryocloud.planner.plan import model_hours  # (the planner, only when a job succeeded)

                learn.note_end(ledger, ended, spec, model_hours(spec, ended.backend, settings))  # learn from it


def _end_machine(backend: Backend, handle: dict[str, object], spec: JobSpec) -> tuple[bool, Bill | None]:
    """backend.cleanup: (True, its bill), or (False, None) when it could not be done now (e.g. EC2 unreachable:
    the machine may still bill), said in run.err; the caller tries again on its next pass."""
    try:
        return True, backend.cleanup(Handle(backend.name, handle))
    except CryocloudError as e:
        runlog.note(spec.folder, f"could not end the job's machine yet (will retry): {e.message}", runlog.ERR)
        return False, None


def _forward_abort(spec: JobSpec, cdir: Path, backend: Backend, handle: dict[str, object]) -> None:
    """RELION's abort file is in the lab's folder, which the node of a staged job does not see: cancel it here."""
    if FAMILIES[spec.client].abort_requested(spec.folder) and \
            not (cdir / control.CANCEL).exists():
        (cdir / control.CANCEL).write_text("aborted on request (RELION_JOB_ABORT_NOW)")
        runlog.note(spec.folder, "abort requested (RELION_JOB_ABORT_NOW); cancelling the job on the node")
        backend.cancel(Handle(backend.name, handle))


def _note_stall(ledger: Ledger, job: JobRow, cdir: Path) -> None:
    """A node reported a stall (agent/cloud.py): the job's message says so, for `status` and the API; once."""
    stall = control.read_json(cdir / control.STALLED)
    if not stall or job.message.startswith("stalled"):
        return
    since = time.strftime("%H:%M", time.localtime(float(stall.get("at") or time.time())))
    message = (f"stalled since {since}: no new output and no CPU use for {float(stall.get('minutes') or 0):g} min"
               + ("; ending it (the profile's end_stalled)" if stall.get("ending") else
                  "; still billing: `cryocloud cancel` ends it"))
    with ledger.transaction():
        ledger.update_job(job.id, message=message)
        ledger.event(job.id, message)


def watch_budget(settings: Settings, ledger: Ledger, job: JobRow, backend: Backend,
                 handle: dict[str, object], clock: Clock = time.time) -> None:
    """Warn once at 80% of a budget; stop a running job once its project's or user's budget is spent."""
    if not settings.budgets:
        return
    from cryocloud.planner.budget import budget_warning, over_budget

    spec = JobSpec.from_json(job.spec)
    cdir = Path(job.control_dir)
    breach = over_budget(settings, ledger, job.id, clock())
    if breach is not None and not (cdir / control.CANCEL).exists():
        reason = breach.message
        (cdir / control.CANCEL).write_text(reason)
        runlog.note(spec.folder, reason)
        ledger.event(job.id, reason)
        backend.cancel(Handle(backend.name, handle))
        return
    warned = cdir / "budget_warned"
    line = budget_warning(settings, ledger, job.user, job.project, clock())
    if line and not warned.exists():
        warned.touch()
        runlog.note(spec.folder, line)


def has_active(ledger: Ledger) -> bool:
    return bool(ledger.jobs(states=(State.QUEUED, *STARTED), limit=1))
