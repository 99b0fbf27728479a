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
    """Cancel whatever a test left active in its ledger, so no agent outlives the test."""
    if not (home / "ledger.sqlite").exists():
        return
    from cryocloud.config import load_settings
    from cryocloud.ledger import ACTIVE, Ledger
    from cryocloud.service import cancel_job

    settings = load_settings()
    ledger = Ledger(settings.ledger_path)
    active = ledger.jobs(states=ACTIVE)
    ledger.close()
    for job in active:
        cancel_job(settings, str(job.id), Path.cwd(), wait=10.0)
