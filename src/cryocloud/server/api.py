"""/api/v1: submit, list, status, logs, cancel, plan, costs, storage, instances. Parses, calls app/, returns its data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import Response

from cryocloud.accounts import User
from cryocloud.app import costs, facility, jobs
from cryocloud.errors import CryocloudError
from cryocloud.server.state import bearer_user, state_of

router = APIRouter()
Caller = Annotated[User, Depends(bearer_user)]


def _scope(user: User, asked: str | None) -> str | None:
    """Whose jobs a call covers: a user's own always; a manager's: everyone's, or the one asked for."""
    if user.manager:
        return asked or None
    if asked and asked != user.name:
        raise CryocloudError(f"you may see only your own jobs, not {asked!r}'s", "leave out user=, or ask a manager")
    return user.name


@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request, user: Caller) -> dict[str, Any]:
    """The API's OpenAPI document (behind a token too: every call is)."""
    doc: dict[str, Any] = request.app.openapi()
    return doc


@router.get("/me")
def me(user: Caller) -> dict[str, str]:
    """Who this token belongs to."""
    return {"name": user.name, "role": user.role}


@router.get("/jobs")
async def list_jobs(request: Request, user: Caller, state: str | None = None, owner: Annotated[str | None, Query(
        alias="user")] = None, project: str | None = None, limit: Annotated[int, Query(ge=1, le=10000)] = 100
              ) -> list[dict[str, Any]]:
    """Jobs, newest first, with state and cost so far: your own (a manager: everyone's, or user=NAME's)."""
    # async: answered on the event loop, without a hop to a worker thread (P6, BENCHMARKS.md); a page is two
    # indexed reads of the local WAL ledger, which never wait for its writer
    return jobs.job_rows(state_of(request).ledger(), user=_scope(user, owner), state=state, project=project,
                         limit=limit)


@router.post("/jobs", status_code=201)
def submit(request: Request, user: Caller, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    """Submit a RELION job ({"script": ".../run_submit.script", "cwd": project folder}) or a job as data
    ({"project_dir", "job_dir", "commands", "profile"?, "mpi"?, "threads"?, "gpus"?}). Files must lie under the
    server's project roots."""
    settings = state_of(request).settings
    given = body.get("env") or os.environ
    if not isinstance(given, dict) and given is not os.environ:
        raise CryocloudError("env must be an object of variable names to values", 'e.g. "env": {"PATH": "/usr/bin"}')
    env = {str(k): str(v) for k, v in given.items()}
    if "script" in body:
        cwd = Path(str(body.get("cwd") or Path(str(body["script"])).parent.parent.parent))
        done = facility.submit_script_as(settings, user, Path(str(body["script"])), cwd, env)
    else:
        done = facility.submit_command_as(settings, user, body, env)
    return {"id": done.job.id, "name": done.job.name, "profile": done.profile.name, "state": done.job.state}


@router.get("/jobs/{job_id}")
def status(request: Request, user: Caller, job_id: int) -> dict[str, Any]:
    """One job: state, attempts, cost, events."""
    ledger = state_of(request).ledger()
    return jobs.job_detail(ledger, facility.visible_job(ledger, user, job_id))


@router.get("/jobs/{job_id}/logs")
def logs(request: Request, user: Caller, job_id: int, lines: Annotated[int, Query(ge=1, le=5000)] = 50
         ) -> dict[str, list[str]]:
    """The tail of the job's run.out and run.err."""
    ledger = state_of(request).ledger()
    return jobs.log_tail(facility.visible_job(ledger, user, job_id), lines)


@router.get("/jobs/{job_id}/progress")
def progress(request: Request, user: Caller, job_id: int) -> dict[str, Any]:
    """An iterative RELION job's progress: per iteration resolution (Å) and class distribution; the number of
    class averages of the last iteration."""
    ledger = state_of(request).ledger()
    return jobs.relion_progress(facility.visible_job(ledger, user, job_id))


@router.get("/jobs/{job_id}/classes/{index}.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
def class_average(request: Request, user: Caller, job_id: int, index: int) -> Response:
    """Class average INDEX (from 1) of the last iteration, as a grey PNG."""
    ledger = state_of(request).ledger()
    png = jobs.class_average_png(facility.visible_job(ledger, user, job_id), index)
    return Response(png, media_type="image/png")


@router.post("/jobs/{job_id}/cancel")
def cancel(request: Request, user: Caller, job_id: int) -> dict[str, Any]:
    """Stop the job; it ends as aborted (RELION's marker too). Returns at once; poll the job for its end."""
    state = state_of(request)
    job = facility.visible_job(state.ledger(), user, job_id)
    row = jobs.cancel_job(state.settings, str(job.id), Path(job.project_dir), wait=0.0)
    return {"id": row.id, "state": row.state}


@router.get("/plan")
def plan(request: Request, user: Caller, job_type: str, deadline: float | None = None, instance: str | None = None,
         region: str | None = None, gpus: int = 0, particles: float | None = None, box: float | None = None,
         classes: float | None = None, iterations: float | None = None, movies: float | None = None,
         frames: float | None = None, data_gb: float | None = None, top: Annotated[int, Query(ge=1, le=100)] = 10
         ) -> dict[str, Any]:
    """The same answer as `cryocloud plan --json`: machines that fit, hours and USD, this workstation beside."""
    from cryocloud.app.plan import plan_data, plan_for

    sizes = {k: v for k, v in {"particles": particles, "box": box, "classes": classes, "iterations": iterations,
                               "movies": movies, "frames": frames, "data_gb": data_gb}.items() if v is not None}
    result = plan_for(state_of(request).settings, job_type, sizes, region=region, deadline=deadline,
                      instance=instance, gpus=gpus)
    return plan_data(result, top)


@router.get("/costs")
def cost_rows(request: Request, user: Caller, by: str = "job", project: str | None = None,
              owner: Annotated[str | None, Query(alias="user")] = None, month: str | None = None
              ) -> list[dict[str, Any]]:
    """What jobs cost, per job or totalled by project, user, month, backend or machine."""
    if by not in costs.GROUPS:
        raise CryocloudError(f"cannot group costs by {by!r}", "choose one of: " + ", ".join(costs.GROUPS))
    return costs.cost_rows(state_of(request).ledger(), by=by, project=project, user=_scope(user, owner),
                           month=month)


@router.get("/storage")
def storage(request: Request, user: Caller) -> dict[str, Any]:
    """Bytes in the configured object store by kind and storage class, with their monthly cost."""
    return facility.storage_use(state_of(request).settings)


@router.get("/instances")
def instances(request: Request, user: Caller) -> dict[str, Any]:
    """cryocloud's live EC2 instances (a manager: all; a user: those running their jobs) with cost so far."""
    st = state_of(request)
    return facility.instances_for(st.settings, st.ledger(), user)
