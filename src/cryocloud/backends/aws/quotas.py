"""The account's running-vCPU quotas, asked of Service Quotas before a machine is chosen or launched.

EC2 counts vCPUs per instance class (Standard, G and VT, P, X, F, Inf: data/aws_vcpu_quotas.csv) and market
(on-demand and spot apart); new accounts often have 0 for G and P. `check` answers whether one more machine fits
under the quota, counting what already runs in the region (DescribeInstances), and how to raise it when not.

A quota that cannot be read (no permission, Service Quotas unreachable, or an EC2 endpoint overridden without one
for Service Quotas, as in the sandbox: moto has no quotas) is said, never guessed: the check then lets the launch
go on, and EC2's own VcpuLimitExceeded is still translated by the backend.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from cryocloud.errors import SubmissionError

QUOTA_ENDPOINT_ENV = "AWS_ENDPOINT_URL_SERVICE_QUOTAS"  # boto3 reads it itself


def error_code(e: Exception) -> str:  # (resources.py has the same; it imports the backend, which imports this)
    return str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))


@dataclass(frozen=True)
class QuotaKind:
    klass: str
    market: str
    code: str
    name: str


@cache
def _table() -> dict[tuple[str, str], QuotaKind]:
    from cryocloud.planner.catalog import read_data_csv

    return {(r["letters"], r["market"]): QuotaKind(r["class"], r["market"], r["quota_code"], r["quota_name"])
            for r in read_data_csv("aws_vcpu_quotas.csv")}


def kind_of(family: str, market: str) -> QuotaKind:
    """The quota a family's instances count against on a market (Standard unless its letters are listed)."""
    letters = (re.match(r"[a-z]+", family) or re.match("", family)).group(0)  # type: ignore[union-attr]
    table = _table()
    return table.get((letters, market)) or table[("", market)]


@dataclass(frozen=True)
class QuotaCheck:
    instance_type: str
    market: str
    region: str
    kind: QuotaKind
    needed: int  # the machine's vCPUs
    quota: float | None  # None: not read (see `unknown`)
    in_use: int = 0  # vCPUs of running and pending instances of the same class and market
    source: str = ""  # "applied" (the account's value) or "AWS default"
    unknown: str = ""  # why the quota was not read

    @property
    def ok(self) -> bool:
        return self.quota is None or self.in_use + self.needed <= self.quota

    def line(self) -> str:
        if self.quota is None:
            return f"vCPU quota for {self.instance_type} {self.market} not checked: {self.unknown}"
        return (f"vCPU quota '{self.kind.name}' in {self.region}: {self.quota:g} ({self.source}), {self.in_use} in use; "
                f"{self.instance_type} {self.market} needs {self.needed}")

    def refusal(self) -> SubmissionError:
        want = max(self.in_use + self.needed, self.needed * 2)
        return SubmissionError(
            f"{self.instance_type} {self.market} needs {self.needed} vCPUs of the account's quota '{self.kind.name}' "
            f"in {self.region}, which is {self.quota:g} with {self.in_use} in use",
            f"ask AWS for more (approval can take a day): `aws service-quotas request-service-quota-increase "
            f"--service-code ec2 --quota-code {self.kind.code} --desired-value {want} --region {self.region}` "
            "(or the Service Quotas console); meanwhile choose another machine or market (`cryocloud plan`)")


def quota_client(region: str, ec2_endpoint: str | None) -> tuple[Any, str]:
    """(a Service Quotas client, "") or (None, why not). With EC2 overridden (a sandbox) and no Service Quotas
    endpoint, no client: the request would leave the machine for AWS with the sandbox's keys."""
    if ec2_endpoint and not os.environ.get(QUOTA_ENDPOINT_ENV):
        return None, f"EC2 is {ec2_endpoint} and {QUOTA_ENDPOINT_ENV} is not set"
    try:
        import boto3
    except ImportError:
        return None, "boto3 is not installed (pip install 'cryocloud[aws]')"
    return boto3.session.Session().client("service-quotas", region_name=region), ""


def read_quota(client: Any, code: str) -> tuple[float, str]:
    """The account's value of one EC2 quota, else AWS's default for it (an account that never changed it may have
    no applied value). Raises botocore's errors."""
    try:
        return float(client.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"]), "applied"
    except Exception as e:
        if error_code(e) != "NoSuchResourceException":
            raise
        got = client.get_aws_default_service_quota(ServiceCode="ec2", QuotaCode=code)
        return float(got["Quota"]["Value"]), "AWS default"


def vcpus_in_use(ec2: Any, kind: QuotaKind) -> int:
    """vCPUs of the region's running and pending instances that count against `kind` (any owner: it is the
    account's quota)."""
    from cryocloud.planner.catalog import default_catalog

    catalog = default_catalog()
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])
    total = 0
    for inst in (i for page in pages for r in page["Reservations"] for i in r["Instances"]):
        market = "spot" if inst.get("InstanceLifecycle") == "spot" else "on-demand"
        family = inst["InstanceType"].split(".", 1)[0]
        if market != kind.market or kind_of(family, market).code != kind.code:
            continue
        known = catalog.types.get(inst["InstanceType"])
        cpu = inst.get("CpuOptions", {})
        total += known.vcpus if known else int(cpu.get("CoreCount", 1)) * int(cpu.get("ThreadsPerCore", 1))
    return total


def check(instance_type: str, market: str, region: str, quotas: Any, ec2: Any, unknown: str = "",
          count: int = 1) -> QuotaCheck:
    """Whether `count` more `instance_type` on `market` fit the account's quota in `region`. `quotas` is a Service
    Quotas client (None: not asked, `unknown` says why); `ec2` an EC2 client for what runs already."""
    from cryocloud.planner.catalog import default_catalog

    itype = default_catalog().get(instance_type)
    kind = kind_of(itype.family, market)
    needed = itype.vcpus * count
    if quotas is None:
        return QuotaCheck(instance_type, market, region, kind, needed, None, unknown=unknown)
    try:
        value, source = read_quota(quotas, kind.code)
    except Exception as e:  # AccessDenied, no such service in this endpoint (moto), unreachable: said, not guessed
        return QuotaCheck(instance_type, market, region, kind, needed, None,
                          unknown=f"Service Quotas did not answer ({error_code(e) or type(e).__name__})")
    try:
        used = vcpus_in_use(ec2, kind) if value else 0
    except Exception as e:  # the quota alone still refuses a machine larger than it
        return QuotaCheck(instance_type, market, region, kind, needed, value, 0, source,
                          unknown=f"running instances not counted ({error_code(e) or type(e).__name__})")
    return QuotaCheck(instance_type, market, region, kind, needed, value, used, source)


def within_quota(choices: list[Any], region: str, ec2: Any, ec2_endpoint: str | None,
                 say: Any = None) -> list[Any]:
    """The launch options (each with .instance_type and .market) whose quota has room, in order; `say` hears a
    line for each left out and for a quota that could not be read. None fits: the first refusal is raised."""
    client, why = quota_client(region, ec2_endpoint)
    fits: list[Any] = []
    refused: list[QuotaCheck] = []
    for choice in choices:
        got = check(choice.instance_type, choice.market, region, client, ec2, why)
        if got.quota is None and say is not None and not fits and not refused:
            say(got.line())
        if got.ok:
            fits.append(choice)
        else:
            refused.append(got)
            if say is not None:
                say(f"{got.line()}: not enough; trying the next option")
    if not fits:
        raise refused[0].refusal()
    return fits
