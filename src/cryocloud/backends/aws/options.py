"""An AWS profile's settings ([profiles.NAME] with backend = "aws"), checked once. `cryocloud sandbox up` and
`cryocloud aws bootstrap` write three: `aws` (the plan's cheapest of spot and on-demand), `aws-spot`, `aws-ondemand`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryocloud.backends.options import check_staging, option_value
from cryocloud.errors import ConfigError

MARKETS = ("any", "spot", "on-demand")


@dataclass(frozen=True)
class AwsOptions:
    region: str = ""  # empty: [aws] region
    market: str = "any"  # any: the plan's cheapest of spot and on-demand
    instance_type: str = ""  # empty: the planner picks (RELION's "Machine" field overrides both)
    images: dict[str, str] = field(default_factory=dict)  # RELION version -> AMI with that RELION (docs/node-image.md)
    image: str = ""  # an AMI for a job of any RELION version (a command job, the sandbox)
    subnet: str = ""  # empty: the default VPC's (`aws bootstrap --private-subnet` names one without Internet)
    security_group: str = "cryocloud-nodes"  # by name or id: `aws bootstrap` makes it with no inbound rule
    instance_profile: str = "cryocloud-node"  # the node's only way to S3 (no key ever reaches a node)
    python: str = "/usr/bin/python3"  # the image's Python, with cryocloud's dependencies installed
    executables: dict[str, str] = field(default_factory=dict)  # the lab's program folder -> the image's
    volume_gb: int = 0  # the root volume; 0: 30 GB + 3x the job's inputs
    deadline_margin: float = 3.0  # the node ends itself after the plan's hours times this ...
    deadline_floor_minutes: float = 60.0  # ... but never sooner than this (boot, staging)
    max_hours: float = 24.0  # the hard deadline of a job the planner cannot size (a command) without a wall time
    deadman_minutes: int = 10  # the node shuts down this long after its agent stops saying it is alive
    stream_seconds: float = 15.0  # how often the node pushes the job folder back while the job runs
    stall_minutes: float = 60.0  # no new output and no CPU use for this long: a run.out line (0: never)
    end_stalled: bool = False  # ... and the job is ended (a node billing while nothing moves)
    staging: str = "s3"  # a node never sees the lab's disk: its data goes through the store
    profile: str = ""

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "profile")

    @classmethod
    def from_profile(cls, name: str, options: Mapping[str, Any]) -> AwsOptions:
        where = f"[profiles.{name}]"
        values = {f.name: option_value(where, f.name, str(f.type), options[f.name])
                  for f in dataclasses.fields(cls) if f.name != "profile" and f.name in options}
        out = cls(**values, profile=name)
        if out.market not in MARKETS:
            raise ConfigError(f"{where} market = {out.market!r}", "choose \"any\", \"spot\" or \"on-demand\"")
        if out.staging in ("none", "shared"):
            raise ConfigError(f"{where} staging = {out.staging!r}: an EC2 instance never sees the lab's disk",
                              "remove the staging key (the [storage] url is used), or name a store URL")
        check_staging(where, out.staging)
        if out.deadman_minutes < 2:
            raise ConfigError(f"{where} deadman_minutes = {out.deadman_minutes}: too short to boot",
                              "give 2 or more (10 is the default)")
        return out
