"""The account's vCPU quota for a plan's choice (what `cryocloud plan` checks; the AWS backend checks the same at
launch, backends/aws/quotas.py). Returns data; prints nothing."""

from __future__ import annotations

from typing import Any

from cryocloud.backends.aws import quotas
from cryocloud.planner.catalog import local_credentials
from cryocloud.settings import Settings, ec2_endpoint


def plan_quota(settings: Settings, plan: Any, ask: bool | None = None) -> quotas.QuotaCheck | None:
    """The quota check of the plan's cloud choice (None: no cloud choice, or `ask` is False). `ask` None: only
    when boto3 finds credentials without the network (a plan stays an offline tool for a lab without AWS)."""
    best = plan.best
    if best is None or best.backend != "aws" or ask is False:
        return None
    endpoint = ec2_endpoint(settings)
    if ask is None and not local_credentials():
        return quotas.check(best.machine, best.market, plan.region, None, None,
                            "no AWS credentials in this shell (--quota asks anyway)", count=best.count)
    from cryocloud.backends.aws.resources import ec2_client

    client, why = quotas.quota_client(plan.region, endpoint)
    return quotas.check(best.machine, best.market, plan.region, client, ec2_client(plan.region, endpoint), why,
                        count=best.count)
