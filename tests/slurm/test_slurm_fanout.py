"""Fan-out for users on the real single-node Slurm: `cryocloud run` as one sbatch job, and a job file's 16 tasks as
one array, giving the same best set as the local backend (fixed seeds)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from cryocloud.app.run import submit_command, submit_jobfile
from fanout.helpers import best_tasks, ended, job_row
from fanout.relion_split import split_equals_one_worker
from slurm.conftest import Cluster

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "openmm"

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_run_a_command_on_slurm(slurm: Cluster, tmp_path: Path) -> None:
    done = submit_command(["sh", "-c", "echo on-slurm; exit 5"], tmp_path, profile="slurm")
    assert ended(done.job.id) == "failed" and job_row(done.job.id).exit_code == 5
    out = (tmp_path / done.job.name / "run.out").read_text()
    assert "on-slurm" in out and "Slurm job" in out


def test_openmm_fanout_of_16_on_slurm_and_local_keeps_the_same_best(slurm: Cluster, tmp_path: Path) -> None:
    """The acceptance: 16 OpenMM minimisations from perturbed starts (examples/openmm, one seed per task, OpenMM's
    Reference platform), seed 9 made to fail: retried, then failed while the 15 others are kept; the best 4 by
    final energy are the same tasks, with the same scores, on the real Slurm (one array) and on local."""
    shutil.copy(EXAMPLE / "minimize.py", tmp_path)
    text = (EXAMPLE / "job.toml").read_text().replace('"python3"', f'"{sys.executable}"') \
        .replace('"{seed}"]', '"{seed}", "--fail-seed", "9"]')
    (tmp_path / "job.toml").write_text(text)
    on_slurm = submit_jobfile(tmp_path / "job.toml", profile="slurm")
    local = submit_jobfile(tmp_path / "job.toml", profile="local")
    assert ended(on_slurm.job.id) == "failed" and ended(local.job.id) == "failed"
    for done in (on_slurm, local):
        assert job_row(done.job.id).message.startswith("15 of 16 tasks succeeded, 1 did not; task 8:")
    a, b = tmp_path / on_slurm.job.name, tmp_path / local.job.name
    assert "array of 16 tasks" in (a / "run.out").read_text()
    assert "retry 1 of 1" in (a / "tasks/0008/run.out").read_text()
    assert best_tasks(a) == best_tasks(b) and len(best_tasks(a)) == 4
    assert (a / "scores.csv").read_text() == (b / "scores.csv").read_text()
    assert len((a / "scores.csv").read_text().splitlines()) == 16  # header + 15 tasks
    assert "ATOM" in next((a / "best").glob("001_*_model.pdb")).read_text()


def test_motioncorr_split_over_3_on_slurm_equals_one_worker(slurm: Cluster, demo_project: Path) -> None:
    split = split_equals_one_worker(demo_project, queue="slurm")
    assert "array of 3 tasks" in (demo_project / split / "run.out").read_text()
