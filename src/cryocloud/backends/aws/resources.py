"""What runs on EC2 in a region, found by cryocloud's tags: instances and volumes as data, what each costs a day,
and ending them. Stateless, like the backend: which of them are strays is decided above, against the ledger
(monitor/sweep.py).

Untagged resources are listed when asked (a manager sees what else runs) and never ended from here: `terminate`
and `delete_volumes` refuse an id that does not carry cryocloud's owner tag.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from cryocloud.errors import ConfigError, CryocloudError
from cryocloud.storage import tags as tagging

LIVE = ("pending", "running", "stopping", "stopped")  # states that bill (a stopped instance bills its volumes)
# EBS list prices, USD per GB-month (us-east-1, 2026); a volume kind not here is priced as gp3
VOLUME_USD_PER_GB_MONTH = {"gp3": 0.08, "gp2": 0.10, "io1": 0.125, "io2": 0.125, "st1": 0.045, "sc1": 0.015,
                           "standard": 0.05}
DAYS_PER_MONTH = 730 / 24


def error_code(e: Exception) -> str:
    """botocore's error code ("" for an error without one)."""
    return str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))


def aws_error(e: Exception, what: str, region: str) -> CryocloudError:
    """A botocore error as a user reads it: the backend's translation, plus a region the account cannot use."""
    from cryocloud.backends.aws.backend import aws_error as translate

    code = error_code(e)
    if code == "OptInRequired":
        return ConfigError(f"{what}: the account has no access to region {region} ({code})",
                           "enable the region (AWS console > Account > AWS Regions), or choose another with --region "
                           "or [aws] region")
    if code in ("AuthFailure", "UnrecognizedClientException"):
        return ConfigError(f"{what}: AWS refused the credentials in region {region} ({code})",
                           f"check the keys with `aws sts get-caller-identity --region {region}`; if they work in "
                           "another region, this one is not enabled for the account (AWS console > AWS Regions)")
    return translate(e, what)


def check_region(region: str) -> None:
    """A region name AWS has (botocore's own list, offline), refused with a suggestion before any call."""
    import boto3

    known = set(boto3.session.Session().get_available_regions("ec2"))
    if known and region not in known:
        from cryocloud.errors import close_matches

        raise ConfigError(f"no AWS region {region!r}", close_matches(region, known))


def ec2_client(region: str, endpoint: str | None) -> Any:
    try:
        import boto3
    except ImportError:
        raise ConfigError("listing AWS resources needs boto3", "pip install 'cryocloud[aws]'") from None
    return boto3.session.Session().client("ec2", region_name=region, endpoint_url=endpoint)


def _tags(raw: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in raw or []}


def expires_at(value: str) -> float | None:
    """The `cryocloud:expires` tag as a time: epoch seconds (instances), a date (objects), or None (never, unset)."""
    value = value.strip()
    if not value or value in (tagging.NEVER, tagging.NONE):
        return None
    if value.isdigit():
        return float(value)
    try:
        import calendar

        return float(calendar.timegm(time.strptime(value, "%Y-%m-%d")))
    except ValueError:
        return None


@dataclass(frozen=True)
class Tagged:
    """What every EC2 resource's tags say about it."""

    tags: dict[str, str] = field(default_factory=dict)

    @property
    def tagged(self) -> bool:
        return tagging.OWNER in self.tags

    @property
    def owner(self) -> str:
        return self.tags.get(tagging.OWNER, "")

    @property
    def project(self) -> str:
        return self.tags.get(tagging.PROJECT, "")

    @property
    def job(self) -> str:
        return self.tags.get(tagging.JOB, "")

    @property
    def job_id(self) -> int | None:
        """The ledger id in `cryocloud:job` ("12 Class2D/job003/"), or None."""
        first = self.job.split(" ", 1)[0]
        return int(first) if first.isdigit() else None

    @property
    def ledger(self) -> str:
        return self.tags.get(tagging.LEDGER, "")

    @property
    def expires_at(self) -> float | None:
        return expires_at(self.tags.get(tagging.EXPIRES, ""))


@dataclass(frozen=True)
class Instance(Tagged):
    id: str = ""
    region: str = ""
    instance_type: str = ""
    zone: str = ""
    market: str = "on-demand"
    state: str = ""
    launched_at: float = 0.0
    usd_per_hour: float = 0.0  # the catalog's price for its type and market (0: unknown)

    def cost_so_far(self, now: float) -> float:
        return self.usd_per_hour * max(60.0, now - self.launched_at) / 3600

    @property
    def usd_per_day(self) -> float:
        """What it bills a day as it is: a stopped instance bills only its volumes (listed as volumes)."""
        return 0.0 if self.state in ("stopped", "stopping") else self.usd_per_hour * 24


