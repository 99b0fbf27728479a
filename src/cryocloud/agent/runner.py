"""Run a job's commands in the project folder and leave exactly one exit marker, whatever happens.

Steps (DESIGN.md): run the job's script as ONE bash program (so a facility's `module load`, `export`, `source`
and `if` blocks reach the commands after them) in its own process group, output appended to the job's
run.out/run.err; the MPI launcher goes in front of relion_*_mpi lines; the first failed command stops it (`set
-e`, as RELION writes its lines bare); watch for the abort file and SIGTERM; then write result.json and the
client's exit marker unless the program wrote its own.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryocloud.jobs import cmdline, control, runlog, tasks
from cryocloud.jobs.environment import with_mpi_rights
from cryocloud.jobs.markers import FAMILIES, MarkerFamily
from cryocloud.jobs.spec import JobSpec
from cryocloud.jobs.states import State
from cryocloud.proc import running_monitor, start_monitor, start_process_group

POLL = 0.25  # seconds between checks of the abort file and signals (the command's exit is seen at once)
ABORT_GRACE = {"relion": 3.0, "pipeliner": 12.0, "command": 0.0}  # time to stop on its own before SIGTERM
KILL_GRACE = 5.0  # SIGTERM -> SIGKILL
MONITOR_CHECK = 5.0  # s between looks at the lab's monitor (local jobs only)


PROGRAM, FAILED = "job.sh", "failed_command"  # in the control folder: the program bash runs, what stopped it


def mpi_prefix(ranks: int, launcher: list[str]) -> str:
    return shlex.join(part.replace("{ranks}", str(ranks)) for part in launcher)


def with_mpi(line: str, ranks: int, launcher: list[str]) -> str:
    """Put the MPI launcher in front of a relion_*_mpi command line (as RELION's local mode does)."""
    if ranks <= 1 or not cmdline.is_mpi(line):
        return line
    indent = line[: len(line) - len(line.lstrip())]
    return f"{indent}{mpi_prefix(ranks, launcher)} {line.lstrip()}"


def program_text(lines: list[str], ranks: int, launcher: list[str], failed: Path) -> str:
    """The job's lines as one bash program: stop at the first failed command, and say which one it was."""
    head = ["set -e", f"__cryocloud_failed={shlex.quote(str(failed))}",
            """trap 'printf "%s\\n" "$BASH_COMMAND" > "$__cryocloud_failed"' ERR"""]
    return "\n".join([*head, *(with_mpi(line, ranks, launcher) for line in lines)]) + "\n"


@dataclass
class Outcome:
    state: str  # succeeded | failed | aborted
    exit_code: int | None
    message: str


class Runner:
    def __init__(self, control_dir: Path, clock: Callable[[], float] = time.time, project: Path | None = None) -> None:
        self.control_dir = control_dir
        launch = control.read_launch(control_dir)
        if launch is None:
            raise SystemExit(f"cryocloud agent: no readable {control.LAUNCH} in {control_dir}")
        self.spec = JobSpec.from_dict(launch["spec"])
        self.launcher: list[str] = launch["mpi_launcher"]
        # A fan-out shard (e.g. one Slurm array task): {"index": i, "count": n}. Its result goes to its own
        # control folder; the lab side gathers the shards and writes the job's marker once.
        self.shard: dict[str, int] | None = launch.get("shard")
        self.project = project or Path(self.spec.project_dir)  # a staged job runs in node-local scratch
        self.job_dir = self.project / self.spec.job_dir
        self.index = self.shard["index"] if self.shard is not None else None
        # a fan-out's last pass (RELION's --only_do_unfinished over the full list), run once every shard succeeded
        self.final = bool(launch.get("final"))
        self.workdir = self.project / tasks.workdir(self.spec, self.index)
        self.what = f"task {self.index} of job {self.spec.name}" if self.index is not None else f"job {self.spec.name}"
        self.family: MarkerFamily = FAMILIES[self.spec.client]
        self.out = self.project / launch.get("stdout", self.spec.job_dir + "run.out")
        self.err = self.project / launch.get("stderr", self.spec.job_dir + "run.err")
        self.clock = clock
        self.terminated = False
        # a scheduler's SIGTERM may be preemption or a time limit: the lab side then writes the marker after
        # asking the scheduler why (and may requeue the job instead)
        self.lab_marks_signals = bool(launch.get("lab_marks_signals"))
        self.state: dict[str, object] = {}
        # a local job: the lab's monitor runs on this machine, and the agent restarts it if it dies
        self.lab_monitor: dict[str, str] | None = launch.get("lab_monitor")
        self._monitor_seen = 0.0

    def log(self, msg: str) -> None:
        runlog.note(self.out.parent, msg, self.out.name)

    def _on_term(self, signum: int, frame: object) -> None:
        self.terminated = True

    def _cancel_requested(self) -> bool:
        """A user's cancel: the `cancel` file in the job's control folder (the parent's too, for a fan-out's task or
        its final pass)."""
        dirs = [self.control_dir] + ([self.control_dir.parent] if self.shard is not None or self.final else [])
        return any((d / control.CANCEL).exists() for d in dirs)

    def _cancel_reason(self) -> str:
        """The cancel file's text (why cryocloud stopped the job: a budget, a stall), else "cancelled"."""
        try:
            return (self.control_dir / control.CANCEL).read_text().strip() or "cancelled"
        except OSError:
            return "cancelled"

    def _watch_monitor(self) -> None:
        """Start the lab's monitor if it died (the OOM killer, a kill), so that it ends this job if this agent
        dies too. The monitor's lock decides: a second one started at the same moment leaves at once."""
        now = time.monotonic()
        if self.lab_monitor is None or self.terminated or now - self._monitor_seen < MONITOR_CHECK:
            return  # a cancelled job's agent is leaving: it starts nothing
        self._monitor_seen = now
        run_dir = Path(self.lab_monitor["run_dir"])
        if running_monitor(run_dir, starting=True) is None:
            self.log("the cryocloud monitor is not running; starting it")
            start_monitor(run_dir, {**os.environ, "CRYOCLOUD_HOME": self.lab_monitor["home"]})

    def _abort_requested(self) -> bool:
        return self.family.abort_requested(self.job_dir)

    def run_program(self, env: dict[str, str]) -> Outcome | None:
        """Run the job's lines as one bash program; None if it succeeded, else how the job ends."""
        failed = self.control_dir / FAILED
        failed.unlink(missing_ok=True)
        program = self.control_dir / PROGRAM
        ranks = self.spec.resources.mpi
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.workdir != self.project:
            tasks.link_inputs(self.spec, self.workdir, self.project)
        lines = self.spec.fanout.final if self.final else tasks.commands(self.spec, self.index, self.control_dir,
                                                                          self.project)
        program.write_text(program_text(lines, ranks, self.launcher, failed), encoding="utf-8")
        if ranks > 1 and any(cmdline.is_mpi(ln) for ln in lines):
            self.log(f"running with {ranks} MPI ranks: {mpi_prefix(ranks, self.launcher)}")
        proc = start_process_group(["bash", str(program)], cwd=self.workdir, env=env,
                                   stdout_path=self.out, stderr_path=self.err)
        self.record(child_pgid=proc.pid)  # lets the lab side stop the job's processes if we die
        try:
            while (rc := proc.wait(POLL)) is None:
                self._watch_monitor()
                if self._abort_requested():
                    self.log("abort requested (RELION_JOB_ABORT_NOW); stopping the job")
                    proc.stop(ABORT_GRACE.get(self.spec.client, 0.0), KILL_GRACE)
                    return Outcome(State.ABORTED, proc.returncode, "aborted on request")
                if self.terminated or self._cancel_requested():  # a signal, or a cancel file (a cloud node's abort)
                    cancelled = self._cancel_requested()
                    self.log("cancelled by the user; stopping the job" if cancelled else "terminated by a signal")
                    proc.stop(0.0, KILL_GRACE)
                    if cancelled:
                        return Outcome(State.ABORTED, proc.returncode, self._cancel_reason())
                    return Outcome(State.FAILED, proc.returncode, "the agent was terminated")
        finally:
            proc.close()
        if rc != 0 and self._cancel_requested():
            # a scheduler's cancel (scancel) signals the whole job at once: the command may die before we see it
            self.log("cancelled by the user; the job was stopped")
            return Outcome(State.ABORTED, rc, self._cancel_reason())
        if rc != 0:
            what = failed.read_text(errors="replace").strip() if failed.exists() else ""
            if rc == 127:
                return Outcome(State.FAILED, rc, f"command not found on {socket.gethostname()}: {what[:200]} "
                               "(hint: install it there, or give its full path)")
            return Outcome(State.FAILED, rc, f"command exited with {rc}: {(what or 'the job script')[:200]}")
        missing = "" if self.final else tasks.check_outputs(self.spec, self.index, self.workdir)
        return Outcome(State.FAILED, 0, missing) if missing else None

    def record(self, **values: object) -> None:
        self.state.update(values)
        control.write_json(self.control_dir / control.AGENT, self.state)

    def retryable(self, outcome: Outcome) -> bool:
        """A failed task that may run again: not stopped by a signal, a cancel or an abort."""
        return (outcome.state == State.FAILED and not self.terminated and not self._cancel_requested()
                and not self._abort_requested())

    def run(self, retry_left: bool = False) -> Outcome:
        """Run the job (or shard) once. `retry_left`: a fan-out task that will run again if it fails; its
        failure then goes to failed_try.json, not result.json, so the lab does not count it ended."""
        started = self.clock()
        self.record(pid=os.getpid(), host=socket.gethostname(), started_at=started)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        env = with_mpi_rights(os.environ)  # started with what the job needs (jobs/environment.py)
        if self.shard is not None:
            env["CRYOCLOUD_TASK_INDEX"] = str(self.shard["index"])
            env["CRYOCLOUD_TASK_COUNT"] = str(self.shard["count"])
        self.out.parent.mkdir(parents=True, exist_ok=True)  # a fan-out task's own folder
        self.log(f"{self.what} started on {socket.gethostname()} (pid {os.getpid()})")
        outcome = self.run_program(env) or Outcome(State.SUCCEEDED, 0, "")
        # A program's own marker is the job's verdict as RELION sees it; keep the two views equal.
        own = self.family.existing(self.job_dir) if self.shard is None else None
        if own is not None and own != outcome.state:
            outcome = Outcome(own, outcome.exit_code, outcome.message or f"the program reported {own}")
        ended_at = self.clock()
        # killed by a signal (the agent, or its command: a scheduler stops the whole job at once) and not on a
        # user's request: the lab side asks the scheduler why before RELION is told anything
        code = outcome.exit_code
        signalled = self.terminated or (code is not None and (code < 0 or code - 128 in (2, 9, 15)))
        deferred = (self.shard is None and self.lab_marks_signals and signalled and outcome.state == State.FAILED
                    and own is None and not self._cancel_requested())
        report = control.FAILED_TRY if retry_left and self.retryable(outcome) else control.RESULT
        control.write_json(self.control_dir / report, {
            "state": outcome.state, "exit_code": outcome.exit_code, "message": outcome.message,
            "started_at": started, "ended_at": ended_at, **({"marker_deferred": True} if deferred else {}),
        })
        self.log(f"{'task' if self.index is not None else 'job'} {outcome.state} after {ended_at - started:.1f} s"
                 + (f": {outcome.message}" if outcome.message and outcome.state != State.SUCCEEDED else ""))
        if self.shard is None and not deferred:
            self.family.write(self.job_dir, outcome.state)
        return outcome


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m cryocloud.agent CONTROL_DIR")
        return 2
    outcome = Runner(Path(argv[0])).run()
    return 0 if outcome.state == State.SUCCEEDED else 1
