"""A split that cannot be done is refused when it is submitted, with a hint (no RELION needed to know)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryocloud.app.run import split_script_spec
from cryocloud.errors import SubmissionError
from spine.helpers import make_job

STAR = """data_optics
loop_
_rlnOpticsGroup #1
_rlnMicrographOriginalPixelSize #2
1 0.885
data_movies
loop_
_rlnMicrographMovieName #1
_rlnOpticsGroup #2
Movies/a.tif 1
Movies/b.tif 1
"""
LINE = ("`which relion_run_motioncorr` --i Import/job001/movies.star --o MotionCorr/job002/ --use_own "
        "--pipeline_control MotionCorr/job002/")


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    (tmp_path / "Import/job001").mkdir(parents=True)
    (tmp_path / "Import/job001/movies.star").write_text(STAR)
    (tmp_path / "Movies").mkdir()
    for name in ("a.tif", "b.tif"):
        (tmp_path / "Movies" / name).write_bytes(b"movie")
    (tmp_path / "x.star").write_text(STAR)
    return tmp_path


def test_a_split_keeps_the_optics_and_adds_the_final_pass(project: Path) -> None:
    spec = split_script_spec(make_job(project, "MotionCorr/job002/", [LINE]), project, 2)
    assert spec.tasks == 2 and spec.fanout.final == [LINE + " --only_do_unfinished"]
    from cryocloud.jobs.split import shard_commands

    cdir = project / "c"
    cdir.mkdir()
    (line,) = shard_commands(spec, 1, cdir, project)
    assert f"--i {cdir}/input.star" in line and f"--pipeline_control {cdir}/" in line
    shard = (cdir / "input.star").read_text()
    assert "data_optics" in shard and "0.885" in shard and "b.tif" in shard and "a.tif" not in shard


@pytest.mark.parametrize(("job_dir", "commands", "workers", "message"), [
    ("MotionCorr/job002/", [LINE], 3, "'Split over N workers' is 3, but Import/job001/movies.star lists only 2"),
    ("Class2D/job003/", ["relion_refine --i x.star --o Class2D/job003/run"], 2, "a Class2D job cannot be split"),
    ("MotionCorr/job002/", ["echo nothing"], 2, "no relion_run_motioncorr line with --i"),
])
def test_splits_that_cannot_be_done(project: Path, job_dir: str, commands: list[str], workers: int,
                                    message: str) -> None:
    with pytest.raises(SubmissionError) as e:
        split_script_spec(make_job(project, job_dir, commands), project, workers)
    assert e.value.message.startswith(message) and e.value.hint


def test_relions_field_asks_for_the_split(project: Path) -> None:
    spec = split_script_spec(make_job(project, "MotionCorr/job002/", [LINE], extras={"extra4": "2"}), project)
    assert spec.tasks == 2
    with pytest.raises(SubmissionError, match="not a number"):
        split_script_spec(make_job(project, "MotionCorr/job002/", [LINE], extras={"extra4": "two"}), project)
