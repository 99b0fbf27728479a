"""RELION's MotionCorr split over 3 workers from RELION's own 4th extra field ("Split over N workers"), on the
local backend: 3 shards with their own control folders, then RELION's --only_do_unfinished pass at the lab."""

from __future__ import annotations

from pathlib import Path

import pytest

from fanout.relion_split import OPTIONS, split_equals_one_worker
from relion_support import add_job, run_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_motioncorr_split_over_3_equals_one_worker(demo_project: Path) -> None:
    split = split_equals_one_worker(demo_project)
    assert len(list((demo_project / split / ".cryocloud").glob("job*/task*/input.star"))) == 3


def test_more_workers_than_movies_is_refused_in_relions_view(demo_project: Path) -> None:
    job = add_job(demo_project, "MotionCorr", OPTIONS + ";qsub_extra4 == 5")
    assert run_job(demo_project, job) == "failed"
    err = (demo_project / job / "run.err").read_text()
    assert "'Split over N workers' is 5, but Movies/movies.star lists only 3 items" in err
