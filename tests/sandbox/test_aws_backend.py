"""The AWS backend on the sandbox, as a lab meets it: a job submitted in the lab runs on a simulated EC2 instance
that sees only S3 (the lab's projects, cryocloud's home and the lab's own cryocloud source are hidden from it),
comes back into the job folder, and leaves nothing running.

Real: RELION 3.1 (relion_pipeliner), the monitor, the moto server as EC2, SeaweedFS over HTTPS with its own CA, the
instance simulator running the user-data in a mount namespace, the lab's cryocloud installed on the node from the
wheel the backend built. Simulated: the machine itself (a process on this host).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import starfile

import cryocloud
from cryocloud.ledger import Ledger
from cryocloud.sandbox import box
from cryocloud.settings import General, Settings, load_settings
from relion_support import CLASS2D, add_job, process_status, relion_env, run_job
from spine.helpers import job_state, markers, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("awsbox") / "cchome"
    settings = Settings(home=home, config_path=home / "config.toml", general=General(user="lab"))
    # every test's project and home live under the base temp folder; the lab's cryocloud source too is hidden,
    # so the node can only run the wheel it was given
    hide = [tmp_path_factory.getbasetemp(), Path(cryocloud.__file__).parent]
    state, _ = box.up(settings, hide)
    yield state
    box.down(settings)


def _ec2(state: dict[str, Any]) -> Any:
    import boto3

    return boto3.session.Session(aws_access_key_id=state["lab_access_key"],
                                 aws_secret_access_key=state["lab_secret_key"],
                                 region_name=state["region"]).client("ec2", endpoint_url=state["moto_url"])


def _instances(state: dict[str, Any], states: tuple[str, ...] = ("pending", "running")) -> list[dict[str, Any]]:
    got = _ec2(state).describe_instances(Filters=[{"Name": "instance-state-name", "Values": list(states)}])
    return [i for r in got["Reservations"] for i in r["Instances"]]


@pytest.fixture()
def lab(sandbox: dict[str, Any], cryocloud_home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A lab whose config has the `aws` profile on the sandbox, with the sandbox's exports in its environment."""
    for var in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    for line in box.exports(sandbox):
        key, _, value = line.removeprefix("export ").partition("=")
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CRYOCLOUD_BACKEND", "aws")
    image = _ec2(sandbox).describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    cryocloud_home.mkdir(parents=True, exist_ok=True)
    (cryocloud_home / "config.toml").write_text(
        f'[storage]\nurl = "s3://{sandbox["bucket"]}/{sandbox["prefix"]}"\n\n'
        f'[aws]\nregion = "{sandbox["region"]}"\n\n'
        '[profiles.aws]\nbackend = "aws"\n'
        f'image = "{image}"\npython = "{sys.executable}"\ninstance_type = "c7i.large"\n'
        "stream_seconds = 1\n")
    return {**sandbox, "image": image}


def _job_row(job_dir: str) -> Any:
    ledger = Ledger(load_settings().ledger_path)
    try:
        return next(j for j in ledger.jobs() if j.job_dir == job_dir), ledger.attempts(
            next(j for j in ledger.jobs() if j.job_dir == job_dir).id)
    finally:
        ledger.close()


def _settled(job_dir: str) -> str:
    assert wait_for(lambda: job_state(_job_row(job_dir)[0].id) not in ("queued", "starting", "running"), 120)
    return job_state(_job_row(job_dir)[0].id)


