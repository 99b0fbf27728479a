"""Slurm as text: the sbatch command line for a job, and the parsing of what sbatch, squeue, scontrol, sacct,
sinfo and the jobcomp file print. Pure functions only (no subprocess, no files), tested on captured output
(tests/slurm/fixtures/). The backend (slurm.py) runs the commands and calls these.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryocloud.backends.options import check_staging, option_value
from cryocloud.errors import ConfigError, CryocloudError, SubmissionError
from cryocloud.jobs.spec import JobSpec
from cryocloud.jobs.states import State

# Output formats we ask for, so parsing never depends on a site's SQUEUE_FORMAT.
SQUEUE_FORMAT = "%i|%A|%F|%K|%T|%r"  # id (123 or 123_4), job id, array job id, array task id, state, reason
SINFO_FORMAT = "%N|%c|%m|%G|%P|%l"  # node, CPUs, memory MB, gres, partition (default marked *), time limit
SACCT_FIELDS = "JobID,State,ExitCode"
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Slurm's job states -> (our state, what to tell the user). Unknown states count as running (never guess an end).
STATES: dict[str, tuple[str, str]] = {
    "PENDING": (State.QUEUED, ""),
    "REQUEUED": (State.QUEUED, "requeued by Slurm"),
    "REQUEUE_HOLD": (State.QUEUED, "requeued and held by Slurm"),
    "REQUEUE_FED": (State.QUEUED, "requeued by the federation"),
    "SUSPENDED": (State.RUNNING, "suspended by Slurm"),
    "RUNNING": (State.RUNNING, ""),
    "CONFIGURING": (State.RUNNING, ""),
    "COMPLETING": (State.RUNNING, ""),
    "RESIZING": (State.RUNNING, ""),
    "SIGNALING": (State.RUNNING, ""),
    "STAGE_OUT": (State.RUNNING, ""),
    "STOPPED": (State.RUNNING, "stopped by Slurm"),
    "COMPLETED": (State.SUCCEEDED, ""),
    "FAILED": (State.FAILED, "the Slurm job failed"),
    "CANCELLED": (State.ABORTED, "cancelled in Slurm (scancel)"),
    "TIMEOUT": (State.FAILED, "the Slurm job hit its time limit (TIMEOUT); ask for more wall time"),
    "DEADLINE": (State.FAILED, "the Slurm job passed its deadline (DEADLINE)"),
    "NODE_FAIL": (State.FAILED, "the Slurm node running the job failed (NODE_FAIL); resubmit it"),
    "BOOT_FAIL": (State.FAILED, "the Slurm node could not boot (BOOT_FAIL); resubmit it"),
    "PREEMPTED": (State.FAILED, "the Slurm job was preempted (PREEMPTED); resubmit it (RELION: continue from the "
                            "last iteration)"),
    "OUT_OF_MEMORY": (State.FAILED, "the Slurm job ran out of memory (OUT_OF_MEMORY); ask for more memory"),
    "SPECIAL_EXIT": (State.FAILED, "the Slurm job ended in SPECIAL_EXIT"),
    "REVOKED": (State.FAILED, "the Slurm job was revoked (federation)"),
}
# End states the platform caused (not the job): a job that can continue from where it was is requeued.
INTERRUPTED: dict[str, str] = {"PREEMPTED": "preempted", "NODE_FAIL": "node failed"}
# Pending reasons that mean "this job can never start here": the backend cancels such a job and fails it.
NEVER_STARTS: dict[str, str] = {
    "PartitionConfig": "the request does not fit the partition's configuration (CPUs, memory, GPUs or nodes)",
    "BadConstraints": "no node satisfies the request's constraints",
    "PartitionNodeLimit": "the request needs more nodes than the partition allows",
    "PartitionTimeLimit": "the wall time asked for is longer than the partition allows",
    "InvalidAccount": "the account is not valid",
    "InvalidQOS": "the QOS is not valid",
    "DependencyNeverSatisfied": "a dependency can never be satisfied",
}
# sbatch errors -> (what went wrong, how to fix it). First match wins; {detail} is sbatch's own last line.
SBATCH_ERRORS: list[tuple[str, str, str]] = [
    (r"invalid partition|Invalid partition name", "Slurm has no such partition: {detail}",
     "set RELION's Queue name or the profile's partition to one `sinfo -s` lists"),
    (r"Requested node configuration is not available|Memory specification can not be satisfied",
     "the request is larger than any node in the partition: {detail}",
     "ask for fewer MPI ranks, threads, GPUs or less memory, or pick a partition with bigger nodes"),
    (r"Invalid generic resource|gres", "Slurm does not offer the GPUs asked for: {detail}",
     "use a GPU partition (profile gpu_partition), or set the profile's gpu_flag to 'gpus' or 'gres'"),
    (r"Invalid account|account", "Slurm refused the account: {detail}",
     "set the profile's account to one `sacctmgr show assoc user=$USER` lists"),
    (r"Invalid qos|QOS", "Slurm refused the QOS: {detail}", "set the profile's qos to one your account may use"),
    (r"time limit|Invalid --time", "Slurm refused the time limit: {detail}",
     "give the wall time as HH:MM:SS (RELION's extra field) within the partition's limit"),
    (r"Unable to contact slurm controller|Connection refused|Zero Bytes were transmitted",
     "the Slurm controller does not answer: {detail}",
     "check that slurmctld runs (`scontrol ping`) and that SLURM_CONF points at this cluster's slurm.conf"),
]


@dataclass(frozen=True)
class SlurmOptions:
    """A Slurm profile's settings ([profiles.NAME] with backend = "slurm"), checked once."""

    partition: str = ""
    gpu_partition: str = ""
    account: str = ""
    qos: str = ""
    max_time: str = ""
    sbatch_args: tuple[str, ...] = ()
    gpu_flag: str = "gres"  # gres: --gres=gpu:N; gpus: --gpus=N
    python: str = ""  # the Python that runs the agent on the nodes (a shared venv); empty: this one
    staging: str = "none"  # none: the nodes share the lab's filesystem
    usd_per_hour: float = 0.0  # the site's rates, added up; all 0 (free) unless the profile names one
    usd_per_cpu_hour: float = 0.0
    usd_per_gpu_hour: float = 0.0
    jobcomp: str = ""  # a jobcomp/filetxt file readable here (test clusters without slurmdbd)
    profile: str = ""  # the profile's name: RELION's Queue name equal to it chose the profile, not a partition
    pack_tasks: bool = True  # a fan-out larger than the partition can run at once: several shards per array task
    array_throttle: int = 0  # at most this many array tasks of one fan-out run at once (`--array=...%N`; 0: no limit)
    max_requeues: int = 3  # times a preempted (or node-failed) job that can continue is resubmitted

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The keys a [profiles.NAME] table of a Slurm profile may hold: this class's fields (the registry and the
        config check read them here, so a new option is written once)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "profile")

    @classmethod
    def from_profile(cls, name: str, options: Mapping[str, Any]) -> SlurmOptions:
        values: dict[str, Any] = {}
        where = f"[profiles.{name}]"
        for f in dataclasses.fields(cls):
            if f.name == "profile" or f.name not in options:
                continue
            values[f.name] = option_value(where, f.name, str(f.type), options[f.name])
        out = cls(**values, profile=name)
        if out.gpu_flag not in ("gres", "gpus"):
            raise ConfigError(f"{where} gpu_flag = {out.gpu_flag!r}", "choose 'gres' (--gres=gpu:N) or 'gpus' (--gpus=N)")
        check_staging(where, out.staging)
        if out.max_time:
            time_seconds(out.max_time, f"{where} max_time")
        return out


