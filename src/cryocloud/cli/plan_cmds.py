"""plan and spot-prices: which machine, how many, spot or not, hours and USD, before anything runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

SIZE_OPTIONS = ("particles", "box", "classes", "iterations", "healpix_order", "movies", "micrographs", "frames",
                "pixels", "data_gb")


def _size_options(f: Any) -> Any:
    helps = {"particles": "number of particles", "box": "box size (pixels)", "classes": "classes (K)",
             "iterations": "iterations", "healpix_order": "angular sampling (healpix order)",
             "movies": "number of movies", "micrographs": "number of micrographs (default: movies)",
             "frames": "frames per movie", "pixels": "pixels per frame (e.g. 16777216 for 4096x4096)",
             "data_gb": "input data to stage onto the machine (GB)"}
    for name in reversed(SIZE_OPTIONS):
        f = click.option(f"--{name.replace('_', '-')}", name, type=float, default=None, show_default=False,
                         help=helps[name])(f)
    return f


@click.command()
@click.argument("script", required=False, type=click.Path(path_type=Path))
@click.option("--job-type", help="Class2D, Class3D, Refine3D, MotionCorr, CtfFind, AutoPick, Extract, Polish, ...")
@_size_options
@click.option("--deadline", type=float, help="Hours: pick the cheapest option that ends within it.")
@click.option("--instance", help="Price this one instance type (e.g. g5.xlarge).")
@click.option("--region", help="AWS region (default: config aws.region).")
@click.option("--gpus", type=int, default=0, help="GPUs the job asks for (0: let the planner choose).")
@click.option("--on-demand-only", is_flag=True, help="Leave spot instances out.")
@click.option("--live-spot", is_flag=True, help="Ask EC2 for current spot prices (needs AWS credentials).")
@click.option("--top", type=int, default=10, show_default=True, help="How many options to show.")
@click.option("--workflow", type=click.Path(path_type=Path), help="Price a whole workflow CSV (e.g. the founding table).")
@click.option("--list-types", is_flag=True, help="List the catalog's instance types in the region.")
@click.option("--task-hours", type=float, help="A job file (job.toml): hours one of its tasks takes.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plan(script: Path | None, job_type: str | None, deadline: float | None, instance: str | None,
         region: str | None, gpus: int, on_demand_only: bool, live_spot: bool, top: int, workflow: Path | None,
         list_types: bool, task_hours: float | None, as_json: bool, **sizes: float) -> None:
    """Predict hours and cost of a job on every machine that fits, and on this workstation.

    \b
    cryocloud plan --job-type Class3D --particles 200000 --box 300 --classes 4 --deadline 8
    cryocloud plan Class2D/job012/run_submit.script       # a RELION job, sizes read from it
    cryocloud plan --workflow seed-empiar10061-costs.csv  # a workflow, as recorded and today
    cryocloud plan relax.toml --task-hours 0.5            # a job file's fan-out, packed onto each machine
    """
    from cryocloud.errors import CryocloudError
    from cryocloud.settings import load_settings

    settings = load_settings()
    region = region or settings.aws.region
    if list_types:
        _list_types(region, as_json)
        return
    if script is not None and script.suffix == ".toml":
        _plan_jobfile(script, task_hours, region, not on_demand_only, top, as_json)
        return
    if workflow:
        from cryocloud.cli.plan_render import show_workflow

        show_workflow(workflow, region, as_json)
        return
    from cryocloud.app.plan import plan_for
    from cryocloud.planner.plan import size_from_spec

    asked = {k: v for k, v in sizes.items() if v is not None}
    given: dict[str, float] = {}
    if script:
        from cryocloud.jobs.relion import job_spec_from_script

        spec = job_spec_from_script(script.resolve(), Path.cwd())
        job_type = job_type or spec.job_type
        given = {k: v for k, v in vars(size_from_spec(spec)).items() if v}
        gpus = gpus or spec.resources.gpus
    if not job_type:
        raise CryocloudError("nothing to plan", "give a RELION submission script, --job-type with sizes, or --workflow")
    result = plan_for(settings, job_type, asked, given=given, region=region, deadline=deadline, instance=instance,
                      gpus=gpus, live_spot=live_spot, spot=not on_demand_only)
    from cryocloud.cli.plan_render import show_plan

    show_plan(result, top, as_json)


def _plan_jobfile(path: Path, task_hours: float | None, region: str, spot: bool, top: int, as_json: bool) -> None:
    from cryocloud.app.run import plan_jobfile
    from cryocloud.cli.render import table
    from cryocloud.errors import CryocloudError

    if task_hours is None:
        raise CryocloudError("a job file's fan-out needs --task-hours", "time one task, then e.g. --task-hours 0.25")
    options = plan_jobfile(path, task_hours, region=region, spot=spot)
    rows = [{"machine": o.machine, "market": o.market or "-", "at_once": o.at_once, "hours": round(o.hours, 3),
             "usd_per_hour": round(o.usd_per_hour, 4), "usd": round(o.usd, 4)} for o in options]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    table(f"{path.name}: tasks x {task_hours} h, packed onto one machine", ["machine", "market", "tasks at once",
          "hours", "USD/h", "USD"], [list(r.values()) for r in rows[:top] + [  # and always this machine
          r for r in rows[top:] if r["machine"] == "this workstation"]])


def _list_types(region: str, as_json: bool) -> None:
    from cryocloud.cli.render import table
    from cryocloud.planner.catalog import default_catalog

    types = sorted(default_catalog().in_region(region), key=lambda t: (t.family, t.prices[region]))
    rows = [{"type": t.name, "vcpus": t.vcpus, "memory_gib": t.memory_gib, "gpus": t.gpus, "gpu": t.gpu_model,
             "gpu_memory_gib": t.gpu_memory_gib, "network_gbps": t.network_gbps, "local_disk_gb": t.local_disk_gb,
             "usd_per_hour": t.prices[region]} for t in types]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    table(f"instance types in {region}", list(rows[0]) if rows else [], [list(r.values()) for r in rows])


@click.command("spot-prices")
@click.argument("instance_types", nargs=-1, required=True)
@click.option("--region", help="AWS region (default: config aws.region).")
@click.option("--live", is_flag=True, help="Ask EC2 (DescribeSpotPriceHistory) instead of the snapshot.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def spot_prices(instance_types: tuple[str, ...], region: str | None, live: bool, as_json: bool) -> None:
    """Spot price per availability zone next to the on-demand price (snapshot, or live with --live)."""
    from cryocloud.cli.render import table
    from cryocloud.planner.catalog import default_catalog
    from cryocloud.settings import load_settings

    region = region or load_settings().aws.region
    cat = default_catalog()
    rows = []
    for name in instance_types:
        od = cat.on_demand(name, region)
        for q in cat.spot(name, region, live=live):
            rows.append({"type": name, "region": region, "zone": q.zone, "spot_usd_per_hour": q.usd_per_hour,
                         "on_demand_usd_per_hour": od, "discount": round(1 - q.usd_per_hour / od, 3),
                         "source": q.source})
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    table(f"spot prices in {region}", ["type", "zone", "spot USD/h", "on-demand USD/h", "discount", "source"],
          [[r["type"], r["zone"] or "-", f"{r['spot_usd_per_hour']:.4f}", f"{r['on_demand_usd_per_hour']:.4f}",
            f"{r['discount']:.0%}", r["source"]] for r in rows])
