"""The JobSpec: everything a backend and the agent need to know about one job, as plain data."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Resources:
    mpi: int = 1  # MPI ranks
    threads: int = 1  # threads per rank
    gpus: int = 0
    memory_gb: float | None = None
    wall_time: str | None = None  # HH:MM:SS or D-HH:MM:SS, as Slurm writes it

    @property
    def cpus(self) -> int:
        return self.mpi * self.threads


@dataclass(frozen=True)
class InputFile:
    path: str  # relative to the project folder when inside it, else absolute
    size: int


@dataclass(frozen=True)
class Select:
    """Keep the best `keep` of a fan-out's results by one column of each task's score file."""

    file: str  # relative to each task's folder, e.g. "score.sc"
    column: str  # e.g. "total_score"
    keep: int
    order: str = "min"  # min: lower is better (energies); max: higher is better


@dataclass(frozen=True)
class Fanout:
    """How a job's N tasks differ and end (jobs/tasks.py reads it; the monitor gathers by it)."""

    params: list[dict[str, str]] = field(default_factory=list)  # one per task ([[params]]), substituted into `argv`
    seed: int = 1  # task i's {seed} is seed + i unless its parameter set names one
    retries: int = 0  # times a failed task is run again before it counts as failed
    pack: int = 0  # tasks one worker runs one after the other (0: derived from the machine)
    task_dirs: bool = False  # each task runs in <jobdir>tasks/<NNNN>/ (commands); else in the project folder
    select: Select | None = None
    split: dict[str, Any] | None = None  # a RELION per-micrograph job split into shards (jobs/split.py)
    final: list[str] = field(default_factory=list)  # run at the lab once every task succeeded (RELION's pass)


@dataclass(frozen=True)
class JobSpec:
    name: str  # RELION's job folder ("Class2D/job002/") or a free name
    client: str  # marker family: "relion", "pipeliner" or "command"
    job_type: str  # "Class2D", "MotionCorr", ... or "command"
    project_dir: str  # absolute; the working directory of every command
    job_dir: str  # relative to project_dir, with a trailing slash
    commands: list[str]  # the script's command lines, run by bash in order; the first failure stops the job
    resources: Resources = field(default_factory=Resources)
    inputs: list[InputFile] = field(default_factory=list)
    queue: str = ""  # RELION's "Queue name" when it is not a profile (e.g. the Slurm partition)
    extras: dict[str, str] = field(default_factory=dict)  # RELION's extra queue fields, filled ones only
    script: str = ""  # the submission script, absolute
    relion_version: str = ""
    tasks: int = 1  # fan-out: number of shards
    argv: list[str] = field(default_factory=list)  # a command job's arguments, with {task}/{seed}/{name} fields
    outputs: list[str] = field(default_factory=list)  # globs each task must write (relative to where it runs)
    fanout: Fanout = field(default_factory=Fanout)

    @property
    def folder(self) -> Path:
        """The job's folder on the lab's disk (the project folder + job_dir)."""
        return Path(self.project_dir) / self.job_dir

    @property
    def data_bytes(self) -> int:
        return sum(f.size for f in self.inputs)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobSpec:
        d = dict(d)
        d["resources"] = Resources(**d.get("resources", {}))
        d["inputs"] = [InputFile(**f) for f in d.get("inputs", [])]
        fan = dict(d.get("fanout") or {})
        if fan.get("select"):
            fan["select"] = Select(**fan["select"])
        d["fanout"] = Fanout(**fan)
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        return cls.from_dict(json.loads(text))