def time_seconds(text: str, what: str = "wall time") -> int:
    """Seconds in a Slurm time: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS. Raises SubmissionError."""
    m = re.fullmatch(r"\s*(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?\s*", text)
    if not m:
        raise SubmissionError(f"{what} {text!r} is not a time Slurm understands", "write it as HH:MM:SS, e.g. 12:00:00")
    days, a, b, c = (int(g) if g is not None else None for g in m.groups())
    assert a is not None
    if days is None:
        # MM | MM:SS | HH:MM:SS
        parts = [a] + [x for x in (b, c) if x is not None]
        h, mi, s = ([0, *parts] if len(parts) == 2 else [0, parts[0], 0] if len(parts) == 1 else parts)
        return h * 3600 + mi * 60 + s
    # D-HH | D-HH:MM | D-HH:MM:SS
    return days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)


def slurm_time(seconds: int) -> str:
    """Seconds as D-HH:MM:SS, rounded up to whole minutes (Slurm's time limits are minutes)."""
    minutes = max(1, math.ceil(seconds / 60))
    d, rest = divmod(minutes * 60, 86400)
    h, rest = divmod(rest, 3600)
    return f"{d}-{h:02d}:{rest // 60:02d}:00"


def export_names(env: Mapping[str, str]) -> list[str]:
    """The names for sbatch's --export: the job's environment (what it needs: jobs/environment.py), never ALL
    (sbatch takes the values from its own environment, which is that same one)."""
    return sorted(n for n in env if NAME.match(n))


