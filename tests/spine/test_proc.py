"""A process is told apart from a reused pid by its start time, and that must survive the wall clock jumping (a VM
paused or restored, a laptop's suspend): /proc/stat's btime moves with the clock, the start in ticks does not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cryocloud import proc
from gate import wait_until


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, float]:
    """/proc/stat's btime as a value the test moves; a fresh temp folder and no value kept in this process."""
    now = {"btime": proc._btime()}
    monkeypatch.setattr(proc, "_btime", lambda: now["btime"])
    monkeypatch.setattr(proc, "_boot", None)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    return now


def test_a_process_stays_itself_when_the_clock_jumps(clock: dict[str, float], monkeypatch: pytest.MonkeyPatch) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = proc.process_start_time(child.pid)
        clock["btime"] += 3600  # the VM was paused for an hour: the wall clock (and btime) jumped
        monkeypatch.setattr(proc, "_boot", None)  # another cryocloud process, later: it reads the kept value
        assert proc.process_start_time(child.pid) == started
        assert proc.pid_alive(child.pid, started)
        assert proc.stop_pid(child.pid, started, wait=10)  # signalled and gone, not "not that process"
        child.wait(timeout=10)
        assert child.returncode == -15
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_another_process_with_the_pid_is_not_the_one_started(clock: dict[str, float]) -> None:
    """The point of the start time: a pid reused by another program is never signalled."""
    me = os.getpid()
    assert proc.pid_alive(me, proc.process_start_time(me))
    assert not proc.pid_alive(me, proc.process_start_time(me) - 600)
    assert not proc.stop_pid(me, proc.process_start_time(me) - 600, wait=0)


def test_the_boot_time_is_kept_per_boot_in_the_temp_folder(clock: dict[str, float], tmp_path: Path) -> None:
    first = proc.boot_epoch()
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert float((tmp_path / f"cryocloud-boot-{boot_id}").read_text()) == first
    assert list(tmp_path.iterdir()) == [tmp_path / f"cryocloud-boot-{boot_id}"]  # no temporary file left


def test_stopping_a_job_ends_what_it_started_in_process_groups_of_its_own(tmp_path: Path) -> None:
    """`timeout` puts its command in a process group of its own: stopping the job's group alone left it running
    (a budget stop left `timeout 600 bash -c ...` behind). The whole session goes."""
    flag = tmp_path / "never"
    job = proc.start_process_group(
        ["bash", "-c", f"timeout 600 bash -c 'until [ -e {flag} ]; do sleep 0.05; done'; true"],  # not exec'd
        cwd=tmp_path, env=dict(os.environ), stdout_path=tmp_path / "out", stderr_path=tmp_path / "err",
    )
    try:
        # timeout has moved itself (and the inner bash) to a process group of its own
        assert wait_until(lambda: any(_group(p) not in (job.pid, 0) for p in proc.session_members(job.pid)))
        job.stop(grace=0, kill_grace=5)
        assert job.returncode is not None
        assert proc.session_members(job.pid) == []
    finally:
        proc.signal_session(job.pid, signal.SIGKILL)
        job.close()


def _group(pid: int) -> int:
    """The process group of `pid`; 0 once it has ended (the inner loop's `sleep`s come and go)."""
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return 0


def test_the_stall_watch_counts_the_cpu_of_a_command_under_timeout(tmp_path: Path) -> None:
    """A busy command run under `timeout` sits in a process group of its own: counted by the job's session, its CPU
    shows (counted by the group, the node's stall watch saw a busy job as idle)."""
    from cryocloud.agent.cloud import _cpu_seconds
    from cryocloud.jobs import control

    job = proc.start_process_group(
        ["bash", "-c", "timeout 60 bash -c 'while :; do :; done'; true"],
        cwd=tmp_path, env=dict(os.environ), stdout_path=tmp_path / "out", stderr_path=tmp_path / "err",
    )
    try:
        control.write_json(tmp_path / control.AGENT, {"child_pgid": job.pid})
        assert wait_until(lambda: _cpu_seconds(tmp_path) > 0.5)
    finally:
        job.stop(grace=0, kill_grace=5)
        job.close()


def test_descendants_reach_across_sessions(tmp_path: Path) -> None:
    """What a simulated instance's end kills: everything below it, even a job its agent started as a session of
    its own."""
    top = subprocess.Popen(["bash", "-c", "setsid sleep 60 & wait"])
    try:
        assert wait_until(lambda: any("sleep" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")
                                      for p, _s in proc.descendants(top.pid) if Path(f"/proc/{p}").exists()))
        tree = proc.descendants(top.pid)
        assert any(os.getsid(p) != os.getsid(top.pid) for p, _s in tree if Path(f"/proc/{p}").exists())
    finally:
        for p, started in proc.descendants(top.pid):
            if proc.pid_alive(p, started):
                os.kill(p, signal.SIGKILL)
        top.kill()
        top.wait()
