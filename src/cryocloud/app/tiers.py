"""Per-project storage tiers: what `project tier` (and any other face) proposes and applies. The policy (which
object follows which rule) is storage/tiers.py; this puts a user's request to it and writes the result."""

from __future__ import annotations

from dataclasses import dataclass

from cryocloud.errors import CryocloudError
from cryocloud.storage import tiers
from cryocloud.storage.base import ObjectStore
from cryocloud.storage.project import list_projects
from cryocloud.storage.tags import TIER
from cryocloud.storage.transfer import run


@dataclass(frozen=True)
class TierChange:
    """What `project tier` would do: the rules before and after, and where every object would then be."""

    current: dict[str, tiers.Rule]
    proposed: dict[str, tiers.Rule]
    places: list[tiers.Placement]
    rows: dict[str, tiers.ProjectTier]

    @property
    def changes_rules(self) -> bool:
        return self.proposed != self.current


def propose(store: ObjectStore, name: str, days: int | None, storage_class: str, off: bool) -> TierChange:
    """Project `name`'s rule set to `storage_class` after `days` (or removed with `off`; neither: shown as it is).
    Refuses a project the store does not hold and a store whose store-wide rule already moves everything."""
    current = tiers.rules(store)
    proposed = dict(current)
    if days is not None:
        if name not in list_projects(store, name):
            raise CryocloudError(f"no project {name!r} in {store.url}", "push it first: cryocloud project push")
        if tiers.store_wide_rule(store):
            raise CryocloudError(f"{store.url} has a store-wide tier rule (cryocloud storage tier), which already "
                                 "moves every project's objects", "remove it first: cryocloud storage tier --off")
        proposed[name] = tiers.Rule(name, storage_class, days)
    elif off:
        proposed.pop(name, None)
    places = run(tiers.placements(store, proposed))
    return TierChange(current, proposed, places, tiers.by_project(places, proposed))


def apply(store: ObjectStore, name: str, change: TierChange) -> int:
    """Write the changed rule (if any) and re-tag the objects it moves. Returns how many were re-tagged."""
    if change.changes_rules:
        rule = change.proposed.get(name)
        store.set_lifecycle(tiers.CAS, {rule.tier: rule.days} if rule else {}, {TIER: name})
        tiers.forget(store)
    changed: int = run(tiers.retag(store, change.places))
    return changed
