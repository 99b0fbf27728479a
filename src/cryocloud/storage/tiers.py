"""Storage tiers per project: which objects a project's lifecycle rule may move, by reference count.

Objects are content-addressed and shared within a store (a lab's bucket or prefix), so a project has no
prefix of its own to put a rule on. Instead each project's rule is one S3 lifecycle rule filtered on the
prefix `cas/` AND the object tag `cryocloud:tier=<project>`, and this module decides which objects carry
that tag, by counting references over every manifest (DESIGN: tiering a shared object needs a reference
count):

- only files and packs (`cas/b/`, `cas/p/`) are ever tagged; pack indexes and manifests are small and
  read by every push, and Glacier's per-object fee and minimum duration would cost more than they save;
- an object referenced only by project P's snapshots follows P's rule;
- an object shared by several projects that all have rules follows the *most available* of those rules
  (warmest class first: STANDARD_IA, GLACIER_IR, GLACIER, DEEP_ARCHIVE; then the most days), so no project
  loses instant access it asked to keep;
- an object also used by job staging data (`jobs/...`: a job that runs needs its inputs now), by a plain
  `storage push`, or by a project without a rule stays untagged: STANDARD.

Lifecycle rules act by object age (days since upload), once a day, on AWS's side; re-tagging is what
`project tier --yes` does, after changing a rule and whenever pushes may have changed who shares what.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryocloud.storage.base import ObjectNotFound, ObjectStore, parse_scope
from cryocloud.storage.catalog import TIERS, monthly_usd, objects
from cryocloud.storage.s3_bucket import TIER_CLASSES
from cryocloud.storage.tags import TIER
from cryocloud.storage.transfer import bounded

CAS = "cas/"
WARMTH = ("STANDARD_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE")  # most available first
# billed at least this long, and USD per 1,000 lifecycle transitions into the class (the per-object fee):
# both from data/storage_prices.csv
MIN_DAYS = {t.name: t.min_days for t in TIERS.values() if t.min_days is not None}
TRANSITION_USD_PER_1000 = {t.name: t.transition_usd_per_1000 for t in TIERS.values()
                           if t.transition_usd_per_1000 is not None}
JOB = "(job staging)"  # a holder that keeps an object STANDARD
PLAIN = "(storage push)"


@dataclass(frozen=True)
class Rule:
    project: str
    storage_class: str  # S3 class name, e.g. GLACIER
    days: int

    @property
    def tier(self) -> str:
        return {v: k for k, v in TIER_CLASSES.items()}[self.storage_class]


@dataclass(frozen=True)
class Placement:
    key: str
    size: int
    storage_class: str  # where it is now
    holders: frozenset[str]  # projects (or JOB / PLAIN) whose manifests name it
    rule: Rule | None  # the rule that governs it; None: stays STANDARD


@dataclass
class ProjectTier:
    """What one project's rule does: objects it moves, shared ones another rule governs, ones held back."""

    project: str
    rule: Rule | None
    moves: list[Placement] = field(default_factory=list)
    elsewhere: list[Placement] = field(default_factory=list)  # governed by another project's warmer rule
    held: list[Placement] = field(default_factory=list)  # stay STANDARD: a job, a plain push or an unruled project

    @property
    def bytes(self) -> int:
        return sum(p.size for p in self.moves)

    @property
    def saving_usd_month(self) -> float:
        if self.rule is None:
            return 0.0
        cls = self.rule.storage_class
        return sum(max(0.0, monthly_usd(p.size, p.storage_class) - monthly_usd(p.size, cls)) for p in self.moves)

    @property
    def transition_usd(self) -> float:
        if self.rule is None:
            return 0.0
        return len(self.moves) * TRANSITION_USD_PER_1000[self.rule.storage_class] / 1000


def holder(manifest_name: str) -> str:
    """Who a manifest's references count for: the project of a snapshot, else JOB or PLAIN."""
    if manifest_name.startswith("projects/"):
        return manifest_name.removeprefix("projects/").rpartition("/")[0]
    return JOB if manifest_name.startswith("jobs/") else PLAIN


def rules(store: ObjectStore) -> dict[str, Rule]:
    """The per-project rules the store holds (lifecycle rules on `cas/` filtered on `cryocloud:tier`)."""
    out: dict[str, Rule] = {}
    for key, r in store.get_lifecycle().items():
        prefix, tags = parse_scope(key)
        if prefix != CAS or set(tags) != {TIER}:
            continue
        for tier, days in r.items():
            if tier in TIER_CLASSES:
                out[tags[TIER]] = Rule(tags[TIER], TIER_CLASSES[tier], days)
    return out


def store_wide_rule(store: ObjectStore) -> dict[str, int]:
    """The `storage tier` rule (every object under cas/, no tag filter), if any."""
    return store.get_lifecycle().get(CAS, {})