def test_a_job_runs_on_an_instance_that_sees_only_s3_and_comes_back(lab: dict[str, Any], tmp_path: Path) -> None:
    from slurm.test_slurm_backend import submit

    project = tmp_path / "lab project"
    (project / "Import").mkdir(parents=True)
    (project / "Import" / "secret.txt").write_text("the lab's own file\n")
    job = "External/job001/"
    submit(project, job, [
        f"cat '{project}/Import/secret.txt' > {job}lab-file.txt 2>&1 || echo 'lab folder hidden' > {job}lab-file.txt",
        f"echo \"ran in $PWD\" > {job}where.txt",
    ])
    assert _settled(job) == "succeeded"
    jd = project / job
    assert "lab folder hidden" in (jd / "lab-file.txt").read_text()  # the node never saw the lab's disk
    assert "/scratch/" in (jd / "where.txt").read_text()
    assert markers(jd) == ["RELION_JOB_EXIT_SUCCESS"]
    out = (jd / "run.out").read_text()
    assert "launched c7i.large" in out and "terminated instance" in out
    _, attempts = _job_row(job)
    assert attempts[-1].usd_per_hour > 0 and attempts[-1].handle_data["market"] == "spot"  # the cheaper one
    assert attempts[-1].compute_usd >= attempts[-1].usd_per_hour * 60 / 3600 * 0.99  # at least EC2's minute
    assert not _instances(lab)  # nothing left running
    iid = attempts[-1].handle_data["instance_id"]
    ud = _ec2(lab).describe_instance_attribute(InstanceId=iid, Attribute="userData")["UserData"]["Value"]
    import base64

    text = base64.b64decode(ud).decode()
    for secret in (lab["lab_secret_key"], lab["node_secret_key"], lab["lab_access_key"]):
        assert secret not in text
    inst = _ec2(lab).describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert {"cryocloud:owner", "cryocloud:project", "cryocloud:job", "cryocloud:expires"} <= set(tags)
    assert inst["MetadataOptions"]["HttpTokens"] == "required" and inst.get("InstanceLifecycle") == "spot"
    console = (Path(lab["dir"]) / "nodes" / iid / "console.out").read_text()
    assert f"cryocloud agent {Path(lab['dir']) / 'nodes' / iid}" in console  # the wheel, not the lab's source


def test_abort_in_relion_stops_the_job_on_the_instance(lab: dict[str, Any], tmp_path: Path) -> None:
    from slurm.test_slurm_backend import submit

    project = tmp_path / "lab"
    job = "External/job002/"
    submit(project, job, [f"echo started > {job}started.txt", "sleep 300"])
    jd = project / job
    assert wait_for(lambda: (jd / "started.txt").exists(), 120)  # streamed back while it runs
    (jd / "RELION_JOB_ABORT_NOW").touch()
    assert _settled(job) == "aborted"
    assert markers(jd) == ["RELION_JOB_EXIT_ABORTED"]
    assert wait_for(lambda: not _instances(lab), 60)


def test_a_missing_input_fails_on_the_node_naming_the_file(lab: dict[str, Any], tmp_path: Path) -> None:
    from slurm.test_slurm_backend import submit

    project = tmp_path / "lab"
    (project / "Extract").mkdir(parents=True)
    (project / "Extract" / "not-in-the-manifest.star").write_text("data_\n")
    job = "External/job003/"
    # the command names the file in a way input discovery cannot see (built at run time), so it is not staged
    submit(project, job, ["f=Extract/not-in-the-$(echo manifest).star; cat \"$f\""])
    assert _settled(job) == "failed"
    assert "not-in-the-manifest.star" in (project / job / "run.err").read_text()
    assert not _instances(lab)


def _data_table(path: Path) -> pd.DataFrame:
    return starfile.read(path, always_dict=True)["particles"].reset_index(drop=True)


def test_class2d_from_relion_pipeliner_runs_on_aws_same_result_as_by_hand(lab: dict[str, Any],
                                                                          demo_project: Path) -> None:
    seed = ";other_args == --random_seed 7"
    job = add_job(demo_project, "Class2D", CLASS2D + ";nr_mpi == 1;nr_threads == 1;do_queue == Yes;"
                  "queuename == aws" + seed)
    assert run_job(demo_project, job) == "succeeded"
    jd = demo_project / job
    assert process_status(demo_project)[job] == "succeeded"
    assert markers(jd) == ["RELION_JOB_EXIT_SUCCESS"]
    out = (jd / "run.out").read_text()
    assert "launched c7i.large" in out and "Expectation" in out
    script = (jd / "run_submit.script").read_text()
    line = next(ln for ln in script.splitlines() if "relion_refine" in ln)
    by_hand = demo_project / "ByHand"
    by_hand.mkdir()
    line = line.replace(f"--o {job}run", "--o ByHand/run").replace(f"--pipeline_control {job}", "")
    subprocess.run(["bash", "-c", line], cwd=demo_project, check=True, capture_output=True,
                   env=relion_env(demo_project))
    pd.testing.assert_frame_equal(_data_table(jd / "run_it003_data.star"), _data_table(by_hand / "run_it003_data.star"))
    assert not _instances(lab)
    assert _job_row(job)[1][-1].handle_data["instance_type"] == "c7i.large"
