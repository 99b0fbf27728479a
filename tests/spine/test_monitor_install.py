"""`cryocloud monitor install`: what it writes starts a monitor that marks the job of a runner that died while
no monitor ran (both killed at once, or a reboot). The test reads the unit (or crontab lines) back and runs it."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from cryocloud.cli.main import main
from cryocloud.proc import pid_alive
from spine.helpers import markers, running_with_monitor, wait_for

pytestmark = pytest.mark.integration


def _fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """systemctl and crontab stand-ins on PATH (no systemd or cron runs in CI): they record what they are asked."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text('#!/bin/bash\necho "$@" >> "$FAKE_LOG"\n')
    (bin_dir / "crontab").write_text(
        '#!/bin/bash\nif [ "$1" = -l ]; then [ -f "$CRONTAB_FILE" ] && exec cat "$CRONTAB_FILE"\n'
        '  echo "no crontab for $USER" >&2; exit 1; fi\n'
        'if [ "$1" = - ]; then cat > "$CRONTAB_FILE"; exit 0; fi\nexit 2\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "systemctl.log"))
    monkeypatch.setenv("CRONTAB_FILE", str(tmp_path / "crontab"))
    return bin_dir


def _orphaned_job(project: Path) -> Path:
    """A running job whose agent and monitor are both gone, and nothing has marked it: RELION shows Running."""
    _job, jd, agent_json, monitor = running_with_monitor(project)
    os.kill(monitor, signal.SIGSTOP)  # frozen first, so that it cannot mark the job before it dies
    os.kill(json.loads(agent_json.read_text())["pid"], signal.SIGKILL)
    os.kill(monitor, signal.SIGKILL)
    assert wait_for(lambda: not pid_alive(monitor))
    assert markers(jd) == []
    return jd


def test_the_systemd_unit_starts_a_monitor_that_marks_an_orphaned_job(tmp_path: Path, cryocloud_home: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    _fake_tools(tmp_path, monkeypatch)
    units = tmp_path / "units"
    assert main(["monitor", "install", "--systemd", "--unit-dir", str(units)]) == 0
    assert "enabled" in capsys.readouterr().out
    assert "--user enable --now cryocloud-monitor.timer" in (tmp_path / "systemctl.log").read_text()
    timer = (units / "cryocloud-monitor.timer").read_text()
    assert "OnBootSec=" in timer and "OnCalendar=minutely" in timer
    service = (units / "cryocloud-monitor.service").read_text().splitlines()
    env = dict(shlex.split(ln.removeprefix("Environment="))[0].split("=", 1)
               for ln in service if ln.startswith("Environment="))
    argv = shlex.split(next(ln for ln in service if ln.startswith("ExecStart=")).removeprefix("ExecStart="))
    assert env["CRYOCLOUD_HOME"] == str(cryocloud_home) and "PATH" in env
    jd = _orphaned_job(tmp_path / "project")
    # what systemd runs at boot (or within the minute): a clean environment with only the unit's variables
    subprocess.run(argv, env=env, timeout=300, check=True)
    assert markers(jd) == ["RELION_JOB_EXIT_FAILURE"]
    assert "without reporting" in (jd / "run.err").read_text()
    assert main(["monitor", "uninstall", "--unit-dir", str(units)]) == 0
    assert not list(units.iterdir())


def test_the_crontab_lines_start_a_monitor_and_keep_the_users_own(tmp_path: Path, cryocloud_home: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_tools(tmp_path, monkeypatch)
    crontab = tmp_path / "crontab"
    crontab.write_text("0 3 * * * /usr/local/bin/nightly-backup\n")
    for _ in range(2):  # idempotent: one block, however often it is run
        assert main(["monitor", "install", "--cron"]) == 0
    lines = crontab.read_text().splitlines()
    assert lines[0] == "0 3 * * * /usr/local/bin/nightly-backup"
    assert sum(ln.startswith("@reboot ") for ln in lines) == 1
    minutely = next(ln for ln in lines if ln.startswith("* * * * * "))
    jd = _orphaned_job(tmp_path / "project")
    # as cron runs it: /bin/sh, an almost empty environment, `\%` turned back into `%`
    command = minutely.removeprefix("* * * * * ").replace("\\%", "%")
    subprocess.run(["sh", "-c", command], env={"HOME": str(tmp_path), "SHELL": "/bin/sh"}, timeout=300, check=True)
    assert markers(jd) == ["RELION_JOB_EXIT_FAILURE"]
    assert main(["monitor", "uninstall"]) == 0
    assert crontab.read_text() == "0 3 * * * /usr/local/bin/nightly-backup\n"


def test_print_shows_both_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    _fake_tools(tmp_path, monkeypatch)
    assert main(["monitor", "install", "--print", "--unit-dir", str(tmp_path / "units")]) == 0
    out = capsys.readouterr().out
    assert "ExecStart=" in out and "@reboot " in out and "cryocloud.app.daemon" in out
    assert not (tmp_path / "units").exists() and not (tmp_path / "crontab").exists()
