"""The CLI faces: plan table/JSON, workflow JSON, errors with hints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cryocloud.cli.main import main

from .test_workflow import SEED


def test_plan_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["plan", "--job-type", "Class2D", "--particles", "50000", "--box", "200", "--json", "--top", "3"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["best"]["usd"] == out["options"][0]["usd"] and out["local"]["backend"] == "local"


def test_plan_unknown_instance(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["plan", "--job-type", "Class2D", "--particles", "1000", "--instance", "p3.2xlarg"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown instance type" in err and "p3.2xlarge" in err


def test_workflow_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "seed.csv"
    f.write_text(SEED)
    assert main(["plan", "--workflow", str(f), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ec2"] == {"computed_usd": "688.19", "recorded_usd": "688.15"}
    assert out["total"]["recorded_usd"] == "1378.15" == out["total"]["table_total_usd"]
    assert out["today"]["spot"]["total_usd"] <= 345


def test_spot_prices(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spot-prices", "g5.xlarge", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["zone"] == "use1-az2" and rows[0]["source"] == "snapshot"


@pytest.mark.parametrize("args, needle", [
    ([], "cannot be planned without --particles"),
    (["--particles", "0"], "--particles 0: must be a whole number above 0"),
    (["--particles", "1000", "--classes", "0.5"], "--classes 0.5: must be a whole number above 0"),
])
def test_missing_or_impossible_sizes_are_refused_not_priced_at_zero(args: list[str], needle: str,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from cryocloud.cli.main import main

    assert main(["plan", "--job-type", "Class3D", *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and "hint:" in err
