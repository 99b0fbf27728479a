"""Instances, strays, quotas and spot history against moto in-process: what `instances ls|kill`, `cleanup`, the
monitor's sweep, the quota check and `spot-prices --history` decide, case by case.

moto has no Service Quotas (it answers "not available in this region"): the quota tests feed the API's answers
through a botocore Stubber on a real service-quotas client, injected where cryocloud makes that client. moto
does answer DescribeSpotPriceHistory, with one price per zone dated 2006-01-02: the history tests use that answer
as it is (no price in the window: the snapshot is shown) and a Stubber for a week of real-shaped history.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import moto  # the dev extra's: a missing moto fails here, never skips
import pytest

from cryocloud.app import instances as app
from cryocloud.backends.aws import quotas
from cryocloud.cli.main import main
from cryocloud.errors import CryocloudError
from cryocloud.jobs import control
from cryocloud.jobs.spec import JobSpec
from cryocloud.ledger import Ledger
from cryocloud.monitor import staging, sweep
from cryocloud.planner import spot_history
from cryocloud.settings import General, Settings
from cryocloud.storage import tags as tagging


@pytest.fixture()
def ec2(monkeypatch: pytest.MonkeyPatch) -> Any:
    for var in ("AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_PROFILE",
                "AWS_ENDPOINT_URL_SERVICE_QUOTAS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with moto.mock_aws():
        import boto3

        yield boto3.client("ec2", region_name="us-east-1")


@pytest.fixture()
def settings(cryocloud_home: Path) -> Settings:
    return Settings(home=cryocloud_home, config_path=cryocloud_home / "config.toml", general=General(user="lab"))


def _tags(settings: Settings, job: str, expires: float | None = None, **over: str) -> dict[str, str]:
    tags = tagging.make(project="p", job=job, expires=str(int(expires or time.time() + 3600)), who="lab")
    tags[tagging.LEDGER] = tagging.ledger_id(settings.ledger_path)
    return {**tags, **over}


def _run(ec2: Any, tags: dict[str, str] | None, itype: str = "c7i.large") -> str:
    kw: dict[str, Any] = {}
    if tags:
        kw["TagSpecifications"] = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v}
                                                                          for k, v in tags.items()]}]
    got = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType=itype, **kw)
    return str(got["Instances"][0]["InstanceId"])


def _state(ec2: Any, iid: str) -> str:
    return str(ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"])


def _job(settings: Settings, tmp_path: Path, state: str, instance: str = "", folder: str = "External/job001/") -> int:
    project = tmp_path / "lab"
    (project / folder).mkdir(parents=True, exist_ok=True)
    spec = JobSpec(folder, "relion", "External", str(project), folder, ["true"])
    ledger = Ledger(settings.ledger_path)
    try:
        job_id = ledger.add_job(name=folder, client="relion", job_type="External", project_dir=str(project),
                                job_dir=folder, profile="aws", backend="aws", user="lab", project="lab", state=state,
                                submitted_at=time.time(), spec=spec.to_json())
        cdir = control.control_dir_for(project, folder, job_id)
        cdir.mkdir(parents=True)
        ledger.update_job(job_id, control_dir=str(cdir))
        if instance:
            ledger.add_attempt(job_id, backend="aws", handle=json.dumps({"instance_id": instance}),
                               machine="c7i.large on-demand", usd_per_hour=0.5, started_at=time.time(), state=state)
        return job_id
    finally:
        ledger.close()


def test_ls_joins_the_ledger_shows_cost_so_far_and_only_yours_unless_asked(
        ec2: Any, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    running = _job(settings, tmp_path, "running")
    mine = _run(ec2, _tags(settings, f"{running} External/job001/"))
    ledger = Ledger(settings.ledger_path)
    ledger.add_attempt(running, backend="aws", handle=json.dumps({"instance_id": mine}), usd_per_hour=0.25,
                       started_at=time.time(), state="running")
    ledger.close()
    theirs = _run(ec2, _tags(settings, "7 Class2D/job002/", **{tagging.OWNER: "other"}))
    untagged = _run(ec2, None)
    rows = app.list_instances(settings, now=time.time() + 3600)
    assert [r["id"] for r in rows] == [mine]
    row = rows[0]
    assert (row["job_id"], row["job_state"], row["type"], row["owner"]) == (running, "running", "c7i.large", "lab")
    assert row["relion_folder"] == str(tmp_path / "lab" / "External/job001/")
    assert row["usd_per_hour"] == 0.25 and row["cost_so_far_usd"] == pytest.approx(0.25, rel=0.01)  # an hour in
    everyone = {r["id"] for r in app.list_instances(settings, all_users=True)}
    assert everyone == {mine, theirs} and untagged not in everyone
    settings.config_path.write_text('user = "lab"\n')  # the CLI's own settings: the same user and ledger
    capsys.readouterr()
    assert main(["instances", "ls", "--all-users"]) == 0
    table = capsys.readouterr().out
    assert mine in table and f"{running} running" in table and "7 (not in this ledger)" in table


def test_cleanup_is_a_dry_run_then_ends_exactly_the_strays(ec2: Any, settings: Settings, tmp_path: Path) -> None:
    active = _job(settings, tmp_path, "running", folder="Class2D/job002/")
    ended = _job(settings, tmp_path, "succeeded", folder="Class2D/job003/")
    queued = _job(settings, tmp_path, "queued", folder="Class2D/job004/")
    current = _run(ec2, _tags(settings, f"{active} Class2D/job002/"))
    ledger = Ledger(settings.ledger_path)
    ledger.add_attempt(active, backend="aws", handle=json.dumps({"instance_id": current}), started_at=time.time())
    ledger.close()
    strays = {
        _run(ec2, _tags(settings, "99 Class3D/job009/")): "unknown to this ledger",
        _run(ec2, _tags(settings, f"{ended} Class2D/job003/")): "ended succeeded",
        _run(ec2, _tags(settings, f"{queued} Class2D/job004/")): "never recorded",
        _run(ec2, _tags(settings, f"{active} Class2D/job002/", expires=time.time() - 7200)): "past its expiry",
    }
    untouched = [current, _run(ec2, None), _run(ec2, _tags(settings, "99 x", **{tagging.OWNER: "other"})),
                 _run(ec2, _tags(settings, "99 x", **{tagging.LEDGER: "another-ledger"}))]
    vol = ec2.create_volume(Size=50, AvailabilityZone="us-east-1a", VolumeType="gp3", TagSpecifications=[
        {"ResourceType": "volume", "Tags": [{"Key": k, "Value": v}
                                            for k, v in _tags(settings, f"{ended} Class2D/job003/").items()]}])
    bare_vol = ec2.create_volume(Size=10, AvailabilityZone="us-east-1a")

    dry = app.cleanup(settings, instances=True, volumes=True, untagged=True)
    assert dry.dry_run and {i.id: i.why for i in dry.strays if i.kind == "instance"}.keys() == strays.keys()
    for item in dry.strays:
        if item.kind == "instance":
            assert strays[item.id] in item.why and item.usd_per_day > 0
    assert [i.id for i in dry.strays if i.kind == "volume"] == [vol["VolumeId"]]
    assert next(i for i in dry.strays if i.kind == "volume").usd_per_day == pytest.approx(50 * 0.08 / (730 / 24))
    assert dry.usd_per_day == pytest.approx(sum(i.usd_per_day for i in dry.strays))
    assert {untouched[1], bare_vol["VolumeId"]} <= {i.id for i in dry.untagged}
    assert all(_state(ec2, i) == "running" for i in [*strays, *untouched])  # a dry run touches nothing

    done = app.cleanup(settings, instances=True, volumes=True, yes=True)
    assert {i.id for i in done.strays} == {*strays, vol["VolumeId"]} and all(i.done for i in done.strays)
    assert all(_state(ec2, i) in ("shutting-down", "terminated") for i in strays)
    assert all(_state(ec2, i) == "running" for i in untouched)
    assert {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]} >= {bare_vol["VolumeId"]}
    assert vol["VolumeId"] not in {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]}


def test_strays_are_listed_and_judged_under_the_ledgers_write_lock(ec2: Any, settings: Settings, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """dispatch launches and records inside one write transaction: judging under that lock, a live launch is never
    caught between the two. Proved here: while cleanup and the sweep list instances, no other writer gets in."""
    import sqlite3

    from cryocloud.backends.aws.resources import LIVE, Ec2Resources

    queued = _job(settings, tmp_path, "queued")
    _run(ec2, _tags(settings, f"{queued} External/job001/"))
    listing = Ec2Resources.instances
    tried: list[str] = []

    def instances(self: Ec2Resources, states: tuple[str, ...] = LIVE) -> Any:
        other = sqlite3.connect(settings.ledger_path, timeout=0, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")  # what a dispatch in another process would do to launch
            tried.append("locked")
        finally:
            other.close()
        return listing(self, states)

    monkeypatch.setattr(Ec2Resources, "instances", instances)
    assert len(app.cleanup(settings, instances=True).strays) == 1
    ledger = Ledger(settings.ledger_path)
    assert len(sweep.sweep(settings, ledger)) == 1
    ledger.close()
    assert tried == ["locked", "locked"]


def test_the_sweep_ends_a_launch_recorded_nowhere_and_the_job_is_launched_afresh(
        ec2: Any, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    queued = _job(settings, tmp_path, "queued")
    ledger = Ledger(settings.ledger_path)
    job = ledger.job(queued)
    assert job is not None
    (Path(job.control_dir) / staging.STAGED_FOR).write_text(job.spec)  # staged: the next dispatch would launch
    assert sweep.due_on_start(settings, ledger)
    orphan = _run(ec2, _tags(settings, f"{queued} External/job001/"))  # RunInstances, then the monitor died
    found = sweep.sweep(settings, ledger)
    assert [(f.id, f.done) for f in found] == [(orphan, "ended")] and "never recorded" in found[0].why
    assert _state(ec2, orphan) in ("shutting-down", "terminated")
    assert f"sweep: ended instance {orphan}" in capsys.readouterr().out  # the monitor's log
    assert not (Path(job.control_dir) / staging.STAGED_FOR).exists()  # staged afresh: a new launch token
    assert "launching again" in (tmp_path / "lab/External/job001/run.out").read_text()
    assert any("never recorded" in m for _, m in ledger.events(queued))
    assert orphan in " ".join(line for _, line in sweep_lines(settings))
    assert not sweep.due_on_start(settings, ledger) or ledger.job(queued).active  # type: ignore[union-attr]
    assert sweep.sweep(settings, ledger) == []  # nothing left to end
    ledger.close()


def sweep_lines(settings: Settings) -> list[tuple[float, str]]:
    from cryocloud.app.jobs import sweep_findings

    return sweep_findings(settings)


def test_kill_checks_every_id_before_ending_any(ec2: Any, settings: Settings) -> None:
    mine = _run(ec2, _tags(settings, "99 x"))
    theirs = _run(ec2, _tags(settings, "99 x", **{tagging.OWNER: "other"}))
    bare = _run(ec2, None)
    cases = [(["i-nothex"], "not an EC2 instance id"), ([mine, "i-0123456789abcdef0"], "no instance i-0123456789abcdef0"),
             ([mine, bare], "not launched by cryocloud"), ([mine, theirs], "belongs to other")]
    for ids, said in cases:
        with pytest.raises(CryocloudError, match=said) as e:
            app.kill_instances(settings, ids)
        assert e.value.hint
    assert all(_state(ec2, i) == "running" for i in (mine, theirs, bare))  # nothing half done
    assert app.kill_instances(settings, [mine]) == [app.Killed(mine, None, "", None)]
    assert _state(ec2, mine) in ("shutting-down", "terminated")


def test_a_kill_that_ec2_refuses_leaves_the_job_as_it_was(ec2: Any, settings: Settings, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from cryocloud.backends.aws.resources import Ec2Resources

    iid = _run(ec2, _tags(settings, "1 External/job001/"))
    job_id = _job(settings, tmp_path, "running", instance=iid)

    def refuse(self: Ec2Resources, instances: list[Any]) -> None:
        raise CryocloudError("terminating instances: the AWS credentials have expired", "log in again")

    monkeypatch.setattr(Ec2Resources, "terminate", refuse)
    with pytest.raises(CryocloudError, match="expired"):
        app.kill_instances(settings, [iid], wait=0)
    ledger = Ledger(settings.ledger_path)
    job = ledger.job(job_id)
    ledger.close()
    assert job is not None and job.state == "running" and not (Path(job.control_dir) / control.CANCEL).exists()
    assert _state(ec2, iid) == "running"


def test_kill_without_yes_off_a_terminal_and_cleanup_without_a_target(ec2: Any, capsys: pytest.CaptureFixture[str],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["instances", "kill", "i-0123456789abcdef0"]) == 2
    err = capsys.readouterr().err
    assert "not a terminal" in err and "hint: add --yes" in err
    assert main(["cleanup"]) == 2
    assert "--instances, --volumes, --storage or --all" in capsys.readouterr().err
    assert main(["instances", "ls", "--region", "us-east-9"]) == 2
    assert "no AWS region 'us-east-9'" in capsys.readouterr().err


def test_a_region_without_access_and_an_expired_session_are_one_line_each(settings: Settings) -> None:
    from botocore.exceptions import ClientError

    from cryocloud.backends.aws.resources import Ec2Resources

    class Refusing:
        def __init__(self, code: str) -> None:
            self.code = code

        def get_paginator(self, name: str) -> Any:
            raise ClientError({"Error": {"Code": self.code, "Message": self.code}}, "DescribeInstances")

    for code, said, hint in [("OptInRequired", "no access to region ap-east-1", "enable the region"),
                             ("ExpiredToken", "credentials have expired", "log in again")]:
        with pytest.raises(CryocloudError, match=said) as e:
            Ec2Resources("ap-east-1", client=Refusing(code)).instances()
        assert hint in e.value.hint


# --- quotas: Service Quotas answers fed through a botocore Stubber (moto has none) ---------------------------
def _quota_client(answers: list[tuple[str, dict[str, Any] | str]]) -> Any:
    import boto3
    from botocore.stub import Stubber

    client = boto3.session.Session().client("service-quotas", region_name="us-east-1")
    stub = Stubber(client)
    for method, answer in answers:
        if isinstance(answer, str):
            stub.add_client_error(method, service_error_code=answer)
        else:
            stub.add_response(method, answer)
    stub.activate()
    return client


def _quota(code: str, value: float) -> dict[str, Any]:
    return {"Quota": {"ServiceCode": "ec2", "QuotaCode": code, "Value": value}}


def test_quota_classes_and_markets_are_data() -> None:
    assert quotas.kind_of("g5", "spot").code == "L-3819A6DF"
    assert quotas.kind_of("g5", "on-demand").code == "L-DB2E81BA"
    assert quotas.kind_of("p4d", "on-demand").code == "L-417A185B"
    assert quotas.kind_of("x2idn", "spot").code == "L-E3A00192"
    assert quotas.kind_of("i4i", "on-demand").code == quotas.kind_of("c7i", "on-demand").code == "L-1216C47A"


def test_a_zero_quota_is_refused_by_plan_with_the_way_to_raise_it(ec2: Any, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    asked: list[str] = []

    def injected(region: str, endpoint: str | None) -> tuple[Any, str]:
        asked.append(region)
        return _quota_client([("get_service_quota", _quota("L-DB2E81BA", 0.0))]), ""

    monkeypatch.setattr(quotas, "quota_client", injected)
    rc = main(["plan", "--job-type", "Class2D", "--particles", "50000", "--box", "128", "--classes", "50",
               "--instance", "g5.xlarge", "--on-demand-only", "--quota"])
    out, err = capsys.readouterr()
    assert rc == 2 and asked == ["us-east-1"]
    assert "g5.xlarge on-demand needs 4 vCPUs" in err and "Running On-Demand G and VT instances" in err
    assert "request-service-quota-increase --service-code ec2 --quota-code L-DB2E81BA" in err
    assert "g5.xlarge" in out  # the plan is still shown


def test_plan_without_credentials_says_the_quota_was_not_checked(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("cryocloud.app.quotas.local_credentials", lambda: False)
    assert main(["plan", "--job-type", "Class2D", "--particles", "50000", "--box", "128", "--classes", "50",
                 "--instance", "g5.xlarge"]) == 0
    assert "not checked: no AWS credentials" in capsys.readouterr().out


def test_at_launch_an_option_over_its_quota_is_skipped_and_running_vcpus_count(ec2: Any, tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from cryocloud.backends.aws.backend import Choice

    _run(ec2, None, "g5.2xlarge")  # 8 vCPUs of on-demand G already run (anyone's: the quota is the account's)
    answers = [("get_service_quota", "NoSuchResourceException"),  # never changed: AWS's default applies
               ("get_aws_default_service_quota", _quota("L-3819A6DF", 0.0)),
               ("get_service_quota", _quota("L-DB2E81BA", 12.0))]
    monkeypatch.setattr(quotas, "quota_client", lambda region, endpoint: (_quota_client(answers), ""))
    said: list[str] = []
    choices = [Choice("g5.xlarge", "spot", 0.4, "snapshot", 1.0), Choice("g5.xlarge", "on-demand", 1.0, "c", 1.0)]
    assert quotas.within_quota(choices, "us-east-1", ec2, None, said.append) == [choices[1]]  # 8 + 4 <= 12
    assert "0 (AWS default)" in said[0] and "trying the next option" in said[0]
    answers = [("get_service_quota", _quota("L-DB2E81BA", 8.0))]  # 8 in use + 4 > 8
    monkeypatch.setattr(quotas, "quota_client", lambda region, endpoint: (_quota_client(answers), ""))
    with pytest.raises(CryocloudError, match="which is 8 with 8 in use") as e:
        quotas.within_quota(choices[1:], "us-east-1", ec2, None)
    assert "--desired-value 12" in e.value.hint  # what runs plus this machine


def test_a_launch_over_a_zero_quota_is_refused_before_run_instances(ec2: Any, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    from sandbox.test_aws_faults import Injected, _backend, _launch

    boto3.client("iam").create_instance_profile(InstanceProfileName="cryocloud-node")
    ec2.create_security_group(GroupName="cryocloud-nodes", Description="no inbound")
    answers = [("get_service_quota", _quota("L-3819A6DF", 0.0)), ("get_service_quota", _quota("L-DB2E81BA", 0.0))]
    monkeypatch.setattr(quotas, "quota_client", lambda region, endpoint: (_quota_client(answers), ""))
    b = _backend(tmp_path, instance_type="g5.xlarge")  # market any: spot, then on-demand
    b._client = Injected(ec2, run_instances=AssertionError("launched over the quota"))
    with pytest.raises(CryocloudError, match=r"g5\.xlarge spot needs 4 vCPUs") as e:
        b.submit(_launch(tmp_path))
    assert "--quota-code L-3819A6DF" in e.value.hint and b._client.calls == []
    out = (tmp_path / "lab/External/job001/run.out").read_text()
    assert "All G and VT Spot Instance Requests' in us-east-1: 0" in out and "On-Demand G and VT" in out


def test_submit_refuses_a_job_over_the_quota_before_any_upload_in_relions_view(
        ec2: Any, cryocloud_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryocloud.errors import SubmissionError
    from slurm.test_slurm_backend import submit

    cryocloud_home.mkdir(parents=True, exist_ok=True)
    (cryocloud_home / "config.toml").write_text(
        'default_profile = "gpu"\n[profiles.gpu]\nbackend = "aws"\ninstance_type = "g5.xlarge"\n'
        'market = "on-demand"\nimage = "ami-12c6146b"\nstaging = "s3://lab-bucket/cryocloud"\n')
    monkeypatch.setattr(quotas, "quota_client", lambda region, endpoint: (
        _quota_client([("get_service_quota", _quota("L-DB2E81BA", 0.0))]), ""))
    project = tmp_path / "lab"
    with pytest.raises(SubmissionError, match="needs 4 vCPUs"):
        submit(project, "External/job001/", ["true"])
    jd = project / "External/job001/"
    assert (jd / "RELION_JOB_EXIT_FAILURE").exists()
    err = (jd / "run.err").read_text()
    assert "Running On-Demand G and VT instances" in err and "request-service-quota-increase" in err
    ledger = Ledger(cryocloud_home / "ledger.sqlite")
    assert ledger.jobs() == []  # refused before it was recorded: nothing staged, nothing launched
    ledger.close()


def test_a_quota_that_cannot_be_read_is_said_and_does_not_block(ec2: Any) -> None:
    from cryocloud.backends.aws.backend import Choice

    said: list[str] = []
    choice = Choice("c7i.large", "on-demand", 0.1, "c", 1.0)
    assert quotas.quota_client("us-east-1", None)[0] is not None  # a real client: moto answers "no such service"
    assert quotas.within_quota([choice], "us-east-1", ec2, None, said.append) == [choice]
    assert "not checked: Service Quotas did not answer" in said[0]
    assert quotas.quota_client("us-east-1", "http://127.0.0.1:1") == (None, "EC2 is http://127.0.0.1:1 and "
                                                                      "AWS_ENDPOINT_URL_SERVICE_QUOTAS is not set")


# --- spot price history ----------------------------------------------------------------------------------
def test_history_from_moto_has_no_price_in_the_window_so_the_snapshot_is_shown_with_its_date(ec2: Any) -> None:
    got = spot_history.spot_history("g5.xlarge", "us-east-1", 7, client=ec2)
    assert got.source == "catalog snapshot" and got.data_from == spot_history.snapshot_date() == "2026-11-24"
    assert "none in the last 7 days (newest 2006-01-02)" in got.note
    assert got.zones and all(z.points == 1 for z in got.zones)


def test_history_from_the_api_summarises_each_zone_over_the_window(ec2: Any) -> None:
    from botocore.stub import ANY, Stubber

    now = time.time()

    def point(zone: str, days_ago: float, price: float) -> dict[str, Any]:
        return {"AvailabilityZone": zone, "InstanceType": "g5.xlarge", "ProductDescription": "Linux/UNIX",
                "SpotPrice": str(price), "Timestamp": datetime.fromtimestamp(now - days_ago * 86400, UTC)}

    stub = Stubber(ec2)
    stub.add_response("describe_spot_price_history", {"SpotPriceHistory": [
        point("us-east-1a", 9, 0.30),  # in effect when the window opened
        point("us-east-1a", 5, 0.50), point("us-east-1a", 1, 0.40),
        point("us-east-1b", 20, 0.9)]},  # only before the window: that zone has no history of these days
        {"InstanceTypes": ["g5.xlarge"], "ProductDescriptions": ["Linux/UNIX"], "StartTime": ANY, "EndTime": ANY})
    with stub:
        got = spot_history.spot_history("g5.xlarge", "us-east-1", 7, client=ec2, now=now)
    assert got.source == "DescribeSpotPriceHistory" and not got.note
    assert [(z.zone, z.low, z.median, z.high, z.latest, z.points) for z in got.zones] == [
        ("us-east-1a", 0.30, 0.40, 0.50, 0.40, 3)]
    assert got.data_from == time.strftime("%Y-%m-%d", time.gmtime(now - 7 * 86400))
    assert got.data_to == time.strftime("%Y-%m-%d", time.gmtime(now - 86400))


def test_history_refuses_days_ec2_does_not_keep(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spot-prices", "g5.xlarge", "--history", "0"]) == 2
    assert "from 1 to 90" in capsys.readouterr().err
