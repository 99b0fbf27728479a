"""What AWS offers, as data: instance types, their hardware, on-demand prices per region, spot prices per zone.

The tables live in `cryocloud/data/` (built by scripts/build_catalog.py, refreshed from the AWS APIs by
scripts/refresh_catalog.py). Nothing here launches anything; `backends/aws` does that.
"""

from __future__ import annotations

import contextlib
import csv
import math
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from cryocloud.errors import CryocloudError, close_matches
from cryocloud.settings import ec2_endpoint

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


@dataclass(frozen=True)
class GpuModel:
    name: str
    memory_gib: float
    relion_speed: float  # RELION throughput per GPU relative to one K80 die (gpu_speeds.csv)
    basis: str  # how relion_speed is known: "measured" (published or lab runs) or "derived" (memory bandwidth)
    memory_gbps: float
    loo_ratio: float = math.nan  # measured cards: speed derived from the other cards / measured (NaN otherwise)


@dataclass(frozen=True)
class InstanceType:
    name: str
    family: str
    vcpus: int
    memory_gib: float
    gpus: int
    gpu_model: str
    gpu_memory_gib: float  # per GPU
    local_disk_gb: float  # instance store; 0 = EBS only
    local_disk_kind: str
    network_gbps: float
    cpu_speed: float  # per vCPU, relative to a 2015 Haswell vCPU
    gpu_speed: float  # per GPU, relative to one K80 die; 0 without GPUs
    retired: bool
    gpu_count_exponent: float = 1.0  # RELION's speed grows as GPUs^this on one machine (gpu_speeds.csv)
    prices: dict[str, float] = field(default_factory=dict, compare=False)  # region -> on-demand USD/h
    price_sources: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def cpu_units(self) -> float:
        return self.vcpus * self.cpu_speed

    @property
    def gpu_units(self) -> float:
        return self.gpu_speed * self.gpus ** self.gpu_count_exponent if self.gpus else 0.0

    def describe(self) -> str:
        gpu = f"{self.gpus}x {self.gpu_model} {self.gpu_memory_gib:g} GiB, " if self.gpus else ""
        return f"{gpu}{self.vcpus} vCPU, {self.memory_gib:g} GiB RAM"


@dataclass(frozen=True)
class SpotQuote:
    instance_type: str
    region: str
    zone: str
    usd_per_hour: float
    source: str  # "snapshot", "DescribeSpotPriceHistory", or "estimate (family discount)"


def read_data_csv(name: str, folder: Path | None = None) -> list[dict[str, str]]:
    """Rows of a CSV under cryocloud/data (or `folder`), skipping '#' comment lines."""
    text = ((folder or DATA_DIR) / name).read_text(encoding="utf-8")
    return list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))


