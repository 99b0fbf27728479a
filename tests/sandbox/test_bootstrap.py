"""`cryocloud aws bootstrap` against moto (in-process): makes the account ready once, finds it the second time,
never changes what differs without --yes, and refuses clearly without credentials or with a taken bucket name."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cryocloud.aws.bootstrap import GROUP, POLICY, ROLE, Bootstrap, node_policy
from cryocloud.errors import CryocloudError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_EC2", "AWS_CA_BUNDLE", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.session.Session(region_name="us-east-1")


def _statuses(steps: list[Any]) -> dict[str, str]:
    return {s.what: s.status for s in steps}


def test_first_run_makes_everything_and_the_second_finds_it(aws: Any) -> None:
    assert set(_statuses(Bootstrap(aws, "lab-bucket", "cryocloud", "us-east-1", dry_run=True).run()).values()) == \
        {"would make"}
    assert aws.client("s3").list_buckets()["Buckets"] == []  # a dry run only looks
    first = _statuses(Bootstrap(aws, "lab-bucket", "cryocloud", "us-east-1").run())
    assert first == {"bucket lab-bucket": "made", f"role {ROLE}": "made", f"instance profile {ROLE}": "made",
                     f"security group {GROUP}": "made"}
    again = _statuses(Bootstrap(aws, "lab-bucket", "cryocloud", "us-east-1").run())
    assert set(again.values()) == {"found"}
    s3, iam, ec2 = aws.client("s3"), aws.client("iam"), aws.client("ec2")
    enc = s3.get_bucket_encryption(Bucket="lab-bucket")["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert enc["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert all(s3.get_public_access_block(Bucket="lab-bucket")["PublicAccessBlockConfiguration"].values())
    assert {t["Key"] for t in s3.get_bucket_tagging(Bucket="lab-bucket")["TagSet"]} >= {
        "cryocloud:owner", "cryocloud:project", "cryocloud:job", "cryocloud:expires"}
    doc = iam.get_role_policy(RoleName=ROLE, PolicyName=POLICY)["PolicyDocument"]
    assert (json.loads(doc) if isinstance(doc, str) else doc) == node_policy("lab-bucket", "cryocloud")
    group = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [GROUP]}])["SecurityGroups"][0]
    assert group["IpPermissions"] == []


def test_a_policy_edited_by_hand_is_reported_and_replaced_only_with_yes(aws: Any) -> None:
    Bootstrap(aws, "lab-bucket", "cryocloud", "us-east-1").run()
    iam = aws.client("iam")
    wider = node_policy("lab-bucket", "cryocloud")
    wider["Statement"].append({"Effect": "Allow", "Action": "s3:*", "Resource": "*"})
    iam.put_role_policy(RoleName=ROLE, PolicyName=POLICY, PolicyDocument=json.dumps(wider))
    steps = Bootstrap(aws, "lab-bucket", "cryocloud", "us-east-1").run()
    differs = next(s for s in steps if s.status == "differs")
    assert "extra statement" in differs.detail and '"s3:*"' in differs.detail and "--yes" in differs.detail
    doc = iam.get_role_policy(RoleName=ROLE, PolicyName=POLICY)["PolicyDocument"]
    assert (json.loads(doc) if isinstance(doc, str) else doc) == wider  # unchanged
    assert "replaced" in _statuses(Bootstrap(aws, "lab-bucket", "cryocloud", "us-east-1", yes=True).run()).values()
    doc = iam.get_role_policy(RoleName=ROLE, PolicyName=POLICY)["PolicyDocument"]
    assert (json.loads(doc) if isinstance(doc, str) else doc) == node_policy("lab-bucket", "cryocloud")


def test_an_inbound_rule_on_the_group_is_reported(aws: Any) -> None:
    Bootstrap(aws, "lab-bucket", "cryocloud", "us-east-1").run()
    ec2 = aws.client("ec2")
    gid = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [GROUP]}])["SecurityGroups"][0]["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    steps = _statuses(Bootstrap(aws, "lab-bucket", "cryocloud", "us-east-1").run())
    assert steps[f"security group {GROUP}"] == "differs"


def test_without_credentials_it_says_how_to_give_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import boto3

    for var in [v for v in list(__import__("os").environ) if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(CryocloudError) as e:
        Bootstrap(boto3.session.Session(region_name="us-east-1"), "lab-bucket", "cryocloud", "us-east-1").run()
    assert "no AWS credentials" in e.value.message and "aws configure" in e.value.hint


def test_a_bucket_name_taken_by_another_account(aws: Any) -> None:
    from botocore.stub import Stubber

    b = Bootstrap(aws, "taken-bucket", "cryocloud", "us-east-1")
    s3 = aws.client("s3")
    stub = Stubber(s3)
    stub.add_client_error("head_bucket", service_error_code="403", http_status_code=403)
    stub.activate()
    b.client = lambda service: s3 if service == "s3" else aws.client(service)  # type: ignore[method-assign]
    with pytest.raises(CryocloudError) as e:
        b.run()
    assert "taken by another account" in e.value.message and "global" in e.value.hint


def test_the_shipped_policy_is_the_one_bootstrap_makes() -> None:
    shipped = json.loads((REPO / "docs" / "aws-policy.json").read_text())
    assert shipped == node_policy("LAB-BUCKET", "cryocloud")
    objects = next(s for s in shipped["Statement"] if s["Sid"] == "ObjectsUnderTheLabsPrefix")
    assert objects["Resource"] == "arn:aws:s3:::LAB-BUCKET/cryocloud/*"  # the prefix, never the whole bucket
    assert not any("ec2:" in a or "iam:" in a for s in shipped["Statement"] for a in
                   ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))


def test_without_unshare_the_sandbox_refuses_to_pretend(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cryocloud.sandbox import box
    from cryocloud.settings import General, Settings

    monkeypatch.setattr(box.shutil, "which", lambda name: None)
    settings = Settings(home=tmp_path / "cchome", config_path=tmp_path / "none.toml", general=General(user="lab"))
    with pytest.raises(CryocloudError) as e:
        box.up(settings)
    assert "cannot hide the lab's folders" in e.value.message and "util-linux" in e.value.hint
    assert not (tmp_path / "cchome" / "sandbox" / "sandbox.json").exists()  # nothing was started


def test_a_private_subnet_with_an_s3_gateway_endpoint_on_request(aws: Any) -> None:
    from cryocloud.aws.bootstrap import SUBNET

    first = _statuses(Bootstrap(aws, "lab-bucket", "cryocloud", "us-east-1", private_subnet=True).run())
    assert first[f"private subnet {SUBNET}"] == "made" and first["S3 gateway endpoint"] == "made"
    again = _statuses(Bootstrap(aws, "lab-bucket", "cryocloud", "us-east-1", private_subnet=True).run())
    assert set(again.values()) == {"found"}
    ec2 = aws.client("ec2")
    sub = ec2.describe_subnets(Filters=[{"Name": "tag:Name", "Values": [SUBNET]}])["Subnets"][0]
    assert sub["MapPublicIpOnLaunch"] is False
    table = ec2.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": [sub["SubnetId"]]}])
    routes = table["RouteTables"][0]["Routes"]
    assert not any(r.get("GatewayId", "").startswith("igw-") for r in routes)  # no way to the Internet
    eps = ec2.describe_vpc_endpoints()["VpcEndpoints"]
    assert [e["ServiceName"] for e in eps] == ["com.amazonaws.us-east-1.s3"]
