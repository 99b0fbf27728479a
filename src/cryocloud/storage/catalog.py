"""What a store holds: manifests, usage by kind and tier with its monthly cost, and garbage collection.

Deleting is mark and sweep, never reference counts kept on the side: an object is live while any manifest
names it. `collect` deletes only objects no manifest names AND older than a grace period, so an upload still
in progress (its manifest is written last) is never swept.
"""

from __future__ import annotations

import csv
import time
from collections import defaultdict
from dataclasses import dataclass
from importlib.resources import files

from cryocloud.storage.base import ObjectInfo, ObjectStore
from cryocloud.storage.manifest import Manifest, packidx_key


@dataclass(frozen=True)
class Tier:
    """One row of cryocloud/data/storage_prices.csv, the one price table (us-east-1 list prices)."""

    name: str  # the S3 storage class (STANDARD, GLACIER_IR, ...), or EBS_GP3 / FACILITY outside S3
    service: str  # s3, ebs or facility
    usd_per_gb_month: float
    min_days: int | None  # billed at least this long once in the class
    transition_usd_per_1000: float | None  # per-object fee of a lifecycle transition into the class


def read_tiers() -> dict[str, Tier]:
    text = files("cryocloud").joinpath("data", "storage_prices.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {r["tier"]: Tier(r["tier"], r["service"], float(r["usd_per_gb_month"]),
                            int(r["min_days"]) if r["min_days"] else None,
                            float(r["transition_usd_per_1000"]) if r["transition_usd_per_1000"] else None)
            for r in rows}


TIERS = read_tiers()
# USD per GB-month by S3 storage class. Glacier-class tiers also charge per object and a minimum duration
# (90 / 180 days), so cryocloud tiers only blobs and packs, never small indexes.
PRICE_GB_MONTH = {t.name: t.usd_per_gb_month for t in TIERS.values() if t.service == "s3"}
GRACE_SECONDS = 24 * 3600


def monthly_usd(nbytes: int, storage_class: str = "STANDARD") -> float:
    return nbytes / 1e9 * PRICE_GB_MONTH.get(storage_class, PRICE_GB_MONTH["STANDARD"])


def kind_of(key: str) -> str:
    for prefix, kind in (("cas/b/", "files"), ("cas/p/", "packs"), ("cas/i/", "pack indexes"),
                         ("manifests/", "manifests")):
        if key.startswith(prefix):
            return kind
    return "other"


@dataclass(frozen=True)
class ManifestInfo:
    name: str
    size: int  # bytes of the manifest object itself
    mtime: float


async def manifests(store: ObjectStore, prefix: str = "") -> list[ManifestInfo]:
    folder = "manifests/" + prefix.strip("/")
    out = [ManifestInfo(i.key.removeprefix("manifests/").removesuffix(".json"), i.size, i.mtime)
           async for i in store.list(folder) if i.key.endswith(".json")]
    return sorted(out, key=lambda m: m.name)


async def objects(store: ObjectStore, prefix: str = "") -> list[ObjectInfo]:
    """Every object, with its storage class where the store reports one (S3 via boto3)."""
    lister = getattr(store, "list_classes", None)
    if lister is not None:
        import asyncio

        return await asyncio.to_thread(lambda: list(lister(prefix)))
    return [i async for i in store.list(prefix)]


async def usage(store: ObjectStore) -> dict[tuple[str, str], tuple[int, int]]:
    """(kind, storage class) -> (objects, bytes)."""
    out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for info in await objects(store):
        row = out[(kind_of(info.key), info.storage_class)]
        row[0] += 1
        row[1] += info.size
    return {k: (v[0], v[1]) for k, v in sorted(out.items())}


@dataclass(frozen=True)
class Sweep:
    manifests: list[str]  # manifests removed (or to remove)
    objects: list[ObjectInfo]  # unreferenced objects removed (or to remove)

    @property
    def bytes(self) -> int:
        return sum(o.size for o in self.objects)

    @property
    def monthly_usd(self) -> float:
        return sum(monthly_usd(o.size, o.storage_class) for o in self.objects)


async def collect(store: ObjectStore, drop: list[str], *, dry_run: bool = True,
                  now: float | None = None, grace: float = GRACE_SECONDS) -> Sweep:
    """Remove the manifests in `drop`, then every object no remaining manifest names (older than `grace`)."""
    from cryocloud.storage.manifest import manifest_key
    from cryocloud.storage.pull import load_manifest

    now = time.time() if now is None else now
    dropped = set(drop)
    live: set[str] = set()
    for m in await manifests(store):
        if m.name not in dropped:
            manifest: Manifest = await load_manifest(store, m.name)
            live |= manifest.objects()
    live |= {packidx_key(k.removeprefix("cas/p/")) for k in live if k.startswith("cas/p/")}
    dead = [o for o in await objects(store, "cas/") if o.key not in live and now - o.mtime > grace]
    if not dry_run:
        await store.delete([manifest_key(n) for n in drop])
        # indexes first, so a concurrent push never reuses a pack that is about to go
        await store.delete([o.key for o in dead if o.key.startswith("cas/i/")])
        await store.delete([o.key for o in dead if not o.key.startswith("cas/i/")])
    return Sweep(sorted(dropped), dead)
