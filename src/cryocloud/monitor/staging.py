"""Staging a job for nodes that do not see the lab's disk: the lab (monitor) side.

Profile `staging = "store"` (or "s3": the [storage] url), or a store URL / absolute folder. Before launch the
monitor (not the backend's submit) uploads the job's inputs, its job folder as it is now (a continue needs the
earlier iterations) and its launch.json with storage.staging.stage_out under `jobs/<user>-<job>-<token>-in`.
The agent on the node (agent/remote.py) stages that into node-local scratch, runs there and pushes the job
folder back under `jobs/<user>-<job>-<token>-out` while it runs and once at the end (result.json inside). Each
monitor pass pulls a newer outputs manifest into the lab's job folder (every byte checked against the
manifest); the job's result counts only once it arrived that way, and only then does the lab write RELION's
marker. Markers and RELION_JOB_ABORT_NOW never travel (storage.staging.CONTROL_FILES).
"""
from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from cryocloud.errors import CryocloudError
from cryocloud.jobs import control, runlog
from cryocloud.jobs.spec import JobSpec
from cryocloud.settings import Profile, Settings

VERIFIED = "result.verified.json"  # the node's result.json, copied once the pull that brought it was verified whole
PULLED = "outputs_pulled"
STAGED_FOR = "staged_for"  # the spec the inputs were staged for (a requeue changes the commands: stage again)  # in the control folder: the `created` time of the outputs manifest last pulled
NO_STAGING = ("", "none", "shared")


def store_url(settings: Settings, profile: Profile) -> str | None:
    """The store a profile stages through, or None when its nodes see the project folder."""
    from cryocloud.backends.registry import BACKENDS

    info = BACKENDS.get(profile.backend)
    mode = str(profile.options.get("staging", info.default_staging if info else "none"))
    if mode in NO_STAGING:
        return None
    if mode in ("store", "s3"):
        from cryocloud.storage.stores import default_store_url

        url = default_store_url(settings)
        if mode == "s3" and not url.startswith("s3://"):
            raise CryocloudError(f"profile {profile.name} stages through S3 but [storage] url is {url!r}",
                                 "set [storage] url = \"s3://bucket/prefix\", or staging = \"store\"")
        return url
    return mode


def names(settings: Settings, job_id: int) -> tuple[str, str]:
    """Manifest names for one staging (one attempt): fresh each time, so that neither another ledger's job with
    the same id nor an earlier attempt of this job can pass its pushed-back result off as this attempt's."""
    user = re.sub(r"[^A-Za-z0-9._-]", "_", settings.user) or "user"
    token = uuid.uuid4().hex[:12]
    return f"jobs/{user}-{job_id}-{token}-in", f"jobs/{user}-{job_id}-{token}-out"


def stage_job(settings: Settings, url: str, job_id: int, spec: JobSpec, cdir: Path) -> dict[str, Any]:
    """Upload what the job reads; record in launch.json where the node finds it. Returns the staging record."""
    from cryocloud.storage.staging import CONTROL_FILES, stage_out
    from cryocloud.storage.stores import open_store

    project = Path(spec.project_dir)
    inputs, outputs = names(settings, job_id)
    rel_cdir = cdir.relative_to(project).as_posix()
    record = {"store": url, "inputs": inputs, "outputs": outputs, "job_dir": spec.job_dir, "control": rel_cdir}
    launch = control.read_json(cdir / control.LAUNCH) or {}
    control.write_json(cdir / control.LAUNCH, {**launch, "staging": record})
    outside = [f.path for f in spec.inputs if Path(f.path).is_absolute()]
    if outside:
        raise CryocloudError(f"{len(outside)} input files are outside the project folder (e.g. {outside[0]}); "
                             "staging carries the project folder only",
                             "link or copy them into the project folder, or use a profile without staging")
    job_dir = project / spec.job_dir
    paths = {Path(f.path) for f in spec.inputs}
    paths |= {p.relative_to(project) for p in job_dir.iterdir()
              if p.name != ".cryocloud" and p.name not in CONTROL_FILES}
    paths.add(cdir.relative_to(project) / control.LAUNCH)
    runlog.note(spec.folder, f"staging {len(spec.inputs)} input files ({spec.data_bytes / 1e6:.1f} MB) and the job folder to {url}")
    manifest = stage_out(open_store(url, settings), project, sorted(paths), name=inputs)
    runlog.note(spec.folder, f"staged {len(manifest.files)} files ({manifest.total_bytes / 1e6:.1f} MB) as {inputs}")
    (cdir / STAGED_FOR).write_text(spec.to_json())
    for name in (VERIFIED, PULLED, control.PULLED_BYTES):  # a new attempt: what the previous one pushed back is no verdict
        (cdir / name).unlink(missing_ok=True)
    return record


