"""`cryocloud plan job.toml --task-hours H`: a fan-out priced as waves of tasks packed onto each machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cryocloud.cli.main import main
from cryocloud.planner.catalog import default_catalog
from cryocloud.planner.fanout import FanoutNeeds, at_once, plan_fanout


def test_tasks_pack_onto_a_machine_in_waves() -> None:
    needs = FanoutNeeds(tasks=216, task_hours=0.5, cores=2, memory_gb=4)
    assert at_once(needs, cpus=36, gpus=0, memory_gib=60) == 15  # memory, not CPUs, sets it
    options = plan_fanout(needs, default_catalog(), "us-east-1", local_cpus=8, local_gpus=0, local_memory_gib=32,
                          workstation_rate=0.63)
    here = next(o for o in options if o.machine == "this workstation")
    assert here.at_once == 4 and here.hours == 54 * 0.5 and here.usd == pytest.approx(27 * 0.63)
    c6i = next(o for o in options if o.machine == "c6i.8xlarge" and o.market == "on-demand")
    assert c6i.at_once == 16 and c6i.hours == 14 * 0.5  # 32 vCPUs / 2 = 16 = 64 GiB / 4
    assert [o.usd for o in options] == sorted(o.usd for o in options)
    assert all(o.at_once >= 1 for o in options)


def test_a_gpu_task_fits_only_machines_with_gpus() -> None:
    options = plan_fanout(FanoutNeeds(8, 1.0, cores=4, gpus=1), default_catalog(), "us-east-1", local_cpus=8,
                          local_gpus=0, local_memory_gib=32, workstation_rate=0.63)
    cat = default_catalog()
    assert options and all(cat.get(o.machine).gpus >= 1 for o in options)


def test_plan_a_job_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "j.toml").write_text('command = ["x"]\ntasks = 10\n[resources]\ncores = 1\n')
    assert main(["plan", str(tmp_path / "j.toml"), "--task-hours", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["usd"] <= rows[-1]["usd"] and any(r["machine"] == "this workstation" for r in rows)
    assert main(["plan", str(tmp_path / "j.toml")]) != 0
    assert "needs --task-hours" in capsys.readouterr().err