def governing(holders: Iterable[str], rules_: dict[str, Rule]) -> Rule | None:
    hs = set(holders)
    if not hs or any(h not in rules_ for h in hs):  # JOB, PLAIN and unruled projects are never in rules_
        return None
    return min((rules_[h] for h in hs), key=lambda r: (WARMTH.index(r.storage_class), -r.days, r.project))


async def placements(store: ObjectStore, rules_: dict[str, Rule]) -> list[Placement]:
    """Every file and pack any manifest names, with who holds it and the rule that governs it."""
    from cryocloud.storage.catalog import manifests
    from cryocloud.storage.pull import load_manifest

    names = [m.name for m in await manifests(store)]
    loaded = await bounded(16, [lambda n=n: load_manifest(store, n) for n in names])  # type: ignore[misc]
    refs: dict[str, set[str]] = defaultdict(set)
    for name, man in zip(names, loaded, strict=True):
        h = holder(name)
        for key in man.objects():
            refs[key].add(h)
    out = []
    for o in await objects(store, CAS):
        if o.key in refs and o.key.startswith(("cas/b/", "cas/p/")):
            hs = frozenset(refs[o.key])
            out.append(Placement(o.key, o.size, o.storage_class, hs, governing(hs, rules_)))
    return sorted(out, key=lambda p: p.key)


def by_project(places: list[Placement], rules_: dict[str, Rule]) -> dict[str, ProjectTier]:
    """For each project that holds objects: what its rule moves, what another rule governs, what stays."""
    out: dict[str, ProjectTier] = {}
    for p in places:
        for h in p.holders:
            if h in (JOB, PLAIN):
                continue
            row = out.setdefault(h, ProjectTier(h, rules_.get(h)))
            if p.rule is None:
                row.held.append(p)
            elif p.rule.project == h:
                row.moves.append(p)
            else:
                row.elsewhere.append(p)
    return dict(sorted(out.items()))


async def retag(store: ObjectStore, places: list[Placement], threads: int = 16) -> int:
    """Make each object's `cryocloud:tier` tag name the project whose rule governs it (none: no tag).
    Returns how many objects changed. Other tags are kept (S3 replaces a tag set as a whole)."""
    if not _tags_kept(store):
        return 0

    def one(p: Placement) -> bool:
        try:
            current = store.get_tags(p.key)
        except ObjectNotFound:  # swept meanwhile
            return False
        want = p.rule.project if p.rule else None
        if current.get(TIER) == want or (want is None and TIER not in current):
            return False
        new = {k: v for k, v in current.items() if k != TIER}
        if want is not None:
            new[TIER] = want
        try:
            store.set_tags(p.key, new)
        except ObjectNotFound:
            return False
        return True

    changed = await bounded(threads, [lambda p=p: asyncio.to_thread(one, p) for p in places])  # type: ignore[misc]
    return sum(changed)


async def release(store: ObjectStore, keys: Iterable[str], keep: str = "", threads: int = 16) -> int:
    """A push just made these objects shared: clear a `cryocloud:tier` tag naming another project than
    `keep`, so no rule moves them before `project tier --yes` counts references again (STANDARD is the
    safe side: every holder can read it). Returns how many objects changed."""
    data = sorted(k for k in keys if k.startswith(("cas/b/", "cas/p/")))
    if not data or not _tags_kept(store):
        return 0

    def one(key: str) -> bool:
        try:
            current = store.get_tags(key)
            if TIER not in current or current[TIER] == keep:
                return False
            store.set_tags(key, {k: v for k, v in current.items() if k != TIER})
        except ObjectNotFound:
            return False
        return True

    changed = await bounded(threads, [lambda k=k: asyncio.to_thread(one, k) for k in data])  # type: ignore[misc]
    return sum(changed)


_RULES: dict[str, tuple[float, bool]] = {}  # store url -> (when asked, has per-project rules)
RULES_TTL = 600.0


def has_rules(store: ObjectStore) -> bool:
    """Whether the store holds per-project tier rules; asked once per 10 minutes per store and process (the
    agent stages outputs many times a job). Unreadable rules (a node role without s3:GetLifecycleConfiguration,
    a server without lifecycle) count as none."""
    import time

    now = time.monotonic()
    hit = _RULES.get(store.url)
    if hit and now - hit[0] < RULES_TTL:
        return hit[1]
    try:
        found = bool(rules(store))
    except Exception:  # best effort by design (botocore raises more than ClientError)
        found = False
    _RULES[store.url] = (now, found)
    return found


def forget(store: ObjectStore) -> None:
    """Drop the cached answer of `has_rules` (after this process changed the rules)."""
    _RULES.pop(store.url, None)


def _tags_kept(store: ObjectStore) -> bool:
    """False for stores that ignore tags (the local folder): nothing to re-tag there."""
    from cryocloud.storage.localfs import LocalFolderStore

    return not isinstance(store, LocalFolderStore)

