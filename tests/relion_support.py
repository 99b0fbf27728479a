"""Drive real RELION 3.1 (relion_pipeliner) against cryocloud: a demo project and a pipeliner runner.

Used by the RELION end-to-end tests of every backend. The pipeliner must see the same RELION_QSUB_*
environment at --addJob and at --RunJobs (the extra queue fields exist only while those are set).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import starfile

STATUS = {0: "running", 1: "scheduled", 2: "succeeded", 3: "failed", 4: "aborted"}
# Fast settings measured on 2 cores (notes/relion): 500 particles, K=2, 3 iterations, coarse sampling.
CLASS2D = ("fn_img == Synthetic/particles.star;nr_classes == 2;nr_iter == 3;particle_diameter == 150;"
           "psi_sampling == 12;offset_step == 2;offset_range == 5;nr_pool == 30")


def relion_env(project: Path) -> dict[str, str]:
    """The environment `eval "$(cryocloud relion setup)"` gives, plus the venv on PATH."""
    from cryocloud.relion_setup import relion_environment, write_template
    from cryocloud.settings import load_settings

    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env.update(relion_environment(write_template(project), load_settings()))
    return env


def pipeliner(project: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    # relion_pipeliner is the test's subject here, run as a user would; tests may call subprocess
    p = subprocess.run(["relion_pipeliner", *args], cwd=project, env=env or relion_env(project),
                       capture_output=True, text=True, timeout=timeout, check=False)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return p.stdout


def add_job(project: Path, job_type: str, options: str, env: dict[str, str] | None = None) -> str:
    """Add a job (Submit to queue = Yes unless options say otherwise); return its folder, e.g. Class2D/job002/."""
    before = set(process_status(project))
    pipeliner(project, "--addJob", job_type, "--addJobOptions", options, env=env)
    new = [j for j in process_status(project) if j not in before]
    assert len(new) == 1, new
    return new[0]


def run_job(project: Path, job_dir: str, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    """relion_pipeliner --RunJobs: blocks until an exit marker appears; returns RELION's status for the job."""
    pipeliner(project, "--RunJobs", job_dir, "--sec_wait_after", "1", env=env, timeout=timeout)
    return process_status(project)[job_dir]


def run_and_abort(project: Path, job_dir: str, after: str = "run_it001_data.star",
                  env: dict[str, str] | None = None) -> str:
    """Run the job and press RELION's Abort (touch RELION_JOB_ABORT_NOW) once `after` exists in its folder.
    Returns RELION's status for the job."""
    from gate import Background, wait_until

    jd = project / job_dir

    def abort_when_ready() -> None:
        assert wait_until(lambda: (jd / after).exists(), 600), f"{after} never appeared"
        (jd / "RELION_JOB_ABORT_NOW").touch()  # what RELION's Abort button does

    t = Background(abort_when_ready)
    t.start()
    status = run_job(project, job_dir, env=env)
    t.join(60)
    return status


def check_abort_from_relion(project: Path, gate_dir: Path, options: str = "") -> None:
    """A Class2D (extra job `options`, e.g. a Queue name) aborted the way RELION's Abort button does: RELION
    shows it aborted, with its marker and without later iterations. A barrier at the end of iteration 3
    (tests/gate.py) means the job cannot finish before the Abort lands, however slow the machine."""
    from gate import IterationGate

    env = relion_env(project)
    env["PATH"] = f"{IterationGate(gate_dir, 3).bin_dir}:{env['PATH']}"
    job = add_job(project, "Class2D", CLASS2D.replace("nr_iter == 3", "nr_iter == 5")
                  + ";nr_mpi == 1;nr_threads == 2;do_queue == Yes" + options, env=env)
    jd = project / job
    assert run_and_abort(project, job, env=env) == "aborted"
    assert (jd / "RELION_JOB_EXIT_ABORTED").exists() and not (jd / "RELION_JOB_EXIT_SUCCESS").exists()
    assert not (jd / "run_it003_data.star").is_file() and not (jd / "run_it005_data.star").exists()


def run_by_hand(project: Path, job_dir: str) -> Path:
    """The very relion_refine command RELION wrote for the job, run by hand into ByHand/; returns that folder."""
    script = (project / job_dir / "run_submit.script").read_text()
    line = next(ln for ln in script.splitlines() if "relion_refine" in ln)
    by_hand = project / "ByHand"
    by_hand.mkdir()
    line = line.replace(f"--o {job_dir}run", "--o ByHand/run").replace(f"--pipeline_control {job_dir}", "")
    subprocess.run(["bash", "-c", line], cwd=project, check=True, capture_output=True, env=relion_env(project))
    return by_hand


def process_status(project: Path) -> dict[str, str]:
    pipeline = project / "default_pipeline.star"
    blocks = starfile.read(pipeline, always_dict=True)
    table = blocks.get("pipeline_processes")
    if table is None or isinstance(table, dict):
        return {}
    return {str(n): STATUS[int(s)] for n, s in zip(table["rlnPipeLineProcessName"],
                                                   table["rlnPipeLineProcessStatus"], strict=True)}


@pytest.fixture(scope="session")
def demo_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from testtools import require_tool

    require_tool("relion_refine")
    from cryocloud.demo.dataset import make_project

    base = tmp_path_factory.mktemp("demo") / "base"
    make_project(base, n_particles=500, n_movies=3, noise=2.0, seed=1)
    return base


@pytest.fixture()
def demo_project(demo_base: Path, tmp_path: Path) -> Path:
    """A fresh copy of the demo project for one test (name with a space: RELION users have those)."""
    project = tmp_path / "demo project"
    shutil.copytree(demo_base, project, symlinks=True)
    return project
