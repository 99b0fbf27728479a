"""The one place cryocloud starts other programs. Argument lists only; no shell strings are built here."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryocloud.errors import CommandError, CryocloudError


@dataclass(frozen=True)
class Completed:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


def run_command(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float | None = None,
    check: bool = True,
    hint: str = "",
) -> Completed:
    """Run `argv`, capture its output, and raise CommandError on a non-zero exit when `check`."""
    args = [os.fspath(a) for a in argv]
    try:
        p = subprocess.run(
            args, cwd=cwd, env=dict(env) if env is not None else None, input=input,
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    except FileNotFoundError as e:
        raise CryocloudError(f"{args[0]}: command not found", hint or f"install {args[0]} or put it on PATH") from e
    except subprocess.TimeoutExpired as e:
        raise CryocloudError(f"`{' '.join(args)}` did not answer within {timeout:g} s", hint) from e
    done = Completed(args, p.returncode, p.stdout, p.stderr)
    if check and p.returncode != 0:
        raise CommandError(args, p.returncode, p.stdout, p.stderr, hint)
    return done


def spawn_detached(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    stdout: Path | None = None,
    stderr: Path | None = None,
) -> int:
    """Start `argv` in its own session (it survives the caller, its terminal and a logout); return its pid."""
    args = [os.fspath(a) for a in argv]
    out = open(stdout, "ab") if stdout else subprocess.DEVNULL  # noqa: SIM115
    err = open(stderr, "ab") if stderr else subprocess.DEVNULL  # noqa: SIM115
    try:
        p = subprocess.Popen(
            args, cwd=cwd, env=dict(env) if env is not None else None, stdin=subprocess.DEVNULL,
            stdout=out, stderr=err, start_new_session=True, close_fds=True,
        )
    except FileNotFoundError as e:
        raise CryocloudError(f"{args[0]}: command not found", f"install {args[0]} or put it on PATH") from e
    finally:
        for f in (out, err):
            if not isinstance(f, int):
                f.close()
    DETACHED.add(p.pid)
    return p.pid


DETACHED: set[int] = set()  # pids spawn_detached started and nobody has waited for yet


def reap_detached() -> None:
    """Collect the exit status of detached children that ended (no zombies). Only those: a process that runs
    other work in threads (`cryocloud serve`) must not take the exit status of a run_command child from them."""
    for pid in list(DETACHED):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # reaped already (subprocess's own clean-up)
            done = pid
        if done:
            DETACHED.discard(pid)


class ProcessGroup:
    """A job's command running in its own process group, watched without polling (Linux pidfd)."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid  # also the process group id
        self._fd = os.pidfd_open(popen.pid)

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def wait(self, timeout: float) -> int | None:
        """The exit code if the command ended within `timeout` seconds, else None."""
        import select

        if select.select([self._fd], [], [], timeout)[0]:
            return self._popen.wait()
        return None

    def stop(self, grace: float, kill_grace: float = 5.0) -> None:
        """Let it end by itself for `grace` s, then SIGTERM its session, then SIGKILL it after `kill_grace` s; what
        of the session outlives the command is killed too (the session, not only the group: `timeout`, for one,
        puts its command in a process group of its own)."""
        for sig, wait in ((None, grace), (signal.SIGTERM, kill_grace), (signal.SIGKILL, 5.0)):
            if sig is not None:
                signal_session(self.pid, sig)
            if self.wait(wait) is not None:
                break
        signal_session(self.pid, signal.SIGKILL)  # what it started in process groups of their own

    def close(self) -> None:
        os.close(self._fd)


def proc_stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, the fields of /proc/PID/stat after the command's name) for every process, one pass over /proc: [0]
    state, [1] parent, [2] process group, [3] session, [11]/[12] user/system ticks, [19] start in ticks."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                yield int(entry.name), Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile


def session_members(sid: int) -> list[int]:
    """The pids of session `sid`: a job's command (started as a session of its own) and all it started, whatever
    process group they moved to."""
    return [pid for pid, fields in proc_stats() if int(fields[3]) == sid and fields[0] != "Z"]


def descendants(pid: int) -> list[tuple[int, float]]:
    """Every process below `pid` (children, theirs, whatever session they started), with its start time."""
    children: dict[int, list[tuple[int, float]]] = {}
    for child, fields in proc_stats():
        children.setdefault(int(fields[1]), []).append((child, _started(fields)))
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p[0], []))
    return out


def signal_session(sid: int, sig: signal.Signals) -> None:
    """Send `sig` to the process group `sid` and to every other process of session `sid`. (A session's id is
    never given to another process while the session has a member, so nothing else can be hit.)"""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(sid, sig)
    for pid in session_members(sid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def start_process_group(
    argv: Sequence[str], *, cwd: str | os.PathLike[str], env: Mapping[str, str], stdout_path: Path, stderr_path: Path
) -> ProcessGroup:
    """Start a job's command in its own process group with output appended to the job's log files."""
    with open(stdout_path, "ab") as out, open(stderr_path, "ab") as err:
        return ProcessGroup(subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            start_new_session=True, close_fds=True,
        ))