def partition_for(spec: JobSpec, opts: SlurmOptions) -> str:
    """RELION's Queue name (when not a profile) wins; then the GPU partition for GPU jobs; then the profile's."""
    if spec.queue and spec.queue != opts.profile:
        return spec.queue
    if spec.resources.gpus > 0 and opts.gpu_partition:
        return opts.gpu_partition
    return opts.partition


def time_limit(spec: JobSpec, opts: SlurmOptions) -> str:
    """--time from the job's wall time (RELION extra field) within the profile's max_time, else max_time."""
    wall = spec.resources.wall_time or spec.extras.get("wall_time", "")
    if not wall:
        return slurm_time(time_seconds(opts.max_time, "max_time")) if opts.max_time else ""
    secs = time_seconds(wall)
    if opts.max_time and secs > time_seconds(opts.max_time, "max_time"):
        raise SubmissionError(
            f"the job asks for {wall} of wall time; this cluster's profile allows at most {opts.max_time}",
            "ask for less wall time in RELION's extra field, or use a profile with a longer max_time",
        )
    return slurm_time(secs)


def slots(spec: JobSpec, partition: str, nodes: list[Node]) -> int:
    """How many of the job's shards the partition can run at once (0: unknown)."""
    members = [n for n in nodes if (partition in n.partitions if partition else n.default_partition)]
    r = spec.resources
    total = 0
    for n in members:
        fit = n.cpus // max(1, r.cpus)
        if r.gpus > 0:
            fit = min(fit, n.gpus // r.gpus)
        total += fit
    return total


def shards_per_task(tasks: int, at_once: int) -> int:
    """Shards each array task runs, one after the other: 1 unless the fan-out exceeds what can run at once
    (then one agent start serves several shards, and no parallelism is lost)."""
    if tasks <= 1 or at_once <= 0 or tasks <= at_once:
        return 1
    return math.ceil(tasks / at_once)


def sbatch_argv(spec: JobSpec, opts: SlurmOptions, *, batch_script: str, control_dir: str,
                exports: list[str], job_name: str, pack: int = 1, staged: list[str] | None = None) -> list[str]:
    """The sbatch command that runs the agent for `spec`: for a fan-out (spec.tasks > 1), an array whose
    tasks each run `pack` consecutive shards. `staged`: the staged agent's arguments (the node does not see
    the project folder: Slurm's own output goes to the node's /tmp, the agent writes run.out in scratch)."""
    r = spec.resources
    base = f"{spec.project_dir.rstrip('/')}/{spec.job_dir}"
    where = ["--chdir=/tmp", "--output=/tmp/cryocloud-%j.out"] if staged is not None else [
        f"--chdir={spec.project_dir}", f"--output={base}run.out", f"--error={base}run.err"]
    argv = ["sbatch", "--parsable", f"--job-name={job_name}", *where, "--open-mode=append",
            f"--ntasks={max(1, r.mpi)}", f"--cpus-per-task={max(1, r.threads)}", "--no-requeue"]
    partition = partition_for(spec, opts)
    if partition:
        argv.append(f"--partition={partition}")
    if opts.account:
        argv.append(f"--account={opts.account}")
    if opts.qos:
        argv.append(f"--qos={opts.qos}")
    limit = time_limit(spec, opts)
    if limit:
        argv.append(f"--time={limit}")
    if r.memory_gb:
        argv.append(f"--mem={math.ceil(r.memory_gb * 1024)}M")
    if r.gpus > 0:
        argv.append(f"--gres=gpu:{r.gpus}" if opts.gpu_flag == "gres" else f"--gpus={r.gpus}")
    if spec.tasks > 1:
        throttle = f"%{opts.array_throttle}" if opts.array_throttle > 0 else ""
        argv.append(f"--array=0-{math.ceil(spec.tasks / max(1, pack)) - 1}{throttle}")
    argv.append("--export=" + (",".join(exports) if exports else "NONE"))
    argv.extend(opts.sbatch_args)
    if staged is not None:
        return [*argv, batch_script, *staged]
    argv += [batch_script, control_dir]
    if spec.tasks > 1:
        argv += [str(max(1, pack)), str(spec.tasks)]
    return argv


def batch_script_text(python: str) -> str:
    """The batch script sbatch runs: a Python file (no shell) that starts the agent for this job or shard."""
    if not python.startswith("/") or any(c.isspace() for c in python):
        raise ConfigError(f"python {python!r} cannot start a Slurm batch script",
                          "set the profile's python to an absolute path without spaces")
    return (
        f"#!{python}\n"
        "# cryocloud: start the agent for one Slurm job; argv[1] is its control folder. An array task runs the\n"
        "# fan-out shards argv[2] * SLURM_ARRAY_TASK_ID + 0..argv[2]-1 (of argv[3]), each with its own control\n"
        "# folder task<N> and the job's retries, one after the other (agent/shards.py).\n"
        "import os\nimport sys\nfrom pathlib import Path\n\nfrom cryocloud.agent.runner import Runner\n"
        "from cryocloud.agent.shards import run_range\n\n"
        "control = Path(sys.argv[1])\ntask = os.environ.get('SLURM_ARRAY_TASK_ID')\n"
        "if task is None:\n    raise SystemExit(0 if Runner(control).run().state == 'succeeded' else 1)\n"
        "pack, count = int(sys.argv[2]), int(sys.argv[3])\n"
        "raise SystemExit(run_range(control, int(task) * pack, pack, count))\n"
    )


def staged_batch_script_text(python: str) -> str:
    """The batch script of a staged job: the agent stages in to node-local scratch, runs, pushes back."""
    batch_script_text(python)  # the same checks of `python`
    return (f"#!{python}\n# cryocloud: a staged job (the node does not see the lab's disk); see agent/remote.py\n"
            "import sys\n\nfrom cryocloud.agent.remote import main\n\nraise SystemExit(main(sys.argv[1:]))\n")


def parse_sbatch(stdout: str) -> str:
    """The job id from `sbatch --parsable` ("123" or "123;cluster")."""
    for line in stdout.splitlines():
        first = line.strip().split(";", 1)[0]
        if first.isdigit():
            return first
    raise CryocloudError(f"sbatch printed no job id: {stdout.strip()[:200]!r}",
                         "check for an sbatch wrapper or SBATCH_* variables that change its output")


def sbatch_error(stderr: str, stdout: str = "") -> tuple[str, str] | None:
    """(message, hint) for a failed sbatch, or None when it is not one we know."""
    text = (stderr or stdout).strip()
    lines = [ln.removeprefix("sbatch: error: ").strip() for ln in text.splitlines() if ln.strip()]
    detail = "; ".join(dict.fromkeys(lines[-2:])) or "no output"
    for pattern, message, hint in SBATCH_ERRORS:
        if re.search(pattern, text, re.IGNORECASE):
            return message.format(detail=detail), hint
    return None


@dataclass(frozen=True)
class QueueRow:
    """One line of `squeue -r -o SQUEUE_FORMAT`: one job or one array task."""

    id: str  # "123" or "123_4"
    job_id: str
    array_job_id: str
    task: int | None
    state: str
    reason: str


def parse_squeue(text: str) -> list[QueueRow]:
    rows = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 6:
            continue
        jid, job, array, task, state, reason = parts
        rows.append(QueueRow(jid, job, array, int(task) if task.isdigit() else None,
                             state.split()[0].rstrip("+") if state.strip() else "UNKNOWN", reason))
    return rows


KEY = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9/:_]*)=")


