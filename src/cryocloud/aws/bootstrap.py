"""`cryocloud aws bootstrap`: a lab's AWS account made ready, once, idempotently (against AWS or the sandbox).

What it makes, each tagged with the cryocloud tags, and what it checks when it is already there:
- the bucket: default encryption (SSE-S3) and every public-access block on;
- the node role (trusted by EC2 only) with one inline policy, `node_policy`: list, read, write and tag objects
  under the lab's prefix of that bucket, nothing else (no other bucket, no EC2, no IAM: a node ends itself with
  `shutdown`, launched with InstanceInitiatedShutdownBehavior=terminate);
- its instance profile (how an instance gets the role: its credentials come from the instance's metadata);
- a security group with no inbound rule (nodes need none: they only call out to S3);
- with `--private-subnet`: a subnet of the default VPC that gives no public IP, its own route table (no route to the
  Internet), and an S3 gateway endpoint on it (free; S3 traffic through a NAT gateway would cost ~0.045 USD/GB).
Nothing is changed that differs from what it would make (a policy edited by hand, an inbound rule added): it says
what differs, and replaces it only with `--yes`. `--dry-run` only reads. docs/aws-policy.json is `node_policy` for
an admin who creates the role by hand (tests check it is the same document).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryocloud.errors import CryocloudError
from cryocloud.storage import tags as tagging

ROLE = "cryocloud-node"
POLICY = "cryocloud-node-s3"
GROUP = "cryocloud-nodes"
SUBNET = "cryocloud-private"


@dataclass(frozen=True)
class Step:
    what: str  # "bucket cryocloud-lab", "role cryocloud-node", ...
    status: str  # made | found | differs | replaced | would make
    detail: str = ""

    def line(self) -> str:
        return f"{self.status:>10}  {self.what}" + (f": {self.detail}" if self.detail else "")


def node_policy(bucket: str, prefix: str) -> dict[str, Any]:
    """The node role's only permissions: the lab's prefix of its bucket."""
    p = prefix.strip("/")
    objects = f"arn:aws:s3:::{bucket}/{p}/*" if p else f"arn:aws:s3:::{bucket}/*"
    listing: dict[str, Any] = {"Sid": "ListTheLabsPrefix", "Effect": "Allow", "Action": "s3:ListBucket",
                               "Resource": f"arn:aws:s3:::{bucket}"}
    if p:
        listing["Condition"] = {"StringLike": {"s3:prefix": [p, f"{p}/*"]}}
    return {"Version": "2012-10-17", "Statement": [
        listing,
        {"Sid": "ObjectsUnderTheLabsPrefix", "Effect": "Allow", "Resource": objects,
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:GetObjectTagging", "s3:PutObjectTagging",
                    "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]},
    ]}


TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def _code(e: Exception) -> str:
    return str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))


def _status(e: Exception) -> int:
    return int(getattr(e, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _diff(want: dict[str, Any], got: dict[str, Any]) -> str:
    """What differs between two policy documents, in a line."""
    w = {json.dumps(s, sort_keys=True) for s in want.get("Statement", [])}
    g = {json.dumps(s, sort_keys=True) for s in got.get("Statement", [])}
    parts = [f"extra statement {s}" for s in sorted(g - w)] + [f"missing statement {s}" for s in sorted(w - g)]
    return "; ".join(parts) or "the documents differ"


class Bootstrap:
    def __init__(self, session: Any, bucket: str, prefix: str, region: str, *, dry_run: bool = False,
                 yes: bool = False, endpoints: dict[str, str] | None = None, ca_bundle: str = "",
                 private_subnet: bool = False) -> None:
        self.private_subnet = private_subnet
        self.session, self.bucket, self.prefix, self.region = session, bucket, prefix.strip("/"), region
        self.dry_run, self.yes = dry_run, yes
        self.endpoints = endpoints or {}
        self.ca_bundle = ca_bundle or None
        self.tags = tagging.make(project="lab-account")
        self.steps: list[Step] = []

    def client(self, service: str) -> Any:
        return self.session.client(service, region_name=self.region, endpoint_url=self.endpoints.get(service) or None,
                                   verify=self.ca_bundle if service == "s3" else None)

    def run(self) -> list[Step]:
        self.credentials()
        self.bucket_step()
        self.role_step()
        self.profile_step()
        self.group_step()
        if self.private_subnet:
            self.subnet_step()
        return self.steps

    def note(self, what: str, status: str, detail: str = "") -> None:
        self.steps.append(Step(what, status, detail))

    def credentials(self) -> None:
        import botocore.exceptions

        try:
            self.client("sts").get_caller_identity()
        except botocore.exceptions.NoCredentialsError:
            raise CryocloudError("no AWS credentials found", "configure them the usual AWS way (aws configure, "
                                 "AWS_PROFILE, or an instance role); cryocloud never stores credentials itself") from None

    def bucket_step(self) -> None:
        import botocore.exceptions

        s3, what = self.client("s3"), f"bucket {self.bucket}"
        try:
            s3.head_bucket(Bucket=self.bucket)
            self.note(what, "found")
            return
        except botocore.exceptions.ClientError as e:
            if _status(e) == 403:
                raise CryocloudError(f"the bucket name {self.bucket!r} is taken by another account",
                                     "bucket names are global: choose another (e.g. add your lab's name) in "
                                     "[storage] url or --bucket") from None
            if _status(e) != 404:
                raise
        if self.dry_run:
            self.note(what, "would make", "encrypted (SSE-S3), public access blocked")
            return
        kw = {} if self.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": self.region}}
        s3.create_bucket(Bucket=self.bucket, **kw)
        s3.put_bucket_encryption(Bucket=self.bucket, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        detail = "encrypted (SSE-S3), public access blocked"
        try:
            s3.put_public_access_block(Bucket=self.bucket, PublicAccessBlockConfiguration={
                "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True})
        except botocore.exceptions.ClientError as e:
            if _code(e) != "NotImplemented":  # an S3-compatible server without it (the sandbox's SeaweedFS)
                raise
            detail = "encrypted (SSE-S3); this endpoint has no public access block (not AWS)"
        s3.put_bucket_tagging(Bucket=self.bucket, Tagging={"TagSet": [{"Key": k, "Value": v}
                                                                       for k, v in self.tags.items()]})
        self.note(what, "made", detail)

    def role_step(self) -> None:
        iam = self.client("iam")
        want = node_policy(self.bucket, self.prefix)
        what = f"role {ROLE}"
        try:
            iam.get_role(RoleName=ROLE)
            self.note(what, "found")
        except iam.exceptions.NoSuchEntityException:
            if self.dry_run:
                self.note(what, "would make", f"trusted by EC2; policy {POLICY}: s3://{self.bucket}/{self.prefix} only")
                return
            iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(TRUST),
                            Description="cryocloud nodes: the lab's S3 prefix only",
                            Tags=[{"Key": k, "Value": v} for k, v in self.tags.items()])
            iam.put_role_policy(RoleName=ROLE, PolicyName=POLICY, PolicyDocument=json.dumps(want))
            self.note(what, "made", f"policy {POLICY}: s3://{self.bucket}/{self.prefix} only")
            return
        what = f"policy {POLICY} of role {ROLE}"
        try:
            got = iam.get_role_policy(RoleName=ROLE, PolicyName=POLICY)["PolicyDocument"]
            got = json.loads(got) if isinstance(got, str) else got
        except iam.exceptions.NoSuchEntityException:
            got = None
        if got is not None and json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True):
            self.note(what, "found")
        elif got is not None and not self.yes:
            self.note(what, "differs", _diff(want, got) + " (left as it is; --yes replaces it)")
        elif self.dry_run:
            self.note(what, "would make")
        else:
            iam.put_role_policy(RoleName=ROLE, PolicyName=POLICY, PolicyDocument=json.dumps(want))
            self.note(what, "replaced" if got is not None else "made")

    def profile_step(self) -> None:
        iam, what = self.client("iam"), f"instance profile {ROLE}"
        try:
            got = iam.get_instance_profile(InstanceProfileName=ROLE)["InstanceProfile"]
            roles = [r["RoleName"] for r in got.get("Roles", [])]
            if ROLE in roles:
                self.note(what, "found")
                return
            if self.dry_run:
                self.note(what, "would make", f"add role {ROLE}")
                return
        except iam.exceptions.NoSuchEntityException:
            if self.dry_run:
                self.note(what, "would make")
                return
            iam.create_instance_profile(InstanceProfileName=ROLE,
                                        Tags=[{"Key": k, "Value": v} for k, v in self.tags.items()])
        iam.add_role_to_instance_profile(InstanceProfileName=ROLE, RoleName=ROLE)
        self.note(what, "made", f"role {ROLE}")

    def group_step(self) -> None:
        ec2, what = self.client("ec2"), f"security group {GROUP}"
        found = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [GROUP]}])["SecurityGroups"]
        if found:
            inbound = found[0].get("IpPermissions", [])
            if inbound:
                self.note(what, "differs", f"{len(inbound)} inbound rule(s): nodes need none (left as they are)")
            else:
                self.note(what, "found", found[0]["GroupId"])
            return
        if self.dry_run:
            self.note(what, "would make", "no inbound rule")
            return
        got = ec2.create_security_group(GroupName=GROUP, Description="cryocloud nodes: no inbound traffic",
                                        TagSpecifications=[{"ResourceType": "security-group", "Tags": [
                                            {"Key": k, "Value": v} for k, v in self.tags.items()]}])
        self.note(what, "made", f"{got['GroupId']}, no inbound rule")

    def subnet_step(self) -> None:
        import ipaddress

        ec2, what = self.client("ec2"), f"private subnet {SUBNET}"
        tagged = [{"Key": "Name", "Value": SUBNET}, *({"Key": k, "Value": v} for k, v in self.tags.items())]
        found = ec2.describe_subnets(Filters=[{"Name": "tag:Name", "Values": [SUBNET]}])["Subnets"]
        if found:
            sub = found[0]
            public = sub.get("MapPublicIpOnLaunch", False)
            self.note(what, "differs" if public else "found",
                      f"{sub['SubnetId']} gives public IPs (left as it is)" if public else sub["SubnetId"])
        else:
            vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
            if not vpcs:
                raise CryocloudError(f"no default VPC in {self.region} for the private subnet",
                                     "create one (aws ec2 create-default-vpc) or leave out --private-subnet")
            vpc = vpcs[0]
            used = [ipaddress.ip_network(x["CidrBlock"]) for x in ec2.describe_subnets(
                Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]]
            free = next((n for n in ipaddress.ip_network(vpc["CidrBlock"]).subnets(new_prefix=20)
                         if not any(n.overlaps(u) for u in used)), None)
            if free is None:
                raise CryocloudError(f"the default VPC {vpc['VpcId']} has no free /20 for the private subnet",
                                     "free one, or leave out --private-subnet")
            if self.dry_run:
                self.note(what, "would make", f"{free} in {vpc['VpcId']}, no public IP, S3 gateway endpoint")
                return
            sub = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock=str(free), TagSpecifications=[
                {"ResourceType": "subnet", "Tags": tagged}])["Subnet"]
            ec2.modify_subnet_attribute(SubnetId=sub["SubnetId"], MapPublicIpOnLaunch={"Value": False})
            table = ec2.create_route_table(VpcId=vpc["VpcId"], TagSpecifications=[
                {"ResourceType": "route-table", "Tags": tagged}])["RouteTable"]["RouteTableId"]
            ec2.associate_route_table(RouteTableId=table, SubnetId=sub["SubnetId"])
            self.note(what, "made", f"{sub['SubnetId']} ({free}), no public IP, no route to the Internet")
        self.endpoint_step(ec2, sub)

    def endpoint_step(self, ec2: Any, sub: dict[str, Any]) -> None:
        what, service = "S3 gateway endpoint", f"com.amazonaws.{self.region}.s3"
        tables = ec2.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": [sub["SubnetId"]]}])
        table = tables["RouteTables"][0]["RouteTableId"] if tables["RouteTables"] else ""
        eps = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [sub["VpcId"]]},
                                                  {"Name": "service-name", "Values": [service]}])["VpcEndpoints"]
        if any(table in e.get("RouteTableIds", []) for e in eps):
            self.note(what, "found")
        elif self.dry_run or not table:
            self.note(what, "would make", f"{service} on the subnet's route table")
        else:
            got = ec2.create_vpc_endpoint(VpcId=sub["VpcId"], ServiceName=service, VpcEndpointType="Gateway",
                                          RouteTableIds=[table])["VpcEndpoint"]
            self.note(what, "made", f"{got['VpcEndpointId']} ({service})")
