"""The Slurm backend: the facility cluster (or AWS ParallelCluster) runs the agent through sbatch.

The nodes share the project folder with the lab (no staging): the agent there reads launch.json, runs the
job and writes result.json and RELION's marker as it does locally. Slurm queues jobs itself, so `has_room`
is always true. A fan-out job (spec.tasks > 1) is one job array; each task runs the agent on its own control
folder (task<N>/), and this backend gathers the tasks' results into the job's result and marker once the
array has ended, so the first task to finish cannot mark the job done.

Status: one `squeue` per poll for all of the user's jobs (sites throttle RPCs), then for jobs squeue no
longer shows, `scontrol show job`, `sacct` (slurmdbd) or the jobcomp file. A controller that does not answer
raises CryocloudError (the monitor asks again later); only a job no source knows is "gone".
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from pathlib import Path

from cryocloud.backends import slurm_text as st
from cryocloud.backends.base import BackendStatus, Handle, Launch
from cryocloud.errors import CommandError, CryocloudError, SubmissionError
from cryocloud.jobs import control, runlog, tasks
from cryocloud.jobs.markers import FAMILIES
from cryocloud.jobs.spec import JobSpec
from cryocloud.jobs.states import State
from cryocloud.proc import Completed, run_command
from cryocloud.settings import Profile, Settings

TIMEOUT = 60.0  # seconds any Slurm command may take (a controller that is down takes ~10 s to say so)
SQUEUE_TTL = 1.0  # one squeue answer serves every status() call within this many seconds
BATCH_SCRIPT = "slurm_batch.py"
NODES_TTL = 60.0  # seconds a sinfo answer (partitions, node sizes) is reused for checking requests
_NODES: dict[str, tuple[float, list[st.Node]]] = {}


class SlurmBackend:
    name = "slurm"

    def __init__(self, profile: Profile, settings: Settings) -> None:
        self.profile = profile
        self.opts = st.SlurmOptions.from_profile(profile.name, profile.options)
        if shutil.which("sbatch") is None:
            raise SubmissionError(
                "sbatch is not on PATH, so the Slurm backend cannot submit jobs",
                "run cryocloud on a Slurm login node (or `module load slurm`), or choose another profile",
            )
        self.machine = f"slurm {self.opts.partition or 'default partition'}"
        self._queue: tuple[float, list[st.QueueRow]] | None = None
        self._queue_error: tuple[float, CryocloudError] | None = None

    def usd_per_hour(self, spec: JobSpec) -> float:
        """The profile's own rates (free when it names none): per job-hour, per CPU-hour, per GPU-hour."""
        o, r = self.opts, spec.resources
        return o.usd_per_hour + r.cpus * o.usd_per_cpu_hour + r.gpus * o.usd_per_gpu_hour

    # -- commands ---------------------------------------------------------------------------------------
    def _run(self, argv: list[str], check: bool = True, env: dict[str, str] | None = None) -> Completed:
        return run_command(argv, timeout=TIMEOUT, check=check, env=env,
                           hint="check that slurmctld answers (`scontrol ping`) and SLURM_CONF is right")

    def has_room(self, spec: JobSpec, running: list[JobSpec]) -> bool:
        return True  # Slurm queues jobs itself

    def _cluster_nodes(self, env: dict[str, str]) -> list[st.Node]:
        """The cluster's nodes, asked once a minute per cluster (SLURM_CONF) and process: one RPC less per job."""
        key = env.get("SLURM_CONF", "")
        cached = _NODES.get(key)
        if cached is None or time.monotonic() - cached[0] > NODES_TTL:
            done = self._run(["sinfo", "-h", "-N", "-o", st.SINFO_FORMAT], check=False, env=env)
            if done.returncode != 0:
                raise self._error(done, "sinfo")
            cached = _NODES[key] = (time.monotonic(), st.parse_sinfo(done.stdout))
        return cached[1]

    def _error(self, done: Completed, what: str) -> CryocloudError:
        known = st.sbatch_error(done.stderr, done.stdout)
        if known:
            return SubmissionError(*known)
        return CommandError(done.argv, done.returncode, done.stdout, done.stderr,
                            f"{what} failed; check the Slurm cluster (`scontrol ping`, `sinfo`)")

    # -- the protocol ---------------------------------------------------------------------------------------
    def submit(self, launch: Launch) -> Handle:
        spec = launch.spec
        cdir = launch.control_dir
        env = dict(launch.env)
        nodes = self._cluster_nodes(env)
        partition = st.partition_for(spec, self.opts)
        st.check_fits(spec, partition, nodes)
        pack = spec.fanout.pack or (
            st.shards_per_task(spec.tasks, st.slots(spec, partition, nodes)) if self.opts.pack_tasks else 1)
        script = cdir / BATCH_SCRIPT
        launch_data = control.read_json(cdir / control.LAUNCH) or {}
        staging = launch_data.get("staging")  # the monitor staged the job's inputs (jobstage.py)
        staged = None
        if staging:
            staged = [str(staging[k]) for k in ("store", "inputs", "outputs", "job_dir", "control")]
        python = self.opts.python or sys.executable
        script.write_text(st.staged_batch_script_text(python) if staged else st.batch_script_text(python),
                          encoding="utf-8")
        script.chmod(0o755)
        control.write_json(cdir / control.LAUNCH, {**launch_data, "lab_marks_signals": True})
        if spec.tasks > 1:
            tasks.write_shards(cdir, spec)
        argv = st.sbatch_argv(spec, self.opts, batch_script=str(script), control_dir=str(cdir),
                              exports=st.export_names(env),
                              job_name=f"cryocloud-{launch.job_id}-{spec.name}".rstrip("/"), pack=pack, staged=staged)
        done = run_command(argv, cwd=spec.project_dir, env=env, timeout=TIMEOUT, check=False,
                           hint="check that slurmctld answers (`scontrol ping`) and SLURM_CONF is right")
        if done.returncode != 0:
            raise self._error(done, "sbatch")
        job_id = st.parse_sbatch(done.stdout)
        shards = ""
        if spec.tasks > 1:
            shards = f" (array of {spec.tasks} tasks" + (f", {pack} per array task" if pack > 1 else "") + ")"
        runlog.note(spec.folder, f"Slurm job {job_id}{shards} submitted to {partition or 'the default partition'}")
        return Handle(self.name, {"job_id": job_id, "tasks": spec.tasks, "control_dir": str(cdir)})

    def _squeue(self) -> list[st.QueueRow]:
        """All of the user's jobs, one squeue per SQUEUE_TTL; a controller that does not answer is asked once."""
        now = time.monotonic()
        if self._queue_error is not None and now - self._queue_error[0] <= SQUEUE_TTL * 30:
            raise self._queue_error[1]
        if self._queue is None or now - self._queue[0] > SQUEUE_TTL:
            try:
                done = self._run(["squeue", "--me", "-h", "-r", "-t", "all", "-o", st.SQUEUE_FORMAT])
            except CryocloudError as e:
                self._queue_error = (now, e)
                raise
            self._queue = (now, st.parse_squeue(done.stdout))
        return self._queue[1]

    def _final_rows(self, job_id: str) -> list[st.FinalRow]:
        """The job's rows once squeue has forgotten it: scontrol, then sacct, then the jobcomp file."""
        done = self._run(["scontrol", "-o", "show", "job", job_id], check=False)
        if done.returncode == 0:
            return st.rows_from_records(st.parse_records(done.stdout), job_id)
        if "Invalid job id" not in done.stderr:
            raise self._error(done, "scontrol")
        done = self._run(["sacct", "-n", "-P", "-X", "-o", st.SACCT_FIELDS, "-j", job_id], check=False)
        if done.returncode == 0 and done.stdout.strip():
            return st.parse_sacct(done.stdout, job_id)
        path = self.opts.jobcomp or self._jobcomp_location()
        if path:
            with contextlib.suppress(OSError):
                return st.rows_from_records(st.parse_records(Path(path).read_text(errors="replace")), job_id)
        return []

    def _jobcomp_location(self) -> str:
        done = self._run(["scontrol", "show", "config"], check=False)
        conf = {k.strip(): v.strip() for k, _, v in (ln.partition("=") for ln in done.stdout.splitlines())}
        return conf.get("JobCompLoc", "") if conf.get("JobCompType") == "jobcomp/filetxt" else ""

    def _slurm_summary(self, job_id: str) -> st.Summary | None:
        rows: list[tuple[int | None, str, str, int | None]] = [(r.task, r.state, r.reason, None) for r in self._squeue()
                if r.array_job_id == job_id or r.job_id == job_id]
        if not rows:
            rows = [(r.task, r.state, r.reason, r.exit_code) for r in self._final_rows(job_id)]
        if not rows:
            return None
        return st.summarize(rows)

    def status(self, handle: Handle) -> BackendStatus:
        job_id = str(handle.data["job_id"])
        tasks = int(handle.data.get("tasks", 1))
        cdir = Path(str(handle.data.get("control_dir", ".")))
        spec = _spec(cdir)
        summary = self._slurm_summary(job_id)
        if summary is None:
            return BackendStatus(State.GONE, f"Slurm job {job_id} disappeared from the controller without a final "
                                         "state (purged, or the controller lost it)")
        if summary.state == State.QUEUED:
            if spec is not None and _abort_requested(spec):
                self._run(["scancel", job_id], check=False)
                return BackendStatus(State.ABORTED, f"aborted on request before it started (Slurm job {job_id})")
            if summary.never_starts:
                self._run(["scancel", job_id], check=False)
                return BackendStatus(State.FAILED, f"Slurm can never start job {job_id}: {summary.never_starts}")
            return BackendStatus(State.QUEUED, summary.message)
        if summary.state == State.RUNNING:
            return BackendStatus(State.RUNNING, summary.message)
        ended_as = set(summary.slurm_states.values())
        interrupted = next((st.INTERRUPTED[s] for s in ended_as if s in st.INTERRUPTED), "") if tasks == 1 else ""
        return BackendStatus(summary.state, f"{summary.message} (Slurm job {job_id})".lstrip(),
                             summary.exit_code, interrupted=interrupted)

    def cancel(self, handle: Handle) -> None:
        self._run(["scancel", str(handle.data["job_id"])], check=False)

    def cleanup(self, handle: Handle) -> None:
        """The job ended without the agent's result: make sure nothing of it is left in Slurm."""
        self._run(["scancel", str(handle.data["job_id"])], check=False)

    def logs(self, handle: Handle) -> tuple[Path, Path]:
        spec = _spec(Path(str(handle.data.get("control_dir", "."))))
        if spec is None:
            return Path("run.out"), Path("run.err")
        return spec.folder / "run.out", spec.folder / "run.err"


def _spec(cdir: Path) -> JobSpec | None:
    launch = control.read_json(cdir / control.LAUNCH)
    return JobSpec.from_dict(launch["spec"]) if launch and "spec" in launch else None


def _abort_requested(spec: JobSpec) -> bool:
    return FAMILIES[spec.client].abort_requested(spec.folder)