def pull_outputs(settings: Settings, spec: JobSpec, cdir: Path) -> bool:
    """Pull the node's newest outputs into the lab's job folder, verified. True if a new manifest was pulled."""
    launch = control.read_json(cdir / control.LAUNCH) or {}
    record = launch.get("staging")
    if not record:
        return False
    from cryocloud.storage.base import ObjectNotFound
    from cryocloud.storage.pull import load_manifest, pull
    from cryocloud.storage.stores import open_store
    from cryocloud.storage.transfer import run

    store = open_store(str(record["store"]), settings)
    try:
        manifest = run(load_manifest(store, str(record["outputs"])))
    except ObjectNotFound:
        return False  # the node has pushed nothing yet
    stamp_file = cdir / PULLED
    seen = stamp_file.read_text().strip() if stamp_file.exists() else ""
    if seen == repr(manifest.created):
        return False
    with runlog.locked(spec.folder):  # a `status` query's line meanwhile waits, instead of being written over
        logs = {name: _read(spec.folder / name) for name in (runlog.OUT, runlog.ERR)}  # the lab's own lines too
        got = pull(store, manifest, Path(spec.project_dir), only=[spec.job_dir.rstrip("/")])  # all verified
        for name, ours in logs.items():
            theirs = _read(spec.folder / name)
            merged = runlog.merge(ours, theirs)
            if merged != theirs:
                tmp = spec.folder / f".{name}.merged"
                tmp.write_text(merged, encoding="utf-8")
                tmp.replace(spec.folder / name)  # RELION's GUI reads it meanwhile: never a half-written file
    so_far = cdir / control.PULLED_BYTES
    before = int(so_far.read_text()) if so_far.exists() else 0
    so_far.write_text(str(before + got.downloaded_bytes))
    rel = (cdir / control.RESULT).relative_to(spec.project_dir).as_posix()
    result = control.read_json(cdir / control.RESULT)
    if result is not None and any(f.path == rel for f in manifest.files):
        control.write_json(cdir / VERIFIED, result)  # the node's verdict, arrived with every output verified
        runlog.note(spec.folder, f"results back: {got.files} files ({got.bytes_total / 1e6:.1f} MB), every byte "
                                 "checked against the node's manifest")
    stamp_file.write_text(repr(manifest.created))
    return True


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def staged(cdir: Path) -> bool:
    launch = control.read_json(cdir / control.LAUNCH) or {}
    return bool(launch.get("staging"))


def read_result(settings: Settings, spec: JobSpec, cdir: Path) -> dict[str, Any] | None:
    """The agent's result: for a staged job, only once it arrived with every output verified (pulled here)."""
    if not staged(cdir):
        return control.read_json(cdir / control.RESULT)
    try:
        pull_outputs(settings, spec, cdir)
    except CryocloudError as e:  # e.g. a corrupt object: nothing wrong was written; say so, try again later
        note = cdir / "pull_error"
        if not note.exists() or note.read_text() != e.message:
            note.write_text(e.message)
            runlog.note(spec.folder, f"pulling the job's outputs failed (will retry): {e.message}", runlog.ERR)
    return control.read_json(cdir / VERIFIED)


def staged_for(cdir: Path) -> str:
    """The spec (JSON) the job's inputs were last staged for ('' if never)."""
    try:
        return (cdir / STAGED_FOR).read_text()
    except OSError:
        return ""
