"""Budgets through the real submit path and the monitor (issue 4's planner, wired into the spine)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import starfile

from cryocloud.cli.main import main
from gate import flag_wait
from spine.helpers import in_dir, job_state, make_job, markers, wait_for

pytestmark = pytest.mark.integration


def config(text: str) -> None:
    home = Path(os.environ["CRYOCLOUD_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(text)


def class2d_job(project: Path, **kw: object) -> Path:
    (project / "Extract").mkdir(parents=True)
    (project / "Extract/parts.mrcs").write_bytes(b"\0" * 64 * 64 * 4 * 200)
    parts = pd.DataFrame({"rlnImageName": [f"{i + 1}@Extract/parts.mrcs" for i in range(200)], "rlnOpticsGroup": 1})
    starfile.write({"particles": parts}, project / "Extract/parts.star")
    return make_job(project, "Class2D/job002/", [
        "`which relion_refine` --o Class2D/job002/run --i Extract/parts.star --K 50 --iter 25 --j 1"], **kw)


def test_max_cost_field_refuses_a_job_predicted_over_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    class2d_job(tmp_path, extras={"extra2": "0.0000001"})
    with in_dir(tmp_path):
        assert main(["submit", "Class2D/job002/run_submit.script"]) == 2
    err = capsys.readouterr().err
    assert "over its Max cost" in err and "hint:" in err
    assert markers(tmp_path / "Class2D/job002") == ["RELION_JOB_EXIT_FAILURE"]
    assert "over its Max cost" in (tmp_path / "Class2D/job002/run.err").read_text()


def test_project_budget_blocks_a_submit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config(f'[budgets]\n"project:{tmp_path.name}" = 0.0000001\n')
    class2d_job(tmp_path)
    with in_dir(tmp_path):
        assert main(["submit", "Class2D/job002/run_submit.script"]) == 2
    assert "over budget project:" in capsys.readouterr().err
    assert markers(tmp_path / "Class2D/job002") == ["RELION_JOB_EXIT_FAILURE"]


def test_running_job_that_crosses_the_budget_is_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYOCLOUD_WORKSTATION_USD_PER_HOUR", "3600")  # 1 USD per second
    config(f'[budgets]\n"project:{tmp_path.name}" = 2.0\n')
    make_job(tmp_path, "External/job001/", [flag_wait(tmp_path / "never")])  # ends only by the budget
    with in_dir(tmp_path):
        assert main(["submit", "External/job001/run_submit.script"]) == 0
    assert wait_for(lambda: job_state(1) == "aborted")
    jd = tmp_path / "External/job001"
    assert markers(jd) == ["RELION_JOB_EXIT_ABORTED"]
    assert "budget project:" in (jd / "run.out").read_text()
    from cryocloud.app.jobs import refresh
    from cryocloud.settings import load_settings

    ledger = refresh(load_settings())
    job = ledger.job(1)
    ledger.close()
    assert job is not None and "exceeded" in job.message
