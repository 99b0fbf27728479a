"""Shared fixtures: an isolated CRYOCLOUD_HOME per test, and RELION-shaped job folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from testtools import IN_CI, require_tool  # noqa: F401  (re-exported for older imports)


@pytest.fixture(autouse=True)
def cryocloud_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "cchome"
    monkeypatch.setenv("CRYOCLOUD_HOME", str(home))
    for var in [v for v in os.environ if v.startswith("CRYOCLOUD_") and v != "CRYOCLOUD_HOME"]:
        monkeypatch.delenv(var)
    yield home
    _stop_leftovers(home)


def _stop_leftovers(home: Path) -> None:
    """Cancel whatever a test left active in its ledger and stop its monitor: nothing outlives the test."""
    import signal
    import time

    from cryocloud.app.jobs import cancel_job
    from cryocloud.errors import CryocloudError
    from cryocloud.jobs.states import ACTIVE
    from cryocloud.ledger import Ledger
    from cryocloud.monitor.loop import monitor_pid
    from cryocloud.proc import pid_alive
    from cryocloud.settings import Settings, load_settings

    try:
        settings = load_settings()
    except CryocloudError:  # a test that wrote a broken config on purpose
        settings = Settings(home=home, config_path=home / "none.toml")
    active = []
    if (home / "ledger.sqlite").exists():
        try:
            ledger = Ledger(settings.ledger_path)
        except CryocloudError as e:  # a test that damaged its ledger on purpose
            print(f"cleanup: {e}")
        else:
            active = ledger.jobs(states=ACTIVE)
            ledger.close()
        for job in active:
            try:
                cancel_job(settings, str(job.id), Path.cwd(), wait=10.0)
            except Exception as e:  # a test's broken config must not hide the cleanup of the rest
                print(f"cleanup of job {job.id}: {e}")
    while (pid := monitor_pid(settings, starting=True)) is not None:  # also one still starting up
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not pid_alive(pid):
                break
            time.sleep(0.05)
