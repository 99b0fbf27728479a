"""Project backups (`projects/NAME/VERSION` manifests) and cleanup of temporary job data (`jobs/...`).

A project snapshot is a push of the whole folder with links kept as links (RELION's job aliases, `Movies/`
pointing at raw data), minus pending abort requests. Snapshots share every unchanged byte with the previous
one, so a daily backup costs what changed. Job staging manifests live under `jobs/`; `cleanup --storage`
drops those older than N days and sweeps the objects nothing else uses.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from cryocloud.errors import CryocloudError
from cryocloud.storage import tags
from cryocloud.storage.base import ObjectStore
from cryocloud.storage.catalog import Sweep, collect, manifests
from cryocloud.storage.manifest import check_name
from cryocloud.storage.progress import Progress
from cryocloud.storage.pull import PullResult, pull_async
from cryocloud.storage.push import PushResult, push_async
from cryocloud.storage.tiers import has_rules, release
from cryocloud.storage.transfer import run

PROJECTS = "projects/"
JOBS = "jobs/"
# a backup keeps exit markers (they are the job's history) but never a pending abort request
ABORT_FILES = frozenset({"RELION_JOB_ABORT_NOW", "PIPELINER_JOB_ABORT_NOW"})


def push_project(store: ObjectStore, folder: Path, name: str, progress: Progress | None = None) -> PushResult:
    check_name(name)
    version = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    tier = _tier_tag(store, name)
    result = run(push_async(store, folder, name=f"{PROJECTS}{name}/{version}", keep_links=True,
                            exclude=ABORT_FILES, meta={"project": name},
                            progress=progress, tags=tags.make(name), data_tags=tier))
    if tier or has_rules(store):  # reused from another project: leave its rule until references are counted
        previous = _previous(store, name, version)
        reused = result.manifest.objects() - result.uploaded_keys - previous
        run(release(store, reused, keep=name))
    return result


def _previous(store: ObjectStore, name: str, version: str) -> set[str]:
    """Objects the project's previous snapshot names (their holders did not change with this one)."""
    from cryocloud.storage.pull import load_manifest

    older = [v for v in list_projects(store, name).get(name, []) if v < version]
    return run(load_manifest(store, f"{PROJECTS}{name}/{older[-1]}")).objects() if older else set()


def _tier_tag(store: ObjectStore, name: str) -> dict[str, str]:
    """{cryocloud:tier: name} when the project has a tier rule: files and packs this snapshot uploads are
    new, so only it names them and its rule governs them (tiers.py); objects it reuses keep their tags
    until `project tier --yes` counts references again."""
    from cryocloud.storage.tiers import rules

    try:
        return {tags.TIER: name} if name in rules(store) else {}
    except CryocloudError:  # rules unreadable: no tier tag, the objects stay STANDARD (the safe side)
        return {}


def list_projects(store: ObjectStore, name: str = "") -> dict[str, list[str]]:
    found = run(manifests(store, PROJECTS + name))
    out: dict[str, list[str]] = defaultdict(list)
    for m in found:
        proj, _, version = m.name.removeprefix(PROJECTS).rpartition("/")
        out[proj].append(version)
    return {k: sorted(v) for k, v in sorted(out.items())}


def pull_project(store: ObjectStore, name: str, folder: Path, version: str = "",
                 progress: Progress | None = None) -> tuple[str, PullResult]:
    snaps = list_projects(store, name).get(name, [])
    if not snaps:
        known = ", ".join(list_projects(store)) or "none"
        raise CryocloudError(f"no project {name!r} in {store.url}", f"projects there: {known}")
    if version and version not in snaps:
        raise CryocloudError(f"project {name!r} has no snapshot {version!r}", "snapshots: " + ", ".join(snaps))
    snap = f"{PROJECTS}{name}/{version or snaps[-1]}"
    return snap, run(pull_async(store, snap, folder, progress=progress))


def cleanup_jobs(store: ObjectStore, older_than_days: float, *, dry_run: bool = True,
                 now: float | None = None, keep: set[str] | None = None) -> Sweep:
    """Drop job staging manifests older than N days (except those named in `keep`: an active job's) and the
    objects only they used."""
    now = time.time() if now is None else now
    old = [m.name for m in run(manifests(store, JOBS))
           if now - m.mtime > older_than_days * 86400 and m.name not in (keep or set())]
    return run(collect(store, old, dry_run=dry_run, now=now))
