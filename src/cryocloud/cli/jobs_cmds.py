"""submit, status, cancel (and the internal agent entry)."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.argument("script", type=click.Path(path_type=Path))
def submit(script: Path) -> None:
    """Submit SCRIPT, the run_submit.script RELION filled from cryocloud's template.

    RELION calls this for you (as `cryocloud-qsub <job>/run_submit.script`, from the project
    folder) when a job runs with "Submit to queue" = Yes. It returns at once and prints the job id.

    Where the job runs, first match wins: RELION's "Queue name" when it names a profile
    (e.g. local, slurm), else $CRYOCLOUD_BACKEND, else the config's default_profile, else local.
    """
    from cryocloud.app.submit import submit

    job_id, name, profile = submit(script, Path.cwd())
    click.echo(f"Submitted job {job_id} ({name} on {profile})")


@click.command()
@click.argument("job", required=False)
@click.option("--all", "show_all", is_flag=True, help="Show every job, not only active and the last 20.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(job: str | None, show_all: bool, as_json: bool) -> None:
    """Show jobs: JOB is an id or a RELION job folder (e.g. Class2D/job002/); works from any folder."""
    import os

    from cryocloud.app.jobs import status_view, sweep_findings
    from cryocloud.cli.render import hms, table, when
    from cryocloud.settings import load_settings

    jobs, events = status_view(load_settings(), job, Path.cwd(), show_all, os.environ)
    if as_json:
        click.echo(json.dumps(jobs, indent=1))
        return
    if not jobs:
        click.echo("no jobs yet: submit one from RELION (see `cryocloud relion setup`)")
        return
    table("cryocloud jobs", ["id", "job", "type", "where", "state", "submitted", "wall", "message"], [
        [j["id"], j["name"], j["job_type"], j["profile"], j["state"], when(j["submitted_at"]),
         hms(j["wall_seconds"]), j["message"][:60]] for j in jobs])
    for at, msg in events:
        click.echo(f"  {when(at)}  {msg}")
    for at, line in sweep_findings(load_settings()):
        click.echo(f"monitor's sweep {when(at)}: {line}")


@click.command()
@click.argument("job")
@click.option("--no-wait", is_flag=True, help="Return at once instead of waiting for the job to stop.")
def cancel(job: str, no_wait: bool) -> None:
    """Stop JOB (an id or a RELION job folder). It ends as aborted, in RELION too."""
    import os

    from cryocloud.app.jobs import cancel_view
    from cryocloud.settings import load_settings

    row = cancel_view(load_settings(), job, Path.cwd(), 0.0 if no_wait else 15.0, os.environ)
    click.echo(f"job {row['id']} ({row['name']}): {row['state']}")


@click.group(hidden=True)
def agent() -> None:
    """Internal: the runner backends launch."""


@agent.command("run")
@click.argument("control_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def agent_run(control_dir: Path) -> None:
    """Run the job described in CONTROL_DIR/launch.json."""
    from cryocloud.agent.runner import main

    raise SystemExit(main([str(control_dir)]))
