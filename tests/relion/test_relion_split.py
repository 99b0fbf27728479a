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


def test_submit_split_from_the_command_line(demo_project: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`cryocloud submit <job>/run_submit.script --split 3`: the same split without RELION's field."""
    import starfile

    from cryocloud.cli.main import main
    from fanout.helpers import ended
    from spine.helpers import make_job

    job = "MotionCorr/job002/"
    line = ("relion_run_motioncorr --i Movies/movies.star --o MotionCorr/job002/ --first_frame_sum 1 "
            "--last_frame_sum -1 --use_own --j 1 --bin_factor 1 --bfactor 150 --dose_per_frame 0.5 --preexposure 0 "
            "--patch_x 1 --patch_y 1 --dose_weighting --pipeline_control MotionCorr/job002/")
    script = make_job(demo_project, job, [line])
    monkeypatch.chdir(demo_project)
    assert main(["submit", str(script.relative_to(demo_project)), "--split", "3"]) == 0
    assert "split over 3" in capsys.readouterr().out
    assert ended(1) == "succeeded"
    mics = starfile.read(demo_project / job / "corrected_micrographs.star", always_dict=True)["micrographs"]
    assert len(mics) == 3 and (demo_project / job / "RELION_JOB_EXIT_SUCCESS").exists()
    assert "3 of 3 tasks succeeded" in (demo_project / job / "run.out").read_text()
