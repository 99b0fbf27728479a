"""`plan` for every face: the planner asked with a job type and its sizes, and its answer as data."""

from __future__ import annotations

from typing import Any

from cryocloud.planner import model
from cryocloud.planner.plan import Plan, plan_job
from cryocloud.settings import Settings


def plan_for(settings: Settings, job_type: str, sizes: dict[str, float], *, given: dict[str, float] | None = None,
             region: str | None = None, deadline: float | None = None, instance: str | None = None, gpus: int = 0,
             live_spot: bool = False, spot: bool = True) -> Plan:
    """The plan of `job_type` at `sizes` (what the user asked) over `given` (sizes read from a script too).
    Refuses sizes the model does not know, with a hint."""
    given = {**(given or {}), **sizes}
    model.check_request(job_type, model.JobSize(**given), sizes)
    return plan_job(job_type, model.JobSize(**given), settings, region=region or settings.aws.region,
                    deadline_hours=deadline, instance=instance, gpus=gpus, live_spot=live_spot, spot=spot)


def plan_data(p: Plan, top: int = 10) -> dict[str, Any]:
    """What `cryocloud plan --json` prints and the API returns."""
    return {"job_type": p.job_type, "region": p.region, "deadline_hours": p.deadline_hours,
            "best": p.best.as_dict() if p.best else None, "local": p.local.as_dict() if p.local else None,
            "options": [o.as_dict() for o in p.options[:top]], "notes": p.notes}
