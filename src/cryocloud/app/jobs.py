"""Find, cancel and refresh jobs: what `status`, `cancel` and `costs` of every face call."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryocloud.backends.base import Handle, get_backend
from cryocloud.errors import CryocloudError, JobNotFound
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
            "wall_seconds": j.wall_seconds, "machine": j.machine, "exit_code": j.exit_code, "user": j.user,
            "project": j.project, "job_dir": j.job_dir}


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


def job_rows(ledger: Ledger, *, user: str | None = None, state: str | None = None, project: str | None = None,
             limit: int | None = 100, now: float | None = None) -> list[dict[str, Any]]:
    """Jobs as data, newest first, each with what it has cost so far (one query for all their attempts)."""
    states = tuple(s for s in State if s.value == state) if state else None
    if state and not states:
        raise CryocloudError(f"unknown state {state!r}", "choose one of: " + ", ".join(s.value for s in State))
    jobs = ledger.jobs(states=states, limit=limit, user=user, project=project)
    attempts = ledger.attempts_of([j.id for j in jobs])
    now = time.time() if now is None else now
    return [{**job_record(j), "cost_usd": round(sum(a.cost_usd(now) for a in attempts[j.id]), 4)} for j in jobs]


def log_tail(job: JobRow, lines: int = 50) -> dict[str, list[str]]:
    """The last `lines` lines of the job's run.out and run.err (what RELION's GUI shows)."""
    folder = Path(job.project_dir) / job.job_dir
    out: dict[str, list[str]] = {}
    for name in ("run.out", "run.err"):
        try:
            with open(folder / name, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 200 * lines))  # enough bytes for `lines` lines of RELION's output
                text = f.read().decode(errors="replace")
        except OSError:
            text = ""
        out[name] = text.splitlines()[-lines:]
    return out


def job_detail(ledger: Ledger, job: JobRow, now: float | None = None) -> dict[str, Any]:
    """One job with its attempts, cost and events: `status JOB` as data."""
    now = time.time() if now is None else now
    attempts = ledger.attempts(job.id)
    return {**job_record(job),
            "predicted_usd": job.predicted_usd, "cost_usd": round(sum(a.cost_usd(now) for a in attempts), 4),
            "attempts": [{"backend": a.backend, "machine": a.machine, "market": a.market, "state": a.state,
                          "usd_per_hour": a.usd_per_hour, "started_at": a.started_at, "ended_at": a.ended_at,
                          "cost_usd": round(a.cost_usd(now), 4)} for a in attempts],
            "events": [{"at": at, "message": msg} for at, msg in ledger.events(job.id)]}


def relion_progress(job: JobRow) -> dict[str, Any]:
    """An iterative RELION job's progress as RELION wrote it: per iteration the resolution and the class
    distribution, and how many class averages the last iteration has (empty lists for other jobs)."""
    from cryocloud.jobs import progress

    folder = Path(job.project_dir) / job.job_dir
    stack = progress.classes_file(folder)
    count = 0
    if stack is not None:
        try:
            count = len(progress.mrc_sections(stack)[3])
        except (CryocloudError, OSError):
            count = 0  # being written: shown on the next look
    return {"iterations": [{"iteration": i.number, "resolution": i.resolution, "distribution": i.distribution}
                           for i in progress.iterations(folder)],
            "class_averages": count, "classes_file": stack.name if stack else None}


def class_average_png(job: JobRow, index: int) -> bytes:
    """Class average `index` (1-based, as RELION numbers classes) of the last iteration, as a grey PNG."""
    from cryocloud.jobs import progress

    stack = progress.classes_file(Path(job.project_dir) / job.job_dir)
    if stack is None:
        raise JobNotFound(f"job {job.id} has no class averages (yet)", "a 2D classification writes them each iteration")
    nx, ny, mode, sections = progress.mrc_sections(stack)
    if not 1 <= index <= len(sections):
        raise JobNotFound(f"job {job.id} has classes 1 to {len(sections)}, not {index}", "number classes from 1")
    return progress.grey_png(nx, ny, mode, sections[index - 1])


def status_view(settings: Settings, ref: str | None, cwd: Path, show_all: bool,
                env: Mapping[str, str]) -> tuple[list[dict[str, Any]], list[tuple[float, str]]]:
    """What `status [JOB]` shows: jobs as data (one, or the active and recent ones, or all) and one job's events.
    In facility mode ([server] url) asked of the server, which is the ledger's one writer."""
    limit = None if show_all else 20
    if settings.server.url:
        from cryocloud.app.remote import call, job_id_on_server

        if ref:
            d = call(settings, env, "GET", f"/api/v1/jobs/{job_id_on_server(settings, env, ref, cwd)}")
            return [d], [(e["at"], e["message"]) for e in d["events"]]
        rows: list[dict[str, Any]] = call(settings, env, "GET", f"/api/v1/jobs?limit={limit or 10000}")
        return rows, []
    ledger = refresh(settings)
    try:
        jobs = [find_job(ledger, ref, cwd)] if ref else ledger.jobs(limit=limit)
        return [job_record(j) for j in jobs], ledger.events(jobs[0].id) if ref else []
    finally:
        ledger.close()


def cancel_view(settings: Settings, ref: str, cwd: Path, wait: float, env: Mapping[str, str]) -> dict[str, Any]:
    """`cancel JOB`: stop it (in facility mode, through the server). Returns {id, name, state}."""
    if settings.server.url:
        from cryocloud.app.remote import call, job_id_on_server

        job_id = job_id_on_server(settings, env, ref, cwd)
        call(settings, env, "POST", f"/api/v1/jobs/{job_id}/cancel", {})
        deadline = time.monotonic() + wait
        while True:
            d: dict[str, Any] = call(settings, env, "GET", f"/api/v1/jobs/{job_id}")
            if d["state"] not in ("queued", "starting", "running") or time.monotonic() > deadline:
                return d
            time.sleep(0.2)
    row = cancel_job(settings, ref, cwd, wait)
    return {"id": row.id, "name": row.name, "state": row.state}
