"""Staging for Slurm nodes that do not see the lab's disk (profile `staging`), on the real Slurm with real
RELION 3.1 and a local-folder store.

Real: the monitor stages the job's inputs to the store before launch, sbatch runs the staged agent with no
access path to the project (`--chdir=/tmp`, output to /dev/null), the agent stages in to node-local scratch
($CRYOCLOUD_SCRATCH), relion_refine runs there, the job folder streams back through the store and the lab pulls
it (every byte checked against the manifest) and writes RELION's marker. Simulated: the node and the lab are
one machine, so to show that the job reads only scratch, the test moves the lab's input folder away while the
job is held in Slurm and puts it back afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from cryocloud.ledger import Ledger
from cryocloud.proc import run_command
from cryocloud.settings import load_settings
from gate import Background, IterationGate, wait_until
from relion_support import CLASS2D, add_job, run_job
from slurm.conftest import Cluster, write_config
from spine.helpers import job_state, wait_for
from storage.conftest import make_bucket, s3_server  # noqa: F401  (the session's SeaweedFS fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _slurm_id(jd: Path) -> str:
    """The Slurm id of the job's last attempt, once it has one ("" before)."""
    cdirs = sorted(jd.glob(".cryocloud/job*"))
    if not cdirs:
        return ""
    ledger = Ledger(load_settings().ledger_path)
    try:
        attempt = ledger.last_attempt(int(cdirs[-1].name.removeprefix("job")))
        return str(attempt.handle_data["job_id"]) if attempt else ""
    finally:
        ledger.close()


def _release_without_lab_inputs(project: Path, job_dir: str, moved: list[Path]) -> None:
    """Once the held job is in Slurm: move the lab's inputs away, then let Slurm start it."""
    assert wait_until(lambda: _slurm_id(project / job_dir), 300), "the job never reached Slurm"
    (project / "Synthetic").rename(project / "Synthetic.away")
    moved.append(project / "Synthetic")
    run_command(["scontrol", "release", _slurm_id(project / job_dir)])


def _seaweedfs(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A bucket on the session's SeaweedFS; credentials from a file (as a node's role would give them), since
    secrets in the environment are never exported to a Slurm job."""
    state: dict[str, Any] = request.getfixturevalue("s3_server")
    for var in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    home = tmp_path / "home"  # ~/.aws/credentials: where boto3's chain looks without any variable set
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text(f"[default]\naws_access_key_id = {state['access_key']}\n"
                                               f"aws_secret_access_key = {state['secret_key']}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", state["endpoint_url"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return f"s3://{make_bucket(state)}/lab"


@pytest.mark.parametrize("kind", ["folder", "seaweedfs"])
def test_class2d_runs_in_node_scratch_and_its_outputs_come_back(
        slurm: Cluster, cryocloud_home: Path, demo_project: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, kind: str) -> None:
    store = str(tmp_path / "store") if kind == "folder" else _seaweedfs(request, tmp_path, monkeypatch)
    scratch = tmp_path / "node-scratch"
    write_config(cryocloud_home, mpi_launcher=["mpirun", "--oversubscribe", "-n", "{ranks}"],
                 staging=store, sbatch_args=["--hold"])
    monkeypatch.setenv("CRYOCLOUD_SCRATCH", str(scratch))
    monkeypatch.setenv("CRYOCLOUD_STREAM_SECONDS", "1")
    job = add_job(demo_project, "Class2D", CLASS2D + ";nr_mpi == 1;nr_threads == 2;do_queue == Yes;"
                  "queuename == slurm")
    moved: list[Path] = []
    t = Background(_release_without_lab_inputs, demo_project, job, moved)
    t.start()
    try:
        status = run_job(demo_project, job)
    finally:
        for p in moved:
            (p.parent / "Synthetic.away").rename(p)
    t.join(60)
    assert moved and status == "succeeded"
    jd = demo_project / job
    for name in ("run_it003_data.star", "run_it003_model.star", "run_it003_classes.mrcs"):
        assert (jd / name).stat().st_size > 0, name
    assert sorted(p.name for p in jd.glob("RELION_JOB_EXIT_*")) == ["RELION_JOB_EXIT_SUCCESS"]
    out = (jd / "run.out").read_text()
    assert f"node-local scratch {scratch}" in out and "pushing the job folder back" in out
    assert not list(scratch.glob("cryocloud-*"))  # scratch removed after the final push
    if kind == "folder":
        assert list((tmp_path / "store").glob("manifests/jobs/*-out.json"))
    ledger = Ledger(load_settings().ledger_path)
    try:
        job_id = next(j.id for j in ledger.jobs() if j.job_dir == job)
    finally:
        ledger.close()
    assert wait_for(lambda: job_state(job_id) == "succeeded")


def test_abort_of_a_staged_job_cancels_it_on_the_node(slurm: Cluster, cryocloud_home: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from slurm.test_slurm_backend import ended, submit
    from spine.helpers import markers

    write_config(cryocloud_home, staging=str(tmp_path / "store"))
    monkeypatch.setenv("CRYOCLOUD_SCRATCH", str(tmp_path / "node-scratch"))
    monkeypatch.setenv("CRYOCLOUD_STREAM_SECONDS", "1")
    project = tmp_path / "lab"
    job = submit(project, "External/job001/", ["echo started in $PWD > External/job001/where.txt", "sleep 300"])
    jd = project / "External/job001"
    assert wait_for(lambda: (jd / "where.txt").exists())  # streamed back from the node while it runs
    assert str(tmp_path / "node-scratch") in (jd / "where.txt").read_text()
    (jd / "RELION_JOB_ABORT_NOW").touch()  # RELION's Abort, in the lab's folder the node does not see
    assert ended(job) == "aborted"
    assert markers(jd) == ["RELION_JOB_EXIT_ABORTED"]


def test_the_lab_marks_the_job_only_after_its_outputs_are_verified(tmp_path: Path) -> None:
    """A corrupt object in the node's pushed outputs: nothing wrong lands, no result counts, no marker."""
    from dataclasses import asdict

    from cryocloud.jobs import control
    from cryocloud.jobs.spec import JobSpec
    from cryocloud.monitor import staging
    from cryocloud.storage.localfs import LocalFolderStore
    from cryocloud.storage.staging import stage_out

    lab, node, store_dir = tmp_path / "lab", tmp_path / "node", tmp_path / "store"
    spec = JobSpec("Class2D/job002/", "relion", "Class2D", str(lab), "Class2D/job002/", ["true"])
    cdir = lab / "Class2D/job002/.cryocloud/job1"
    cdir.mkdir(parents=True)
    record = {"store": str(store_dir), "inputs": "jobs/u-1-in", "outputs": "jobs/u-1-out",
              "job_dir": spec.job_dir, "control": "Class2D/job002/.cryocloud/job1"}
    control.write_json(cdir / control.LAUNCH, {"spec": asdict(spec), "staging": record})
    ncdir = node / "Class2D/job002/.cryocloud/job1"
    ncdir.mkdir(parents=True)
    (node / "Class2D/job002/run_it001_data.star").write_text("data_\n" * 100)
    (node / "Class2D/job002/RELION_JOB_EXIT_SUCCESS").touch()  # the node's own marker: never travels
    control.write_json(ncdir / control.RESULT, {"state": "succeeded", "exit_code": 0, "message": ""})
    store = LocalFolderStore(store_dir)
    stage_out(store, node, [Path("Class2D/job002")], name="jobs/u-1-out")
    packs = list((store_dir / "cas/p").glob("*"))
    assert packs
    good = {p: p.read_bytes() for p in packs}
    for p in packs:
        p.write_bytes(b"X" * len(good[p]))
    assert staging.read_result(load_settings(), spec, cdir) is None
    assert "pulling the job's outputs failed" in (lab / "Class2D/job002/run.err").read_text()
    assert not (lab / "Class2D/job002/run_it001_data.star").exists()
    for p, data in good.items():
        p.write_bytes(data)
    result = staging.read_result(load_settings(), spec, cdir)
    assert result is not None and result["state"] == "succeeded"
    assert (lab / "Class2D/job002/run_it001_data.star").read_text() == "data_\n" * 100
    assert not (lab / "Class2D/job002/RELION_JOB_EXIT_SUCCESS").exists()


