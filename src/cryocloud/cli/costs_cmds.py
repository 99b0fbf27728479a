"""costs: what each job cost (wall time, backend, machine, USD)."""

from __future__ import annotations

import csv
import json
import sys

import click

# app.costs.GROUPS, spelled here so that --help does not import the ledger
GROUPS_CHOICES = ("backend", "day", "job", "machine", "month", "project", "user")

@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (for a spreadsheet) instead of a table.")
@click.option("--by", type=click.Choice(sorted(GROUPS_CHOICES)), default="job", show_default=True,
              help="One row per job, or totals per project, user, month, backend or machine.")
@click.option("--project", help="Only this project.")
@click.option("--user", help="Only this user.")
@click.option("--month", help="Only this month (YYYY-MM, by submission).")
def costs(as_json: bool, as_csv: bool, by: str, project: str | None, user: str | None, month: str | None) -> None:
    """List jobs with wall time, backend, machine and cost (USD, to the second).

    The local backend prices the workstation at workstation_usd_per_hour from the config
    (default 0.63 USD/h: a 10,000 USD workstation used 60% of the time).
    """
    import os

    from cryocloud.app.costs import costs_view
    from cryocloud.cli.render import hms, table
    from cryocloud.settings import load_settings

    rows = costs_view(load_settings(), os.environ, by=by, project=project, user=user, month=month)
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
