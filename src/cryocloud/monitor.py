"""The monitor: starts queued jobs when their backend has room, and reconciles what agents report with
the ledger (including agents that died without reporting: their jobs end as failed, with a marker).

One per user (a lock file); `submit` starts it when it is not running; it exits once no job is active (after
`local.monitor_linger` more idle seconds, default 0). While it runs it takes submissions over its socket
(handoff.py). Every `status`/`costs` call runs one reconcile pass too, so the ledger is right without it.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cryocloud import jobstage
from cryocloud.agent import control
from cryocloud.agent.runner import job_environment, stamp
from cryocloud.backends import get_backend
from cryocloud.backends.base import Backend, Handle, Launch
from cryocloud.config import Settings
from cryocloud.errors import CryocloudError
from cryocloud.jobs.markers import FAMILIES
from cryocloud.jobs.spec import JobSpec
from cryocloud.ledger import JobRow, Ledger
from cryocloud.proc import pid_alive, spawn_detached
from cryocloud.requeue import requeue

STARTED = ("starting", "running")


def open_ledger(settings: Settings) -> Ledger:
    return Ledger(settings.ledger_path)


def _backend(settings: Settings, job: JobRow, cache: dict[str, Backend]) -> Backend:
    if job.profile not in cache:
        cache[job.profile] = get_backend(settings.profile(job.profile), settings)
    return cache[job.profile]


def append_log(spec: JobSpec, name: str, text: str) -> None:
    """Add a line to the job's run.out or run.err (what RELION users read)."""
    try:
        with open(Path(spec.project_dir) / spec.job_dir / name, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError:
        pass


def stage_queued(settings: Settings, ledger: Ledger, clock: Callable[[], float] = time.time) -> None:
    """Upload the inputs of queued jobs whose profile stages (nodes without the lab's disk), outside any ledger
    transaction (an upload may take minutes). A job that cannot be staged ends as failed, with a marker."""
    for job in reversed(ledger.jobs(states=("queued",))):
        try:
            url = jobstage.store_url(settings, settings.profile(job.profile))
        except CryocloudError:
            continue  # dispatch reports a broken profile
        cdir = Path(job.control_dir)
        if url is None or jobstage.staged_for(cdir) == job.spec:
            continue
        spec = JobSpec.from_json(job.spec)
        try:
            jobstage.stage_job(settings, url, job.id, spec, cdir)
        except (CryocloudError, OSError) as e:
            e = e if isinstance(e, CryocloudError) else CryocloudError(str(e), "check the job's files")
            with ledger.transaction():
                current = ledger.job(job.id)
                if current is None or current.state != "queued":
                    continue
                _finish(ledger, current, None, {"state": "failed", "message": f"staging failed: {e.message}",
                                                "ended_at": clock()})
            append_log(spec, "run.err", stamp(f"staging failed: {e.message}" + (f" (hint: {e.hint})" if e.hint else "")))
            FAMILIES[spec.client].write(Path(spec.project_dir) / spec.job_dir, "failed")


def dispatch(settings: Settings, ledger: Ledger, clock: Callable[[], float] = time.time,
             stage: bool = False) -> list[int]:
    """Start queued jobs, oldest first, while their backend has room. Returns the ids started.
    `stage`: upload the inputs of jobs whose profile stages first (the monitor's loop only: a submit or a
    status call must not wait for an upload); such a job is not started before its inputs are staged."""
    started: list[int] = []
    cache: dict[str, Backend] = {}
    if stage:
        stage_queued(settings, ledger, clock)
    with ledger.transaction():
        running: dict[str, list[JobSpec]] = {}
        for job in ledger.jobs(states=STARTED):
            running.setdefault(job.profile, []).append(JobSpec.from_json(job.spec))
        blocked: set[str] = set()  # first in, first out: a job that waits holds back later ones
        for job in reversed(ledger.jobs(states=("queued",))):
            if job.profile in blocked:
                continue
            spec = JobSpec.from_json(job.spec)
            try:
                if jobstage.store_url(settings, settings.profile(job.profile)) is not None and \
                        jobstage.staged_for(Path(job.control_dir)) != job.spec:
                    blocked.add(job.profile)  # its inputs are not in the store yet: never launch before staging
                    continue
                backend = _backend(settings, job, cache)
                if not backend.has_room(spec, running.get(job.profile, [])):
                    blocked.add(job.profile)
                    continue
                cdir = Path(job.control_dir)
                env = control.read_json(cdir / control.ENV) or job_environment(os.environ)
                launch = Launch(job.id, spec, cdir, {str(k): str(v) for k, v in env.items()})
                handle = backend.submit(launch)
            except CryocloudError as e:
                _finish(ledger, job, None, {"state": "failed", "message": e.message, "ended_at": clock()})
                append_log(spec, "run.err", stamp(f"error: {e.message}" + (f" (hint: {e.hint})" if e.hint else "")))
                FAMILIES[spec.client].write(Path(spec.project_dir) / spec.job_dir, "failed")
                continue
            now = clock()
            data = {**handle.data, "control_dir": str(cdir)}
            ledger.add_attempt(job.id, backend=backend.name, handle=json.dumps(data), machine=backend.machine,
                               usd_per_hour=backend.usd_per_hour, price_source=backend.name,
                               started_at=now, state="running")
            ledger.update_job(job.id, state="running", started_at=now, machine=backend.machine)
            ledger.event(job.id, f"started on {backend.name} ({backend.machine})")
            running.setdefault(job.profile, []).append(spec)
            started.append(job.id)
    return started


def _finish(ledger: Ledger, job: JobRow, attempt_id: int | None, result: dict[str, object]) -> None:
    state = str(result.get("state", "failed"))
    ended = float(result.get("ended_at") or time.time())  # type: ignore[arg-type]
    started = job.started_at if job.started_at is not None else ended
    agent_start = result.get("started_at")
    if isinstance(agent_start, int | float):
        started = float(agent_start)
    message = str(result.get("message") or "")
    reason = Path(job.control_dir) / control.CANCEL
    if state == "aborted" and reason.exists() and reason.stat().st_size:
        message = reason.read_text().strip()  # why cryocloud stopped it (e.g. over budget)
    cols: dict[str, object] = {"state": state, "ended_at": ended, "started_at": started, "message": message}
    if result.get("exit_code") is not None:
        cols["exit_code"] = result["exit_code"]
    ledger.update_job(job.id, **cols)
    if attempt_id is not None:
        attempt = next(a for a in ledger.attempts(job.id) if a.id == attempt_id)
        hours = max(0.0, ended - started) / 3600
        ledger.update_attempt(attempt_id, state=state, started_at=started, ended_at=ended,
                              compute_usd=round(hours * attempt.usd_per_hour, 6))
    ledger.event(job.id, f"{state}" + (f": {cols['message']}" if cols["message"] else ""), at=ended)


def reconcile(settings: Settings, ledger: Ledger) -> None:
    """One pass over started jobs: record what their agents reported, and fail those whose agent vanished."""
    cache: dict[str, Backend] = {}
    for job in ledger.jobs(states=STARTED):
        cdir = Path(job.control_dir)
        attempt = ledger.last_attempt(job.id)
        spec = JobSpec.from_json(job.spec)
        staged = jobstage.staged(cdir)  # the node pushes its outputs back: the lab writes RELION's marker
        result = jobstage.read_result(settings, spec, cdir)
        if result is not None and result.get("marker_deferred") and attempt is not None:
            # the agent was stopped by a signal it cannot explain (preemption? time limit?) and left the
            # marker to us: the backend's end state says why, and whether the job goes on
            try:
                status = _backend(settings, job, cache).status(Handle(attempt.backend, attempt.handle_data))
            except CryocloudError:
                continue
            if status.state in ("queued", "running"):
                continue  # Slurm has not recorded the end yet
            why = None
            if status.interrupted:
                why = requeue(settings, ledger, job, attempt, status, _backend(settings, job, cache))
                if why is None:
                    continue
            msg = "; ".join(m for m in (str(result.get("message") or ""), status.message, why) if m)
            aborted = (cdir / control.CANCEL).exists() or status.state == "aborted"
            result = {**result, "message": msg, **({"state": "aborted"} if aborted else {})}
            append_log(spec, "run.err", stamp(f"job {result.get('state', 'failed')}: {msg}"))
            FAMILIES[spec.client].write(Path(spec.project_dir) / spec.job_dir, str(result.get("state", "failed")))
        if result is None and attempt is not None:
            try:
                status = _backend(settings, job, cache).status(Handle(attempt.backend, attempt.handle_data))
            except CryocloudError:
                continue  # backend unreachable now: ask again next pass, never guess an end
            if status.state in ("queued", "running"):
                if status.state == "running" and job.state != "running":
                    ledger.update_job(job.id, state="running")
                if staged and status.state == "running":
                    _forward_abort(spec, cdir, _backend(settings, job, cache), attempt.handle_data)
                watch_budget(settings, ledger, job, _backend(settings, job, cache), attempt.handle_data)
                continue
            result = jobstage.read_result(settings, spec, cdir)  # it may have landed meanwhile
            if result is None:
                why = None
                if status.interrupted:
                    why = requeue(settings, ledger, job, attempt, status, _backend(settings, job, cache))
                    if why is None:
                        continue  # back in the queue: the next dispatch starts the new attempt
                _backend(settings, job, cache).cleanup(Handle(attempt.backend, attempt.handle_data))
                cancelled = (cdir / control.CANCEL).exists()
                state = "aborted" if cancelled or status.state == "aborted" else "failed"
                msg = status.message or "the job's agent ended without reporting (killed or crashed)"
                if why:
                    msg = f"{msg}; {why}"
                result = {"state": state, "message": msg, "ended_at": time.time(), "exit_code": status.exit_code}
                append_log(spec, "run.err", stamp(f"job {state}: {msg}"))
                FAMILIES[spec.client].write(Path(spec.project_dir) / spec.job_dir, state)
        if result is not None:
            with ledger.transaction():
                current = ledger.job(job.id)
                if current is not None and current.active:
                    _finish(ledger, current, attempt.id if attempt else None, result)
                    if staged:  # outputs verified against their manifest: now RELION may see the end
                        FAMILIES[spec.client].write(Path(spec.project_dir) / spec.job_dir,
                                                    str(result.get("state", "failed")))


def _forward_abort(spec: JobSpec, cdir: Path, backend: Backend, handle: dict[str, object]) -> None:
    """RELION's abort file is in the lab's folder, which the node of a staged job does not see: cancel it here."""
    if (Path(spec.project_dir) / spec.job_dir / FAMILIES[spec.client].abort_request).exists() and \
            not (cdir / control.CANCEL).exists():
        (cdir / control.CANCEL).write_text("aborted on request (RELION_JOB_ABORT_NOW)")
        append_log(spec, "run.out", stamp("abort requested (RELION_JOB_ABORT_NOW); cancelling the job on the node"))
        backend.cancel(Handle(backend.name, handle))


def watch_budget(settings: Settings, ledger: Ledger, job: JobRow, backend: Backend,
                 handle: dict[str, object]) -> None:
    """Warn once at 80% of a budget; stop a running job once its project's or user's budget is spent."""
    if not settings.budgets:
        return
    from cryocloud.planner.budget import budget_warning, over_budget

    spec = JobSpec.from_json(job.spec)
    cdir = Path(job.control_dir)
    breach = over_budget(settings, ledger, job.id)
    if breach is not None and not (cdir / control.CANCEL).exists():
        reason = breach.message
        (cdir / control.CANCEL).write_text(reason)
        append_log(spec, "run.out", stamp(reason))
        ledger.event(job.id, reason)
        backend.cancel(Handle(backend.name, handle))
        return
    warned = cdir / "budget_warned"
    line = budget_warning(settings, ledger, job.user, job.project)
    if line and not warned.exists():
        warned.touch()
        append_log(spec, "run.out", stamp(line))


def has_active(ledger: Ledger) -> bool:
    return bool(ledger.jobs(states=("queued", *STARTED), limit=1))


def _lock(settings: Settings) -> int | None:
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.run_dir / "monitor.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def monitor_pid(settings: Settings, starting: bool = False) -> int | None:
    """The running monitor's pid (written into its lock file), or None. With `starting`, also one that was
    just spawned and has not taken the lock yet."""
    for name in ("monitor.lock", "monitor.spawned") if starting else ("monitor.lock",):
        try:
            text = (settings.run_dir / name).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and pid_alive(int(text)) and "cryocloud.monitor" in _cmdline(int(text)):
            return int(text)
    return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def ensure_monitor(settings: Settings) -> None:
    """Start the monitor in the background unless one runs already (idempotent)."""
    fd = _lock(settings)
    if fd is None:
        return
    os.close(fd)  # free it for the monitor we start; if another grabs it first, ours exits at once
    log = settings.run_dir / "monitor.log"
    pid = spawn_detached([sys.executable, "-m", "cryocloud.monitor"], env=dict(os.environ), stdout=log, stderr=log)
    (settings.run_dir / "monitor.spawned").write_text(str(pid))  # found even before it takes the lock


def _reap_children() -> None:
    """Agents started from the monitor are its children: collect their exit status (no zombies)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def run_monitor(settings: Settings, clock: Callable[[], float] = time.monotonic) -> int:
    """Loop until no job is active and nothing was asked of it for `monitor_linger` seconds."""
    import select

    from cryocloud import handoff
    from cryocloud.config import load_settings

    fd = _lock(settings)
    if fd is None:
        return 0
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    sock = handoff.listen(settings)
    _warm_up()
    ledger = open_ledger(settings)
    last_busy, next_pass = clock(), 0.0
    idle = False
    try:
        while not stop:
            wait = max(0.0, next_pass - clock())
            if sock is not None:
                ready, _, _ = select.select([sock], [], [], wait)
                if ready:
                    handoff.serve_one(sock)
                    last_busy = clock()
                    continue
            else:
                time.sleep(wait)
            try:
                settings = load_settings()  # config edits apply without a restart
            except CryocloudError as e:
                print(stamp(f"config error, keeping the previous settings: {e}"), end="", flush=True)
            reconcile(settings, ledger)
            dispatch(settings, ledger, stage=True)
            _reap_children()
            if has_active(ledger):
                last_busy = clock()
            elif clock() - last_busy > settings.local.monitor_linger:
                idle = True
                return 0
            next_pass = clock() + settings.local.poll_seconds
        return 0
    finally:
        if sock is not None:
            handoff.close(settings, sock)  # answers whoever connected before the socket went away
        # a submission answered just now may have made a job active: it needs a monitor, and this one is
        # leaving (its lock made that submission believe one runs), so start the next one once the lock is free
        again = idle and not stop and has_active(ledger)
        ledger.close()
        os.ftruncate(fd, 0)
        os.close(fd)
        if again:
            ensure_monitor(settings)


def _warm_up() -> None:
    """Import what a submission needs now, so the first handed-off submission is as fast as the rest."""
    import gemmi  # noqa: F401

    import cryocloud.jobs.relion
    import cryocloud.service  # noqa: F401


if __name__ == "__main__":
    from cryocloud.config import load_settings

    raise SystemExit(run_monitor(load_settings()))
