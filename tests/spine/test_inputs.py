from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import starfile

from cryocloud.errors import SubmissionError
from cryocloud.jobs.inputs import discover_inputs


def touch(p: Path, size: int = 100) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"\0" * size)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """Import -> MotionCorr -> Extract -> Class2D, as RELION lays it out."""
    p = tmp_path / "proj"
    for i in (1, 2):
        touch(p / f"Movies/m{i}.tif", 1000)
        touch(p / f"MotionCorr/job002/Movies/m{i}.mrc", 500)
        starfile.write({"general": {"rlnImageSizeX": 10, "rlnMicrographMovieName": f"Movies/m{i}.tif",
                                    "rlnMicrographGainName": "Movies/gain.mrc"}},
                       p / f"MotionCorr/job002/Movies/m{i}.star")
        touch(p / f"Extract/job005/Movies/m{i}.mrcs", 300)
    touch(p / "Movies/gain.mrc", 50)
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["g1"]})
    mics = pd.DataFrame({"rlnMicrographName": ["MotionCorr/job002/Movies/m1.mrc", "MotionCorr/job002/Movies/m2.mrc"],
                         "rlnMicrographMetadata": ["MotionCorr/job002/Movies/m1.star", "MotionCorr/job002/Movies/m2.star"],
                         "rlnOpticsGroup": [1, 1]})
    starfile.write({"optics": optics, "micrographs": mics}, p / "MotionCorr/job002/corrected_micrographs.star")
    parts = pd.DataFrame({"rlnImageName": [f"{k}@Extract/job005/Movies/m{i}.mrcs" for i in (1, 2) for k in (1, 2)],
                          "rlnMicrographName": ["MotionCorr/job002/Movies/gone.mrc"] * 4, "rlnOpticsGroup": 1})
    starfile.write({"optics": optics, "particles": parts}, p / "Extract/job005/particles.star")
    return p


def paths(inputs: list) -> list[str]:  # type: ignore[type-arg]
    return [f.path for f in inputs]


def test_particles_lead_to_stacks_not_micrographs(project: Path) -> None:
    found = paths(discover_inputs(project, "Class2D/job006/", ["relion_refine --i Extract/job005/particles.star --o Class2D/job006/run"]))
    assert found == ["Extract/job005/Movies/m1.mrcs", "Extract/job005/Movies/m2.mrcs", "Extract/job005/particles.star"]


def test_micrographs_lead_to_metadata_movies_and_gain(project: Path) -> None:
    found = paths(discover_inputs(project, "CtfFind/job003/", ["relion_run_ctffind --i MotionCorr/job002/corrected_micrographs.star"]))
    assert "Movies/m1.tif" in found and "Movies/gain.mrc" in found
    assert "MotionCorr/job002/Movies/m2.star" in found and "MotionCorr/job002/Movies/m2.mrc" in found


def test_sizes_are_recorded(project: Path) -> None:
    inputs = discover_inputs(project, "Class2D/job006/", ["x --i Extract/job005/particles.star"])
    assert sum(f.size for f in inputs if f.path.endswith(".mrcs")) == 600


def test_pipeline_edges_are_seeds(project: Path) -> None:
    edges = pd.DataFrame({"rlnPipeLineEdgeFromNode": ["Extract/job005/particles.star"],
                          "rlnPipeLineEdgeProcess": ["Class2D/job006/"]})
    starfile.write({"pipeline_general": {"rlnPipeLineJobCounter": 7}, "pipeline_input_edges": edges},
                   project / "default_pipeline.star")
    assert "Extract/job005/particles.star" in paths(discover_inputs(project, "Class2D/job006/", ["echo"]))


def test_a_pipeliner_jobs_edges_are_read_from_its_own_job_pipeline_star(project: Path) -> None:
    """The CCP-EM Pipeliner names its project file after the project (lab_pipeline.star) and runs the job as one
    job_runner.py line with no input flags: its job folder's job_pipeline.star holds the edges."""
    edges = pd.DataFrame({"rlnPipeLineEdgeFromNode": ["Extract/job005/particles.star"],
                          "rlnPipeLineEdgeProcess": ["Class2D/job006/"]})
    (project / "Class2D/job006").mkdir(parents=True)
    starfile.write({"pipeline_general": {"rlnPipeLineJobCounter": 7}, "pipeline_input_edges": edges},
                   project / "Class2D/job006/job_pipeline.star")
    runner = "/venv/bin/python /venv/lib/pipeliner/scripts/job_runner.py Class2D/job006/job.star"
    found = paths(discover_inputs(project, "Class2D/job006/", [runner]))
    assert {"Extract/job005/particles.star", "Extract/job005/Movies/m1.mrcs"} <= set(found)


def test_missing_file_names_who_named_it(project: Path) -> None:
    (project / "Extract/job005/Movies/m2.mrcs").unlink()
    with pytest.raises(SubmissionError) as e:
        discover_inputs(project, "Class2D/job006/", ["x --i Extract/job005/particles.star"])
    assert "Extract/job005/Movies/m2.mrcs (named in Extract/job005/particles.star)" in e.value.message


def test_broken_link_is_reported(project: Path) -> None:
    (project / "Movies/link.mrc").symlink_to(project / "Movies/nowhere.mrc")
    with pytest.raises(SubmissionError, match="broken link"):
        discover_inputs(project, "MotionCorr/job002/", ["x --gainref Movies/link.mrc"])


def test_malformed_star_is_a_clear_error(project: Path) -> None:
    (project / "bad.star").write_text("data_\nloop_\n_rlnImageName #1\n_rlnFoo #2\nonly_one_value\n\x00\x01garbage")
    with pytest.raises(SubmissionError, match="not a readable STAR file"):
        discover_inputs(project, "Class2D/job006/", ["x --i bad.star"])


@pytest.mark.parametrize("content", [b"garbage here\nnot star at all\n", b"data_\nloop_\n_rlnImageName #1\n\x00\x01\xff"])
def test_files_without_star_blocks_are_refused(project: Path, content: bytes) -> None:
    (project / "bad.star").write_bytes(content)
    with pytest.raises(SubmissionError, match="not a readable STAR file"):
        discover_inputs(project, "Class2D/job006/", ["x --i bad.star"])
