"""`storage verify`: are a manifest's objects whole in the store? `--repair FROM`: make them whole again.

Quick (default): a HEAD per object: it exists, and it is as long as the manifest says (a blob its file's size, a
pack at least up to its last member). Where the store keeps the object's whole SHA-256 (S3, for objects put in one
request: the manifest's `checksum` says which), the HEAD asks for it and compares it with what the object must
hash to: an object overwritten with other bytes is found without downloading it. A multipart object's checksum is
composite and a folder keeps none: those are only sized. No stored checksum sees damage done inside the server
after it checked the upload: `--full` downloads and hashes every object, the check that cannot be fooled.

Objects are content addressed, so the key says what the bytes must hash to: a blob's SHA-256 is its file's; a pack
is named by its index (its members' hashes, offsets and sizes), so each member the manifest names is hashed on its
own, and the index keeps the SHA-256 of the pack's bytes for the stored checksum. Damaged and missing objects are
recorded (cache.PackIndex) so that the next push of a good copy uploads them again.

`repair` puts the exact bytes back under the same keys, so every manifest naming them is whole again: a blob from
a local file with its hash; a pack rebuilt from its index, each member from a local file with that hash or, where
the damage spared it, from the stored pack itself. It never trusts a local file it has not hashed.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from contextlib import aclosing
from dataclasses import dataclass, field

from cryocloud.storage.base import ObjectStore
from cryocloud.storage.manifest import FileEntry
from cryocloud.storage.progress import NullProgress, Progress
from cryocloud.storage.pull import load_manifest, load_pack_index, record_damaged
from cryocloud.storage.transfer import Tuning, bounded, run


@dataclass(frozen=True)
class VerifyResult:
    manifest: str
    objects: int
    bytes_checked: int  # downloaded and hashed (0 for a quick check)
    full: bool
    damaged: dict[str, list[str]] = field(default_factory=dict)  # object key -> the files it costs
    missing: dict[str, list[str]] = field(default_factory=dict)
    by_checksum: int = 0  # objects a quick check compared with the store's own SHA-256 (the others: sized only)

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
    checked = by_checksum = 0

    async def one(key: str) -> None:
        nonlocal checked, by_checksum
        members = by_key[key]
        info = await store.head(key, checksum=not full and bool(m.checksum))
        if info is None:
            missing[key] = [e.path for e in members]
            return
        if info.size < max(e.offset + e.size for e in members):
            damaged[key] = [e.path for e in members]
            return
        if not full and m.whole_checksum(info.size):
            want = await _pack_sha(store, key) if key.startswith("cas/p/") else _expected_sha(key)
            if want:  # (a pack from before packs recorded their hash: sized only)
                by_checksum += 1
                if info.sha256 != want:  # other bytes, or none kept: not what this push stored
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
    return VerifyResult(name, len(by_key), checked, full, damaged, missing, by_checksum)


async def _pack_sha(store: ObjectStore, key: str) -> str:
    """The SHA-256 of a pack's bytes, from its index ("" when the index is gone or older than the field)."""
    index = await load_pack_index(store, key)
    return str(index.get("sha256", "")) if index else ""


def verify(store: ObjectStore, name: str, *, full: bool = False, tuning: Tuning | None = None,
           progress: Progress | None = None) -> VerifyResult:
    return run(verify_async(store, name, full=full, tuning=tuning, progress=progress))
