"""Runtime model: sizes -> needs and hours; calibration fit; bad sizes are errors with hints."""

from __future__ import annotations

import math

import pytest

from cryocloud.errors import CryocloudError
from cryocloud.planner import calibrate, model
from cryocloud.planner.catalog import Catalog


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return Catalog()


def test_aliases_resolve() -> None:
    assert model.job_kind("2D classification").name == "Class2D"
    assert model.job_kind("relion.refine3d").name == "Refine3D"
    with pytest.raises(CryocloudError) as e:
        model.job_kind("Clas2D")
    assert "Class2D" in e.value.hint


def test_hours_scale_with_work_and_speed(cat: Catalog) -> None:
    kind = model.job_kind("Class2D")
    small = model.JobSize(particles=100_000, box=200, classes=50, iterations=25, data_gb=1)
    big = model.JobSize(particles=200_000, box=200, classes=50, iterations=25, data_gb=1)
    g5 = cat.get("g5.xlarge")
    assert model.predict(kind, big, g5).compute_hours > model.predict(kind, small, g5).compute_hours
    assert model.predict(kind, small, cat.get("p4d.24xlarge")).compute_hours < model.predict(kind, small, g5).compute_hours
    assert model.predict(kind, small, g5).device == "gpu"
    assert model.predict(kind, small, cat.get("c7i.8xlarge")).device == "cpu"


def test_staging_billed_and_shared_over_fan_out(cat: Catalog) -> None:
    kind = model.job_kind("MotionCorr")
    size = model.JobSize(movies=4000, frames=40, pixels=4096 * 4096, data_gb=2000)
    one = model.predict(kind, size, cat.get("c7i.8xlarge"), count=1)
    four = model.predict(kind, size, cat.get("c7i.8xlarge"), count=4)
    assert one.staging_hours > four.staging_hours > 0
    assert four.compute_hours < one.compute_hours


def test_gpu_job_on_cpu_machine(cat: Catalog) -> None:
    with pytest.raises(CryocloudError) as e:
        model.predict(model.job_kind("Class3D"), model.JobSize(particles=1000, box=128), cat.get("c7i.large"),
                      asked_gpus=1)
    assert "no GPU" in e.value.message and "g5" in e.value.hint


def test_too_big_for_machine(cat: Catalog) -> None:
    size = model.JobSize(particles=1000, box=1024, classes=20)
    with pytest.raises(CryocloudError) as e:
        model.predict(model.job_kind("Class3D"), size, cat.get("g5.xlarge"))
    assert "GiB" in e.value.message


@pytest.mark.parametrize("field,value", [("particles", -5), ("box", 1e6), ("iterations", math.nan),
                                         ("data_gb", -1)])
def test_bad_sizes(field: str, value: float) -> None:
    with pytest.raises(CryocloudError) as e:
        model.JobSize(**{field: value}).validated()
    assert field.replace("_", "-") in e.value.hint


def test_fit_recovers_a_known_line() -> None:
    kind = model.job_kind("Class2D")
    runs = []
    for n in (500, 1000, 2000, 4000):
        size = model.JobSize(particles=n, box=64, classes=2, iterations=5)
        x = kind.work(size) / 2.0
        runs.append(calibrate.Run("t", "Class2D", "cpu", size, 2.0, 0.001 + 3.0 * x, "local"))
    (f,) = calibrate.fit(runs)
    assert f.overhead_hours == pytest.approx(0.001, rel=1e-6)
    assert f.hours_per_work == pytest.approx(3.0, rel=1e-6)
    assert f.loo_error_pct == pytest.approx(0.0, abs=1e-6)


def test_shipped_model_matches_calibration_data() -> None:
    from cryocloud.planner.catalog import Catalog

    fits, gpus = calibrate.fit_all()
    shipped = model.coefficients()
    for f in fits:
        assert shipped[(f.job_type, f.device)].hours_per_work == pytest.approx(f.hours_per_work, rel=1e-3)
    cards = Catalog().gpu_models
    for name, c in gpus.speeds.items():
        assert cards[name].relion_speed == pytest.approx(c.speed, rel=1e-3) and cards[name].basis == c.basis
    assert Catalog().gpu_count_exponent == pytest.approx(gpus.exponent, rel=1e-3)
