"""Cost rows: one per job (or totals per project, user, month, backend, machine), for every face. A running
job's cost accrues to now by the ledger's one formula, so `costs` and the budgets never disagree."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from cryocloud.ledger import Ledger
from cryocloud.settings import Settings

GROUPS = ("job", "project", "user", "month", "day", "backend", "machine")


def cost_rows(ledger: Ledger, *, by: str = "job", project: str | None = None, user: str | None = None,
              month: str | None = None, now: float | None = None) -> list[dict[str, Any]]:
    now = time.time() if now is None else now
    rows: list[dict[str, Any]] = []
    for j in ledger.jobs():
        attempts = ledger.attempts(j.id)
        last = attempts[-1] if attempts else None
        rows.append({"id": j.id, "job": j.name, "type": j.job_type, "backend": j.backend,
                     "machine": j.machine, "state": j.state, "wall_seconds": j.wall_seconds,
                     "usd_per_hour": last.usd_per_hour if last else 0.0,
                     "cost_usd": round(sum(a.cost_usd(now) for a in attempts), 4),
                     "project": j.project, "user": j.user,
                     "month": time.strftime("%Y-%m", time.localtime(j.submitted_at)),
                     "day": time.strftime("%Y-%m-%d", time.localtime(j.submitted_at)),
                     "predicted_usd": j.predicted_usd,
                     "compute_usd": round(sum(a.cost_usd(now) - a.storage_usd - a.transfer_usd for a in attempts), 4),
                     "storage_usd": round(sum(a.storage_usd for a in attempts), 4),
                     "transfer_usd": round(sum(a.transfer_usd for a in attempts), 4),
                     "price_source": last.price_source if last else "",
                     "market": last.market if last else ""})
    rows = [r for r in rows if (not project or r["project"] == project) and (not user or r["user"] == user)
            and (not month or r["month"] == month)]
    return rows if by == "job" else grouped(rows, by)


def grouped(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        g = out.setdefault(str(r[key]), {key: r[key], "jobs": 0, "wall_seconds": 0.0, "cost_usd": 0.0})
        g["jobs"] += 1
        g["wall_seconds"] += r["wall_seconds"] or 0.0
        g["cost_usd"] = round(g["cost_usd"] + r["cost_usd"], 4)
    return sorted(out.values(), key=lambda g: str(g[key]))


def costs_view(settings: Settings, env: Mapping[str, str], *, by: str = "job", project: str | None = None,
               user: str | None = None, month: str | None = None) -> list[dict[str, Any]]:
    """What `costs` shows: cost rows, in facility mode ([server] url) asked of the server."""
    if settings.server.url:
        from urllib.parse import urlencode

        from cryocloud.app.remote import call

        query = urlencode({k: v for k, v in (("by", by), ("project", project), ("user", user), ("month", month)) if v})
        rows: list[dict[str, Any]] = call(settings, env, "GET", f"/api/v1/costs?{query}")
        return rows
    from cryocloud.app.jobs import refresh

    ledger = refresh(settings)
    try:
        return cost_rows(ledger, by=by, project=project, user=user, month=month)
    finally:
        ledger.close()
