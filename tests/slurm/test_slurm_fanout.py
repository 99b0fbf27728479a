"""Fan-out for users on the real single-node Slurm: `cryocloud run` as one sbatch job, and a job file's 16 tasks as
one array, giving the same best set as the local backend (fixed seeds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryocloud.app.run import submit_command, submit_jobfile
from fanout.helpers import best_tasks, ended, job_row
from fanout.relion_split import split_equals_one_worker
from fanout.tasklib import jobfile
from slurm.conftest import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_run_a_command_on_slurm(slurm: Cluster, tmp_path: Path) -> None:
    done = submit_command(["sh", "-c", "echo on-slurm; exit 5"], tmp_path, profile="slurm")
    assert ended(done.job.id) == "failed" and job_row(done.job.id).exit_code == 5
    out = (tmp_path / done.job.name / "run.out").read_text()
    assert "on-slurm" in out and "Slurm job" in out


def test_sixteen_tasks_on_slurm_keep_the_same_best_as_local(slurm: Cluster, tmp_path: Path) -> None:
    (tmp_path / "job.toml").write_text(jobfile(tasks=16, keep=5, retries=1, fail_seed=9))
    on_slurm = submit_jobfile(tmp_path / "job.toml", profile="slurm")
    local = submit_jobfile(tmp_path / "job.toml", profile="local")
    assert ended(on_slurm.job.id) == "failed" and ended(local.job.id) == "failed"  # seed 9 fails, twice each
    for done in (on_slurm, local):
        assert job_row(done.job.id).message.startswith("15 of 16 tasks succeeded, 1 did not; task 8:")
    a, b = tmp_path / on_slurm.job.name, tmp_path / local.job.name
    assert "array of 16 tasks" in (a / "run.out").read_text()
    assert best_tasks(a) == best_tasks(b) and len(best_tasks(a)) == 5
    assert (a / "scores.csv").read_text() == (b / "scores.csv").read_text()
    assert "retry 1 of 1" in (a / "tasks/0008/run.out").read_text()


def test_motioncorr_split_over_3_on_slurm_equals_one_worker(slurm: Cluster, demo_project: Path) -> None:
    split = split_equals_one_worker(demo_project, queue="slurm")
    assert "array of 3 tasks" in (demo_project / split / "run.out").read_text()
