"""costs: per-job rows keep their keys; --by groups; --csv exports."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cryocloud.cli.main import main
from cryocloud.ledger import Ledger


def _seed() -> None:
    ledger = Ledger(Path(os.environ["CRYOCLOUD_HOME"]) / "ledger.sqlite")
    for i, (project, usd) in enumerate((("betagal", 3.0), ("betagal", 2.0), ("apof", 1.5))):
        job = ledger.add_job(name=f"Class2D/job00{i}/", client="relion", job_type="Class2D", project_dir="/p",
                             job_dir=f"Class2D/job00{i}/", profile="aws", backend="aws", user="ana", project=project,
                             state="succeeded", submitted_at=1.7e9, started_at=1.7e9, ended_at=1.7e9 + 3600,
                             spec="{}")
        ledger.add_attempt(job, backend="aws", machine="g5.xlarge", market="spot", usd_per_hour=usd,
                           started_at=1.7e9, ended_at=1.7e9 + 3600, compute_usd=usd, storage_usd=0.1)
    ledger.close()


def test_costs_by_project_json_and_csv(capsys: pytest.CaptureFixture[str]) -> None:
    _seed()
    assert main(["costs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"id", "job", "backend", "machine", "wall_seconds", "usd_per_hour", "cost_usd"} <= set(rows[0])
    assert main(["costs", "--by", "project", "--json"]) == 0
    groups = {g["project"]: g for g in json.loads(capsys.readouterr().out)}
    assert groups["betagal"]["jobs"] == 2 and groups["betagal"]["cost_usd"] == pytest.approx(5.2)
    assert main(["costs", "--project", "apof", "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("id,job,") and len(lines) == 2 and ",apof," in lines[1]


def test_the_cli_offers_every_grouping_the_app_has() -> None:
    from cryocloud.app.costs import GROUPS
    from cryocloud.cli.costs_cmds import GROUPS_CHOICES

    assert sorted(GROUPS_CHOICES) == sorted(GROUPS)
