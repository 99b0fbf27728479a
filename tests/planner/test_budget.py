"""Budgets: a submit that would exceed one is refused with the prediction shown; a running job over it is found."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryocloud.errors import SubmissionError
from cryocloud.ledger import Ledger
from cryocloud.planner.budget import budget_warning, check_budget, over_budget
from cryocloud.settings import load_settings


def _settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "config.toml"
    cfg.write_text('[budgets]\n"project:betagal" = 100.0\n"user:ana" = 500.0\n')
    return load_settings(env={}, path=cfg)


def _job(ledger: Ledger, project: str = "betagal", user: str = "ana", state: str = "running") -> int:
    return ledger.add_job(name="Class3D/job001/", client="relion", job_type="Class3D", project_dir="/p",
                          job_dir="Class3D/job001/", profile="aws", backend="aws", user=user, project=project,
                          state=state, submitted_at=0.0, spec="{}")


def test_budget_blocks_submit(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    ledger = Ledger(tmp_path / "l.sqlite")
    done = _job(ledger, state="succeeded")
    ledger.add_attempt(done, backend="aws", machine="g5.xlarge", usd_per_hour=1.0, started_at=0.0, ended_at=3600.0,
                       compute_usd=80.0, storage_usd=1.5, transfer_usd=0.5)
    check_budget(settings, ledger, "ana", "betagal", 17.99, now=10_000.0)  # 82 + 17.99 < 100: allowed
    with pytest.raises(SubmissionError) as e:
        check_budget(settings, ledger, "ana", "betagal", 25.0, now=10_000.0)
    assert "predicted at 25.00 USD" in e.value.message and "82.00 of 100.00" in e.value.message
    assert "project:betagal" in e.value.hint
    assert check_budget(settings, ledger, "bob", "other", 1e6) == []  # no budget applies


def test_running_job_accrues_and_is_caught(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    ledger = Ledger(tmp_path / "l.sqlite")
    job = _job(ledger)
    ledger.add_attempt(job, backend="aws", machine="p4d.24xlarge", usd_per_hour=32.0, started_at=0.0)
    assert over_budget(settings, ledger, job, now=3600.0) is None  # 32 USD so far
    assert budget_warning(settings, ledger, "ana", "betagal", now=3 * 3600.0) == \
        "budget project:betagal at 96% (96.00 of 100.00 USD)"
    breach = over_budget(settings, ledger, job, now=4 * 3600.0)  # 128 USD
    assert breach is not None and breach.state.key == "project:betagal" and "exceeded" in breach.message
    ledger.update_job(job, state="aborted")
    assert over_budget(settings, ledger, job, now=4 * 3600.0) is None  # only active jobs are stopped
