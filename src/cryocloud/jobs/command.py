"""A job that is any command (`cryocloud run -- CMD ...`, a job file): its JobSpec, with a job folder of its own
under the project (Runs/<name><NNN>/, as RELION numbers its jobs) for run.out, run.err and each task's outputs."""

from __future__ import annotations

import shlex
from pathlib import Path

from cryocloud.errors import SubmissionError
from cryocloud.jobs.spec import Fanout, InputFile, JobSpec, Resources, Select

RUNS = "Runs"


def new_job_dir(project: Path, name: str) -> str:
    """Claim the next free Runs/<name><NNN>/ (created now, so two submissions never share one)."""
    (project / RUNS).mkdir(exist_ok=True)
    for n in range(1, 100_000):
        rel = f"{RUNS}/{name}{n:03d}/"
        try:
            (project / rel).mkdir()
        except FileExistsError:
            continue
        return rel
    raise SubmissionError(f"no free job folder for {name!r} under {project / RUNS}", "choose another name")


def input_files(project: Path, paths: list[str], base: Path) -> list[InputFile]:
    """The inputs as the project sees them (relative when inside it); a missing one is refused now."""
    out = []
    for p in paths:
        path = (base / p).resolve()
        if not path.exists():
            raise SubmissionError(f"input {p!r} does not exist", f"give a path relative to {base}, or an absolute one")
        rel = str(path.relative_to(project)) if path.is_relative_to(project) else str(path)
        out.append(InputFile(rel, sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
                             if path.is_dir() else path.stat().st_size))
    return out


def command_spec(argv: list[str], project: Path, *, name: str = "run", base: Path | None = None,
                 inputs: list[str] | None = None, outputs: list[str] | None = None, tasks: int = 1,
                 params: list[dict[str, str]] | None = None, seed: int = 1, retries: int = 0, pack: int = 0,
                 select: Select | None = None, resources: Resources | None = None,
                 extras: dict[str, str] | None = None) -> JobSpec:
    if not argv:
        raise SubmissionError("no command given", "put it after --, e.g. `cryocloud run -- python fit.py`")
    project = project.resolve()
    files = input_files(project, inputs or [], base or project)
    job_dir = new_job_dir(project, name or "run")
    fanout = Fanout(params=params or [], seed=seed, retries=retries, pack=pack, task_dirs=tasks > 1, select=select)
    return JobSpec(
        name=job_dir, client="command", job_type="command", project_dir=str(project), job_dir=job_dir,
        commands=[shlex.join(argv)], resources=resources or Resources(), inputs=files, extras=extras or {},
        tasks=tasks, argv=list(argv), outputs=list(outputs or []), fanout=fanout,
    )
