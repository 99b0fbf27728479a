"""RELION's side: the submission template cryocloud gives RELION, and reading the script RELION filled from it.

RELION (3.1-5.0) and the CCP-EM Pipeliner replace every XXX...XXX placeholder of the template and call
`cryocloud-qsub <jobdir>run_submit.script` from the project folder. Our template starts with one
machine-readable header line per field, so nothing here parses sbatch lines or guesses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from cryocloud.errors import SubmissionError
from cryocloud.jobs import cmdline
from cryocloud.jobs.inputs import discover_inputs
from cryocloud.jobs.spec import JobSpec, Resources

HEADER = re.compile(r"^#\s*cryocloud\.(?P<key>[a-z0-9_]+):[ \t]?(?P<value>.*?)\s*$")
PLACEHOLDER = re.compile(r"^XXX[a-z0-9]+XXX$")
# Header fields the template carries: key -> RELION placeholder.
FIELDS = {
    "name": "XXXnameXXX", "mpi": "XXXmpinodesXXX", "threads": "XXXthreadsXXX", "cores": "XXXcoresXXX",
    "dedicated": "XXXdedicatedXXX", "nodes": "XXXnodesXXX", "queue": "XXXqueueXXX",
    "outfile": "XXXoutfileXXX", "errfile": "XXXerrfileXXX",
    "extra1": "XXXextra1XXX", "extra2": "XXXextra2XXX", "extra3": "XXXextra3XXX", "extra4": "XXXextra4XXX",
}
# What RELION's extra queue fields mean to cryocloud (`relion setup` exports these labels).
EXTRAS = {
    "extra1": ("wall_time", "Wall time, HH:MM:SS (cryocloud; empty = no limit)"),
    "extra2": ("max_usd", "Max cost, USD (cryocloud; empty = budget from config)"),
    "extra3": ("machine", "Machine to price the job on, e.g. g5.xlarge (cryocloud; empty = the cheapest that fits)"),
    "extra4": ("split", "Split over N workers (cryocloud; MotionCorr, CtfFind, AutoPick, Extract; empty = 1)"),
}
# Queue names that mean "nothing chosen": RELION's built-in default and what `relion setup` exports.
UNSET_QUEUES = frozenset({"", "openmpi", "default"})
# Job folders RELION creates, by process type (3.1 names; 4/5 keep them). Anything else is "External".
JOB_TYPES = frozenset({
    "Import", "MotionCorr", "CtfFind", "ManualPick", "AutoPick", "Extract", "Select", "Class2D",
    "InitialModel", "Class3D", "Refine3D", "MultiBody", "MaskCreate", "JoinStar", "Subtract",
    "PostProcess", "LocalRes", "Polish", "CtfRefine", "External", "DynaMight", "ModelAngelo",
})
PIPELINER_RUNNER = "job_runner.py"

TEMPLATE = """#!/bin/bash
# cryocloud submission template, written by `cryocloud relion setup`.
# RELION fills the XXX..XXX fields and runs `cryocloud-qsub <job folder>/run_submit.script`.
# Keep the cryocloud.* lines: cryocloud reads them. Do not add mpirun: cryocloud puts the
# profile's MPI launcher in front of relion_*_mpi commands itself.
{header}
XXXcommandXXX
"""


def template_text() -> str:
    return TEMPLATE.format(header="\n".join(f"# cryocloud.{k}: {v}" for k, v in FIELDS.items()))


@dataclass(frozen=True)
class FilledScript:
    path: Path
    fields: dict[str, str]  # filled header fields only (placeholders left verbatim are dropped)
    commands: list[str]
    client: str
    job_dir: str = ""
    extras: dict[str, str] = field(default_factory=dict)

    def queue(self) -> str:
        q = self.fields.get("queue", "")
        return "" if q in UNSET_QUEUES else q


def read_script(path: Path) -> FilledScript:
    """Parse a script RELION filled from our template. Pure: reads only `path`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SubmissionError(
            f"no such submission script: {path}", "RELION passes <job folder>/run_submit.script; check the path"
        ) from None
    except UnicodeDecodeError:
        raise SubmissionError(f"{path} is not a text file", "pass the run_submit.script RELION wrote") from None
    except OSError as e:
        raise SubmissionError(f"cannot read {path}: {e.strerror}", "check the file's permissions") from None
    raw: dict[str, str] = {}
    commands: list[str] = []  # the script's body as written: a facility's own lines stay where they are
    for i, line in enumerate(text.splitlines()):
        m = HEADER.match(line)
        if m:
            raw[m["key"]] = m["value"]
        elif not (i == 0 and line.startswith("#!")):
            commands.append(line.rstrip())
    while commands and (not commands[0].strip() or commands[0].lstrip().startswith("#")):
        commands.pop(0)  # the template's own comments (and #SBATCH-style lines) above the first command
    while commands and not commands[-1].strip():
        commands.pop()
    if not raw:
        raise SubmissionError(
            f"{path} was not made from cryocloud's template (no '# cryocloud.' lines)",
            "run `cryocloud relion setup` in the project folder and set RELION's 'Standard submission script' to "
            "the template it prints",
        )
    if any(c.strip() == "XXXcommandXXX" for c in commands) or raw.get("name") == FIELDS["name"]:
        raise SubmissionError(
            f"{path} is the template itself, not a script RELION filled from it",
            "submit from RELION (Running tab: Submit to queue = Yes); it writes <job>/run_submit.script",
        )
    if not any(c.strip() and not c.lstrip().startswith("#") for c in commands):
        raise SubmissionError(f"{path} holds no command to run", "RELION writes the job's commands in place of XXXcommandXXX")
    fields = {k: v for k, v in raw.items() if v and not PLACEHOLDER.match(v)}
    client = "pipeliner" if any(PIPELINER_RUNNER in c for c in commands) else "relion"
    extras = {EXTRAS[k][0]: v for k, v in fields.items() if k in EXTRAS}
    job_dir = fields.get("name", "")
    if job_dir and not job_dir.endswith("/"):
        job_dir += "/"
    return FilledScript(path=path, fields=fields, commands=commands, client=client, job_dir=job_dir, extras=extras)


