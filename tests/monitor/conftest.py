"""Fake jobs have no process to stop: after each test, whatever is still active in its ledger is closed here,
so the shared teardown (tests/conftest.py) does not look for a backend named 'fake'."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _close_fake_jobs(cryocloud_home: Path) -> Iterator[None]:
    yield
    import sqlite3

    path = cryocloud_home / "ledger.sqlite"
    if path.exists():
        with sqlite3.connect(path) as db:
            db.execute("UPDATE jobs SET state = 'aborted' WHERE state IN ('queued', 'starting', 'running')")
