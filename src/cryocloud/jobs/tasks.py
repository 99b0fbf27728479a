"""A fan-out's tasks as the agent runs them: each task's command lines (fields substituted, or a RELION shard),
the folder it runs in, and what it must leave behind (output globs, a score file). Pure functions of the JobSpec
and the task's index, so the lab, a Slurm node and a cloud node compute the same answer."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from cryocloud.errors import CryocloudError
from cryocloud.jobs import control, scores, split
from cryocloud.jobs.spec import JobSpec

FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def values(spec: JobSpec, index: int | None) -> dict[str, str]:
    """The fields a task's arguments may name: {task} (0-based), {seed}, and its parameter set's own names."""
    if index is None:
        return {}
    params = spec.fanout.params[index] if index < len(spec.fanout.params) else {}
    return {"task": str(index), "seed": str(spec.fanout.seed + index), **params}


def substitute(word: str, fields: dict[str, str]) -> str:
    """`word` with each {name} it names replaced; other braces (awk programs, shell) stay as written."""
    return FIELD.sub(lambda m: fields.get(m.group(1), m.group(0)), word)


def task_folder(spec: JobSpec, index: int) -> str:
    """Where task `index` runs and leaves its outputs, relative to the project folder."""
    return f"{spec.job_dir}tasks/{index:04d}/"


def workdir(spec: JobSpec, index: int | None) -> str:
    """The folder a task's (or the job's) commands run in, relative to the project ('' = the project)."""
    return task_folder(spec, index) if index is not None and spec.fanout.task_dirs else ""


def commands(spec: JobSpec, index: int | None, control_dir: Path, project: Path) -> list[str]:
    """The lines task `index` (None: the whole job) runs: a command job's argv with its fields substituted, a
    RELION shard's program line on its own slice of the input, or the job's own lines."""
    if index is not None and spec.fanout.split:
        return split.shard_commands(spec, index, control_dir, project)
    if spec.argv:
        return [shlex.join(substitute(a, values(spec, index)) for a in spec.argv)]
    return spec.commands


def check_outputs(spec: JobSpec, index: int | None, where: Path) -> str:
    """'' when the task left what it must (each output glob matches a file; the score file has the column), else
    why not, with a hint."""
    fields = values(spec, index)
    for pattern in spec.outputs:
        glob = substitute(pattern, fields)
        if not any(where.glob(glob)):
            return f"no output matched {glob!r} in {where} (hint: check the command writes it there)"
    select = spec.fanout.select
    if select is not None and index is not None:
        try:
            scores.read_scores(where / substitute(select.file, fields), select.column)
        except CryocloudError as e:
            return f"{e.message} (hint: {e.hint})"
    return ""


def write_shards(cdir: Path, spec: JobSpec) -> None:
    """One control folder per task, each with its place in the fan-out (the rest of its launch.json is the job's,
    read from the folder above: N copies of a spec with N parameter sets would grow as N squared); a task that
    runs in its own folder writes its own run.out there."""
    for i in range(spec.tasks):
        tdir = control.task_dir(cdir, i)
        tdir.mkdir(exist_ok=True)
        own = workdir(spec, i)
        logs = {"stdout": f"{own}run.out", "stderr": f"{own}run.err"} if own else {}
        control.write_json(tdir / control.LAUNCH, {control.INHERIT: True, **logs,
                                                   "shard": {"index": i, "count": spec.tasks}})


def link_inputs(spec: JobSpec, where: Path, project: Path) -> None:
    """A task that runs in its own folder finds the job's inputs there by the paths the job file gave (links to
    the project's copies, nothing copied)."""
    for f in spec.inputs:
        if Path(f.path).is_absolute():
            continue
        link = where / f.path
        if not link.exists() and not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(project / f.path)
