"""costs: what each job cost (wall time, backend, machine, USD)."""

from __future__ import annotations

import csv
import json
import sys
import time
from typing import Any

import click

GROUPS = {"job": None, "project": "project", "user": "user", "month": "month", "backend": "backend",
          "machine": "machine"}


def _grouped(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        g = out.setdefault(str(r[key]), {key: r[key], "jobs": 0, "wall_seconds": 0.0, "cost_usd": 0.0})
        g["jobs"] += 1
        g["wall_seconds"] += r["wall_seconds"] or 0.0
        g["cost_usd"] = round(g["cost_usd"] + r["cost_usd"], 4)
    return sorted(out.values(), key=lambda g: str(g[key]))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (for a spreadsheet) instead of a table.")
@click.option("--by", type=click.Choice(sorted(GROUPS)), default="job", show_default=True,
              help="One row per job, or totals per project, user, month, backend or machine.")
@click.option("--project", help="Only this project.")
@click.option("--user", help="Only this user.")
@click.option("--month", help="Only this month (YYYY-MM, by submission).")
def costs(as_json: bool, as_csv: bool, by: str, project: str | None, user: str | None, month: str | None) -> None:
    """List jobs with wall time, backend, machine and cost (USD, to the second).

    The local backend prices the workstation at workstation_usd_per_hour from the config
    (default 0.63 USD/h: a 10,000 USD workstation used 60% of the time).
    """
    from cryocloud.cli.render import hms, table
    from cryocloud.config import load_settings
    from cryocloud.service import refresh

    ledger = refresh(load_settings())
    try:
        rows: list[dict[str, Any]] = []
        for j in ledger.jobs():
            attempts = ledger.attempts(j.id)
            usd = sum(a.total_usd for a in attempts)
            rate = attempts[-1].usd_per_hour if attempts else 0.0
            rows.append({"id": j.id, "job": j.name, "type": j.job_type, "backend": j.backend,
                         "machine": j.machine, "state": j.state, "wall_seconds": j.wall_seconds,
                         "usd_per_hour": rate, "cost_usd": round(usd, 4), "project": j.project, "user": j.user,
                         "month": time.strftime("%Y-%m", time.localtime(j.submitted_at)),
                         "predicted_usd": j.predicted_usd,
                         "compute_usd": round(sum(a.compute_usd for a in attempts), 4),
                         "storage_usd": round(sum(a.storage_usd for a in attempts), 4),
                         "transfer_usd": round(sum(a.transfer_usd for a in attempts), 4),
                         "price_source": attempts[-1].price_source if attempts else "",
                         "market": attempts[-1].market if attempts else ""})
    finally:
        ledger.close()
    rows = [r for r in rows if (not project or r["project"] == project) and (not user or r["user"] == user)
            and (not month or r["month"] == month)]
    if by != "job":
        rows = _grouped(rows, by)
    if as_csv:
        w = csv.DictWriter(sys.stdout, list(rows[0]) if rows else ["id"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    total = sum(r["cost_usd"] for r in rows)
    if by != "job":
        table(f"cryocloud costs by {by}", [by, "jobs", "wall", "USD"],
              [[r[by], r["jobs"], hms(r["wall_seconds"]), f"{r['cost_usd']:.4f}"] for r in rows])
        click.echo(f"total: {_usd(total)} USD")
        return
    table("cryocloud costs", ["id", "job", "type", "backend", "machine", "state", "wall", "USD/h", "USD"], [
        [r["id"], r["job"], r["type"], r["backend"], r["machine"], r["state"], hms(r["wall_seconds"]),
         f"{r['usd_per_hour']:.2f}", f"{r['cost_usd']:.4f}"] for r in rows])
    click.echo(f"total: {_usd(total)} USD over {len(rows)} job(s)")


def _usd(value: float) -> str:
    """Cents for real money; more digits for the fractions of a cent that small local jobs cost."""
    return f"{value:,.2f}" if value >= 1 or value == 0 else f"{value:.4f}"
