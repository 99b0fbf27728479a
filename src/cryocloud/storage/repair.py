"""`storage verify --repair FROM`: put the exact bytes back under the keys `verify` found damaged or missing.

Objects are content addressed, so a repair never changes a key: every manifest naming the object is whole again,
not only the one verified. A blob comes from a local file under FROM whose SHA-256 is the key (the manifest's own
path first, then any other path of the same content). A pack is rebuilt from its index (cas/i/), member by member at
its offset: from the stored pack where the damage spared that member (hashed), else from a local file with the
member's hash. Nothing local is trusted before it is hashed; a file that changes while it is uploaded is not
counted as repaired. What cannot be rebuilt is named with the reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from cryocloud.storage.base import ObjectNotFound, ObjectStore
from cryocloud.storage.cache import PackIndex, cache_dir
from cryocloud.storage.manifest import FileEntry, Manifest
from cryocloud.storage.pull import load_pack_index
from cryocloud.storage.transfer import Tuning, bounded, hash_file, run, same_stat


@dataclass(frozen=True)
class RepairResult:
    repaired: list[str] = field(default_factory=list)  # object keys stored again with their right bytes
    left: dict[str, str] = field(default_factory=dict)  # object key -> why it could not be rebuilt


class _Unrepairable(Exception):
    pass


def _good_local(source: Path, entries: list[FileEntry], sha: str) -> tuple[Path, os.stat_result] | None:
    """A file under `source` at one of these manifest paths whose bytes hash to `sha`, with its stat."""
    for e in entries:
        path = source / e.path
        try:
            got, before, after = hash_file(str(path))
        except OSError:
            continue
        if got == sha and same_stat(before, after):
            return path, after
    return None


async def _blob(store: ObjectStore, key: str, source: Path, entries: list[FileEntry]) -> None:
    sha = key.rsplit("/", 1)[-1]
    found = await asyncio.to_thread(_good_local, source, entries, sha)
    if found is None:
        raise _Unrepairable(f"no file under {source} has its content (tried {', '.join(e.path for e in entries[:3])})")
    path, st = found
    await store.put(key, path, size=st.st_size)
    if not same_stat(st, os.stat(path)):
        raise _Unrepairable(f"{path} changed while it was uploading")


async def _pack(store: ObjectStore, key: str, source: Path, by_sha: dict[str, list[FileEntry]]) -> None:
    index = await load_pack_index(store, key)
    if index is None:
        raise _Unrepairable("its index (cas/i/) is gone, so its layout is unknown: push from a good copy")
    members = sorted(index["files"], key=lambda row: row[1])
    try:
        stored = await store.get(key)
    except ObjectNotFound:
        stored = b""

    def rebuild() -> bytes:
        out = bytearray()
        for sha, off, size in members:
            if off != len(out):
                raise _Unrepairable(f"its index has a gap at offset {off}")
            part = stored[off : off + size]
            if len(part) != size or hashlib.sha256(part).hexdigest() != sha:
                local = _good_local(source, by_sha.get(sha, []), sha)
                if local is None:
                    names = ", ".join(e.path for e in by_sha.get(sha, [])) or "a file of another manifest"
                    raise _Unrepairable(f"member {sha[:12]} ({names}) is damaged and not found under {source}")
                part = local[0].read_bytes()
                if hashlib.sha256(part).hexdigest() != sha:
                    raise _Unrepairable(f"{local[0]} changed while it was read")
            out += part
        if index.get("sha256") and hashlib.sha256(out).hexdigest() != index["sha256"]:
            raise _Unrepairable("the rebuilt bytes do not hash to the pack's recorded SHA-256")
        return bytes(out)

    data = await asyncio.to_thread(rebuild)
    await store.put(key, data, size=len(data))


async def repair_async(store: ObjectStore, manifest: Manifest, keys: set[str], source: Path,
                       tuning: Tuning | None = None) -> RepairResult:
    """Store again the objects `keys` of `manifest` (from `verify`: damaged or missing), from `source`."""
    tuning = tuning or Tuning()
    by_sha: dict[str, list[FileEntry]] = defaultdict(list)
    for e in manifest.files:
        by_sha[e.sha256].append(e)
    repaired: list[str] = []
    left: dict[str, str] = {}

    async def one(key: str) -> None:
        try:
            if key.startswith("cas/p/"):
                await _pack(store, key, source, by_sha)
            else:
                await _blob(store, key, source, by_sha[key.rsplit("/", 1)[-1]])
            repaired.append(key)
        except _Unrepairable as e:
            left[key] = str(e)

    await bounded(tuning.hashers, [lambda k=k: one(k) for k in sorted(keys)])  # type: ignore[misc]
    index = PackIndex(cache_dir(), store.url)
    try:
        index.clear_damaged(repaired)
    finally:
        index.close()
    return RepairResult(sorted(repaired), left)


def repair(store: ObjectStore, manifest: Manifest, keys: set[str], source: Path) -> RepairResult:
    return run(repair_async(store, manifest, keys, source))
