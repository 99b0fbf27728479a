"""The AWS backend's refusals and fault answers, against moto in-process (EC2's answers that moto cannot give, such
as InsufficientInstanceCapacity, a vCPU quota or a spot interruption, are injected by a thin wrapper around the
client and say so)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import moto  # the dev extra's: a missing moto fails here, never skips
import pytest

from cryocloud.backends.aws.backend import AwsBackend
from cryocloud.backends.aws.options import AwsOptions
from cryocloud.backends.base import Handle, Launch
from cryocloud.errors import ConfigError, CryocloudError, SubmissionError
from cryocloud.jobs import control
from cryocloud.jobs.spec import JobSpec
from cryocloud.settings import General, Profile, Settings
from cryocloud.storage.localfs import LocalFolderStore


class Injected:
    """The EC2 client, except for the calls a test makes fail (or answer) the way AWS would."""

    def __init__(self, client: Any, **answers: Any) -> None:
        self.client, self.answers = client, answers
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        if name not in self.answers:
            return getattr(self.client, name)

        def call(**kw: Any) -> Any:
            self.calls.append((name, kw))
            answer = self.answers[name]
            if isinstance(answer, Exception):
                raise answer
            return answer(**kw) if callable(answer) else answer
        return call


def client_error(code: str, message: str = "") -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": message or code}}, "RunInstances")


@pytest.fixture()
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    for var in ("AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    store = LocalFolderStore(tmp_path / "store")
    monkeypatch.setattr("cryocloud.storage.stores.open_store", lambda url, settings=None: store)
    with moto.mock_aws():
        import boto3

        ec2 = boto3.client("ec2", region_name="us-east-1")
        ec2.create_security_group(GroupName="cryocloud-nodes", Description="no inbound")
        boto3.client("iam").create_instance_profile(InstanceProfileName="cryocloud-node")
        yield ec2


def _backend(tmp_path: Path, **options: Any) -> AwsBackend:
    settings = Settings(home=tmp_path / "home", config_path=tmp_path / "home" / "config.toml",
                        general=General(user="lab"))
    return AwsBackend(Profile("aws", "aws", {"image": "ami-12c6146b", "python": "/usr/bin/python3", **options}),
                      settings)


def _launch(tmp_path: Path, **extras: str) -> Launch:
    project = tmp_path / "lab"
    cdir = project / "External/job001/.cryocloud/job1"
    cdir.mkdir(parents=True)
    spec = JobSpec("External/job001/", "command", "command", str(project), "External/job001/", ["true"],
                   extras=extras)
    record = {"store": "s3://lab-bucket/cryocloud", "inputs": "jobs/lab-1-0123456789ab-in",
              "outputs": "jobs/lab-1-0123456789ab-out", "job_dir": spec.job_dir,
              "control": "External/job001/.cryocloud/job1"}
    control.write_json(cdir / control.LAUNCH, {"spec": json.loads(spec.to_json()), "staging": record})
    return Launch(1, spec, cdir, {})


def test_a_launch_is_hardened_tagged_and_holds_no_secret(aws: Any, tmp_path: Path) -> None:
    b = _backend(tmp_path, instance_type="c7i.large", market="on-demand")
    handle = b.submit(_launch(tmp_path))
    inst = aws.describe_instances(InstanceIds=[handle.data["instance_id"]])["Reservations"][0]["Instances"][0]
    assert inst["MetadataOptions"]["HttpTokens"] == "required"
    assert inst["IamInstanceProfile"]["Arn"].endswith("/cryocloud-node")
    assert {t["Key"] for t in inst["Tags"]} >= {"cryocloud:owner", "cryocloud:project", "cryocloud:job",
                                                  "cryocloud:expires"}
    assert "InstanceLifecycle" not in inst  # on-demand, as the profile asked
    attr = aws.describe_instance_attribute(InstanceId=inst["InstanceId"], Attribute="instanceInitiatedShutdownBehavior")
    assert attr["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    vol = aws.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [inst["InstanceId"]]}])
    assert all(v["Encrypted"] for v in vol["Volumes"])
    import base64

    ud = aws.describe_instance_attribute(InstanceId=inst["InstanceId"], Attribute="userData")["UserData"]["Value"]
    assert "testing" not in base64.b64decode(ud).decode()  # the lab's (test) keys are nowhere in it
    bill = b.cleanup(handle)
    assert bill is not None and bill.usd >= b.usd_per_hour(_launch_spec(tmp_path)) * 60 / 3600 * 0.99
    assert aws.describe_instances(InstanceIds=[inst["InstanceId"]])["Reservations"][0]["Instances"][0][
        "State"]["Name"] == "terminated"


def _launch_spec(tmp_path: Path) -> JobSpec:
    return JobSpec.from_dict(control.read_json(tmp_path / "lab/External/job001/.cryocloud/job1/launch.json")["spec"])  # type: ignore[index]


def test_no_capacity_anywhere_is_a_clear_refusal_after_trying_each_option(aws: Any, tmp_path: Path) -> None:
    b = _backend(tmp_path, instance_type="c7i.large")  # market any: spot, then on-demand
    b._client = Injected(aws, run_instances=client_error("InsufficientInstanceCapacity"))
    with pytest.raises(SubmissionError, match="no capacity for any option") as e:
        b.submit(_launch(tmp_path))
    assert [kw.get("InstanceMarketOptions", {}).get("MarketType", "on-demand") for _, kw in b._client.calls] == \
        ["spot", "on-demand"]
    assert "another region" in e.value.hint
    assert "no capacity for c7i.large spot" in (tmp_path / "lab/External/job001/run.out").read_text()


def test_a_zero_vcpu_quota_says_how_to_raise_it(aws: Any, tmp_path: Path) -> None:
    b = _backend(tmp_path, instance_type="g5.xlarge")
    b._client = Injected(aws, run_instances=client_error("VcpuLimitExceeded", "You have requested more vCPU capacity"))
    with pytest.raises(SubmissionError, match="vCPU quota") as e:
        b.submit(_launch(tmp_path))
    assert "Service Quotas" in e.value.hint


def test_no_credentials_and_expired_credentials(aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import NoCredentialsError

    b = _backend(tmp_path, instance_type="c7i.large")
    b._client = Injected(aws, describe_security_groups=NoCredentialsError())
    with pytest.raises(ConfigError, match="no AWS credentials") as e:
        b.submit(_launch(tmp_path))
    assert "aws configure" in e.value.hint
    b._client = Injected(aws, describe_security_groups=client_error("ExpiredToken"))
    with pytest.raises(ConfigError, match="expired"):
        b.submit(_launch(tmp_path / "again"))


def test_a_relion_version_without_an_image_is_refused(aws: Any, tmp_path: Path) -> None:
    b = AwsBackend(Profile("aws", "aws", {"images": {"5.0.0": "ami-12c6146b"}}),
                   Settings(home=tmp_path / "h", config_path=tmp_path / "h/c.toml"))
    launch = _launch(tmp_path)
    spec = JobSpec.from_dict({**json.loads(launch.spec.to_json()), "client": "relion", "job_type": "Class2D",
                              "relion_version": "3.1.3"})
    with pytest.raises(SubmissionError, match=r"no image with RELION 3\.1\.3") as e:
        b.submit(Launch(1, spec, launch.control_dir, {}))
    assert '[profiles.aws.images] "3.1.3"' in e.value.hint


def test_a_missing_instance_profile_says_to_bootstrap(aws: Any, tmp_path: Path) -> None:
    b = _backend(tmp_path, instance_type="c7i.large", instance_profile="someone-elses")
    with pytest.raises(ConfigError, match="someone-elses") as e:
        b.submit(_launch(tmp_path))
    assert "cryocloud aws bootstrap" in e.value.hint


def test_a_machine_that_does_not_exist_is_refused_with_a_suggestion(aws: Any, tmp_path: Path) -> None:
    b = _backend(tmp_path)
    with pytest.raises(CryocloudError, match=r"unknown instance type .c7i\.larg.") as e:
        b.submit(_launch(tmp_path, machine="c7i.larg"))
    assert "c7i.large" in e.value.hint


def test_end_states_as_a_user_reads_them(aws: Any, tmp_path: Path) -> None:
    b = _backend(tmp_path, instance_type="c7i.large")
    handle = b.submit(_launch(tmp_path))
    iid = handle.data["instance_id"]
    assert b.status(handle).state in ("queued", "running")

    def ended(code: str) -> Any:
        return lambda **kw: {"Reservations": [{"Instances": [{"InstanceId": iid, "State": {"Name": "terminated"},
                                                              "StateReason": {"Code": code, "Message": code}}]}]}
    b._client = Injected(aws, describe_instances=ended("Server.SpotInstanceTermination"))
    s = b.status(handle)
    assert s.state == "failed" and s.interrupted == "spot interruption" and "reclaimed" in s.message
    b._client = Injected(aws, describe_instances=ended("Client.InstanceInitiatedShutdown"))
    assert "shut itself down without a final status" in b.status(handle).message
    b._client = Injected(aws, describe_instances=client_error("InvalidInstanceID.NotFound"))
    assert b.status(Handle("aws", handle.data)).state == "gone"


def test_a_region_that_does_not_exist_is_refused_with_a_suggestion(aws: Any, tmp_path: Path) -> None:
    b = _backend(tmp_path, instance_type="c7i.large", region="us-east-9")
    with pytest.raises(CryocloudError, match="no prices for region 'us-east-9'") as e:
        b.submit(_launch(tmp_path))
    assert "us-east-1" in e.value.hint


def test_profile_values_are_checked() -> None:
    with pytest.raises(ConfigError, match="market"):
        AwsOptions.from_profile("aws", {"market": "cheap"})
    with pytest.raises(ConfigError, match="never sees the lab's disk"):
        AwsOptions.from_profile("aws", {"staging": "none"})
    with pytest.raises(ConfigError, match="must be a table"):
        AwsOptions.from_profile("aws", {"images": ["ami-1"]})
