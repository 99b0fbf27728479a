"""Requeue after preemption (Slurm PREEMPTED / NODE_FAIL).

Two levels, and what is real in each:
- `test_monitor_requeues_*` (stub Slurm commands): only the final-state source is stubbed (`scontrol show job`
  prints PREEMPTED for the job); the monitor's reconcile and dispatch, the ledger, the job folder and the
  resume logic are the real code path. (tests/monitor runs the same branches on a fake backend and clock.)
- `test_preempted_class2d_*` (real Slurm, real RELION 3.1 through relion_pipeliner): the job really runs on
  the test Slurm and is really preempted: the test cluster has a preemptible `debug` partition and an
  `urgent` one above it (scripts/slurm/start.sh, PreemptMode=CANCEL), and the test submits a job to `urgent`
  that needs the whole node. Slurm cancels the Class2D job with end state PREEMPTED; the agent's SIGTERM, the
  lab asking Slurm why, the requeue (a new sbatch), the continue, RELION's outputs and the downstream job are
  all real. Nothing in the backend knows it is being tested.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import pytest
import starfile

from cryocloud.jobs import control
from cryocloud.jobs.resume import last_iteration
from cryocloud.jobs.spec import JobSpec
from cryocloud.ledger import Ledger
from cryocloud.monitor.passes import dispatch, reconcile
from cryocloud.proc import run_command
from cryocloud.settings import load_settings
from gate import Background, IterationGate, wait_until
from relion_support import CLASS2D, add_job, run_job
from slurm.conftest import Cluster, write_config
from slurm.test_slurm_sources import stub
from spine.helpers import job_state, wait_for

REFINE = "relion_refine --o Class2D/job002/run --i Synthetic/particles.star --iter 5 --pipeline_control Class2D/job002/"


@pytest.fixture()
def stub_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cryocloud_home: Path) -> Path:
    """sbatch hands out ids 101, 102, ...; squeue has forgotten every job; scontrol says it was PREEMPTED."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub(bin_dir, "sbatch", f'n=$(( $(cat {bin_dir}/n 2>/dev/null || echo 100) + 1 )); echo $n > {bin_dir}/n\n'
                            f'echo "$@" >> {bin_dir}/sbatch.log; echo $n')
    stub(bin_dir, "sinfo", 'echo "n1|8|16000|(null)|debug*|infinite"')
    stub(bin_dir, "squeue", "exit 0")
    stub(bin_dir, "scancel", f'echo "$@" >> {bin_dir}/scancel.log')
    stub(bin_dir, "scontrol", 'echo "JobId=$4 JobName=x JobState=$(cat ' + str(bin_dir) + '/state) Reason=None '
                              'ExitCode=0:15"')
    (bin_dir / "state").write_text("PREEMPTED\n")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "stub.conf"))
    write_config(cryocloud_home, usd_per_hour=1.0, max_requeues=1)
    return bin_dir


def _queue_job(project: Path, commands: list[str]) -> int:
    spec = JobSpec("Class2D/job002/", "relion", "Class2D", str(project), "Class2D/job002/", commands)
    (project / spec.job_dir).mkdir(parents=True, exist_ok=True)
    settings = load_settings()
    ledger = Ledger(settings.ledger_path)
    try:
        with ledger.transaction():
            job = ledger.add_job(name=spec.name, client="relion", job_type="Class2D", project_dir=str(project),
                                 job_dir=spec.job_dir, profile="slurm", backend="slurm", user="t", project="p",
                                 state="queued", submitted_at=time.time(), spec=spec.to_json())
            cdir = control.control_dir_for(project, spec.job_dir, job)
            cdir.mkdir(parents=True)
            ledger.update_job(job, control_dir=str(cdir))
            control.write_json(cdir / control.LAUNCH, {"spec": asdict(spec), "mpi_launcher": ["mpirun"]})
        assert dispatch(settings, ledger) == [job]
    finally:
        ledger.close()
    return job


def _pass() -> tuple[list[str], str, str]:
    """One monitor pass; returns the attempts' states, the job's state and message."""
    settings = load_settings()
    ledger = Ledger(settings.ledger_path)
    try:
        reconcile(settings, ledger)
        dispatch(settings, ledger)
        job = ledger.jobs()[0]
        return [a.state for a in ledger.attempts(job.id)], job.state, job.message
    finally:
        ledger.close()


def _iterations(project: Path, *numbers: int) -> None:
    for n in numbers:
        for kind in ("optimiser", "model", "data", "sampling"):
            (project / f"Class2D/job002/run_it{n:03d}_{kind}.star").write_text("data_\n")


def test_monitor_requeues_a_preempted_refine_from_its_last_iteration(stub_slurm: Path, tmp_path: Path) -> None:
    project = tmp_path / "p"
    job = _queue_job(project, [REFINE])
    jd = project / "Class2D/job002"
    _iterations(project, 1, 2)
    (jd / "RELION_JOB_EXIT_FAILURE").touch()  # stale: goes before the resume
    attempts, state, _ = _pass()
    assert attempts == ["requeued", "starting"] and state == "starting"  # handed to Slurm again
    sbatch = (stub_slurm / "sbatch.log").read_text().splitlines()
    assert len(sbatch) == 2  # the new attempt is a new Slurm job
    launch = control.read_json(jd / f".cryocloud/job{job}/launch.json")
    assert launch is not None
    line = launch["spec"]["commands"][0]
    assert "--continue Class2D/job002/run_it002_optimiser.star" in line and "--o Class2D/job002/run " in line
    assert not list(jd.glob("RELION_JOB_EXIT_*"))
    out = (jd / "run.out").read_text()
    assert "preempted at it002; resuming" in out and out.count("[cryocloud 20") >= 2  # dated lines
    assert "101" in (stub_slurm / "scancel.log").read_text()
    # preempted again: max_requeues = 1 was used up, so it ends as failed with the hint and RELION's marker
    _iterations(project, 3)
    attempts, state, message = _pass()
    assert attempts == ["requeued", "failed"] and state == "failed"
    assert "max_requeues" in message and "resubmit" in message
    assert [p.name for p in jd.glob("RELION_JOB_EXIT_*")] == ["RELION_JOB_EXIT_FAILURE"]
    assert "max_requeues" in (jd / "run.err").read_text()