def test_a_preempted_staged_class2d_resumes_from_the_iterations_that_came_back(
        slurm: Cluster, cryocloud_home: Path, demo_project: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A real preemption (a job in the urgent partition; see test_slurm_requeue.py) of a staged job: the
    lab's folder holds the iterations streamed back so far; the new attempt is staged again and continues."""
    from slurm.test_slurm_requeue import run_preempted

    write_config(cryocloud_home, mpi_launcher=["mpirun", "--oversubscribe", "-n", "{ranks}"],
                 staging=str(tmp_path / "store"))
    monkeypatch.setenv("CRYOCLOUD_SCRATCH", str(tmp_path / "node-scratch"))
    monkeypatch.setenv("CRYOCLOUD_STREAM_SECONDS", "1")
    gate = IterationGate(tmp_path / "gate", 3)  # held in node scratch until the lab has it001 and it002 back
    monkeypatch.setenv("PATH", gate.path_env())
    job = add_job(demo_project, "Class2D", CLASS2D.replace("nr_iter == 3", "nr_iter == 6")
                  + ";nr_mpi == 1;nr_threads == 2;do_queue == Yes;queuename == slurm")
    assert run_preempted(demo_project, job, gate) == "succeeded"
    assert str(tmp_path / "node-scratch") in str(gate.fifo())  # it was held on the node, not in the lab
    jd = demo_project / job
    out = (jd / "run.out").read_text()
    assert "--continue" in out and (jd / "run_it006_data.star").exists() and not list(jd.glob("run_ct*"))
    assert sorted(p.name for p in jd.glob("RELION_JOB_EXIT_*")) == ["RELION_JOB_EXIT_SUCCESS"]
    ledger = Ledger(load_settings().ledger_path)
    try:
        job_id = next(j.id for j in ledger.jobs() if j.job_dir == job)
        assert wait_for(lambda: job_state(job_id) == "succeeded")
        assert [a.state for a in ledger.attempts(job_id)] == ["requeued", "succeeded"]
    finally:
        ledger.close()
    assert len(list((tmp_path / "store").glob("manifests/jobs/*-in.json"))) == 2  # staged once per attempt
