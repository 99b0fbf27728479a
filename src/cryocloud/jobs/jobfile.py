"""`cryocloud submit job.toml`: a job file read with the standard library's TOML parser and checked by a pydantic
model, every error naming its line. What it describes: a command as a list of arguments, inputs and output
globs, resources, N tasks (`tasks = N`, or one `[[params]]` table per task, substituted into the arguments as
{task}, {seed} and {name}), tasks per worker (`pack`), retries per task, and `[select]` (keep the best K by a
column of each task's score file).

Example:
    command = ["python", "relax.py", "--seed", "{seed}"]
    inputs = ["peptide.pdb"]
    outputs = ["model.pdb", "score.sc"]
    tasks = 16
    retries = 1
    [resources]
    cores = 1
    [select]
    file = "score.sc"
    column = "total_score"
    keep = 4
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from cryocloud.errors import SubmissionError, close_matches

EXAMPLE_HINT = "see `cryocloud submit --help` for a job file's keys"
HEADER = re.compile(r"^\s*\[(\[)?\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")
KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"']+)\s*=")


def _model() -> Any:
    """The job file's schema (pydantic imported only when a job file is read)."""
    from pydantic import BaseModel, ConfigDict, Field

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)

    class ResourcesModel(Strict):
        cores: int = Field(1, ge=1)
        gpus: int = Field(0, ge=0)
        memory_gb: float | None = Field(None, gt=0)
        scratch_gb: float | None = Field(None, gt=0)
        wall_time: str | None = None

    class SelectModel(Strict):
        file: str = Field(min_length=1)
        column: str = Field(min_length=1)
        keep: int = Field(ge=1)
        order: Literal["min", "max"] = "min"

    class JobFileModel(Strict):
        name: str = Field("", pattern=r"^[A-Za-z0-9_\-]*$")
        command: list[str] = Field(min_length=1)
        inputs: list[str] = Field(default_factory=list)
        outputs: list[str] = Field(default_factory=list)
        tasks: int | None = Field(None, ge=1)
        seed: int = 1
        params: list[dict[str, str | int | float]] | None = Field(None, min_length=1)
        pack: int = Field(0, ge=0)
        retries: int = Field(0, ge=0, le=10)
        profile: str = ""
        machine: str = ""
        resources: ResourcesModel = Field(default_factory=lambda: ResourcesModel.model_validate({}))
        select: SelectModel | None = None

    return JobFileModel


def key_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """The line (1-based) where each key path is set: ('resources', 'cores'), ('params', 2, 'seed'), ('tasks',)."""
    out: dict[tuple[str | int, ...], int] = {}
    table: tuple[str | int, ...] = ()
    arrays: dict[str, int] = {}
    for no, line in enumerate(text.splitlines(), start=1):
        m = HEADER.match(line)
        if m:
            name = m.group(2).strip().strip("\"'")
            if m.group(1):  # [[params]]: the next element of an array of tables
                arrays[name] = arrays.get(name, -1) + 1
                table = (name, arrays[name])
            else:
                table = (name,)
            out.setdefault(table, no)
            continue
        k = KEY.match(line)
        if k:
            out.setdefault((*table, k.group(1).strip("\"'")), no)
    return out


def line_of(lines: dict[tuple[str | int, ...], int], loc: tuple[str | int, ...]) -> int | None:
    """The line of the longest prefix of `loc` that the file sets (an inline table's keys: its own line)."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _fail(path: Path, line: int | None, message: str, hint: str = EXAMPLE_HINT) -> SubmissionError:
    where = f"{path.name}, line {line}" if line else path.name
    return SubmissionError(f"{where}: {message}", hint)


def _field_names(model: Any, loc: tuple[str | int, ...]) -> list[str]:
    """The keys allowed where `loc` points (for "did you mean")."""
    for part in loc[:-1]:
        if isinstance(part, int):
            return []
        field = model.model_fields.get(part)
        ann = getattr(field, "annotation", None)
        model = next((a for a in getattr(ann, "__args__", (ann,)) if hasattr(a, "model_fields")), None)
        if model is None:
            return []
    return list(model.model_fields)


def read_jobfile(path: Path) -> dict[str, Any]:
    """The job file as checked values, or a SubmissionError naming the line and how to fix it."""
    from pydantic import ValidationError

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SubmissionError(f"cannot read the job file {path}: {e.strerror}", "check the path") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        at = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        what = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e))
        raise _fail(path, int(at.group(1)) if at else None, f"not valid TOML: {what}"
                    + (f" at column {at.group(2)}" if at else ""),
                    "strings need quotes; lists are [\"a\", \"b\"]") from None
    model = _model()
    lines = key_lines(text)
    try:
        job = model.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        line = line_of(lines, loc)
        if err["type"] == "extra_forbidden":
            raise _fail(path, line, f"unknown key {'.'.join(map(str, loc))!r}",
                        close_matches(str(loc[-1]), _field_names(model, loc))) from None
        if err["type"] == "missing":
            raise _fail(path, line, f"{'.'.join(map(str, loc))} is missing") from None
        raise _fail(path, line, f"{'.'.join(map(str, loc))}: {err['msg']}"
                    + (f" (got {err['input']!r})" if not isinstance(err["input"], dict | list) else "")) from None
    values: dict[str, Any] = job.model_dump()
    if values["tasks"] is not None and values["params"] is not None:
        raise _fail(path, line_of(lines, ("tasks",)), "give `tasks = N` or [[params]] tables, not both",
                    "with [[params]], the number of tables is the number of tasks")
    tasks = len(values["params"]) if values["params"] else values["tasks"] or 1
    select = values["select"]
    if select and select["keep"] > tasks and select["file"]:
        raise _fail(path, line_of(lines, ("select", "keep")),
                    f"select.keep = {select['keep']} is more than the job's {tasks} tasks",
                    f"keep at most {tasks}, or run more tasks")
    base = path.parent.resolve()
    for name in values["inputs"]:
        if not (base / name).exists():
            raise _fail(path, line_of(lines, ("inputs",)), f"input {name!r} does not exist in {base}",
                        "inputs are paths relative to the job file's folder")
    params = [{k: str(v) for k, v in p.items()} for p in values["params"] or []]
    values["params"] = params  # {seed} of task i without its own: seed + i (jobs/tasks.py)
    values["tasks"] = tasks
    return values
