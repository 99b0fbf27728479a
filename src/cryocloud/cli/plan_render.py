"""Rendering of `cryocloud plan` results: tables for people, JSON for programs. No planning logic here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cryocloud.planner.plan import Option, Plan


def _hours(h: float) -> str:
    return f"{h:.2f}" if h < 100 else f"{h:,.0f}"


def _row(o: Option, mark: str) -> list[Any]:
    return [mark, o.backend, o.machine, o.count, o.market, o.zone or "-", o.estimate.device,
            _hours(o.estimate.staging_hours), _hours(o.hours), f"{o.usd_per_hour:.4f}", f"{o.usd:,.2f}", o.describe]


def show_plan(p: Plan, top: int, as_json: bool) -> None:
    if as_json:
        from cryocloud.app.plan import plan_data

        click.echo(json.dumps(plan_data(p, top), indent=1))
        return
    from cryocloud.cli.render import table

    shown = p.options[:top]
    if p.best and p.best not in shown:
        shown.append(p.best)
    rows = [_row(o, "*" if o is p.best else "") for o in shown]
    if p.local:
        rows.append(_row(p.local, ""))
    deadline = f", deadline {p.deadline_hours:g} h" if p.deadline_hours else ""
    table(f"{p.job_type} in {p.region}{deadline} (cheapest first; * = plan)",
          ["", "backend", "machine", "n", "market", "zone", "device", "staging h", "hours", "USD/h", "USD",
           "hardware"], rows)
    for note in p.notes:
        click.echo(f"note: {note}")
    if p.best and p.local:
        faster = p.local.hours / p.best.hours if p.best.hours else 0
        click.echo(f"plan: {p.best.count}x {p.best.machine} {p.best.market}, {p.best.hours:.2f} h, "
                   f"{p.best.usd:.2f} USD; this workstation: {p.local.hours:.2f} h, {p.local.usd:.2f} USD "
                   f"({faster:.1f}x longer)")


def show_workflow(path: Path, region: str, as_json: bool) -> None:
    from cryocloud.planner.catalog import default_catalog
    from cryocloud.planner.today import assumptions, reprice
    from cryocloud.planner.workflow import load_workflow

    cat = default_catalog()
    wf = load_workflow(path, cat)
    todays = {m: reprice(wf, cat, region, m) for m in ("spot", "on-demand")}
    recorded = any(st.recorded_usd is not None for st in wf.steps) or bool(wf.items)  # a user's own file may give none
    recorded_total = wf.recorded_ec2 + wf.items_usd
    computed_total = wf.computed_ec2 + wf.items_usd
    if as_json:
        click.echo(json.dumps({
            "steps": [{"step": s.name, "machine": s.machine, "count": s.count, "usd_per_hour": str(s.usd_per_hour),
                       "billed_hours": str(s.billed_hours), "billed": s.billed, "computed_usd": str(s.computed_usd),
                       "recorded_usd": None if s.recorded_usd is None else str(s.recorded_usd),
                       "difference_usd": None if s.difference is None else str(s.difference)} for s in wf.steps],
            "items": [{"item": i.name, "recorded_usd": str(i.recorded_usd)} for i in wf.items],
            "unpriced": wf.unpriced,
            "ec2": {"computed_usd": str(wf.computed_ec2), "recorded_usd": str(wf.recorded_ec2) if recorded else None},
            "total": {"computed_usd": str(computed_total), "recorded_usd": str(recorded_total) if recorded else None,
                      "table_total_usd": None if wf.table_total_usd is None else str(wf.table_total_usd)},
            "elapsed_hours": str(wf.elapsed_hours),
            "today": {m: {"compute_usd": round(t.compute_usd, 2), "storage_usd": round(t.storage_usd, 2),
                          "total_usd": round(t.total_usd, 2), "elapsed_hours": round(t.elapsed_hours, 2),
                          "data_moving_share": round(t.staging_share, 4), "skipped": t.skipped,
                          "steps": [{"step": s.step.name, "job_type": s.job_type, "machine": s.machine,
                                     "count": s.count, "market": s.market, "zone": s.zone,
                                     "usd_per_hour": s.usd_per_hour, "staging_hours": round(s.staging_hours, 3),
                                     "compute_hours": round(s.compute_hours, 3), "usd": round(s.usd, 2)}
                                    for s in t.steps]} for m, t in todays.items()},
            "assumptions": assumptions()}, indent=1))
        return
    from cryocloud.cli.render import table

    rows: list[list[Any]] = [
        [s.name, s.count, s.machine, s.usd_per_hour, f"{s.billed_hours} ({s.billed})", s.computed_usd,
         "-" if s.recorded_usd is None else s.recorded_usd, "-" if s.difference is None else f"{s.difference:+}"]
        for s in wf.steps]
    rows += [[i.name, "", "", "", "", "", i.recorded_usd, ""] for i in wf.items]
    rows.append(["EC2 total", "", "", "", "", wf.computed_ec2, wf.recorded_ec2 if recorded else "-",
                 f"{wf.computed_ec2 - wf.recorded_ec2:+}" if recorded else "-"])
    rows.append(["Total", "", "", "", f"{wf.elapsed_hours} elapsed", computed_total, recorded_total if recorded else "-",
                 f"{computed_total - recorded_total:+}" if recorded else "-"])
    table(f"{path.name}: as recorded (USD = VMs x USD/h x billed hours)",
          ["step", "VMs", "machine", "USD/h", "billed hours", "computed", "recorded", "difference"], rows)
    if wf.table_total_usd is not None:
        same = "matches" if wf.table_total_usd == recorded_total else "DIFFERS from"
        click.echo(f"the file's Totals row ({wf.table_total_usd}) {same} the sum of its recorded costs ({recorded_total})")
    for u in wf.unpriced:
        click.echo(f"not priced: {u}")
    for market, t in todays.items():
        table(f"the same work today in {region}, {market}", ["step", "job type", "VMs", "machine", "zone",
              "USD/h", "staging h", "compute h", "elapsed h", "USD"],
              [[s.step.name, s.job_type, s.count, s.machine, s.zone or "-", f"{s.usd_per_hour:.4f}",
                f"{s.staging_hours:.2f}", f"{s.compute_hours:.2f}", f"{s.elapsed_hours:.2f}", f"{s.usd:.2f}"]
               for s in t.steps])
        against = (f" ({1 - t.total_usd / float(recorded_total):.0%} below the recorded {recorded_total})"
                   if recorded and recorded_total else "")
        click.echo(f"{market}: compute {t.compute_usd:.2f} + storage {t.storage_usd:.2f} = {t.total_usd:.2f} USD"
                   f"{against}; elapsed {t.elapsed_hours:.1f} h (recorded {wf.elapsed_hours}); data moving "
                   f"{t.staging_share:.1%} of billed machine-hours")
        if t.storage_text:
            click.echo(f"  storage: {t.storage_text}")
        for s in t.skipped:
            click.echo(f"  skipped: {s}")
    click.echo("assumptions:")
    for a in assumptions():
        click.echo(f"  - {a}")
