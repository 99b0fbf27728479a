"""Make a real job wait for the test, so that no test bets that a job is still running.

- `IterationGate`: a real relion_refine cannot get past the end of iteration N until the test lets it. A
  `relion_refine` on PATH (the job's `which relion_refine` finds it) makes `<--o>_itNNN_data.star` a FIFO, then
  execs the real program. RELION writes an iteration's files in turn (optimiser, model, classes, then data), so
  it blocks writing the data file: iteration N-1 is complete and iteration N is not. The test opens the FIFO
  with a one-page pipe and, once bytes arrive, knows the program is held there; it unlinks the name, so a later
  attempt (a `--continue`) writes a plain file, and does whatever it came for (preempt, abort) while the first
  program cannot move. Closing the gate (the reader's end) lets a still-held program fail on SIGPIPE.
  A gate nobody opens is a barrier: the job cannot finish before the test acts.
- `flag_wait(path)`: a shell line for a job's command that waits (bounded) until the test creates `path`.
- `Background`: a thread whose exception is raised again by `join()`, so nothing fails where pytest cannot see.
"""

from __future__ import annotations

import fcntl
import os
import select
import shlex
import shutil
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Python >= 3.10 on Linux; spelled out for the type checker)

SHIM = """#!/bin/bash
# Test gate (tests/gate.py): hold the first run of relion_refine at the end of iteration {iteration}.
args=" $* "
if [[ "$args" != *" --continue "* ]]; then
  out=""; prev=""
  for a in "$@"; do [ "$prev" = "--o" ] && out="$a"; prev="$a"; done
  fifo="$PWD/${{out}}_it{iteration:03d}_data.star"
  mkfifo "$fifo" && echo "$fifo" >> {record}
fi
exec {real} "$@"
"""


class IterationGate:
    def __init__(self, bin_dir: Path, iteration: int, program: str = "relion_refine") -> None:
        real = shutil.which(program)
        assert real, f"{program} is not installed"
        bin_dir.mkdir(parents=True, exist_ok=True)
        self.record = bin_dir / f"{program}.gates"
        shim = bin_dir / program
        shim.write_text(SHIM.format(iteration=iteration, record=shlex.quote(str(self.record)),
                                    real=shlex.quote(real)))
        shim.chmod(0o755)
        self.bin_dir = bin_dir
        self.iteration = iteration
        self.fd: int | None = None

    def path_env(self) -> str:
        """PATH with the gate first (set it before the job is submitted: the job inherits it)."""
        return f"{self.bin_dir}:{os.environ.get('PATH', '')}"

    def fifo(self, timeout: float = 600) -> Path:
        """The FIFO the first run made (waits for the program to start)."""
        assert wait_until(lambda: self.record.exists() and self.record.read_text().strip() != "", timeout), \
            "the gated program never started"
        return Path(self.record.read_text().splitlines()[0])

    def hold(self, timeout: float = 600) -> Path:
        """Block until the program is held in the FIFO (its previous iterations are complete); unlink the name.
        Returns the job folder the program writes into."""
        path = self.fifo(timeout)
        assert stat.S_ISFIFO(os.stat(path).st_mode)
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        fcntl.fcntl(self.fd, F_SETPIPE_SZ, 4096)  # a data STAR file is larger: the writer blocks in write()
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        events = poller.poll(timeout * 1000)
        assert events, f"the program never reached {path.name}"
        assert events[0][1] & select.POLLIN, f"the program closed {path.name} without writing (did it fail?)"
        path.unlink()
        return path.parent

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def flag_wait(flag: Path, timeout: int = 600) -> str:
    """A command line that returns once `flag` exists (or fails after `timeout` s)."""
    return f"timeout {timeout} bash -c {shlex.quote(f'until [ -e {shlex.quote(str(flag))} ]; do sleep 0.05; done')}"


def wait_until(predicate: Callable[[], object], timeout: float = 120.0, every: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every)
    return bool(predicate())


class Background(threading.Thread):
    """A helper thread for a test: `join()` raises what the target raised."""

    def __init__(self, target: Callable[..., Any], *args: Any) -> None:
        super().__init__(daemon=True)
        self._fn, self._args = target, args
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._fn(*self._args)
        except BaseException as e:  # handed to join()
            self.error = e

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self.error is not None:
            raise self.error
