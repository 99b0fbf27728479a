"""Acceptance of the spine against real RELION 3.1: jobs submitted by relion_pipeliner through cryocloud."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import starfile

from cryocloud.cli.main import main
from relion_support import CLASS2D, add_job, check_abort_from_relion, relion_env, run_by_hand, run_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_class2d_through_the_queue(demo_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = add_job(demo_project, "Class2D", CLASS2D + ";nr_mpi == 1;nr_threads == 2;do_queue == Yes")
    assert run_job(demo_project, job) == "succeeded"
    jd = demo_project / job
    assert (jd / "run_it003_data.star").exists() and (jd / "run_it003_classes.mrcs").exists()
    assert (jd / "RELION_JOB_EXIT_SUCCESS").exists()
    assert "Expectation iteration 3" in (jd / "run.out").read_text() or "it003" in (jd / "run.out").read_text()
    capsys.readouterr()
    assert main(["costs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["job"], r["state"], r["backend"]) for r in rows] == [(job, "succeeded", "local")]
    assert rows[0]["cost_usd"] > 0 and rows[0]["machine"].startswith("workstation")


def test_motioncorr_relions_own_implementation(demo_project: Path) -> None:
    job = add_job(demo_project, "MotionCorr", "input_star_mics == Movies/movies.star;do_own_motioncor == Yes;"
                  "dose_per_frame == 0.5;nr_threads == 2;do_queue == Yes")
    assert run_job(demo_project, job) == "succeeded"
    mics = starfile.read(demo_project / job / "corrected_micrographs.star", always_dict=True)["micrographs"]
    assert len(mics) == 3
    assert all((demo_project / m).exists() for m in mics["rlnMicrographName"])


def test_abort_from_relion(demo_project: Path, tmp_path: Path) -> None:
    check_abort_from_relion(demo_project, tmp_path / "gate")


def _data_table(path: Path) -> pd.DataFrame:
    return starfile.read(path, always_dict=True)["particles"].reset_index(drop=True)


def test_same_seed_same_result_by_hand_and_through_cryocloud(demo_project: Path) -> None:
    seed = ";other_args == --random_seed 7"
    job = add_job(demo_project, "Class2D", CLASS2D + ";nr_mpi == 1;nr_threads == 1;do_queue == Yes" + seed)
    assert run_job(demo_project, job) == "succeeded"
    by_hand = run_by_hand(demo_project, job)
    ours, theirs = _data_table(demo_project / job / "run_it003_data.star"), _data_table(by_hand / "run_it003_data.star")
    pd.testing.assert_frame_equal(ours, theirs)


def test_refine3d_under_mpi(demo_project: Path) -> None:
    job = add_job(demo_project, "Refine3D", "fn_img == Synthetic/particles.star;fn_ref == Synthetic/ref_lp40.mrc;"
                  "ref_correct_greyscale == Yes;ini_high == 40;particle_diameter == 150;sampling == 15 degrees;"
                  "offset_range == 5;offset_step == 2;auto_local_sampling == 7.5 degrees;nr_pool == 30;"
                  "nr_mpi == 3;nr_threads == 1;do_queue == Yes")
    assert run_job(demo_project, job, timeout=1500) == "succeeded"
    jd = demo_project / job
    assert (jd / "run_class001.mrc").exists() and (jd / "run_data.star").exists()
    assert "mpirun" in (jd / "run.out").read_text() or (jd / "run_half1_class001_unfil.mrc").exists()


def test_a_facility_template_with_module_load_reaches_relion(demo_project: Path, tmp_path: Path) -> None:
    """A site's template lines above the command (source, module load, export, an if block) reach the job: the
    `module load` puts the site's RELION first on PATH, and RELION's `which relion_run_motioncorr` finds it."""
    from cryocloud.jobs.relion import template_text

    site_bin = tmp_path / "site_relion" / "bin"  # no space: RELION writes `which ...` unquoted
    site_bin.mkdir(parents=True)
    seen = tmp_path / "seen.txt"
    real = subprocess.run(["which", "relion_run_motioncorr"], capture_output=True, text=True, check=True).stdout.strip()
    wrapper = site_bin / "relion_run_motioncorr"
    wrapper.write_text(f'#!/bin/bash\necho "$LOADED|$SITE_SCRATCH|$FROM_IF" > "{seen}"\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    (tmp_path / "env.sh").write_text(f'module() {{ export LOADED="$2"; export PATH="{site_bin}:$PATH"; }}\n')
    site = [f'source "{tmp_path}/env.sh"', "module load relion/5.0", "export SITE_SCRATCH=/scratch/site",
            'if [ -n "$SITE_SCRATCH" ]; then', "  export FROM_IF=yes", "fi"]
    template = tmp_path / "site_template.sh"
    template.write_text(template_text().replace("XXXcommandXXX", "\n".join(site) + "\nXXXcommandXXX"))
    env = relion_env(demo_project)
    env["RELION_QSUB_TEMPLATE"] = env["PIPELINER_QSUB_TEMPLATE"] = str(template)
    job = add_job(demo_project, "MotionCorr", "input_star_mics == Movies/movies.star;do_own_motioncor == Yes;"
                  f"dose_per_frame == 0.5;nr_threads == 1;do_queue == Yes;qsubscript == {template}", env=env)
    assert "module load relion/5.0" in (demo_project / job / "run_submit.script").read_text()
    assert run_job(demo_project, job, env=env) == "succeeded"
    assert seen.read_text() == "relion/5.0|/scratch/site|yes\n"
    mics = starfile.read(demo_project / job / "corrected_micrographs.star", always_dict=True)["micrographs"]
    assert len(mics) == 3
