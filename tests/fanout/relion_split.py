"""A RELION MotionCorr on 6 synthetic movies split over 3 workers vs one worker, both added and run by
relion_pipeliner through cryocloud; shared by the local and the Slurm acceptance."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from relion_support import add_job, run_job

OPTIONS = "input_star_mics == Movies/movies.star;do_own_motioncor == Yes;dose_per_frame == 0.5;nr_threads == 1;" \
          "do_queue == Yes"


def six_movies(project: Path) -> None:
    """The demo's 3 movies and a copy of each under a new name: 6 real movies, no new synthesis."""
    blocks = starfile.read(project / "Movies/movies.star", always_dict=True)
    names = list(blocks["movies"]["rlnMicrographMovieName"])
    for i, name in enumerate(names, start=len(names) + 1):
        shutil.copy(project / name, project / f"Movies/mov_{i:03d}.mrc")
    table = pd.DataFrame({"rlnMicrographMovieName": [f"Movies/mov_{i:03d}.mrc" for i in range(1, 7)],
                          "rlnOpticsGroup": 1})
    starfile.write({"optics": blocks["optics"], "movies": table}, project / "Movies/movies.star", overwrite=True)


def _shifts(path: Path) -> np.ndarray:
    table = starfile.read(path, always_dict=True)["global_shift"]
    return np.asarray(table[["rlnMicrographShiftX", "rlnMicrographShiftY"]].values, dtype=float)


def split_equals_one_worker(project: Path, queue: str = "") -> str:
    """Run both; check what RELION shows and wrote. Returns the split job's folder."""
    six_movies(project)
    extra = f";queuename == {queue}" if queue else ""
    split = add_job(project, "MotionCorr", OPTIONS + ";qsub_extra4 == 3" + extra)
    single = add_job(project, "MotionCorr", OPTIONS + extra)
    assert run_job(project, split) == "succeeded"
    assert run_job(project, single) == "succeeded"
    a, b = project / split, project / single
    assert sorted(p.name for p in a.glob("RELION_JOB_EXIT_*")) == ["RELION_JOB_EXIT_SUCCESS"]
    ta = starfile.read(a / "corrected_micrographs.star", always_dict=True)
    tb = starfile.read(b / "corrected_micrographs.star", always_dict=True)
    assert list(ta) == list(tb) and list(ta["micrographs"].columns) == list(tb["micrographs"].columns)
    assert [m.replace(split, "JOB") for m in ta["micrographs"]["rlnMicrographName"]] == \
        [m.replace(single, "JOB") for m in tb["micrographs"]["rlnMicrographName"]]
    assert len(ta["micrographs"]) == 6
    for i in range(1, 7):
        d = np.abs(_shifts(a / f"Movies/mov_{i:03d}.star") - _shifts(b / f"Movies/mov_{i:03d}.star"))
        assert d.max() < 0.25, (i, d.max())  # RELION's own order dependence (tests/slurm/test_slurm_relion.py)
    out = (a / "run.out").read_text()
    assert "3 of 3 tasks succeeded" in out and "final pass" in out
    return split
