"""The local backend: this workstation, as a first-in-first-out queue over its CPU and GPU slots.

The agent runs as a detached process (its own session), so the job survives the submitting shell and the
user's logout. Queueing is the monitor's: it starts a queued job when `has_room` says the slots are free.
The agent and the monitor watch each other here (and only here: a cluster node's agent never starts a lab
monitor): an agent whose monitor died starts a new one, which ends the job of an agent that died.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
from pathlib import Path

from cryocloud.backends.base import BackendStatus, Handle, Launch
from cryocloud.jobs import control, tasks
from cryocloud.jobs.spec import JobSpec
from cryocloud.jobs.states import State
from cryocloud.proc import pid_alive, process_start_time, signal_session, spawn_detached
from cryocloud.settings import Profile, Settings


class LocalBackend:
    name = "local"

    def __init__(self, profile: Profile, settings: Settings) -> None:
        self.cpus = settings.local_cpus
        self.gpus = settings.local.gpus
        self.machine = settings.local_machine
        self.rate = settings.general.workstation_usd_per_hour
        self.lab = {"run_dir": str(settings.run_dir), "home": str(settings.home)}

    def usd_per_hour(self, spec: JobSpec) -> float:
        return self.rate

    def width(self, spec: JobSpec) -> int:
        """Tasks of a fan-out run at once: as many as the machine's CPUs (and GPUs) hold, at least one."""
        r = spec.resources
        fit = self.cpus // max(1, r.cpus)
        if r.gpus > 0:
            fit = min(fit, max(self.gpus, 0) // r.gpus)
        return max(1, min(spec.tasks, fit))

    def workers(self, spec: JobSpec) -> int:
        """Tasks run at once: what the machine holds, or fewer when the job packs several tasks per worker."""
        pack = spec.fanout.pack
        return min(self.width(spec), math.ceil(spec.tasks / pack)) if pack > 0 else self.width(spec)

    def has_room(self, spec: JobSpec, running: list[JobSpec]) -> bool:
        if not running:
            return True  # a job bigger than the machine still runs, alone
        cpus = sum(min(s.resources.cpus * self.width(s), self.cpus) for s in running)
        gpus = sum(s.resources.gpus * self.width(s) for s in running)
        return (cpus + min(spec.resources.cpus * self.width(spec), self.cpus) <= self.cpus
                and gpus + spec.resources.gpus * self.width(spec) <= max(self.gpus, 0))

    def submit(self, launch: Launch) -> Handle:
        launch_file = launch.control_dir / control.LAUNCH
        control.write_json(launch_file, {**(control.read_json(launch_file) or {}), "lab_monitor": self.lab})
        argv = [sys.executable, "-m", "cryocloud.agent", str(launch.control_dir)]
        if launch.spec.tasks > 1:  # a fan-out: one driver runs the tasks, `width` at once (agent/shards.py)
            tasks.write_shards(launch.control_dir, launch.spec)
            argv = [sys.executable, "-m", "cryocloud.agent.shards", str(launch.control_dir),
                    str(self.workers(launch.spec))]
        log = launch.control_dir / "agent.log"
        pid = spawn_detached(argv, cwd=launch.spec.project_dir, env=launch.env, stdout=log, stderr=log)
        return Handle(self.name, {"pid": pid, "started": process_start_time(pid), "tasks": launch.spec.tasks})

    def status(self, handle: Handle) -> BackendStatus:
        pid = int(handle.data["pid"])
        if pid_alive(pid, handle.data.get("started") or None):
            return BackendStatus(State.RUNNING)
        return BackendStatus(State.GONE, f"the job's agent (pid {pid}) ended without reporting (killed or crashed)")

    def cancel(self, handle: Handle) -> None:
        pid = int(handle.data["pid"])
        if pid_alive(pid, handle.data.get("started") or None):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def cleanup(self, handle: Handle) -> None:
        """After the agent vanished: kill what is left of the job's own process group (each task's, for a fan-out)."""
        cdir = Path(handle.data.get("control_dir", "."))
        tasks = int(handle.data.get("tasks", 1))
        for d in [cdir, *(control.task_dir(cdir, i) for i in range(tasks) if tasks > 1)]:  # a fan-out's tasks too
            pgid = (control.read_json(d / control.AGENT) or {}).get("child_pgid")
            if isinstance(pgid, int) and pgid > 1:
                signal_session(pgid, signal.SIGKILL)  # the command leads its own session: all it started

    def logs(self, handle: Handle) -> tuple[Path, Path]:
        cdir = Path(handle.data.get("control_dir", "."))
        launch = control.read_json(cdir / control.LAUNCH) or {}
        spec = launch.get("spec", {})
        base = Path(spec.get("project_dir", "."))
        return base / launch.get("stdout", "run.out"), base / launch.get("stderr", "run.err")
