from __future__ import annotations

from pathlib import Path

import pytest

from cryocloud.errors import SubmissionError
from cryocloud.jobs.relion import count_gpus, job_spec_from_script, read_script, template_text
from spine.helpers import fill_template, make_job

CMD = "`which relion_refine_mpi` --o Class2D/job002/run --i parts.star --j 2 --pipeline_control Class2D/job002/"


def test_header_values_and_unset_placeholders(tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    text = fill_template("Class2D/job002/", [CMD], mpi=3, threads=2, extras={"extra1": "01:00:00"})
    script.write_text(text)
    s = read_script(script)
    assert s.job_dir == "Class2D/job002/"
    assert s.fields["mpi"] == "3" and s.fields["threads"] == "2"
    assert "extra4" not in s.fields  # left verbatim as XXXextra4XXX means unset
    assert s.extras == {"wall_time": "01:00:00"}
    assert s.queue() == ""  # "default" means nothing chosen
    assert s.commands == [CMD]
    assert s.client == "relion"


def test_multi_command_jobs_keep_every_line(tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text(fill_template("MaskCreate/job009/", ["relion_mask_create --i a.mrc", "echo done"]))
    assert read_script(script).commands == ["relion_mask_create --i a.mrc", "echo done"]


def test_pipeliner_script_is_detected(tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text(fill_template("Class2D/job001/", ["/usr/bin/python3 /x/pipeliner/scripts/job_runner.py Class2D/job001/job.star"]))
    assert read_script(script).client == "pipeliner"


@pytest.mark.parametrize("text, needle", [
    ("#!/bin/bash\n#SBATCH --ntasks=3\nmpirun relion_refine_mpi --i x\n", "not made from cryocloud's template"),
    (template_text(), "is the template itself"),
    ("# cryocloud.name: Class2D/job001/\n# cryocloud.mpi: 1\n", "holds no command"),
])
def test_scripts_that_are_not_relions_are_refused(tmp_path: Path, text: str, needle: str) -> None:
    script = tmp_path / "s.sh"
    script.write_text(text)
    with pytest.raises(SubmissionError) as e:
        read_script(script)
    assert needle in e.value.message
    assert e.value.hint


def test_binary_or_missing_script(tmp_path: Path) -> None:
    with pytest.raises(SubmissionError, match="no such submission script"):
        read_script(tmp_path / "nope.script")
    (tmp_path / "bin.script").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(SubmissionError, match="not a text file"):
        read_script(tmp_path / "bin.script")


def test_bad_mpi_field(tmp_path: Path) -> None:
    script = make_job(tmp_path, "Class2D/job002/", ["echo hi"], mpi="three")  # type: ignore[arg-type]
    with pytest.raises(SubmissionError, match="not a whole number"):
        job_spec_from_script(script, tmp_path)


@pytest.mark.parametrize("line, n", [
    ("relion_refine --gpu \"0:1:2:3\" --j 1", 4),
    ("relion_refine --gpu \"\" --j 1", 1),
    ("relion_refine --gpu --j 1", 1),
    ("relion_refine --j 4", 0),
])
def test_gpu_count(line: str, n: int) -> None:
    assert count_gpus([line]) == n


@pytest.mark.parametrize("name", ["my project", "Projekt_Größe_ß", "数据"])
def test_paths_with_spaces_and_non_ascii(tmp_path: Path, name: str) -> None:
    project = tmp_path / name
    (project / "Data").mkdir(parents=True)
    (project / "Data" / "ref.mrc").write_bytes(b"x" * 10)
    script = make_job(project, "Class3D/job004/", ["relion_refine --ref Data/ref.mrc --o Class3D/job004/run"])
    spec = job_spec_from_script(script, project)
    assert spec.job_type == "Class3D"
    assert spec.project_dir == str(project.resolve())
    assert [f.path for f in spec.inputs] == ["Data/ref.mrc"]


def test_job_folder_must_exist_under_the_project(tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text(fill_template("Class2D/job077/", ["echo hi"]))
    with pytest.raises(SubmissionError, match="does not exist"):
        job_spec_from_script(script, tmp_path)


SITE_LINES = ["module load relion/5.0", "export OMP_NUM_THREADS=2", "source /opt/site/env.sh",
              'if [ -n "$SLURM_JOB_ID" ]; then', '  echo "on a node"', "fi"]


def test_a_facilitys_own_lines_stay_in_place_and_in_order(tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text(fill_template("Class2D/job002/", [*SITE_LINES, CMD, "# a comment the site wrote", "echo done"]))
    assert read_script(script).commands == [*SITE_LINES, CMD, "# a comment the site wrote", "echo done"]
