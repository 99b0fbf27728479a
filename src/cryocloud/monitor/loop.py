"""The monitor's loop: one per user (a lock file). `submit` starts it when it is not running (ensure_monitor);
it exits once no job is active (after `local.monitor_linger` more idle seconds, default 0). While it runs it
takes submissions over its socket (handoff.py) and answers them with the handler it was given: the monitor
imports no face, the entry point (app/daemon.py) hands it the app's submit.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import sqlite3
import threading
import time
from collections.abc import Callable

from cryocloud.errors import CryocloudError
from cryocloud.jobs import runlog
from cryocloud.ledger import Ledger
from cryocloud.monitor import handoff
from cryocloud.monitor.passes import dispatch, has_active, open_ledger, reconcile
from cryocloud.proc import MONITOR_LOCK, reap_detached, running_monitor, start_monitor
from cryocloud.settings import Settings, load_settings, private_dir

BACKUP_EVERY = 3600.0  # s between backups of the ledger while the monitor runs (and one when it leaves)


def _lock(settings: Settings) -> int | None:
    private_dir(settings.home)
    private_dir(settings.run_dir)
    fd = os.open(settings.run_dir / MONITOR_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def monitor_pid(settings: Settings, starting: bool = False) -> int | None:
    """The running monitor's pid (written into its lock file), or None. With `starting`, also one that was
    just spawned and has not taken the lock yet."""
    return running_monitor(settings.run_dir, starting)


def ensure_monitor(settings: Settings) -> None:
    """Start the monitor in the background unless one runs already (idempotent)."""
    fd = _lock(settings)
    if fd is None:
        return
    os.close(fd)  # free it for the monitor we start; if another grabs it first, ours exits at once
    start_monitor(settings.run_dir, os.environ)


def _backup(ledger: Ledger) -> None:
    """The ledger's backup (what `cryocloud ledger check --restore` puts back); a failure is a line in the log."""
    try:
        if ledger.backup() is None:
            print(runlog.stamp("the ledger failed its check: the last backup is kept; run `cryocloud ledger check`"),
                  end="", flush=True)
    except (sqlite3.Error, OSError) as e:
        print(runlog.stamp(f"could not back up the ledger: {e}"), end="", flush=True)



class Held:
    """The monitor's lock, taken by a process that runs the loop in a thread (`cryocloud serve`)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd


def hold_lock(settings: Settings) -> Held | None:
    """Take the monitor's lock for this process (None: another monitor holds it) and write our pid in it."""
    fd = _lock(settings)
    if fd is None:
        return None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return Held(fd)


def run_monitor(settings: Settings, handler: handoff.Handler, clock: Callable[[], float] = time.monotonic,
                held: Held | None = None, stop_event: threading.Event | None = None) -> int:
    """Loop until no job is active and nothing was asked of it for `monitor_linger` seconds. Submissions that
    arrive on the socket are answered by `handler`. With `held` and `stop_event` (the server runs it in a thread):
    loop until the event is set, idle or not, under the lock the caller took."""
    if held is None:
        got = hold_lock(settings)
        if got is None:
            return 0
        held = got
    fd = held.fd
    stop: list[bool] = []
    if stop_event is None:
        signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    stay = stop_event is not None
    sock = handoff.listen(settings)
    from cryocloud.monitor.stager import Stager  # threads: only the loop needs them, not every submit

    ledger = open_ledger(settings)
    stager = Stager()
    last_busy, next_pass = clock(), 0.0
    last_backup = clock()
    idle = False
    try:
        while not stop and not (stop_event and stop_event.is_set()):
            wait = max(0.0, next_pass - clock())
            if sock is not None:
                ready, _, _ = select.select([sock], [], [], wait)
                if ready:
                    handoff.serve_one(sock, handler)
                    last_busy = clock()
                    continue
            else:
                time.sleep(wait)
            try:
                settings = load_settings()  # config edits apply without a restart
            except CryocloudError as e:
                print(runlog.stamp(f"config error, keeping the previous settings: {e}"), end="", flush=True)
            reconcile(settings, ledger)
            stager.step(settings, ledger)  # uploads run beside the loop; their jobs start once staged
            dispatch(settings, ledger)
            reap_detached()  # agents started from here are our children
            if has_active(ledger):
                last_busy = clock()
            elif not stay and clock() - last_busy > settings.local.monitor_linger:
                idle = True
                return 0
            next_pass = clock() + settings.local.poll_seconds
            if clock() - last_backup > BACKUP_EVERY:
                _backup(ledger)
                last_backup = clock()
        return 0
    finally:
        stager.close()
        if sock is not None:
            handoff.close(settings, sock, handler)  # answers whoever connected before the socket went away
        # a submission answered just now may have made a job active: it needs a monitor, and this one is
        # leaving (its lock made that submission believe one runs), so start the next one once the lock is free
        again = idle and not stop and has_active(ledger)
        _backup(ledger)
        ledger.close()
        os.ftruncate(fd, 0)
        os.close(fd)
        if again:
            ensure_monitor(settings)