def pid_alive(pid: int, started: float | None = None) -> bool:
    """True if `pid` runs and (when `started` is given) is the same process that started then (no pid reuse)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return False
    if started is not None:
        return abs(process_start_time(pid) - started) < 2.0
    return True


def stop_pid(pid: int, started: float, sig: signal.Signals = signal.SIGTERM, wait: float = 20) -> bool:
    """Send `sig` to `pid` if it is still the process that started at `started`; wait up to `wait` s for it to end,
    then SIGKILL it (after a SIGTERM). True if it was running and is gone."""
    if not pid_alive(pid, started):
        return False
    for signum, grace in ((sig, wait), *(((signal.SIGKILL, 5.0),) if sig != signal.SIGKILL else ())):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not pid_alive(pid, started):
                return True
            time.sleep(0.05)
    return False


def process_start_time(pid: int) -> float:
    """Start time of `pid` in seconds since the epoch, on a clock fixed for this boot: the boot's epoch time as
    first read in this boot (`boot_epoch`), plus the process's start in ticks since boot. /proc/stat's own btime
    is the wall clock minus the time since boot, and moves when the clock jumps (a VM paused or restored, a
    laptop's suspend, an NTP step): read afresh, it made every earlier process look like another one, and a
    stop by pid refused to signal it (a server started by a benchmark ran on for an hour)."""
    try:
        return _started(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split())
    except (OSError, IndexError):
        return 0.0


def _started(fields: list[str]) -> float:
    """A process's start time (see `process_start_time`) from its /proc stat fields; 0.0 if unknown."""
    try:
        return boot_epoch() + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, IndexError, ValueError):
        return 0.0


_boot: float | None = None


def boot_epoch() -> float:
    """When this machine booted, as first read in this boot by any cryocloud process (kept in the temp folder
    under the kernel's boot id, so every process of this boot uses the same value, whatever the clock does)."""
    global _boot
    if _boot is not None:
        return _boot
    import tempfile

    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    kept = Path(tempfile.gettempdir()) / f"cryocloud-boot-{boot_id}"
    try:
        value = float(kept.read_text())
    except (OSError, ValueError):
        value = _btime()
        tmp = kept.with_name(f"{kept.name}.{os.getpid()}")
        try:
            tmp.write_text(repr(value))
            os.link(tmp, kept)  # the first process of this boot to get here decides; the others read its value
        except FileExistsError:
            value = float(kept.read_text())
        except OSError:
            pass  # a temp folder we cannot write: this process's own reading, as before
        finally:
            tmp.unlink(missing_ok=True)
    _boot = value
    return value


def _btime() -> float:
    return next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime"))


def pid_file_process(path: Path, *needles: str) -> int | None:
    """The pid written in `path`, if that process runs and its command line holds one of `needles` (no pid reuse)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text.isdigit() or not pid_alive(int(text)):
        return None
    try:
        cmdline = Path(f"/proc/{text}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    return int(text) if any(n in cmdline for n in needles) else None


# The user's monitor, as a process: what starts it and the files that name it in cryocloud's run folder. Here
# (not in monitor/) because a local job's agent, which imports nothing of the lab, starts one too.
MONITOR_ENTRY = "cryocloud.app.daemon"  # `python -m` this runs the monitor (the loop with the app's handler)
SERVER_ENTRY = "cryocloud serve"  # the server runs the monitor's loop in-process and holds the same lock
MONITOR_LOCK, MONITOR_SPAWNED = "monitor.lock", "monitor.spawned"  # its pid: once it holds the lock / when started


def monitor_command() -> list[str]:
    return [sys.executable, "-m", MONITOR_ENTRY]


def running_monitor(run_dir: Path, starting: bool = False) -> int | None:
    """The running monitor's pid, or None. With `starting`, also one just started that has no lock yet."""
    for name in (MONITOR_LOCK, MONITOR_SPAWNED) if starting else (MONITOR_LOCK,):
        pid = pid_file_process(run_dir / name, MONITOR_ENTRY, SERVER_ENTRY)
        if pid is not None:
            return pid
    return None


def start_monitor(run_dir: Path, env: Mapping[str, str]) -> int:
    """Start a monitor in the background (it leaves at once if another holds the lock); returns its pid."""
    log = run_dir / "monitor.log"
    pid = spawn_detached(monitor_command(), env=env, stdout=log, stderr=log)
    (run_dir / MONITOR_SPAWNED).write_text(str(pid))  # found even before it takes the lock
    return pid