def parse_records(text: str) -> list[dict[str, str]]:
    """`scontrol -o show job` and jobcomp/filetxt lines: one record of Key=Value pairs per line."""
    records = []
    for line in text.splitlines():
        keys = list(KEY.finditer(line))
        if not keys:
            continue
        rec = {}
        for i, m in enumerate(keys):
            end = keys[i + 1].start() if i + 1 < len(keys) else len(line)
            rec[m.group(1)] = line[m.end():end].strip()
        records.append(rec)
    return records


@dataclass(frozen=True)
class FinalRow:
    """A job's or array task's state from scontrol, sacct or the jobcomp file."""

    job_id: str  # the array job id for array tasks
    task: int | None
    state: str
    exit_code: int | None
    reason: str = ""


def _exit(text: str) -> int | None:
    m = re.match(r"(\d+):(\d+)", text or "")
    if not m:
        return None
    code, sig = int(m[1]), int(m[2])
    return 128 + sig if sig else code


def rows_from_records(records: list[dict[str, str]], job_id: str) -> list[FinalRow]:
    """The records (scontrol or jobcomp) that belong to job `job_id` or to its array tasks."""
    out = []
    for rec in records:
        array = rec.get("ArrayJobId", "")
        task = rec.get("ArrayTaskId", "")
        if rec.get("JobId") != job_id and array != job_id:
            continue
        state = rec.get("JobState", "UNKNOWN").split()[0]
        out.append(FinalRow(array or rec["JobId"], int(task) if task.isdigit() else None, state,
                            _exit(rec.get("ExitCode", "")), rec.get("Reason", "")))
    return out


