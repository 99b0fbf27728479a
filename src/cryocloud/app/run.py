"""Jobs that are not a script RELION filled: any command (`cryocloud run`), a job file (`cryocloud submit
job.toml`), and a RELION per-micrograph job split over N workers. Each becomes a JobSpec and goes through the one
submit path (app/submit.py): the same agent, ledger, logs, abort, exit status and cost as a RELION job."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from cryocloud.errors import SubmissionError
from cryocloud.jobs import split
from cryocloud.jobs.command import command_spec
from cryocloud.jobs.relion import job_spec_from_script
from cryocloud.jobs.spec import JobSpec, Resources, Select
from cryocloud.monitor import staging
from cryocloud.planner.fanout import FanoutNeeds, FanoutOption, plan_fanout
from cryocloud.settings import Profile, Settings, load_settings

from .submit import Submitted, choose_profile, submit_spec


def _profile(spec: JobSpec, settings: Settings, name: str) -> Profile:
    return settings.profile(name) if name else choose_profile(spec, settings)


def _check_program(argv: list[str], profile: Profile, settings: Settings, env: Mapping[str, str],
                   where: Path) -> None:
    """Where the nodes see the lab's disk, a command that is not there now will not be there at run time."""
    if staging.store_url(settings, profile) is not None or "{" in argv[0]:
        return
    found = shutil.which(argv[0], path=env.get("PATH")) if "/" not in argv[0] else \
        (argv[0] if os.access(where / argv[0], os.X_OK) else None)
    if found is None:
        raise SubmissionError(f"command not found: {argv[0]}",
                              "install it, put it on PATH, or give its full path (e.g. /usr/bin/python3)")


def _submit(spec: JobSpec, profile_name: str, settings: Settings | None, env: Mapping[str, str] | None,
            check_argv: bool = True) -> Submitted:
    env = os.environ if env is None else env
    settings = settings or load_settings(dict(env))
    profile = _profile(spec, settings, profile_name)
    try:
        if check_argv and spec.argv:
            _check_program(spec.argv, profile, settings, env, Path(spec.project_dir))
        return submit_spec(spec, profile, settings, env)
    except Exception:
        if spec.client == "command":
            shutil.rmtree(spec.folder, ignore_errors=True)  # refused: no empty job folder left behind
        raise


def submit_command(argv: list[str], cwd: Path, *, profile: str = "", machine: str = "",
                   inputs: list[str] | None = None, outputs: list[str] | None = None, name: str = "run",
                   settings: Settings | None = None, env: Mapping[str, str] | None = None) -> Submitted:
    """`cryocloud run`: `argv` as a job run in `cwd` (its project folder)."""
    extras = {"machine": machine} if machine else {}
    spec = command_spec(argv, cwd, name=name, inputs=inputs, outputs=outputs, extras=extras)
    return _submit(spec, profile, settings, env)


def submit_jobfile(path: Path, *, profile: str = "", settings: Settings | None = None,
                   env: Mapping[str, str] | None = None) -> Submitted:
    """`cryocloud submit job.toml`: the job file's command over its tasks, in the job file's folder."""
    from cryocloud.jobs.jobfile import read_jobfile

    v = read_jobfile(path)
    r = v["resources"]
    resources = Resources(threads=r["cores"], gpus=r["gpus"], memory_gb=r["memory_gb"], wall_time=r["wall_time"])
    extras = {k: str(val) for k, val in (("machine", v["machine"]), ("scratch_gb", r["scratch_gb"])) if val}
    sel = Select(**v["select"]) if v["select"] else None
    base = path.parent.resolve()
    spec = command_spec(v["command"], base, name=v["name"] or path.stem, base=base, inputs=v["inputs"],
                        outputs=v["outputs"], tasks=v["tasks"], params=v["params"], seed=v["seed"],
                        retries=v["retries"], pack=v["pack"], select=sel, resources=resources, extras=extras)
    return _submit(spec, profile or v["profile"], settings, env)


def split_script_spec(script: Path, cwd: Path, workers: int | None = None) -> JobSpec:
    """The JobSpec of a script RELION filled, split over N workers when asked (and splittable)."""
    spec = job_spec_from_script(script, cwd)
    return split.split_spec(spec, workers if workers is not None else split.workers_asked(spec))


def submit_split(script: Path, cwd: Path, workers: int, *, settings: Settings | None = None,
                 env: Mapping[str, str] | None = None) -> Submitted:
    """`cryocloud submit SCRIPT --split N`: a RELION per-micrograph job as N shards and a final pass."""
    spec = split_script_spec(script, cwd, workers)
    settings = settings or load_settings(dict(os.environ if env is None else env))
    profile = choose_profile(spec, settings)
    spec = replace(spec, queue="") if spec.queue == profile.name else spec
    return submit_spec(spec, profile, settings, os.environ if env is None else env)


def plan_jobfile(path: Path, task_hours: float, *, region: str | None = None, spot: bool = True,
                 settings: Settings | None = None) -> list[FanoutOption]:
    """`cryocloud plan job.toml --task-hours H`: the job file's fan-out priced on every machine that fits a task."""
    from cryocloud.jobs.jobfile import read_jobfile
    from cryocloud.planner.catalog import default_catalog
    from cryocloud.planner.plan import local_machine

    if task_hours <= 0:
        raise SubmissionError(f"--task-hours {task_hours} is not a length of time",
                              "give the hours one task takes, measured on one task, e.g. 0.25")
    settings = settings or load_settings()
    v = read_jobfile(path)
    r = v["resources"]
    needs = FanoutNeeds(v["tasks"], task_hours, r["cores"], r["gpus"], r["memory_gb"])
    here = local_machine(settings)
    return plan_fanout(needs, default_catalog(), region or settings.aws.region, local_cpus=here.vcpus,
                       local_gpus=here.gpus, local_memory_gib=here.memory_gib,
                       workstation_rate=settings.general.workstation_usd_per_hour, spot=spot)
