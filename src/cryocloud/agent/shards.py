"""A fan-out's tasks on one machine: each task is the agent (Runner) on its own control folder task<N>/, run
again on failure up to the job's retries. Slurm's array tasks run their range one after the other
(`run_range`); the local backend runs them all with at most `width` at once (`main`), each in a forked child so
a task starts in milliseconds, not a Python start."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

from cryocloud.agent.runner import Outcome, Runner
from cryocloud.jobs import control
from cryocloud.jobs.states import State


def run_task(task_dir: Path) -> tuple[Outcome, bool]:
    """Run one task, retried while it fails and retries are left. Returns its outcome and whether it was stopped
    (a signal, a cancel, an abort: the caller starts nothing more)."""
    runner = Runner(task_dir)
    retries = runner.spec.fanout.retries
    for attempt in range(retries + 1):
        if attempt:
            runner.log(f"task {runner.index} failed; retry {attempt} of {retries}")
            runner = Runner(task_dir)
        outcome = runner.run(retry_left=attempt < retries)
        if not runner.retryable(outcome):
            break
    stopped = outcome.state == State.ABORTED or runner.terminated
    return outcome, stopped


def run_range(cdir: Path, first: int, count: int, tasks: int) -> int:
    """Tasks first .. first+count-1 (of `tasks`) one after the other (a Slurm array task). Exit code: 0 if all
    succeeded."""
    rc = 0
    for i in range(first, min(tasks, first + count)):
        outcome, stopped = run_task(control.task_dir(cdir, i))
        rc = rc or (0 if outcome.state == State.SUCCEEDED else 1)
        if stopped:
            break
    return rc


def run_all(cdir: Path, tasks: int, width: int) -> int:
    """Every task, at most `width` at once, each in a forked child. SIGTERM stops the running ones (each task's
    Runner stops its command) and starts no more."""
    stopping = False
    children: dict[int, int] = {}

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    pending, rc = list(range(tasks)), 0
    while pending or children:
        stopping = stopping or (cdir / control.CANCEL).exists()
        while pending and len(children) < max(1, width) and not stopping:
            i = pending.pop(0)
            pid = os.fork()
            if pid == 0:  # the child: one task, then leave without running the parent's cleanup
                signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's forwarder (Runner sets its own)
                code = 1
                try:
                    outcome, _ = run_task(control.task_dir(cdir, i))
                    code = 0 if outcome.state == State.SUCCEEDED else 1
                finally:
                    os._exit(code)
            children[pid] = i
        if not children:
            break
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        children.pop(pid, None)
        rc = rc or (0 if os.waitstatus_to_exitcode(status) == 0 else 1)
    for i in pending:  # never started (cancelled): said so, so the lab does not wait for them
        control.write_json(control.task_dir(cdir, i) / control.RESULT,
                           {"state": State.ABORTED, "message": "not started: the job was stopped"})
    return rc


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m cryocloud.agent.shards CONTROL_DIR WIDTH")
        return 2
    launch = control.read_json(Path(argv[0]) / control.LAUNCH) or {}
    tasks = int(launch.get("spec", {}).get("tasks", 1))
    return run_all(Path(argv[0]), tasks, int(argv[1]))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
