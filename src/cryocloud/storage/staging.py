"""The staging API the agent and the monitor call: a job's files out to the store and back.

    manifest = stage_out(store, project_dir, [Path("Import/job001"), Path("Movies")], name="jobs/abc-in")
    stage_in(store, manifest, node_project_dir)     # or stage_in(store, "jobs/abc-in", ...)

`stage_out` follows links that point outside the staged set (their bytes travel once, by content) and keeps
links whose targets are staged too; `stage_in` recreates the exact relative layout RELION expects.
Both are synchronous; `*_async` variants exist for callers already inside an event loop.
"""

from __future__ import annotations

from pathlib import Path

from cryocloud.storage.base import ObjectStore
from cryocloud.storage.manifest import Manifest
from cryocloud.storage.progress import Progress
from cryocloud.storage.pull import PullResult, pull, pull_async
from cryocloud.storage.push import PushResult, push_async
from cryocloud.storage.transfer import run

# RELION's control files never travel between node and lab (see DESIGN "Rules learned the hard way").
CONTROL_FILES = frozenset({
    "RELION_JOB_EXIT_SUCCESS", "RELION_JOB_EXIT_FAILURE", "RELION_JOB_EXIT_ABORTED", "RELION_JOB_ABORT_NOW",
    "PIPELINER_JOB_EXIT_SUCCESS", "PIPELINER_JOB_EXIT_FAILED", "PIPELINER_JOB_EXIT_ABORTED",
    "PIPELINER_JOB_ABORT_NOW",
})


async def stage_out_async(store: ObjectStore, project_dir: Path, paths: list[Path], name: str,
                          progress: Progress | None = None) -> PushResult:
    from cryocloud.storage import tags

    project = project_dir.resolve().name
    labels = tags.for_job(name, project) if name.startswith("jobs/") else tags.make(project)
    result = await push_async(store, project_dir, paths, name=name, keep_links=False, exclude=CONTROL_FILES,
                              progress=progress, tags=labels)
    await _hold(store, result)
    return result


async def _hold(store: ObjectStore, result: PushResult) -> None:
    """A job needs its inputs readable now: objects it reuses leave any project's tier rule (tiers.py)."""
    import asyncio

    from cryocloud.storage import tiers

    if await asyncio.to_thread(tiers.has_rules, store):
        await tiers.release(store, result.manifest.objects() - result.uploaded_keys)


def stage_out(store: ObjectStore, project_dir: Path, paths: list[Path], name: str,
              progress: Progress | None = None) -> Manifest:
    """Upload `paths` (relative to `project_dir`) by content; return the manifest stored under `name`."""
    return run(stage_out_async(store, project_dir, paths, name, progress)).manifest


async def stage_in_async(store: ObjectStore, manifest: Manifest | str, dest: Path,
                         progress: Progress | None = None) -> PullResult:
    return await pull_async(store, manifest, dest, progress=progress)


def stage_in(store: ObjectStore, manifest: Manifest | str, dest: Path,
             progress: Progress | None = None) -> PullResult:
    """Download a manifest's files under `dest`, verified; files already in place are skipped."""
    return pull(store, manifest, dest, progress=progress)
