"""Acceptance of the Slurm backend with real RELION 3.1: jobs submitted by relion_pipeliner through cryocloud
to the real single-node Slurm (tests/slurm/conftest.py), compared with the same jobs run locally."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from cryocloud.cli.main import main
from relion_support import CLASS2D, add_job, check_abort_from_relion, run_job
from slurm.conftest import Cluster
from slurm.test_slurm_backend import ended, submit_fanout

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = ";other_args == --random_seed 7"


def _data_table(path: Path) -> pd.DataFrame:
    return starfile.read(path, always_dict=True)["particles"].reset_index(drop=True)


def test_class2d_on_slurm_equals_the_local_run(slurm: Cluster, demo_project: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    opts = CLASS2D + ";nr_mpi == 1;nr_threads == 2;do_queue == Yes" + SEED
    on_slurm = add_job(demo_project, "Class2D", opts + ";queuename == slurm")  # Queue name selects the profile
    local = add_job(demo_project, "Class2D", opts + ";queuename == local")
    assert run_job(demo_project, on_slurm) == "succeeded"
    assert run_job(demo_project, local) == "succeeded"
    sd = demo_project / on_slurm
    assert (sd / "RELION_JOB_EXIT_SUCCESS").exists()
    assert "Slurm job" in (sd / "run.out").read_text()
    pd.testing.assert_frame_equal(_data_table(sd / "run_it003_data.star"),
                                  _data_table(demo_project / local / "run_it003_data.star"))
    capsys.readouterr()
    assert main(["costs", "--json"]) == 0
    rows = {r["job"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[on_slurm]["backend"] == "slurm" and rows[local]["backend"] == "local"


def test_class2d_under_mpi_on_slurm(slurm: Cluster, demo_project: Path) -> None:
    job = add_job(demo_project, "Class2D", CLASS2D + ";nr_mpi == 2;nr_threads == 1;do_queue == Yes;"
                  "queuename == slurm")
    assert run_job(demo_project, job) == "succeeded"
    jd = demo_project / job
    assert (jd / "run_it003_data.star").exists() and (jd / "RELION_JOB_EXIT_SUCCESS").exists()


def test_abort_from_relion_on_slurm(slurm: Cluster, demo_project: Path, tmp_path: Path) -> None:
    check_abort_from_relion(demo_project, tmp_path / "gate", ';queuename == slurm')


MOTIONCORR = ("relion_run_motioncorr --i {inp} --o {out} --first_frame_sum 1 --last_frame_sum -1 --use_own --j 1 "
              "--bin_factor 1 --bfactor 150 --dose_per_frame 0.5 --preexposure 0 --patch_x 1 --patch_y 1 "
              "--dose_weighting --save_noDW")


def _micrographs(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted(folder.rglob("*.mrc")):
        with mrcfile.open(path, permissive=True) as m:
            out[str(path.relative_to(folder))] = np.array(m.data)
    return out


def _shifts(path: Path) -> np.ndarray:
    table = starfile.read(path, always_dict=True)["global_shift"]
    return np.asarray(table[["rlnMicrographShiftX", "rlnMicrographShiftY"]].values, dtype=float)


def test_motioncorr_array_of_3_equals_one_task(slurm: Cluster, demo_project: Path) -> None:
    """Three array tasks each correct every third movie (as a fan-out shard does), then one gathering step
    (`--only_do_unfinished` over all movies: RELION's own way) writes the job's STAR file; the micrographs and
    STAR file match one task's.

    Bit-equality is not possible with RELION 3.1's own MotionCorr: a movie's result depends on whether it is the
    first one the process corrects (measured: mov_002 alone vs after mov_001 differ by ~0.01 px in shift, both
    runs deterministic on a quiet machine; 0.118 px seen once under load). So the first movie of both runs is
    compared exactly, the others to within 0.25 px of shift (the method's error on this data is ~0.7 px) and a
    correlation > 0.99.
    """
    movies = demo_project / "Movies/movies.star"
    assert len(starfile.read(movies, always_dict=True)["movies"]) == 3
    split = (f"{sys.executable} -c \"import starfile,sys; b=starfile.read('Movies/movies.star', always_dict=True); "
             "i=int(sys.argv[1]); n=int(sys.argv[2]); b['movies']=b['movies'].iloc[i::n]; "
             "starfile.write(b, sys.argv[3])\" $CRYOCLOUD_TASK_INDEX $CRYOCLOUD_TASK_COUNT "
             "External/job010/shard_$CRYOCLOUD_TASK_INDEX.star")
    sharded = submit_fanout(demo_project, "External/job010/", [
        split, MOTIONCORR.format(inp="External/job010/shard_$CRYOCLOUD_TASK_INDEX.star", out="External/job010/")],
        tasks=3)
    single = submit_fanout(demo_project, "External/job011/", [
        MOTIONCORR.format(inp="Movies/movies.star", out="External/job011/")], tasks=1)
    assert ended(sharded, 300) == "succeeded" and ended(single, 300) == "succeeded"
    gather = submit_fanout(demo_project, "External/job012/", [
        MOTIONCORR.format(inp="Movies/movies.star", out="External/job010/") + " --only_do_unfinished"], tasks=1)
    assert ended(gather, 300) == "succeeded"
    assert sorted(p.name for p in (demo_project / "External/job010").glob("RELION_JOB_EXIT_*")) == \
        ["RELION_JOB_EXIT_SUCCESS"]

    a, b = _micrographs(demo_project / "External/job010"), _micrographs(demo_project / "External/job011")
    assert len(a) == 6 and sorted(a) == sorted(b)  # 3 movies, dose-weighted and not
    mics = {}
    for job in ("job010", "job011"):
        table = starfile.read(demo_project / f"External/{job}/corrected_micrographs.star",
                              always_dict=True)["micrographs"]
        mics[job] = [str(m).replace(job, "JOB") for m in table["rlnMicrographName"]]
    assert mics["job010"] == mics["job011"] and len(mics["job010"]) == 3
    for name in a:
        if "mov_001" in name:  # the first movie of both processes: exactly equal
            np.testing.assert_array_equal(a[name], b[name])
        assert np.corrcoef(a[name].ravel(), b[name].ravel())[0, 1] > 0.99
    for movie in ("mov_001", "mov_002", "mov_003"):
        d = np.abs(_shifts(demo_project / f"External/job010/Movies/{movie}.star")
                   - _shifts(demo_project / f"External/job011/Movies/{movie}.star"))
        assert d.max() < 0.25, (movie, d.max())
