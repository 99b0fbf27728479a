"""A session's movies to the archive while the microscope collects: content-addressed through the data mover
(storage.push: unchanged bytes never move twice), then each movie's object checked in the store (storage.verify:
the store's own SHA-256 where it keeps one, else the object downloaded and hashed), so a facility knows which movies
may be deleted from the microscope's PC. Runs in a worker thread beside the watcher's loop."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryocloud.errors import CryocloudError
from cryocloud.storage.base import ObjectStore


@dataclass(frozen=True)
class Uploaded:
    name: str  # the movie, relative to the session folder
    sha256: str
    key: str  # the object holding its bytes
    verified: bool


@dataclass
class Round:
    manifest: str
    movies: list[Uploaded] = field(default_factory=list)
    bytes_sent: int = 0
    seconds: float = 0.0


def manifest_name(session_id: int, session_dir: Path, round_no: int) -> str:
    base = re.sub(r"[^A-Za-z0-9._=-]+", "-", session_dir.name).strip("-") or "session"
    return f"sessions/{session_id}-{base}/{round_no}"


def upload(store: ObjectStore, session_dir: Path, names: list[str], manifest: str) -> Round:
    """Push these movies (one manifest for the round), then verify every object the manifest names."""
    from cryocloud.storage.push import push
    from cryocloud.storage.verify import verify

    t0 = time.monotonic()
    result = push(store, session_dir, [session_dir / n for n in names], name=manifest, keep_links=False)
    entries = {e.path: e for e in result.manifest.files}
    missing = [n for n in names if n not in entries]
    if missing:
        raise CryocloudError(f"{len(missing)} movies were not in the upload (first: {missing[0]})",
                             "they are retried on the next round")
    m = result.manifest  # quick check where the store keeps each object's SHA-256; else download and hash
    whole = bool(m.checksum) and all(e.pack or m.whole_checksum(e.size) for e in entries.values())
    checked = verify(store, manifest, full=not whole)
    bad = {p for paths in [*checked.damaged.values(), *checked.missing.values()] for p in paths}
    out = Round(manifest, bytes_sent=result.uploaded_bytes)
    for n in names:
        e = entries[n]
        out.movies.append(Uploaded(n, e.sha256, e.key, n not in bad))
    out.seconds = time.monotonic() - t0
    return out
