"""Spot prices over the last DAYS days, per zone: from EC2's DescribeSpotPriceHistory where it answers with prices in
that window, else the catalog's snapshot; always with the date of the data shown.

EC2 keeps 90 days of history and returns, besides the changes inside the window, the price in effect when the
window opened (dated before it); that point counts from the window's start. An answer with no point in the window
(moto's: one price per zone dated 2006-01-02) is not history of these days: the snapshot is shown instead, and
the reason is said.
"""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryocloud.errors import CryocloudError
from cryocloud.planner.catalog import DATA_DIR, default_catalog, local_credentials

MAX_DAYS = 90  # what EC2 keeps
API = "DescribeSpotPriceHistory"


@dataclass(frozen=True)
class ZoneHistory:
    zone: str
    low: float
    median: float
    high: float
    latest: float
    points: int


@dataclass
class SpotHistory:
    instance_type: str
    region: str
    days: float
    on_demand: float
    source: str  # API, or "catalog snapshot"
    data_from: str  # the data's dates (YYYY-MM-DD), or the snapshot's extraction date
    data_to: str
    zones: list[ZoneHistory] = field(default_factory=list)
    note: str = ""  # why the snapshot is shown

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.instance_type, "region": self.region, "days": self.days, "source": self.source,
                "data_from": self.data_from, "data_to": self.data_to, "on_demand_usd_per_hour": self.on_demand,
                "note": self.note, "zones": [vars(z) for z in self.zones]}


def check_days(days: float) -> None:
    if not 0 < days <= MAX_DAYS:
        raise CryocloudError(f"--history {days:g}: EC2 keeps spot prices for {MAX_DAYS} days",
                             f"give a number of days from 1 to {MAX_DAYS}, e.g. --history 7")


def snapshot_date() -> str:
    """The date the catalog's spot snapshot was extracted (its header line says it), or "undated"."""
    head = (DATA_DIR / "aws_spot_prices.csv").read_text(encoding="utf-8").split("\n", 1)[0]
    found = re.search(r"extracted (\d{4}-\d{2}-\d{2})", head)
    return found.group(1) if found else "undated"


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def from_snapshot(name: str, region: str, days: float, note: str) -> SpotHistory:
    catalog = default_catalog()
    od = catalog.on_demand(name, region)
    date = snapshot_date()
    quotes = catalog.spot(name, region)
    zones = [ZoneHistory(q.zone or "-", q.usd_per_hour, q.usd_per_hour, q.usd_per_hour, q.usd_per_hour, 1)
             for q in quotes]
    source = "catalog snapshot" if quotes and quotes[0].source == "snapshot" else "catalog estimate (family discount)"
    return SpotHistory(name, region, days, od, source, date, date, zones, note)


def summarise(name: str, region: str, days: float, items: list[dict[str, Any]], now: float) -> SpotHistory | None:
    """Per-zone low/median/high/latest over the window, or None when no point falls in it."""
    start = now - days * 86400
    by_zone: dict[str, list[tuple[float, float]]] = {}
    for item in items:
        ts = item["Timestamp"]
        at = ts.timestamp() if isinstance(ts, datetime) else float(ts)
        by_zone.setdefault(item["AvailabilityZone"], []).append((at, float(item["SpotPrice"])))
    zones, first, last = [], now, 0.0
    for zone, points in sorted(by_zone.items()):
        points.sort()
        inside = [p for p in points if start <= p[0] <= now + 3600]
        before = [p for p in points if p[0] < start]
        if not inside:
            continue
        # the price in effect when the window opened counts only beside changes inside it (never alone)
        used = ([(start, before[-1][1])] if before else []) + inside
        prices = [p for _, p in used]
        zones.append(ZoneHistory(zone, min(prices), statistics.median(prices), max(prices), used[-1][1], len(used)))
        first, last = min(first, used[0][0]), max(last, used[-1][0])
    if not zones:
        return None
    od = default_catalog().on_demand(name, region)
    return SpotHistory(name, region, days, od, API, _day(first), _day(last), zones)


def spot_history(name: str, region: str, days: float, *, client: Any = None, now: float | None = None,
                 ask: bool = True) -> SpotHistory:
    """The window's history from EC2 (`client`, else boto3's with the configured endpoint); the snapshot, with
    the reason, when EC2 cannot be asked or has nothing for the window."""
    check_days(days)
    now = time.time() if now is None else now
    default_catalog().on_demand(name, region)  # an unknown type or region: refused before any call
    if client is None:
        if not ask or not local_credentials():
            return from_snapshot(name, region, days, "no AWS credentials in this shell")
        import boto3

        from cryocloud.settings import ec2_endpoint

        client = boto3.session.Session().client("ec2", region_name=region, endpoint_url=ec2_endpoint())
    try:
        pages = client.get_paginator("describe_spot_price_history").paginate(
            InstanceTypes=[name], ProductDescriptions=["Linux/UNIX"],
            StartTime=datetime.fromtimestamp(now - days * 86400, UTC),
            EndTime=datetime.fromtimestamp(now, UTC))
        items = [i for page in pages for i in page.get("SpotPriceHistory", [])]
    except Exception as e:  # credentials expired, no access to the region, unreachable: said, then the snapshot
        code = str(getattr(e, "response", {}).get("Error", {}).get("Code", "")) or type(e).__name__
        return from_snapshot(name, region, days, f"EC2 did not answer ({code})")
    got = summarise(name, region, days, items, now)
    if got is not None:
        return got
    newest = max((i["Timestamp"] for i in items), default=None)
    said = f"EC2 answered {len(items)} prices, none in the last {days:g} days" + (
        f" (newest {newest:%Y-%m-%d})" if newest is not None else "")
    return from_snapshot(name, region, days, said)