class Catalog:
    """Instance types by name; prices by region; spot quotes by zone."""

    def __init__(self, folder: Path | None = None) -> None:
        speeds = {r["model"]: r for r in read_data_csv("gpu_speeds.csv", folder)}
        gpus = {}
        for r in read_data_csv("gpu_models.csv", folder):
            fit = speeds.get(r["model"], {})
            gpus[r["model"]] = GpuModel(r["model"], float(r["memory_gib"]), float(fit.get("relion_speed") or 0),
                                        fit.get("basis", "unknown"), float(r["memory_gbps"]),
                                        float(fit["loo_ratio"]) if fit.get("loo_ratio") else math.nan)
        self.gpu_count_exponent = float(next(iter(speeds.values()), {}).get("count_exponent") or 1.0)
        families = {r["family"]: r for r in read_data_csv("aws_families.csv", folder)}
        self.gpu_models = gpus
        self.types: dict[str, InstanceType] = {}
        for r in read_data_csv("aws_instances.csv", folder):
            name = r["instance_type"]
            if name not in self.types:
                fam = families.get(r["family"], {})
                model = gpus.get(r["gpu_model"])
                self.types[name] = InstanceType(
                    name=name, family=r["family"], vcpus=int(float(r["vcpus"])), memory_gib=float(r["memory_gib"]),
                    gpus=int(float(r["gpus"] or 0)), gpu_model=r["gpu_model"],
                    gpu_memory_gib=float(r["gpu_memory_gib"] or 0), local_disk_gb=float(r["local_disk_gb"] or 0),
                    local_disk_kind=r["local_disk_kind"], network_gbps=float(r["network_gbps"] or 1),
                    cpu_speed=float(fam.get("cpu_speed") or 1.0), gpu_speed=model.relion_speed if model else 0.0,
                    retired=fam.get("status") == "retired", gpu_count_exponent=self.gpu_count_exponent,
                )
            self.types[name].prices[r["region"]] = float(r["usd_per_hour"])
            self.types[name].price_sources[r["region"]] = r["price_source"]
        self._spot: dict[tuple[str, str], list[SpotQuote]] = {}
        for r in read_data_csv("aws_spot_prices.csv", folder):
            key = (r["instance_type"], r["region"])
            self._spot.setdefault(key, []).append(
                SpotQuote(r["instance_type"], r["region"], r["zone"], float(r["usd_per_hour"]), "snapshot"))

    def __iter__(self) -> Iterator[InstanceType]:
        return iter(self.types.values())

    @property
    def regions(self) -> list[str]:
        return sorted({reg for t in self.types.values() for reg in t.prices})

    def get(self, name: str) -> InstanceType:
        if name not in self.types:
            raise CryocloudError(
                f"unknown instance type {name!r}",
                close_matches(name, set(self.types)) + " (`cryocloud plan --list-types` shows them all)",
            )
        return self.types[name]

    def in_region(self, region: str, *, include_retired: bool = False) -> list[InstanceType]:
        self.check_region(region)
        return [t for t in self.types.values() if region in t.prices and (include_retired or not t.retired)]

    def check_region(self, region: str) -> None:
        if region not in self.regions:
            raise CryocloudError(f"no prices for region {region!r}", close_matches(region, set(self.regions)))

    def on_demand(self, name: str, region: str) -> float:
        itype = self.get(name)
        self.check_region(region)
        if region not in itype.prices:
            where = ", ".join(sorted(itype.prices))
            raise CryocloudError(
                f"{name} is not offered in {region}",
                f"it is in: {where}; pass --region one of those, or choose another type",
            )
        return itype.prices[region]

    def family_spot_discount(self, family: str) -> float:
        """Median spot/on-demand ratio over a family's snapshot rows: the offline fallback for a missing price."""
        ratios = [q.usd_per_hour / t.prices[q.region]
                  for t in self.types.values() if t.family == family
                  for q in self._spot_rows(t.name) if t.prices.get(q.region)]
        all_ratios = ratios or [q.usd_per_hour / self.types[q.instance_type].prices[q.region]
                                for qs in self._spot.values() for q in qs]
        return statistics.median(all_ratios) if all_ratios else 0.35

    def _spot_rows(self, name: str) -> list[SpotQuote]:
        return [q for (n, _), qs in self._spot.items() if n == name for q in qs]

    def spot(self, name: str, region: str, *, live: bool = False) -> list[SpotQuote]:
        """Spot quotes per zone, cheapest first: live from EC2 when asked, else the snapshot, else an estimate."""
        price = self.on_demand(name, region)
        if live:
            quotes = live_spot_prices(name, region)
            if quotes:
                return quotes
        quotes = sorted(self._spot.get((name, region), []), key=lambda q: q.usd_per_hour)
        if quotes:
            return quotes
        if self.types[name].retired:
            return []
        ratio = self.family_spot_discount(self.types[name].family)
        return [SpotQuote(name, region, "", round(price * ratio, 4), "estimate (family discount)")]


def local_credentials() -> bool:
    """Whether boto3's chain finds credentials without asking an instance metadata service (no network)."""
    try:
        import botocore.session
    except ImportError:
        return False
    session = botocore.session.Session()
    resolver = session.get_component("credential_provider")
    for name in ("iam-role", "container-role"):
        with contextlib.suppress(Exception):  # an older botocore names them otherwise: kept (at worst a short wait)
            resolver.remove(name)
    try:
        return session.get_credentials() is not None
    except Exception:
        return False


@cache
def default_catalog() -> Catalog:
    return Catalog()


def live_spot_prices(name: str, region: str, *, client: Any = None) -> list[SpotQuote]:
    """Latest spot price per zone from DescribeSpotPriceHistory (boto3's credential chain; endpoint from
    AWS_ENDPOINT_URL_EC2 or CRYOCLOUD_AWS_ENDPOINT_URL_EC2). Empty when EC2 gives none."""
    if client is None:
        try:
            import boto3
        except ImportError:
            raise CryocloudError("live spot prices need boto3", "pip install 'cryocloud[aws]'") from None
        client = boto3.client("ec2", region_name=region, endpoint_url=ec2_endpoint())
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # a test double without botocore installed
        BotoCoreError = ClientError = OSError  # type: ignore[misc,assignment]
    try:
        resp = client.describe_spot_price_history(
            InstanceTypes=[name], ProductDescriptions=["Linux/UNIX"], MaxResults=100)
    except (BotoCoreError, ClientError) as e:
        raise CryocloudError(
            f"cannot read spot prices for {name} in {region}: {e}",
            "check AWS credentials (aws sts get-caller-identity) or drop --live to use the snapshot",
        ) from None
    latest: dict[str, Any] = {}
    for item in resp.get("SpotPriceHistory", []):
        zone = item["AvailabilityZone"]
        if zone not in latest or item["Timestamp"] > latest[zone]["Timestamp"]:
            latest[zone] = item
    return sorted((SpotQuote(name, region, z, float(i["SpotPrice"]), "DescribeSpotPriceHistory")
                   for z, i in latest.items()), key=lambda q: q.usd_per_hour)
