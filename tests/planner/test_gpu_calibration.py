"""The planner's GPU side: card speeds measured on published runs of RELION's canonical Class3D (or derived from
memory bandwidth), scaling with the card count, and the memory rules (GPU, host RAM per MPI rank)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cryocloud.errors import CryocloudError
from cryocloud.planner import calibrate, model
from cryocloud.planner.catalog import Catalog

CANONICAL = model.JobSize(particles=105247, box=360, classes=6, iterations=25, healpix_order=2)


@pytest.mark.parametrize(("card", "memory_gib"), [("GTX1080", 8), ("P100", 16), ("V100", 16), ("A10G", 24)])
def test_the_canonical_job_fits_every_card_it_was_published_on(card: str, memory_gib: float) -> None:
    kind = model.job_kind("Class3D")
    need = model.needs(kind, CANONICAL.with_defaults(kind.defaults), "gpu", 4)
    assert need.gpu_gib <= memory_gib
    assert Catalog().gpu_models[card].memory_gib == memory_gib


def test_the_canonical_job_is_planned_on_a_16_gib_v100_machine() -> None:
    est = model.predict(model.job_kind("Class3D"), CANONICAL, Catalog().get("p3.8xlarge"))
    assert est.device == "gpu" and 0.1 < est.compute_hours < 3  # published on 4 V100s: 0.29 h (STFC), not ~9 h


def test_host_memory_counts_a_leader_and_a_rank_per_gpu_and_says_how_short() -> None:
    kind = model.job_kind("Class3D")
    big = model.JobSize(particles=100000, box=800, classes=10, iterations=25)
    one, four = (model.needs(kind, big.with_defaults(kind.defaults), "gpu", n) for n in (1, 4))
    assert (one.ranks, four.ranks) == (2, 5)
    assert four.ram_gib == pytest.approx(one.ram_gib / 2 * 5)
    with pytest.raises(CryocloudError) as e:
        model.predict(kind, big, Catalog().get("g5.xlarge"))
    assert "MPI ranks: a leader and one per GPU" in e.value.message and "short by" in e.value.message


def test_a_job_that_does_not_fit_a_card_says_by_how_much() -> None:
    with pytest.raises(CryocloudError) as e:
        model.predict(model.job_kind("Refine3D"), model.JobSize(particles=50000, box=700), Catalog().get("p3.2xlarge"))
    assert "per GPU; p3.2xlarge has 16" in e.value.message and "short by ~" in e.value.message


def _runs(speed: float, exponent: float) -> list[calibrate.Run]:
    kind = model.job_kind("Class3D")
    size = CANONICAL.with_defaults(kind.defaults)
    k = 0.02  # hours per work on one K80
    out = [calibrate.Run("t", "Class3D", "gpu", size, math.nan, k * kind.work(size) / n**exponent, "m", n, "K80")
           for n in (1, 8)]
    out += [calibrate.Run("t", "Class3D", "gpu", size, math.nan, k * kind.work(size) / (speed * n**exponent), "m", n,
                          "A10G") for n in (1, 4)]
    return out


def test_fit_gpus_recovers_card_speed_and_scaling_and_derives_the_rest_by_bandwidth() -> None:
    g = calibrate.fit_gpus(_runs(speed=6.0, exponent=0.8), {"K80": 240, "A10G": 600, "L4": 300, "V100": 900,
                                                             "V100-32GB": 900}, {"V100": "GV100", "V100-32GB": "GV100"})
    assert g.exponent == pytest.approx(0.8, rel=1e-6)
    assert g.speeds["A10G"].speed == pytest.approx(6.0, rel=1e-6) and g.speeds["A10G"].basis == "measured"
    assert g.speeds["L4"].basis == "derived" and g.speeds["L4"].speed == pytest.approx(3.0, rel=1e-6)
    assert g.speeds["K80"].speed == 1.0
    fitted = calibrate.fit(calibrate.with_gpu_units(_runs(6.0, 0.8), g))
    assert fitted[0].loo_error_pct == pytest.approx(0.0, abs=1e-6)


def test_plan_says_whether_a_cards_speed_is_measured_or_derived() -> None:
    from cryocloud.planner.plan import gpu_speed_note

    c = Catalog()
    assert "measured" in gpu_speed_note(c, "A10G")
    assert "DERIVED from its memory bandwidth" in gpu_speed_note(c, "L4") and "x-" in gpu_speed_note(c, "L4")


def test_plan_says_where_the_particles_can_live() -> None:
    kind, c = model.job_kind("Class3D"), Catalog()
    small = model.placement(kind, CANONICAL, c.get("g5.xlarge"), "gpu")  # 55 GB of particles, 16 GiB RAM, 250 GB NVMe
    assert "do not fit in g5.xlarge's RAM" in small[0] and "no --preread_images" in small[0]
    assert "NVMe (250 GB) holds them: --scratch_dir there" in small[1]
    big = model.placement(kind, CANONICAL, c.get("p3.8xlarge"), "gpu")  # 244 GiB RAM, EBS only
    assert "--preread_images is possible" in big[0] and "no instance store" in big[1] and "EBS volume" in big[1]
    assert model.placement(model.job_kind("MotionCorr"), model.JobSize(movies=10), c.get("g5.xlarge"), "cpu") == []


def test_e_step_rows_give_speed_ratios_within_their_source_and_are_never_fitted_as_hours(tmp_path: Path) -> None:
    """A Scripps-like table (E-step GPU time, 4 cards each) places a card no wall row measured through a card that
    wall rows did measure; its hours (a lower bound of the job's) never enter the hours fit; a source with no such
    card places nothing; its leave-one-out is E-step against E-step."""
    kind = model.job_kind("Class3D")
    size = CANONICAL.with_defaults(kind.defaults)
    wall = _runs(speed=6.0, exponent=0.8)

    def estep(card: str, speed: float, url: str) -> calibrate.Run:  # the E-step is 60% of the wall time here
        return calibrate.Run("published", "Class3D", "gpu", size, math.nan,
                             0.6 * 0.02 * kind.work(size) / (speed * 4**0.8), "m", 4, card, "estep", url)

    table = [estep("A10G", 6.0, "scripps"), estep("P100", 9.0, "scripps"), estep("L4", 2.0, "nowhere")]
    bw = {"K80": 240, "A10G": 600, "P100": 732, "L4": 300}
    g = calibrate.fit_gpus([*wall, *table], bw)
    assert g.speeds["P100"].basis == "measured" and g.speeds["P100"].speed == pytest.approx(9.0, rel=1e-6)
    assert g.speeds["L4"].basis == "derived"  # its source has no card on the wall scale
    assert g.exponent == pytest.approx(0.8, rel=1e-6)
    (p100,) = [(r, h) for r, h in g.loo if r.gpu_model == "P100"]
    assert p100[0].measured == "estep" and p100[1] == pytest.approx(p100[0].hours * 9.0 / g.speeds["P100"].speed
                                                                    / g.speeds["P100"].loo_ratio, rel=1e-6)
    with_table = calibrate.fit(calibrate.with_gpu_units([r for r in [*wall, *table] if r.measured == "wall"], g))
    alone = calibrate.fit(calibrate.with_gpu_units(wall, calibrate.fit_gpus(wall, bw)))
    assert with_table[0].hours_per_work == pytest.approx(alone[0].hours_per_work, rel=1e-9)
    with pytest.raises(CryocloudError, match="measured = 'gpu time'"):
        bad = "source,job_type,particles,box,classes,iterations,healpix_order,movies,frames,pixels,cpus,gpus,gpu_model,"
        (tmp_path / "calibration.csv").write_text(bad + "machine,hours,fit,mpi_ranks,threads,relion_version,measured,"
                                                  "url,note\np,Class3D,1,64,1,1,2,,,,,4,K80,m,1,yes,,,,gpu time,,\n")
        calibrate.load_runs(tmp_path / "calibration.csv")
