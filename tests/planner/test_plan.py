"""plan: options sorted by cost, deadline, pinned instance, local comparison, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryocloud.errors import CryocloudError
from cryocloud.jobs.spec import InputFile, JobSpec, Resources
from cryocloud.planner.model import JobSize
from cryocloud.planner.plan import plan_for_spec, plan_job, predicted_usd_for_spec, size_from_spec
from cryocloud.settings import load_settings

SIZE = JobSize(particles=150_000, box=256, classes=4, iterations=25, data_gb=40)


@pytest.fixture()
def settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    return load_settings(env={}, path=tmp_path / "none.toml")


def test_options_cheapest_first_with_local(settings) -> None:  # type: ignore[no-untyped-def]
    p = plan_job("Class3D", SIZE, settings)
    costs = [o.usd for o in p.options]
    assert costs == sorted(costs) and p.best is p.options[0]
    assert {o.market for o in p.options} == {"spot", "on-demand"}
    assert p.local is not None and p.local.backend == "local" and p.local.usd_per_hour == 0.63
    assert all(o.usd == pytest.approx(o.count * o.usd_per_hour * o.hours) for o in p.options)


def test_deadline_picks_cheapest_fast_enough(settings) -> None:  # type: ignore[no-untyped-def]
    free = plan_job("Class3D", SIZE, settings)
    assert free.best is not None
    fastest = min(o.hours for o in free.options)
    deadline = (fastest + free.best.hours) / 2
    tight = plan_job("Class3D", SIZE, settings, deadline_hours=deadline)
    assert tight.best is not None and tight.best.hours <= deadline < free.best.hours
    assert tight.best.usd >= free.best.usd
    assert tight.best.usd == min(o.usd for o in tight.options if o.hours <= deadline)
    impossible = plan_job("Class3D", SIZE, settings, deadline_hours=1e-4)
    assert impossible.best is None and any("deadline" in n for n in impossible.notes)


def test_instance_pins_one_type(settings) -> None:  # type: ignore[no-untyped-def]
    p = plan_job("Class2D", SIZE, settings, instance="g5.2xlarge", spot=False)
    assert {o.machine for o in p.options} == {"g5.2xlarge"} and {o.market for o in p.options} == {"on-demand"}
    assert p.best is not None and p.best.usd_per_hour == pytest.approx(1.212)


def test_bad_instance_and_region(settings) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CryocloudError, match="unknown instance type"):
        plan_job("Class2D", SIZE, settings, instance="g5.xlargee")
    with pytest.raises(CryocloudError, match="not offered in eu-west-1"):
        plan_job("Class2D", SIZE, settings, instance="g6e.xlarge", region="eu-west-1")


def test_gpu_job_on_cpu_instance(settings) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CryocloudError, match="no GPU"):
        plan_job("Class3D", SIZE, settings, instance="c7i.4xlarge", gpus=1)


def test_too_big_for_any_machine(settings) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CryocloudError) as e:
        plan_job("Class3D", JobSize(particles=1000, box=2048, classes=200), settings)
    assert "no machine" in e.value.message and "box" in e.value.hint


def test_absurd_sizes_refused(settings) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CryocloudError, match="particles"):
        plan_job("Class2D", JobSize(particles=-3), settings)
    with pytest.raises(CryocloudError, match="deadline"):
        plan_job("Class2D", SIZE, settings, deadline_hours=-1)


def test_plan_for_spec_reads_flags_and_inputs(settings) -> None:  # type: ignore[no-untyped-def]
    spec = JobSpec(name="Class3D/job009/", client="relion", job_type="Class3D", project_dir="/p",
                   job_dir="Class3D/job009/", resources=Resources(mpi=3, threads=2, gpus=1),
                   commands=["relion_refine_mpi --o Class3D/job009/run --i p.star --K 3 --iter 20 --healpix_order 2"],
                   inputs=[InputFile("Extract/job005/particles.mrcs", 10 * 256 * 256 * 4 * 1000)])
    size = size_from_spec(spec)
    assert (size.classes, size.iterations, size.healpix_order) == (3, 20, 2)
    assert size.particles == pytest.approx(10_000)
    p = plan_for_spec(spec, settings)
    assert p.best is not None and p.best.estimate.device == "gpu"
    command = JobSpec(name="x", client="command", job_type="command", project_dir="/p", job_dir="x/",
                      commands=["echo"])
    assert predicted_usd_for_spec(command, settings) is None