def test_monitor_fails_a_preempted_job_that_cannot_continue(stub_slurm: Path, tmp_path: Path) -> None:
    project = tmp_path / "p"
    _queue_job(project, [REFINE])  # no iteration written yet
    attempts, state, message = _pass()
    assert attempts == ["failed"] and state == "failed"
    assert "cannot continue" in message and "PREEMPTED" in message
    assert (project / "Class2D/job002/RELION_JOB_EXIT_FAILURE").exists()


def test_node_fail_of_a_per_micrograph_job_resumes_unfinished(stub_slurm: Path, tmp_path: Path) -> None:
    (stub_slurm / "state").write_text("NODE_FAIL\n")
    project = tmp_path / "p"
    job = _queue_job(project, ["relion_run_ctffind --i x.star --o CtfFind/job003/ --use_gctf"])
    attempts, _, _ = _pass()
    assert attempts == ["requeued", "starting"]
    launch = control.read_json(project / f"Class2D/job002/.cryocloud/job{job}/launch.json")
    assert launch is not None and launch["spec"]["commands"][0].endswith(" --only_do_unfinished")
    assert "node failed at unfinished micrographs; resuming" in (project / "Class2D/job002/run.out").read_text()


# -- real Slurm, real RELION ---------------------------------------------------------------------------------
def preempt_when_held(project: Path, job_dir: str, gate: IterationGate) -> str:
    """Once relion_refine is held at the end of the gate's iteration and the lab's folder holds every iteration
    before it (a staged job streams them back): submit a job to the `urgent` partition that needs the whole
    node, so that Slurm preempts the held one. The held program cannot finish meanwhile, so the preemption
    always lands on a running job. Returns the preempted job's Slurm id."""
    gate.hold()
    root = f"{job_dir}run"
    assert wait_until(lambda: (last_iteration(project, root) or (0, ""))[0] >= gate.iteration - 1, 300), \
        f"the lab never saw iteration {gate.iteration - 1}"
    cdirs = sorted((project / job_dir).glob(".cryocloud/job*"))
    assert cdirs
    ledger = Ledger(load_settings().ledger_path)
    try:
        attempt = ledger.last_attempt(int(cdirs[-1].name.removeprefix("job")))
        assert attempt is not None
        sid = str(attempt.handle_data["job_id"])
    finally:
        ledger.close()
    cpus = run_command(["sinfo", "-h", "-N", "-o", "%c"]).stdout.split()[0]
    run_command(["sbatch", "--parsable", "-p", "urgent", "-n", cpus, "-o", "/dev/null", "-J", "preemptor",
                 "--wrap", "true"])
    return sid


def run_preempted(project: Path, job: str, gate: IterationGate) -> str:
    """relion_pipeliner --RunJobs while a helper thread preempts the job at the gate; RELION's status."""
    t = Background(preempt_when_held, project, job, gate)
    t.start()
    try:
        status = run_job(project, job)  # relion_pipeliner waits for the marker across the requeue
    finally:
        gate.close()
        t.join(60)
    return status


@pytest.mark.integration
@pytest.mark.slow
def test_preempted_class2d_resumes_and_a_downstream_job_reads_its_final_file(
        slurm: Cluster, demo_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = IterationGate(tmp_path / "gate", 3)
    monkeypatch.setenv("PATH", gate.path_env())
    opts = CLASS2D.replace("nr_iter == 3", "nr_iter == 6") + ";nr_mpi == 1;nr_threads == 2;do_queue == Yes;" \
        "queuename == slurm"
    job = add_job(demo_project, "Class2D", opts)
    assert run_preempted(demo_project, job, gate) == "succeeded"
    jd = demo_project / job
    out = (jd / "run.out").read_text()
    assert "preempted at it002" in out and "; resuming" in out and "--continue" in out
    # the names the pipeline registered are there, and no run_ct* file
    assert (jd / "run_it006_data.star").exists() and (jd / "run_it006_model.star").exists()
    assert not list(jd.glob("run_ct*"))
    assert sorted(p.name for p in jd.glob("RELION_JOB_EXIT_*")) == ["RELION_JOB_EXIT_SUCCESS"]
    ledger = Ledger(load_settings().ledger_path)
    try:
        job_id = next(j.id for j in ledger.jobs() if j.job_dir == job)
        assert wait_for(lambda: job_state(job_id) == "succeeded")  # RELION's marker may land first
        assert [a.state for a in ledger.attempts(job_id)] == ["requeued", "succeeded"]
        assert len({a.handle_data["job_id"] for a in ledger.attempts(job_id)}) == 2  # two Slurm jobs
    finally:
        ledger.close()
    # a downstream job reads the resumed job's final file through the pipeline
    down = add_job(demo_project, "Class2D", CLASS2D.replace("Synthetic/particles.star", f"{job}run_it006_data.star")
                   .replace("nr_iter == 3", "nr_iter == 1") + ";nr_mpi == 1;nr_threads == 2;do_queue == Yes;"
                   "queuename == slurm")
    assert run_job(demo_project, down) == "succeeded"
    table = starfile.read(demo_project / down / "run_it001_data.star", always_dict=True)["particles"]
    assert len(table) == 500
