"""The founding table reproduced exactly (computed beside recorded), and repriced on today's catalog (P5)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from cryocloud.errors import CryocloudError
from cryocloud.planner.catalog import Catalog
from cryocloud.planner.today import reprice
from cryocloud.planner.workflow import parse_workflow

# The founding table (examples/empiar10061-founding-costs.csv), inline so the test stands alone.
SEED = """# comment lines are skipped
step,ws_total_h,ws_elapsed_days,aws_total_h,aws_elapsed_days,aws_data_moving_h,aws_job_running_h,aws_ec2_cost_usd,aws_num_vms,aws_vm_type,aws_vm_usd_per_h
Movie alignment,34.0,1,13.26,1,11.06,2.20,146.72,5,x1.32xlarge,13.34
Autopick,2.0,3,1.30,2,1.10,0.20,9.36,1,p2.8xlarge,7.20
CTF Estimation,0.4,3,0.66,2,0.55,0.11,4.75,1,p2.8xlarge,7.20
Extract,,3,1.30,2,0.68,0.62,1.04,1,m4.4xlarge,0.80
2D classification,8.0,3,4.30,2,0.17,4.13,61.92,1,p2.16xlarge,14.40
3D autorefine,5.3,4,5.38,2,0.08,5.30,38.74,1,p2.8xlarge,7.20
Movie extract,9.5,4,4.07,3,3.35,0.72,179.73,8,d2.8xlarge,5.52
Movie-refine,17.5,5,4.85,3,0.75,4.10,64.69,1,x1.32xlarge,13.34
Polish,25.0,7,6.80,3,1.40,5.40,90.70,1,x1.32xlarge,13.34
3D classification,7.0,8,6.17,4,0.17,6.00,44.42,1,p2.8xlarge,7.20
3D autorefine,6.0,8,6.40,4,0.10,6.30,46.08,1,p2.8xlarge,7.20
Rosetta,,9,,5,,,,6,c4.8xlarge,1.59
S3 storage,,,,,,,690.00,,,
Totals,114.7,10,54.5,5,19.4,35.1,1378.15,,,
"""
COMPUTED = {"Movie alignment": "146.74", "Autopick": "9.36", "CTF Estimation": "4.75", "Extract": "1.04",
            "2D classification": "61.92", "Movie extract": "179.73", "Movie-refine": "64.70", "Polish": "90.71",
            "3D classification": "44.42"}
REFERENCE = Path(__file__).resolve().parents[2] / "examples" / "empiar10061-founding-costs.csv"


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return Catalog()


def test_founding_table_to_the_cent(cat: Catalog) -> None:
    wf = parse_workflow(SEED, "seed", cat)
    assert len(wf.steps) == 11
    for s in wf.steps:
        assert abs(s.difference) <= Decimal("0.02"), s.name  # type: ignore[arg-type]
        if s.name in COMPUTED:
            assert s.computed_usd == Decimal(COMPUTED[s.name]), s.name
    assert [s.computed_usd for s in wf.steps if s.name == "3D autorefine"] == [Decimal("38.74"), Decimal("46.08")]
    assert wf.steps[0].billed == "running"  # the lab upload was not billed on the five x1.32xlarge
    assert all(s.billed == "total" for s in wf.steps[1:])
    assert wf.recorded_ec2 == Decimal("688.15")
    assert wf.recorded_ec2 + wf.items_usd == Decimal("1378.15") == wf.table_total_usd
    assert wf.computed_ec2 == Decimal("688.19")  # shown beside the recorded one, never forced equal
    assert wf.unpriced == ["Rosetta (6x c4.8xlarge): no hours given"]


def test_reference_file_reads_the_same(cat: Catalog) -> None:
    wf = parse_workflow(REFERENCE.read_text(), str(REFERENCE), cat)
    assert wf.recorded_ec2 == Decimal("688.15") and wf.table_total_usd == Decimal("1378.15")


def test_billed_column_overrides(cat: Catalog) -> None:
    text = "step,machine,count,usd_per_hour,staging_hours,running_hours,billed\nA,c4.8xlarge,2,1.50,1,2,total\n"
    (s,) = parse_workflow(text, "w", cat).steps
    assert s.billed_hours == 3 and s.computed_usd == Decimal("9.00")


def test_bad_workflow_rows(cat: Catalog) -> None:
    with pytest.raises(CryocloudError, match="unknown instance type"):
        parse_workflow("step,machine,usd_per_hour,running_hours\nA,x1.32xlarg,1,1\n", "w", cat)
    with pytest.raises(CryocloudError, match="negative"):
        parse_workflow("step,machine,usd_per_hour,running_hours\nA,x1.32xlarge,1,-1\n", "w", cat)


def test_today_is_cheaper_and_no_slower(cat: Catalog) -> None:
    wf = parse_workflow(SEED, "seed", cat)
    spot = reprice(wf, cat, "us-east-1", "spot")
    assert not spot.skipped and len(spot.steps) == 11
    assert spot.total_usd <= 345  # P5: >= 75% below 1,378.15
    assert spot.elapsed_hours <= float(wf.elapsed_hours)
    for t in spot.steps:
        assert t.elapsed_hours <= float(t.step.total_hours)
        assert (cat.get(t.machine).gpus > 0) == (t.device == "gpu")


def test_a_users_own_workflow_without_recorded_costs_is_priced(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The founding columns with hours and USD/h but no recorded cost (a lab's own plan): priced, with no
    'recorded 0' and no division by it."""
    from cryocloud.cli.main import main

    path = tmp_path / "my.csv"
    path.write_text("step,ws_total_h,ws_elapsed_days,aws_total_h,aws_elapsed_days,aws_data_moving_h,"
                    "aws_job_running_h,aws_ec2_cost_usd,aws_num_vms,aws_vm_type,aws_vm_usd_per_h\n"
                    "Movie alignment,34.0,1,13.26,1,11.06,2.20,,5,x1.32xlarge,13.34\n"
                    "2D classification,12.0,1,3.0,1,0.5,2.5,,1,p2.8xlarge,7.20\n")
    assert main(["plan", "--workflow", str(path)]) == 0
    out = capsys.readouterr().out
    assert "below the recorded" not in out and "recorded 0" not in out and "spot: compute" in out
    assert main(["plan", "--workflow", str(path), "--json"]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    assert data["total"]["recorded_usd"] is None and float(data["total"]["computed_usd"]) > 0


def test_data_moving_is_the_pull_and_the_results_back(cat: Catalog) -> None:
    """A workflow naming EMPIAR-10061: each step moves what it reads + writes at the dataset's sizes (the movies are
    the lab upload), not 2017's hours x 100 MB/s; booting is billed but is not data moving."""
    named = SEED.replace("# comment lines are skipped", "# RELION-2 on EMPIAR-10061")
    wf = parse_workflow(named, "seed", cat)
    assert wf.dataset == "EMPIAR-10061" and parse_workflow(SEED, "seed", cat).dataset == ""
    spot = {t.step.name: t for t in reprice(wf, cat, "us-east-1", "spot").steps}
    lab_gb = 11.06 * 360
    movie_stack = 120_000 * 38 * 256**2 * 4 / 1e9
    assert spot["Movie extract"].data_gb == pytest.approx(lab_gb + movie_stack)  # was 8 VMs x 3.35 h x 360 = 9,648
    assert spot["Movie alignment"].data_gb == pytest.approx(lab_gb + 1539 * 14_238_980 * 4 / 1e9)
    assert spot["3D classification"].data_gb == pytest.approx(120_000 * 256**2 * 4 / 1e9)
    for t in spot.values():
        assert t.billed_hours == pytest.approx(t.boot_hours + t.staging_hours + t.compute_hours) and t.boot_hours > 0
    unnamed = {t.step.name: t for t in reprice(parse_workflow(SEED, "seed", cat), cat, "us-east-1", "spot").steps}
    assert unnamed["Movie extract"].data_gb == pytest.approx(8 * 3.35 * 360)  # no sizes known: the founding hours


def test_burstable_machines_are_not_chosen_for_hours_of_cpu(cat: Catalog) -> None:
    """t2 runs at its baseline share once its CPU credits are spent: never cheaper for an hours-long step."""
    named = SEED.replace("# comment lines are skipped", "# RELION-2 on EMPIAR-10061")
    for market in ("spot", "on-demand"):
        steps = reprice(parse_workflow(named, "seed", cat), cat, "us-east-1", market).steps
        assert not any(t.machine.startswith("t2.") for t in steps)
