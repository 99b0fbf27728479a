"""The AWS backend on the sandbox, as a lab meets it: a job submitted in the lab runs on a simulated EC2 instance
that sees only S3 (the lab's projects, cryocloud's home and the lab's own cryocloud source are hidden from it),
comes back into the job folder, and leaves nothing running.

Real: RELION 3.1 (relion_pipeliner), the monitor, the moto server as EC2, SeaweedFS over HTTPS with its own CA, the
instance simulator running the user-data in a mount namespace, the lab's cryocloud installed on the node from the
wheel the backend built. Simulated: the machine itself (a process on this host).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import starfile

import cryocloud
from cryocloud.aws import profiles
from cryocloud.jobs import control
from cryocloud.jobs.spec import JobSpec
from cryocloud.ledger import Ledger
from cryocloud.sandbox import box
from cryocloud.settings import General, Settings, load_settings
from relion_support import CLASS2D, add_job, process_status, relion_env, run_by_hand, run_job
from spine.helpers import job_state, markers, wait_for
from testtools import unavailable

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
    made = profiles.ensure(cryocloud_home / "config.toml", {  # what `sandbox up` writes, plus a machine
        "region": sandbox["region"], "staging": f"s3://{sandbox['bucket']}/{sandbox['prefix']}", "image": image,
        "python": sys.executable, "instance_type": "c7i.large", "stream_seconds": 1,
        "executables": {"/opt/lab-tools/bin/": "/usr/bin/"}}, "written by the test")
    assert made == [("aws", "made"), ("aws-spot", "made"), ("aws-ondemand", "made")]
    return {**sandbox, "image": image}


def _add_profile(home: Path, lab: dict[str, Any], name: str, extra: str) -> None:
    """Another AWS profile on the sandbox, with `extra` TOML lines."""
    config = home / "config.toml"
    config.write_text(config.read_text() + f'\n[profiles.{name}]\nbackend = "aws"\nregion = "{lab["region"]}"\n'
                      f'staging = "s3://{lab["bucket"]}/{lab["prefix"]}"\npython = "{sys.executable}"\n'
                      f'instance_type = "c7i.large"\nstream_seconds = 1\n{extra}\n')


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
        f"/opt/lab-tools/bin/echo the lab path, mapped for the image > {job}mapped.txt",  # [profiles.aws] executables
    ])
    assert _settled(job) == "succeeded"
    jd = project / job
    assert "lab folder hidden" in (jd / "lab-file.txt").read_text()  # the node never saw the lab's disk
    assert "/scratch/" in (jd / "where.txt").read_text()
    assert (jd / "mapped.txt").read_text() == "the lab path, mapped for the image\n"
    assert markers(jd) == ["RELION_JOB_EXIT_SUCCESS"]
    out = (jd / "run.out").read_text()
    assert "launched c7i.large" in out and "terminated instance" in out and "results back: " in out
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
    assert "running (instance" in (jd / "run.out").read_text()  # the lab's line, kept beside the node's
    assert markers(jd) == ["RELION_JOB_EXIT_ABORTED"]
    assert wait_for(lambda: not _instances(lab), 60)
    listed = _s3(lab).list_objects_v2(Bucket=lab["bucket"], Prefix=f"{lab['prefix']}/control/")
    assert [o["Key"] for o in listed.get("Contents", [])] == []  # the abort object was for this attempt only


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


def test_a_refine_job_on_a_type_with_nvme_is_given_it_as_scratch_where_the_node_has_one(lab: dict[str, Any],
                                                                                          tmp_path: Path) -> None:
    """RELION's Machine field names g5.xlarge (250 GB of instance store): the launch says its NVMe becomes
    RELION's --scratch_dir, and the node looks for the device; a simulated node has none, says so, and runs the job
    as written (the mount itself: tests/spine/test_node_scratch.py, on a loop device)."""
    from slurm.test_slurm_backend import submit

    project = tmp_path / "lab"
    (project / "Extract").mkdir(parents=True)
    (project / "Extract" / "particles.star").write_text("data_\n")
    job = "Class2D/job010/"
    submit(project, job, ["relion_refine --i Extract/particles.star --version"], extras={"extra3": "g5.xlarge"})
    assert _settled(job) == "succeeded"
    out = (project / job / "run.out").read_text()
    assert "launched g5.xlarge" in out and "its NVMe as RELION's --scratch_dir" in out
    assert "no instance-store device on this node: RELION reads the particles from the EBS volume" in out
    assert not _instances(lab)


def test_the_bucket_away_mid_job_loses_nothing(lab: dict[str, Any], tmp_path: Path) -> None:
    """The S3 endpoint goes away while the job runs (stopped by PID: connections refused) and the job ends
    during the outage: the node keeps its results and pushes them again until the store answers; the lab's pulls
    fail meanwhile and are retried. Nothing is lost, RELION sees success, and run.err says what happened."""
    from slurm.test_slurm_backend import submit

    project = tmp_path / "lab"
    job = "External/job011/"
    port = lab["s3_url"].rsplit(":", 1)[1]
    # the job waits (on the node) until the store stops answering, then writes its last output and ends
    submit(project, job, [f"echo started > {job}started.txt",
                          f"while (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; do sleep 0.2; done",
                          f"echo written while the store was away > {job}during.txt"])
    jd = project / job
    assert wait_for(lambda: (jd / "started.txt").exists(), 120)  # streamed back: the node is running it
    iid = _attempt_handle(job)["instance_id"]
    console = Path(lab["dir"]) / "nodes" / iid / "console.err"
    assert box.stop_s3(Path(lab["dir"]))
    try:
        assert wait_for(lambda: console.exists() and "pushing the results again" in console.read_text(), 180)
    finally:
        box.start_s3(Path(lab["dir"]))
    assert _settled(job) == "succeeded"
    assert (jd / "during.txt").read_text() == "written while the store was away\n"
    assert "the store is unreachable" in (jd / "run.err").read_text()
    assert markers(jd) == ["RELION_JOB_EXIT_SUCCESS"]
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
    assert "on c7i.large spot (aws profile aws)" in out  # priced on the machine the plan chose, before launch
    from cryocloud.jobs.relion import installed_version

    assert JobSpec.from_json(_job_row(job)[0].spec).relion_version == installed_version() != ""  # the node checks it
    by_hand = run_by_hand(demo_project, job)
    pd.testing.assert_frame_equal(_data_table(jd / "run_it003_data.star"), _data_table(by_hand / "run_it003_data.star"))
    # iteration 1 reached the lab while the job ran: the pull that wrote it (its ctime: pull keeps the node's mtime)
    # came before the node's end
    ended = control.read_json(next(jd.glob(".cryocloud/job*")) / control.RESULT)
    assert ended is not None and (jd / "run_it001_data.star").stat().st_ctime < float(ended["ended_at"])
    assert not _instances(lab)
    assert _job_row(job)[1][-1].handle_data["instance_type"] == "c7i.large"


def _attempt_handle(job_dir: str) -> dict[str, Any]:
    _, attempts = _job_row(job_dir)
    return dict(attempts[-1].handle_data) if attempts else {}


def test_an_instance_that_dies_mid_job_fails_it_with_the_reason_and_the_cost(lab: dict[str, Any],
                                                                             tmp_path: Path) -> None:
    from slurm.test_slurm_backend import submit

    project = tmp_path / "lab"
    job = "External/job004/"
    submit(project, job, [f"echo started > {job}started.txt", "sleep 300"])
    jd = project / job
    assert wait_for(lambda: (jd / "started.txt").exists(), 120)
    _ec2(lab).terminate_instances(InstanceIds=[_attempt_handle(job)["instance_id"]])  # as a user in the console
    assert _settled(job) == "failed"
    assert "terminated from outside" in (jd / "run.err").read_text()
    assert markers(jd) == ["RELION_JOB_EXIT_FAILURE"]
    assert _job_row(job)[1][-1].compute_usd > 0
    assert not _instances(lab)


def test_the_lab_away_for_longer_than_the_job_loses_nothing(lab: dict[str, Any], tmp_path: Path) -> None:
    """The monitor is killed (a laptop closed) once the instance is launched; the job ends and the node ends
    itself meanwhile; the next monitor pulls the results, marks the job and records its cost."""
    import signal

    from cryocloud.monitor.loop import ensure_monitor, monitor_pid
    from slurm.test_slurm_backend import submit

    s3 = _s3(lab)
    gate = f"{lab['prefix']}/gate/{tmp_path.name}"
    project = tmp_path / "lab"
    job = "External/job005/"
    submit(project, job, [  # held on the node until the test has killed the lab's monitor
        f"until aws s3api head-object --bucket {lab['bucket']} --key {gate} >/dev/null 2>&1; do sleep 0.2; done",
        f"echo finished while the lab was away > {job}out.txt"])
    assert wait_for(lambda: _attempt_handle(job).get("instance_id"), 120)
    pid = monitor_pid(load_settings())
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    s3.put_object(Bucket=lab["bucket"], Key=gate, Body=b"go")
    assert wait_for(lambda: not _instances(lab), 120)  # the node ended itself with nobody watching
    assert _job_row(job)[0].state in ("starting", "running")  # nothing recorded while the lab was away
    ensure_monitor(load_settings())
    # read the ledger as it is (job_state() would bring it up to date itself, as `cryocloud status` does)
    assert wait_for(lambda: _job_row(job)[0].state not in ("starting", "running"), 120)
    assert _job_row(job)[0].state == "succeeded"
    assert (project / job / "out.txt").read_text() == "finished while the lab was away\n"
    assert markers(project / job) == ["RELION_JOB_EXIT_SUCCESS"]
    assert _job_row(job)[1][-1].compute_usd > 0


def _s3(state: dict[str, Any]) -> Any:
    import boto3

    return boto3.session.Session(aws_access_key_id=state["lab_access_key"],
                                 aws_secret_access_key=state["lab_secret_key"],
                                 region_name=state["region"]).client("s3", endpoint_url=state["s3_url"],
                                                                     verify=state["ca_file"])


PIPELINER_RUN = """
import json, sys
from pipeliner.api.manage_project import PipelinerProject
project = PipelinerProject(project_name="lab")
job = project.run_job({"_rlnJobTypeLabel": "relion.class2d.em", **json.loads(sys.argv[1])})
print("JOB", job.output_dir, flush=True)
print("STATUS", project.wait_for_job_to_finish(job, ping=0.5, timeout=600), flush=True)
"""


def test_the_ccpem_pipeliner_submits_to_aws_and_sees_its_own_markers(lab: dict[str, Any], demo_project: Path,
                                                                     tmp_path: Path) -> None:
    """The real CCP-EM Pipeliner (PyPI ccpem-pipeliner, Doppio's engine) runs a Class2D with its queue set to
    cryocloud's and Queue name `aws`: its job_runner.py line runs on the simulated instance, and the Pipeliner
    sees Succeeded through its own marker, which the lab wrote after the outputs came back verified."""
    import subprocess

    if not (Path(sys.executable).parent / "pipeliner").exists():
        unavailable("the CCP-EM Pipeliner is not installed (pip install ccpem-pipeliner; in the dev extra)")
    env = relion_env(demo_project)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")  # the Pipeliner's own settings, not the user's
    (demo_project / "default_pipeline.star").unlink()  # a Pipeliner project of its own, beside RELION's data
    new = subprocess.run([str(Path(sys.executable).parent / "pipeliner"), "--new_project", "lab"],
                         cwd=demo_project, env=env, input="y\n", capture_output=True, text=True, timeout=120)
    assert (demo_project / "lab_pipeline.star").exists(), new.stdout + new.stderr
    options = {"fn_img": "Synthetic/particles.star", "nr_classes": 2, "nr_iter_em": 3, "particle_diameter": 150,
               "psi_sampling": 12, "offset_step": 2, "offset_range": 5, "nr_pool": 30, "nr_mpi": 1,
               "nr_threads": 1, "do_queue": "Yes", "queuename": "aws"}
    ran = subprocess.run([sys.executable, "-c", PIPELINER_RUN, json.dumps(options)], cwd=demo_project, env=env,
                         capture_output=True, text=True, timeout=900)
    job = ran.stdout.split("JOB ", 1)[1].split()[0] if "JOB " in ran.stdout else ""
    jd = demo_project / job
    logs = "".join((jd / n).read_text()[-3000:] for n in ("run.out", "run.err") if (jd / n).exists())
    assert "STATUS Succeeded" in ran.stdout, ran.stdout[-2000:] + ran.stderr[-2000:] + logs
    assert "job_runner.py" in JobSpec.from_json(_job_row(job)[0].spec).commands[0]
    assert JobSpec.from_json(_job_row(job)[0].spec).client == "pipeliner"
    assert sorted(p.name for p in jd.iterdir() if "_JOB_EXIT_" in p.name) == ["PIPELINER_JOB_EXIT_SUCCESS"]
    out = (jd / "run.out").read_text()
    assert "launched c7i.large" in out and "results back" in out
    assert (jd / "run_it003_data.star").is_file()
    assert not _instances(lab)


def test_a_stalled_job_is_said_and_ended_when_the_profile_says_so(lab: dict[str, Any], tmp_path: Path,
                                                                  cryocloud_home: Path) -> None:
    """No new output and no CPU use for the profile's stall_minutes: a run.out line, and with end_stalled the job
    ends (a node billing while nothing moves is the other surprise bill)."""
    from slurm.test_slurm_backend import submit

    _add_profile(cryocloud_home, lab, "aws-stall", f'image = "{lab["image"]}"\nstall_minutes = 0.05\nend_stalled = true')
    project = tmp_path / "lab"
    job = "External/job007/"
    submit(project, job, ["sleep 600"], queue="aws-stall")
    assert _settled(job) == "aborted"
    jd = project / job
    assert "stalled: no new output and no CPU use for 0.05 min" in (jd / "run.out").read_text()
    assert "ended: stalled" in _job_row(job)[0].message
    assert markers(jd) == ["RELION_JOB_EXIT_ABORTED"]
    assert not _instances(lab)


def test_a_stall_shows_in_status_and_the_job_bills_on_until_cancelled(lab: dict[str, Any], tmp_path: Path,
                                                                      cryocloud_home: Path) -> None:
    """Without end_stalled a stalled job goes on (the user decides), but `cryocloud status` says it is stalled and
    still billing; `cancel` then ends it as aborted, the instance with it."""
    from click.testing import CliRunner

    from cryocloud.cli.main import cli
    from slurm.test_slurm_backend import submit

    _add_profile(cryocloud_home, lab, "aws-stall-on", f'image = "{lab["image"]}"\nstall_minutes = 0.05')
    project = tmp_path / "lab"
    job = "External/job008/"
    submit(project, job, ["sleep 600"], queue="aws-stall-on")
    assert wait_for(lambda: _job_row(job)[0].message.startswith("stalled since"), 120)
    shown = CliRunner().invoke(cli, ["status", str(project / job)])
    assert shown.exit_code == 0, shown.output
    assert "no new output and no CPU use for 0.05 min; still billing" in shown.output  # the job's events
    assert _job_row(job)[0].state == "running"
    assert CliRunner().invoke(cli, ["cancel", str(project / job)]).exit_code == 0
    assert _settled(job) == "aborted"
    assert markers(project / job) == ["RELION_JOB_EXIT_ABORTED"]
    assert not _instances(lab)


def test_a_node_whose_relion_is_not_the_labs_fails_before_work_naming_both(lab: dict[str, Any], tmp_path: Path,
                                                                          cryocloud_home: Path) -> None:
    """The profile maps RELION 9.9.9 to an image that in fact carries this host's RELION: the node says so."""
    from dataclasses import replace

    from cryocloud.app.submit import submit_spec
    from cryocloud.jobs.relion import installed_version, job_spec_from_script
    from spine.helpers import make_job

    _add_profile(cryocloud_home, lab, "aws-v9", f'images = {{ "9.9.9" = "{lab["image"]}" }}')
    project = tmp_path / "lab"
    job = "External/job008/"
    script = make_job(project, job, ["echo should not run > " + job + "ran.txt"])
    spec = replace(job_spec_from_script(script, project), relion_version="9.9.9")
    settings = load_settings()
    submit_spec(spec, settings.profile("aws-v9"), settings, dict(os.environ))
    assert _settled(job) == "failed"
    err = (project / job / "run.err").read_text()
    assert f"this node's RELION is {installed_version()}, the lab's is 9.9.9" in err
    assert not (project / job / "ran.txt").exists()
    assert not _instances(lab)


# --- issue 20: instances, strays and quotas, seen and ended from the lab --------------------------------------
def test_a_launch_recorded_nowhere_is_ended_by_the_monitors_sweep_and_the_job_runs(
        lab: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The monitor died between RunInstances and its ledger record: the test does dispatch's launch by hand (stage,
    backend.submit) and records nothing, while it holds the monitor's lock so no monitor runs meanwhile."""
    from cryocloud.app.jobs import sweep_findings
    from cryocloud.backends.aws.backend import AwsBackend
    from cryocloud.backends.base import Launch
    from cryocloud.monitor import loop, staging
    from slurm.test_slurm_backend import submit

    settings = load_settings()
    lock = loop._lock(settings)  # "a monitor runs": submit starts none, and nothing launches the job
    assert lock is not None
    project = tmp_path / "lab"
    job = "External/job010/"
    try:
        job_id = submit(project, job, [f"echo done > {job}done.txt"])
        row, _ = _job_row(job)
        spec, cdir = JobSpec.from_json(row.spec), Path(row.control_dir)
        staging.stage_job(settings, str(staging.store_url(settings, settings.profile("aws"))), job_id, spec, cdir)
        orphan = AwsBackend(settings.profile("aws"), settings).submit(Launch(job_id, spec, cdir, {})).data[
            "instance_id"]
        assert _job_row(job)[1] == []  # recorded nowhere
    finally:
        os.close(lock)
    loop.ensure_monitor(settings)  # a new monitor: it sweeps on start
    log = settings.run_dir / "monitor.log"
    assert wait_for(lambda: log.exists() and f"sweep: ended instance {orphan}" in log.read_text(), 120)
    assert "never recorded" in log.read_text()
    assert _settled(job) == "succeeded"  # staged afresh and launched again
    assert (project / job / "done.txt").read_text() == "done\n"
    attempts = _job_row(job)[1]
    assert len(attempts) == 1 and attempts[0].handle_data["instance_id"] != orphan
    assert orphan not in {i["InstanceId"] for i in _instances(lab)}
    assert "launching again" in (project / job / "run.out").read_text()
    assert any(orphan in line for _, line in sweep_findings(settings))
    from cryocloud.cli.main import main

    capsys.readouterr()
    assert main(["status"]) == 0
    assert f"ended instance {orphan}" in capsys.readouterr().out  # `cryocloud status` says what the sweep did


def test_instances_ls_shows_the_job_and_its_cost_and_kill_aborts_it_in_relion(lab: dict[str, Any], tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from cryocloud.cli.main import main
    from slurm.test_slurm_backend import submit

    project = tmp_path / "lab"
    job = "External/job011/"
    job_id = submit(project, job, [f"echo started > {job}started.txt", "sleep 600"])
    jd = project / job
    assert wait_for(lambda: (jd / "started.txt").exists(), 120)
    capsys.readouterr()
    assert main(["instances", "ls", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1
    row = rows[0]
    assert (row["job_id"], row["job_state"], row["type"], row["relion_folder"]) == (
        job_id, "running", "c7i.large", str(jd))
    assert row["cost_so_far_usd"] > 0 and row["usd_per_hour"] > 0
    assert main(["instances", "kill", row["id"], "--yes"]) == 0
    assert f"job {job_id} aborted, cost " in capsys.readouterr().out
    assert job_state(job_id) == "aborted"
    assert markers(jd) == ["RELION_JOB_EXIT_ABORTED"]
    _, attempts = _job_row(job)
    assert attempts[-1].compute_usd > 0  # its bill, from launch to the kill
    assert wait_for(lambda: not _instances(lab), 60)


def test_cleanup_all_is_a_dry_run_then_ends_exactly_the_tagged_strays(lab: dict[str, Any],
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from cryocloud.cli.main import main
    from cryocloud.storage import tags as tagging

    settings = load_settings()
    ec2 = _ec2(lab)
    tags = tagging.make(project="lab", job="999 Class2D/job999/", expires="9999999999", who=settings.user)
    tags[tagging.LEDGER] = tagging.ledger_id(settings.ledger_path)
    stray = ec2.run_instances(ImageId=lab["image"], MinCount=1, MaxCount=1, InstanceType="c7i.large",
                              TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                  {"Key": k, "Value": v} for k, v in tags.items()]}])["Instances"][0]["InstanceId"]
    other = ec2.run_instances(ImageId=lab["image"], MinCount=1, MaxCount=1,
                              InstanceType="c7i.large")["Instances"][0]["InstanceId"]  # not cryocloud's
    try:
        capsys.readouterr()
        assert main(["cleanup", "--all", "--json"]) == 0
        dry = json.loads(capsys.readouterr().out)
        assert dry["dry_run"] and [s["id"] for s in dry["strays"]] == [stray] and dry["untagged"] == []
        assert "unknown to this ledger" in dry["strays"][0]["why"] and dry["saves_usd_per_day"] > 0
        assert {i["InstanceId"] for i in _instances(lab)} >= {stray, other}  # a dry run ends nothing
        assert main(["cleanup", "--instances", "--untagged"]) == 0
        assert f"not cryocloud's (listed only): instance {other}" in capsys.readouterr().out
        assert main(["cleanup", "--all", "--yes"]) == 0
        assert f"ended instance {stray}" in capsys.readouterr().out
        live = {i["InstanceId"] for i in _instances(lab)}
        assert stray not in live and other in live
    finally:
        ec2.terminate_instances(InstanceIds=[other])