@dataclass(frozen=True)
class Volume(Tagged):
    id: str = ""
    region: str = ""
    size_gb: int = 0
    kind: str = "gp3"
    state: str = ""
    zone: str = ""
    created_at: float = 0.0
    attached_to: str = ""

    @property
    def usd_per_day(self) -> float:
        return self.size_gb * VOLUME_USD_PER_GB_MONTH.get(self.kind, VOLUME_USD_PER_GB_MONTH["gp3"]) / DAYS_PER_MONTH


def price(instance_type: str, region: str, market: str) -> float:
    """The catalog's USD/h for a type and market (the cheapest zone's spot snapshot); 0 when the catalog lacks it."""
    from cryocloud.planner.catalog import default_catalog

    catalog = default_catalog()
    try:
        if market == "spot":
            quotes = catalog.spot(instance_type, region)
            if quotes:
                return quotes[0].usd_per_hour
        return catalog.on_demand(instance_type, region)
    except CryocloudError:
        return 0.0


class Ec2Resources:
    """One region's instances and volumes. `client` is an EC2 client (tests hand in moto's or a stub)."""

    def __init__(self, region: str, endpoint: str | None = None, client: Any = None) -> None:
        self.region, self.endpoint, self._client = region, endpoint, client

    def ec2(self) -> Any:
        if self._client is None:
            self._client = ec2_client(self.region, self.endpoint)
        return self._client

    def _pages(self, method: str, key: str, what: str, **kw: Any) -> list[dict[str, Any]]:
        try:
            pages = self.ec2().get_paginator(method).paginate(**kw)
            return [row for page in pages for row in page[key]]
        except CryocloudError:
            raise
        except Exception as e:  # botocore's ClientError, NoCredentialsError, EndpointConnectionError, ...
            raise aws_error(e, what, self.region) from None

    def instances(self, states: tuple[str, ...] = LIVE) -> list[Instance]:
        rows = self._pages("describe_instances", "Reservations", f"listing instances in {self.region}",
                           Filters=[{"Name": "instance-state-name", "Values": list(states)}])
        out = []
        for inst in (i for r in rows for i in r["Instances"]):
            market = "spot" if inst.get("InstanceLifecycle") == "spot" else "on-demand"
            launched = inst.get("LaunchTime")
            out.append(Instance(
                tags=_tags(inst.get("Tags")), id=inst["InstanceId"], region=self.region,
                instance_type=inst["InstanceType"], zone=inst.get("Placement", {}).get("AvailabilityZone", ""),
                market=market, state=inst["State"]["Name"],
                launched_at=launched.timestamp() if launched is not None else time.time(),
                usd_per_hour=price(inst["InstanceType"], self.region, market)))
        return sorted(out, key=lambda i: i.launched_at)

    def volumes(self) -> list[Volume]:
        rows = self._pages("describe_volumes", "Volumes", f"listing volumes in {self.region}")
        out = []
        for v in rows:
            created = v.get("CreateTime")
            attached = [a["InstanceId"] for a in v.get("Attachments", []) if a.get("State") in ("attaching", "attached")]
            out.append(Volume(tags=_tags(v.get("Tags")), id=v["VolumeId"], region=self.region, size_gb=int(v["Size"]),
                              kind=v.get("VolumeType", "gp3"), state=v["State"], zone=v.get("AvailabilityZone", ""),
                              created_at=created.timestamp() if created is not None else time.time(),
                              attached_to=attached[0] if attached else ""))
        return sorted(out, key=lambda v: v.created_at)

    def _call(self, what: str, method: str, **kw: Any) -> Any:
        try:
            return getattr(self.ec2(), method)(**kw)
        except Exception as e:
            raise aws_error(e, what, self.region) from None

    def terminate(self, instances: list[Instance]) -> None:
        """End cryocloud's instances (never one without its tags; safe to repeat)."""
        untagged = [i.id for i in instances if not i.tagged]
        if untagged:
            raise CryocloudError(f"refusing to end {', '.join(untagged)}: not tagged by cryocloud",
                                 "cryocloud ends only what it launched; end others in the EC2 console")
        if instances:
            self._call("terminating instances", "terminate_instances", InstanceIds=[i.id for i in instances])

    def delete_volumes(self, volumes: list[Volume]) -> None:
        untagged = [v.id for v in volumes if not v.tagged]
        if untagged:
            raise CryocloudError(f"refusing to delete {', '.join(untagged)}: not tagged by cryocloud",
                                 "cryocloud deletes only what it made; delete others in the EC2 console")
        for v in volumes:
            self._call(f"deleting volume {v.id}", "delete_volume", VolumeId=v.id)
