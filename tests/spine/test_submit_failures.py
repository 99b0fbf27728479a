"""Whatever goes wrong in the queue command, RELION's view ends (run.err with the reason, the failure marker),
and the command never waits long on a locked ledger (RELION and the Pipeliner expect it back within seconds)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from cryocloud.cli.main import main
from cryocloud.ledger import Ledger
from cryocloud.settings import load_settings
from spine.helpers import in_dir, make_job, markers


def test_a_locked_ledger_is_refused_at_once_and_relion_sees_it(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings()
    Ledger(settings.ledger_path).close()
    holder = sqlite3.connect(settings.ledger_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        make_job(tmp_path, "External/job001/", ["true"])
        start = time.monotonic()
        with in_dir(tmp_path):
            assert main(["submit", "External/job001/run_submit.script"]) == 2
        assert time.monotonic() - start < 20  # not the monitor's 30 s wait
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = capsys.readouterr().err
    assert "is locked" in err and "hint:" in err
    jd = tmp_path / "External/job001"
    assert markers(jd) == ["RELION_JOB_EXIT_FAILURE"] and "is locked" in (jd / "run.err").read_text()
    with in_dir(tmp_path):  # once the lock is gone the same job goes through
        assert main(["submit", "External/job001/run_submit.script"]) == 0


def test_an_unexpected_error_still_ends_the_job_in_relions_view(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from cryocloud.app import submit as submit_mod

    def broken(*args: object, **kw: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(submit_mod, "submit_spec", broken)
    make_job(tmp_path, "External/job001/", ["true"])
    with in_dir(tmp_path):
        assert main(["submit", "External/job001/run_submit.script"]) == 2
    assert "internal error" in capsys.readouterr().err
    jd = tmp_path / "External/job001"
    assert markers(jd) == ["RELION_JOB_EXIT_FAILURE"] and "a bug" in (jd / "run.err").read_text()