def parse_sacct(text: str, job_id: str) -> list[FinalRow]:
    """`sacct -n -P -X -o JobID,State,ExitCode -j ID`: jobs and array tasks, steps skipped."""
    out = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3 or "." in parts[0]:
            continue
        jid, state, code = parts[:3]
        base, _, task = jid.partition("_")
        if base != job_id:
            continue
        out.append(FinalRow(base, int(task) if task.isdigit() else None, state.split()[0] if state else "UNKNOWN",
                            _exit(code)))
    return out


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    memory_mb: int
    gpus: int
    partitions: tuple[str, ...]
    default_partition: bool = False


def parse_sinfo(text: str) -> list[Node]:
    """`sinfo -h -N -o SINFO_FORMAT`: one line per (node, partition); merged per node."""
    nodes: dict[str, Node] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 5:
            continue
        name, cpus, mem, gres, part = parts[:5]
        gpus = sum(int(m[1]) for m in re.finditer(r"gpu(?::[\w.-]+)*?:(\d+)", gres))
        default = part.endswith("*")
        part = part.rstrip("*")
        old = nodes.get(name)
        parts_all = (*(old.partitions if old else ()), part)
        nodes[name] = Node(name, int(cpus.rstrip("+") or 0), int(re.sub(r"\D", "", mem) or 0), gpus, parts_all,
                           default or bool(old and old.default_partition))
    return list(nodes.values())


