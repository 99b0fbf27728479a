"""`storage verify`: are a manifest's objects whole in the store?

Quick (default): a HEAD per object: it exists, and it is as long as the manifest says (a blob its file's size, a
pack at least up to its last member). `--full`: every object is downloaded and hashed. Objects are content
addressed, so the key says what the bytes must hash to: a blob's SHA-256 is its file's; a pack is named by its
index (its members' hashes, offsets and sizes), so each member the manifest names is hashed on its own. Damaged and missing objects are
recorded (cache.PackIndex) so that the next push of a good copy uploads them again.

(No server-side checksum is used: S3 keeps one only when the uploader asked for it, a multipart object's is
composite, and none catches damage done by the server itself. `--full` is the check that cannot be fooled.)
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from contextlib import aclosing
from dataclasses import dataclass, field

from cryocloud.storage.base import ObjectStore
from cryocloud.storage.manifest import FileEntry
from cryocloud.storage.progress import NullProgress, Progress
from cryocloud.storage.pull import load_manifest, record_damaged
from cryocloud.storage.transfer import Tuning, bounded, run


@dataclass(frozen=True)
class VerifyResult:
    manifest: str
    objects: int
    bytes_checked: int  # downloaded and hashed (0 for a quick check)
    full: bool
    damaged: dict[str, list[str]] = field(default_factory=dict)  # object key -> the files it costs
    missing: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.missing


def _expected_sha(key: str) -> str:
    return key.rsplit("/", 1)[-1]


async def _hash_object(store: ObjectStore, key: str, members: list[FileEntry], progress: Progress) -> list[str]:
    """Download `key` and hash it; [] when whole, else the files whose bytes are wrong (all of a blob's)."""
    whole = hashlib.sha256()  # a blob's
    is_pack = key.startswith("cas/p/")
    spans = sorted(members, key=lambda e: e.offset) if is_pack else []
    hashers = {e.path: hashlib.sha256() for e in spans}
    pos = 0
    stream = store.get_stream(key)
    async with aclosing(stream):
        async for chunk in stream:
            if not is_pack:
                whole.update(chunk)
            end = pos + len(chunk)
            for e in spans:  # the members this chunk overlaps
                lo, hi = max(pos, e.offset), min(end, e.offset + e.size)
                if lo < hi:
                    hashers[e.path].update(chunk[lo - pos : hi - pos])
            pos = end
            progress.advance(len(chunk))
    if not is_pack:
        return [] if whole.hexdigest() == _expected_sha(key) else [e.path for e in members]
    return [e.path for e in spans if hashers[e.path].hexdigest() != e.sha256 or e.offset + e.size > pos]


async def verify_async(store: ObjectStore, name: str, *, full: bool = False, tuning: Tuning | None = None,
                       progress: Progress | None = None) -> VerifyResult:
    tuning = tuning or Tuning()
    progress = progress or NullProgress()
    await store.check()
    m = await load_manifest(store, name)
    by_key: dict[str, list[FileEntry]] = defaultdict(list)
    for e in m.files:
        by_key[e.key].append(e)
    damaged: dict[str, list[str]] = {}
    missing: dict[str, list[str]] = {}
    checked = 0

    async def one(key: str) -> None:
        nonlocal checked
        members = by_key[key]
        info = await store.head(key)
        if info is None:
            missing[key] = [e.path for e in members]
            return
        if info.size < max(e.offset + e.size for e in members):
            damaged[key] = [e.path for e in members]
            return
        if full:
            bad = await _hash_object(store, key, members, progress)
            checked += info.size
            if bad:
                damaged[key] = bad

    try:
        if full:
            progress.phase(f"hashing {len(by_key)} objects", sum(e.size for e in m.files))
        await bounded(tuning.in_flight, [lambda k=k: one(k) for k in by_key])  # type: ignore[misc]
    finally:
        progress.close()
    if damaged or missing:
        record_damaged(store, set(damaged) | set(missing))
    return VerifyResult(name, len(by_key), checked, full, damaged, missing)


def verify(store: ObjectStore, name: str, *, full: bool = False, tuning: Tuning | None = None,
           progress: Progress | None = None) -> VerifyResult:
    return run(verify_async(store, name, full=full, tuning=tuning, progress=progress))
