"""submit, status, cancel (and the internal agent entry)."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.argument("script", type=click.Path(path_type=Path))
@click.option("--split", "workers", type=click.IntRange(min=1), default=None,
              help="A RELION MotionCorr/CtfFind/AutoPick/Extract script: run it over N workers (default: RELION's "
                   "'Split over N workers' field).")
@click.option("--profile", default="", help="A job file's profile (default: its `profile` key, else the default).")
def submit(script: Path, workers: int | None, profile: str) -> None:
    """Submit SCRIPT: RELION's run_submit.script, or a job file (job.toml).

    RELION calls this for you (as `cryocloud-qsub <job>/run_submit.script`, from the project
    folder) when a job runs with "Submit to queue" = Yes. It returns at once and prints the job id.

    Where the job runs, first match wins: RELION's "Queue name" when it names a profile
    (e.g. local, slurm), else $CRYOCLOUD_BACKEND, else the config's default_profile, else local.

    \b
    A job file (TOML) runs any command over N tasks and keeps the best:
      command = ["python", "relax.py", "--seed", "{seed}"]   # {task}, {seed}, [[params]] names
      inputs = ["peptide.pdb"]          # linked into each task's folder Runs/<name>NNN/tasks/NNNN/
      outputs = ["model.pdb"]           # globs each task must write
      tasks = 16                        # or one [[params]] table per task
      seed = 1                          # task i gets seed + i, unless its [[params]] says
      retries = 1                       # a failed task runs again, then counts as failed
      pack = 0                          # tasks per worker (0: as many workers as fit)
      [resources]                       # cores, gpus, memory_gb, scratch_gb, wall_time
      cores = 1
      [select]                          # best K by a column of each task's score file
      file = "score.sc"
      column = "total_score"
      keep = 4
      order = "min"                     # or "max"
    """
    if script.suffix == ".toml":
        from cryocloud.app.run import submit_jobfile

        done = submit_jobfile(script, profile=profile)
        click.echo(f"Submitted job {done.job.id} ({done.job.name} on {done.profile.name}, "
                   f"{_tasks(done.job.spec)} tasks)")
        return
    if workers is not None:
        from cryocloud.app.run import submit_split

        done = submit_split(script, Path.cwd(), workers)
        click.echo(f"Submitted job {done.job.id} ({done.job.name} on {done.profile.name}, split over {workers})")
        return
    from cryocloud.app.submit import submit

    job_id, name, where = submit(script, Path.cwd())
    click.echo(f"Submitted job {job_id} ({name} on {where})")


def _tasks(spec_json: str) -> int:
    return int(json.loads(spec_json).get("tasks", 1))


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--profile", default="", help="Where to run it (a profile or backend; default as for RELION jobs).")
@click.option("--machine", default="", help="The machine to price (and on AWS, run) it on, e.g. c6i.2xlarge.")
@click.option("--input", "inputs", multiple=True, help="A file or folder the command reads (staged to cloud nodes).")
@click.option("--output", "outputs", multiple=True, help="A glob the command must write; the job fails without it.")
@click.option("--name", default="run", help="Job folder name: Runs/<name>NNN/ (run.out, run.err).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(profile: str, machine: str, inputs: tuple[str, ...], outputs: tuple[str, ...], name: str,
        command: tuple[str, ...]) -> None:
    """Run any COMMAND as a cryocloud job: the same agent, logs, abort, exit status, cost and ledger as a RELION
    job. It runs in this folder; its output goes to Runs/<name>NNN/run.out and run.err.

    \b
      cryocloud run -- python fit.py --seed 3
      cryocloud run --profile slurm --input data.csv --output 'fit_*.json' -- python fit.py
      cryocloud status            # its state; `cryocloud cancel ID` stops it
    """
    from cryocloud.app.run import submit_command

    done = submit_command(list(command), Path.cwd(), profile=profile, machine=machine, inputs=list(inputs),
                          outputs=list(outputs), name=name)
    click.echo(f"Submitted job {done.job.id} ({done.job.name} on {done.profile.name})")


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

    settings = load_settings()
    jobs, events = status_view(settings, job, Path.cwd(), show_all, os.environ)
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
    for at, line in sweep_findings(settings):
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
