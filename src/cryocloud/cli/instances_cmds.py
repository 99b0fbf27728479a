"""`cryocloud instances ls|kill` and `cryocloud cleanup`: parse, call app/instances.py, render."""

from __future__ import annotations

import json
import sys
import time

import click

from cryocloud.errors import CryocloudError

REGION_HELP = "Only this AWS region (default: [aws] region and every AWS profile's)."


@click.group()
def instances() -> None:
    """Cloud instances cryocloud launched (found by their cryocloud:* tags): list them, end them.

    \b
    cryocloud instances ls                  # yours: job, RELION folder, type, age, USD/h, cost so far
    cryocloud instances ls --all-users      # everyone's in this account
    cryocloud instances kill i-0abc... --yes  # its job ends as aborted, in RELION too
    """


@instances.command("ls")
@click.option("--all-users", is_flag=True, help="Every owner's instances, not only yours.")
@click.option("--region", default="", help=REGION_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def ls(all_users: bool, region: str, as_json: bool) -> None:
    """List running cryocloud instances with their job and what they cost so far."""
    from cryocloud.app.instances import list_instances
    from cryocloud.cli.render import hms, table
    from cryocloud.settings import load_settings

    rows = list_instances(load_settings(), all_users=all_users, region=region)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo("no cryocloud instances running" + ("" if all_users else " of yours (--all-users: everyone's)"))
        return
    table("cryocloud instances", ["instance", "owner", "project", "job", "folder", "type", "zone", "market",
                                  "age", "state", "USD/h", "cost"],
          [[r["id"], r["owner"], r["project"], r["job"] if r["job_id"] is None
            else f"{r['job_id']} {r['job_state'] or '(not in this ledger)'}",
            r["job_dir"] or "-", r["type"], r["zone"], r["market"], hms(r["age_seconds"]), r["state"],
            f"{r['usd_per_hour']:.4f}", f"{r['cost_so_far_usd']:.4f}"] for r in rows])


@instances.command("kill")
@click.argument("ids", nargs=-1, required=True)
@click.option("--yes", is_flag=True, help="Do not ask (needed when not at a terminal).")
@click.option("--region", default="", help=REGION_HELP)
def kill(ids: tuple[str, ...], yes: bool, region: str) -> None:
    """End instances IDS (i-...). A job one runs ends as aborted, in RELION's view and in the ledger, with its
    cost recorded. Only your own cryocloud instances can be ended."""
    from cryocloud.app.instances import kill_instances
    from cryocloud.settings import load_settings

    if not yes:
        if not sys.stdin.isatty():
            raise CryocloudError("`instances kill` asks before ending anything, and this is not a terminal",
                                 f"add --yes: cryocloud instances kill {' '.join(ids)} --yes")
        click.confirm(f"end {len(ids)} instance(s): {' '.join(ids)}?", abort=True)
    for k in kill_instances(load_settings(), list(ids), region=region):
        if k.job_id is None:
            click.echo(f"{k.id}: ended (it ran no active job of this ledger)")
        elif k.cost_usd is None:
            click.echo(f"{k.id}: ended; job {k.job_id} is {k.job_state} (its end is recorded by the monitor)")
        else:
            click.echo(f"{k.id}: ended; job {k.job_id} {k.job_state}, cost {k.cost_usd:.4f} USD")


@click.command()
@click.option("--instances", "do_instances", is_flag=True, help="Instances cryocloud launched that nothing accounts for.")
@click.option("--volumes", "do_volumes", is_flag=True, help="Detached volumes cryocloud made.")
@click.option("--storage", "do_storage", is_flag=True, help="Temporary job data in the object store.")
@click.option("--all", "do_all", is_flag=True, help="Everything above.")
@click.option("--untagged", is_flag=True, help="Also list instances and volumes without cryocloud's tags "
              "(listed only: never touched).")
@click.option("--older-than", "days", type=click.FloatRange(0), default=7.0, show_default=True,
              help="Only job data pushed more than DAYS ago.")
@click.option("--store", "url", default="", help="Store URL for --storage (default: [storage] url).")
@click.option("--region", default="", help=REGION_HELP)
@click.option("--yes", is_flag=True, help="Really remove (default: a dry run that shows what would go).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
def cleanup(do_instances: bool, do_volumes: bool, do_storage: bool, do_all: bool, untagged: bool, days: float,
            url: str, region: str, yes: bool, as_json: bool) -> None:
    """Find and remove what cryocloud left behind. A dry run unless --yes.

    \b
    A stray is tagged by cryocloud (cryocloud:owner is you) and is past its cryocloud:expires, or its job has
    ended, or the ledger does not know its job, or it was launched for a job but never recorded. Each line says
    what it costs a day, and the total what removing them saves. Untagged resources are never touched.
      cryocloud cleanup --all               # dry run
      cryocloud cleanup --all --yes         # remove exactly what the dry run listed
      cryocloud cleanup --instances --untagged   # also see what else runs in the account
    """
    from cryocloud.app.instances import cleanup as run_cleanup
    from cryocloud.settings import load_settings

    if not (do_instances or do_volumes or do_storage or do_all or untagged):
        raise click.UsageError("say what to clean: --instances, --volumes, --storage or --all "
                               "(--untagged lists what else runs)")
    store = None
    if do_storage or do_all:
        from cryocloud.cli.storage_cmds import _store

        store = _store(url)
    report = run_cleanup(load_settings(), instances=do_instances or do_all, volumes=do_volumes or do_all,
                         storage=do_storage or do_all, untagged=untagged, yes=yes, days=days, store=store,
                         region=region, now=time.time())
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=1))
        return
    verb = {"instance": "end", "volume": "delete"}
    for item in report.strays:
        said = item.done or f"would {verb[item.kind]}"
        click.echo(f"{said} {item.kind} {item.id} ({item.region}): {item.why}; {item.usd_per_day:.2f} USD/day")
    if do_instances or do_volumes or do_all:
        if report.strays:
            click.echo(f"{'removing these saves' if report.dry_run else 'saved'} {report.usd_per_day:.2f} USD/day"
                       + ("  (dry run: add --yes to remove them)" if report.dry_run else ""))
        else:
            click.echo("no stray instances or volumes of yours")
    for item in report.untagged:
        click.echo(f"not cryocloud's (listed only): {item.kind} {item.id} ({item.region}): {item.why}; "
                   f"{item.usd_per_day:.2f} USD/day")
    if report.storage is not None:
        from cryocloud.cli.storage_cmds import _print_sweep

        _print_sweep(report.storage, dry_run=report.dry_run)
