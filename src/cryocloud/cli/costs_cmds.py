"""costs: what each job cost (wall time, backend, machine, USD)."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def costs(as_json: bool) -> None:
    """List jobs with wall time, backend, machine and cost (USD, to the second).

    The local backend prices the workstation at workstation_usd_per_hour from the config
    (default 0.63 USD/h: a 10,000 USD workstation used 60% of the time).
    """
    from cryocloud.cli.render import hms, table
    from cryocloud.config import load_settings
    from cryocloud.service import refresh

    ledger = refresh(load_settings())
    try:
        rows = []
        for j in ledger.jobs():
            attempts = ledger.attempts(j.id)
            usd = sum(a.total_usd for a in attempts)
            rate = attempts[-1].usd_per_hour if attempts else 0.0
            rows.append({"id": j.id, "job": j.name, "type": j.job_type, "backend": j.backend,
                         "machine": j.machine, "state": j.state, "wall_seconds": j.wall_seconds,
                         "usd_per_hour": rate, "cost_usd": round(usd, 4), "project": j.project, "user": j.user})
    finally:
        ledger.close()
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    total = sum(r["cost_usd"] for r in rows)  # type: ignore[misc]
    table("cryocloud costs", ["id", "job", "type", "backend", "machine", "state", "wall", "USD/h", "USD"], [
        [r["id"], r["job"], r["type"], r["backend"], r["machine"], r["state"], hms(r["wall_seconds"]),  # type: ignore[arg-type]
         f"{r['usd_per_hour']:.2f}", f"{r['cost_usd']:.4f}"] for r in rows])
    click.echo(f"total: {total:.2f} USD over {len(rows)} job(s)")