def check_fits(spec: JobSpec, partition: str, nodes: list[Node]) -> None:
    """Refuse a job the partition can never run (unknown partition, or a request larger than any node)."""
    if not nodes:
        return
    names = sorted({p for n in nodes for p in n.partitions})
    if partition:
        members = [n for n in nodes if partition in n.partitions]
        if not members:
            raise SubmissionError(f"Slurm has no partition {partition!r}",
                                  f"partitions here: {', '.join(names)}; set RELION's Queue name or the profile's "
                                  "partition to one of them")
    else:
        members = [n for n in nodes if n.default_partition] or nodes
        partition = members[0].partitions[0]
    r = spec.resources
    biggest = max(members, key=lambda n: (n.cpus, n.memory_mb, n.gpus))
    problems = []
    if r.threads > max(n.cpus for n in members):
        problems.append(f"{r.threads} threads per rank (largest node: {max(n.cpus for n in members)} CPUs)")
    if r.cpus > sum(n.cpus for n in members):
        problems.append(f"{r.cpus} CPUs in all (partition total: {sum(n.cpus for n in members)})")
    if r.gpus > max(n.gpus for n in members):
        problems.append(f"{r.gpus} GPUs (largest node: {max(n.gpus for n in members)})")
    if r.memory_gb and r.memory_gb * 1024 > max(n.memory_mb for n in members):
        problems.append(f"{r.memory_gb:g} GB of memory (largest node: {max(n.memory_mb for n in members)} MB)")
    if problems:
        raise SubmissionError(
            f"the job is larger than any node of Slurm partition {partition!r}: " + "; ".join(problems),
            f"ask for fewer MPI ranks/threads/GPUs (largest node {biggest.name}: {biggest.cpus} CPUs, "
            f"{biggest.gpus} GPUs, {biggest.memory_mb} MB), or choose a partition with bigger nodes",
        )


@dataclass(frozen=True)
class Summary:
    """What a job's rows (one, or one per array task) say, folded into one state."""

    state: str  # queued | running | succeeded | failed | aborted
    message: str = ""
    exit_code: int | None = None
    never_starts: str = ""  # a pending reason meaning it can never run
    slurm_states: dict[int | None, str] = field(default_factory=dict)


def summarize(states: list[tuple[int | None, str, str, int | None]]) -> Summary:
    """Fold (task, Slurm state, reason, exit code) rows into one state: any active task keeps the job active."""
    mapped = [(task, st, reason, code, *STATES.get(st, (State.RUNNING, f"Slurm state {st}"))) for task, st, reason, code
              in states]
    by_task = {task: st for task, st, *_ in mapped}
    if any(m[4] == State.RUNNING for m in mapped):
        return Summary(State.RUNNING, slurm_states=by_task)
    pending = [m for m in mapped if m[4] == State.QUEUED]
    if pending:
        never = next((NEVER_STARTS[m[2]] for m in pending if m[2] in NEVER_STARTS), "")
        return Summary(State.QUEUED, pending[0][5], never_starts=never, slurm_states=by_task)
    for wanted in (State.FAILED, State.ABORTED, State.SUCCEEDED):
        hit = [m for m in mapped if m[4] == wanted]
        if hit:
            task, _, _, code, _, msg = hit[0]
            where = f" (array task {task})" if task is not None else ""
            return Summary(wanted, (msg + where) if msg else "", code, slurm_states=by_task)
    return Summary(State.RUNNING, slurm_states=by_task)