def _int_field(script: FilledScript, key: str, default: int) -> int:
    value = script.fields.get(key)
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        raise SubmissionError(
            f"{script.path}: {key} = {value!r} is not a whole number", "check the Running tab's MPI/thread fields"
        ) from None
    if n < 1:
        raise SubmissionError(f"{script.path}: {key} = {n} must be at least 1", "check the Running tab")
    return n


def count_gpus(commands: list[str]) -> int:
    """GPUs a RELION command asks for: `--gpu "0:1"` names devices; `--gpu ""` means one per rank."""
    for line in commands:
        value = cmdline.option(line, "--gpu")
        if value is not None:
            devices = {d for d in re.split(r"[:,]", value) if d.strip()}
            return max(1, len(devices))
    return 0


def job_spec_from_script(script_path: Path, project_dir: Path) -> JobSpec:
    """The JobSpec for a script RELION filled, run from `project_dir` (RELION's working directory)."""
    script = read_script(script_path)
    project = project_dir.resolve()
    job_dir = script.job_dir or _job_dir_from_path(script_path, project)
    if Path(job_dir).is_absolute() or ".." in Path(job_dir).parts:
        raise SubmissionError(
            f"job folder {job_dir!r} is not inside the project", "run the submission from the RELION project folder"
        )
    if not (project / job_dir).is_dir():
        raise SubmissionError(
            f"job folder {job_dir} does not exist under {project}",
            "RELION calls the queue command from the project folder; cd there first",
        )
    first = job_dir.split("/", 1)[0]
    job_type = first if first in JOB_TYPES else "External"
    resources = Resources(
        mpi=_int_field(script, "mpi", 1),
        threads=_int_field(script, "threads", 1),
        gpus=count_gpus(script.commands),
        wall_time=script.extras.get("wall_time") or None,
    )
    inputs = discover_inputs(project, job_dir, script.commands)
    return JobSpec(
        name=job_dir, client=script.client, job_type=job_type, project_dir=str(project), job_dir=job_dir,
        commands=script.commands, resources=resources, inputs=inputs, queue=script.queue(),
        extras=script.extras, script=str(script_path.resolve()),
    )


def _job_dir_from_path(script_path: Path, project: Path) -> str:
    try:
        rel = script_path.resolve().parent.relative_to(project)
    except ValueError:
        raise SubmissionError(
            f"{script_path} is not inside the project folder {project}",
            "RELION calls the queue command from the project folder; cd there first",
        ) from None
    return f"{rel}/"


def job_dir_of(script_path: Path, project_dir: Path) -> Path | None:
    """Best effort: the job folder a (possibly bad) script belongs to, for writing the refusal into run.err."""
    try:
        script = read_script(script_path)
        if script.job_dir and (project_dir / script.job_dir).is_dir():
            return project_dir / script.job_dir
    except SubmissionError:
        pass
    parent = script_path.resolve().parent
    if parent.name.startswith("job") and parent.parent.name in JOB_TYPES:
        return parent
    return None


def installed_version(env: dict[str, str] | None = None) -> str:
    """The RELION on PATH ('3.1.3' from `relion_refine --version`), '' when there is none: a cloud node must run
    the same version as the lab (backends/aws, agent/cloud.py)."""
    from cryocloud.errors import CryocloudError
    from cryocloud.proc import run_command

    try:
        done = run_command(["relion_refine", "--version"], timeout=30, check=False, env=env)
    except CryocloudError:
        return ""
    for line in (done.stdout + done.stderr).splitlines():
        if line.startswith("RELION version:"):
            return line.split(":", 1)[1].strip().split("-", 1)[0]
    return ""
