"""Push: upload a folder (or some paths in it) by content and write its manifest.

Order of work, and why a manifest never names a missing or wrong object:
1. `store.check()` first: unreachable endpoint, refused credentials or missing bucket fail before any work.
2. Hash every file, or take its hash from the stat cache when (size, mtime, inode) are unchanged.
3. Small files go into packs (few large objects instead of thousands of requests); a small file whose
   hash is already in a pack of this store (learned from `cas/i/`) is not uploaded again, after a HEAD
   confirms the pack still exists. Large files are blobs; a HEAD tells which are already there.
4. Upload what is missing. The bytes are hashed again as they are sent: if a file changed since step 2,
   the object is deleted and the file retried (then refused with a clear error). Each upload is followed
   by a HEAD checking its size; the server checks each request's SHA-256 (signed payload).
5. Write the manifest last, and only if its content differs from the one already stored.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryocloud.errors import CryocloudError
from cryocloud.storage.base import ObjectStore
from cryocloud.storage.cache import PackIndex, StatCache, cache_dir
from cryocloud.storage.manifest import (
    FileEntry,
    Manifest,
    blob_key,
    manifest_key,
    pack_key,
    packidx_key,
)
from cryocloud.storage.progress import NullProgress, Progress
from cryocloud.storage.scan import LocalFile, scan
from cryocloud.storage.transfer import (
    Tuning,
    bounded,
    hash_file,
    os_error,
    run,
    same_stat,
)

RETRIES_ON_CHANGE = 3


@dataclass(frozen=True)
class PushResult:
    manifest: Manifest
    files: int
    bytes_total: int
    uploaded_objects: int
    uploaded_bytes: int
    manifest_written: bool


class _Push:
    def __init__(self, store: ObjectStore, tuning: Tuning, progress: Progress) -> None:
        self.store = store
        self.tuning = tuning
        self.progress = progress
        self.uploaded_objects = 0
        self.uploaded_bytes = 0
        self.threads = asyncio.Semaphore(tuning.hashers)
        self.hashed_at: dict[str, tuple[int, int, int]] = {}  # rel -> (size, mtime_ns, ino) its hash is for

    async def hash_all(self, files: list[LocalFile], cache: StatCache, root: Path) -> dict[str, str]:
        """rel path -> sha256; unchanged files come from the stat cache."""
        known = cache.load(root)
        shas: dict[str, str] = {}
        todo: list[LocalFile] = []
        for f in files:
            hit = known.get(f.path)
            if hit and hit[:3] == (f.size, f.mtime_ns, f.ino):
                shas[f.rel] = hit[3]
                self.hashed_at[f.rel] = hit[:3]
            else:
                todo.append(f)
        self.progress.phase(f"hashing {len(todo)} files", sum(f.size for f in todo))
        rows: list[tuple[str, int, int, int, str]] = []

        async def one(f: LocalFile) -> None:
            async with self.threads:
                try:
                    sha, before, after = await asyncio.to_thread(hash_file, f.path)
                except FileNotFoundError:
                    raise CryocloudError(f"{f.rel} vanished while pushing", "push again") from None
                except OSError as e:
                    raise os_error(e, f"reading {f.rel}") from None
            shas[f.rel] = sha
            if same_stat(before, after):
                self.hashed_at[f.rel] = (after.st_size, after.st_mtime_ns, after.st_ino)
                rows.append((f.path, after.st_size, after.st_mtime_ns, after.st_ino, sha))
            self.progress.advance(f.size)

        await bounded(self.tuning.hashers * 2, [lambda f=f: one(f) for f in todo])  # type: ignore[misc]
        cache.store(rows)
        return shas

    async def sync_pack_index(self, index: PackIndex) -> None:
        """Learn the packs other pushes (any user of this store) made since we last looked."""
        listed = {info.key.removeprefix("cas/i/").removesuffix(".json") async for info in self.store.list("cas/i/")}
        known = index.known_packs()
        index.forget(known - listed)

        async def fetch(pack: str) -> None:
            body = json.loads(await self.store.get(packidx_key(pack)))
            index.add(pack, [(s, o, n) for s, o, n in body["files"]])

        await bounded(self.tuning.in_flight, [lambda p=p: fetch(p) for p in listed - known])  # type: ignore[misc]

    async def existing(self, keys: set[str]) -> set[str]:
        """Which of `keys` exist in the store: a HEAD each, or one listing when there are many."""
        if len(keys) > 2000:
            present = {info.key async for info in self.store.list("cas/")}
            return keys & present

        async def head(key: str) -> str | None:
            return key if await self.store.head(key) else None

        found = await bounded(self.tuning.in_flight * 2, [lambda k=k: head(k) for k in keys])  # type: ignore[misc]
        return {k for k in found if k}

    async def _verify_size(self, key: str, size: int, what: str) -> None:
        info = await self.store.head(key)
        if info is None or info.size != size:
            await self.store.delete([key])
            raise CryocloudError(
                f"upload of {what} did not arrive intact ({info.size if info else 'no'} bytes, expected {size})",
                "push again; transfers resume where they stopped",
            )

    async def upload_blob(self, f: LocalFile, sha: str) -> str:
        """Upload one large file as `cas/b/..`; returns the hash of what was sent (== sha unless it changed).

        The store reads the file itself (natively, in parallel parts); the file's stat before and after the
        upload must equal the stat its hash was computed at, else the object is deleted and the file retried.
        """
        valid = self.hashed_at.get(f.rel)
        for _attempt in range(RETRIES_ON_CHANGE):
            try:
                before = os.stat(f.path)
                if valid is None or not _same(before, valid):
                    sha, b, a = await asyncio.to_thread(hash_file, f.path)
                    valid = (b.st_size, b.st_mtime_ns, b.st_ino) if same_stat(b, a) else None
                    if valid is None:
                        continue
                    before = b
                await self.store.put(blob_key(sha), Path(f.path), size=before.st_size)
                after = os.stat(f.path)
            except FileNotFoundError:
                raise CryocloudError(f"{f.rel} vanished while it was uploading", "push again") from None
            except OSError as e:
                raise os_error(e, f"reading {f.rel}") from None
            if same_stat(before, after) and _same(after, valid):
                await self._verify_size(blob_key(sha), after.st_size, f.rel)
                self.uploaded_objects += 1
                self.uploaded_bytes += after.st_size
                self.progress.advance(after.st_size)
                return sha
            await self.store.delete([blob_key(sha)])  # bytes under a name that may not be their hash: remove
            valid = None
        raise CryocloudError(
            f"{f.rel} kept changing while it was uploading", "push again once the program writing it has finished"
        )

    async def upload_pack(self, members: list[tuple[LocalFile, str]], index: PackIndex) -> dict[str, FileEntry]:
        """Read the files into one pack (re-hashing each), upload it and its index; rel -> entry."""
        import hashlib

        def build() -> tuple[bytes, list[tuple[LocalFile, str, int, int]]]:
            buf = bytearray()
            placed = []
            for f, _sha in members:
                data = _read_stable(f)
                placed.append((f, hashlib.sha256(data).hexdigest(), len(buf), len(data)))
                buf += data
            return bytes(buf), placed

        async with self.threads:
            data, placed = await asyncio.to_thread(build)
        pack = hashlib.sha256(data).hexdigest()
        await self.store.put(pack_key(pack), data, size=len(data))
        await self._verify_size(pack_key(pack), len(data), f"pack {pack[:12]}")
        entries = [(sha, off, n) for _f, sha, off, n in placed]
        await self.store.put(packidx_key(pack), json.dumps({"pack": pack, "files": entries}).encode())
        index.add(pack, entries)
        self.uploaded_objects += 1
        self.uploaded_bytes += len(data)
        self.progress.advance(len(data))
        return {
            f.rel: FileEntry(f.rel, n, sha, f.mtime_ns, f.mode, pack, off) for f, sha, off, n in placed
        }


def _same(st: os.stat_result, key: tuple[int, int, int] | None) -> bool:
    return key is not None and (st.st_size, st.st_mtime_ns, st.st_ino) == key


def _read_stable(f: LocalFile) -> bytes:
    for _ in range(RETRIES_ON_CHANGE):
        before = os.stat(f.path)
        with open(f.path, "rb") as fh:
            data = fh.read()
        if same_stat(before, os.stat(f.path)) and len(data) == before.st_size:
            return data
    raise CryocloudError(f"{f.rel} kept changing while it was uploading",
                         "push again once the program writing it has finished")


def _group(items: list[tuple[LocalFile, str]], size: int) -> list[list[tuple[LocalFile, str]]]:
    groups: list[list[tuple[LocalFile, str]]] = [[]]
    total = 0
    for item in sorted(items, key=lambda x: x[0].rel):
        if total >= size and groups[-1]:
            groups.append([])
            total = 0
        groups[-1].append(item)
        total += item[0].size
    return [g for g in groups if g]


async def push_async(
    store: ObjectStore, root: Path, paths: list[Path] | None = None, *, name: str, keep_links: bool = True,
    exclude: frozenset[str] = frozenset(), meta: dict[str, str] | None = None,
    tuning: Tuning | None = None, progress: Progress | None = None,
) -> PushResult:
    tuning = tuning or Tuning()
    progress = progress or NullProgress()
    key = manifest_key(name)
    await store.check()
    found = await asyncio.to_thread(scan, root, paths, keep_links=keep_links, exclude=exclude)
    p = _Push(store, tuning, progress)
    cdir = cache_dir()
    cache, index = StatCache(cdir / "stat.sqlite"), PackIndex(cdir, store.url)
    try:
        shas = await p.hash_all(found.files, cache, root.resolve())
        small = [(f, shas[f.rel]) for f in found.files if f.size < tuning.pack_threshold]
        large = [(f, shas[f.rel]) for f in found.files if f.size >= tuning.pack_threshold]
        entries: dict[str, FileEntry] = {}
        if small:
            await p.sync_pack_index(index)
            packed = index.lookup(s for _f, s in small)
            alive = await p.existing({pack_key(pk) for pk, _o in packed.values()})
            index.forget({pk for pk, _o in packed.values() if pack_key(pk) not in alive})
            new_small: dict[str, tuple[LocalFile, str]] = {}
            for f, sha in small:
                if sha in packed and pack_key(packed[sha][0]) in alive:
                    pk, off = packed[sha]
                    entries[f.rel] = FileEntry(f.rel, f.size, sha, f.mtime_ns, f.mode, pk, off)
                else:
                    new_small.setdefault(sha, (f, sha))
        present = await p.existing({blob_key(s) for _f, s in large})
        new_large: dict[str, LocalFile] = {}
        for f, sha in large:
            if blob_key(sha) not in present:
                new_large.setdefault(sha, f)
        groups = _group(list(new_small.values()), tuning.pack_size) if small else []
        todo_bytes = sum(f.size for f in new_large.values()) + sum(f.size for g in groups for f, _s in g)
        progress.phase(f"uploading {len(new_large)} files + {len(groups)} packs", todo_bytes)
        sent_as: dict[str, str] = {}

        async def blob(sha: str, f: LocalFile) -> None:
            sent_as[sha] = await p.upload_blob(f, sha)

        by_sha: dict[str, FileEntry] = {}

        async def pack(group: list[tuple[LocalFile, str]]) -> None:
            for entry in (await p.upload_pack(group, index)).values():
                entries[entry.path] = entry
                by_sha.setdefault(entry.sha256, entry)

        large_slots = max(2, tuning.in_flight // 4)
        await asyncio.gather(
            bounded(large_slots, [lambda s=s, f=f: blob(s, f) for s, f in new_large.items()]),  # type: ignore[misc]
            bounded(max(2, tuning.in_flight // 4), [lambda g=g: pack(g) for g in groups]),  # type: ignore[misc]
        )
        rest = [(f, sha) for f, sha in small if f.rel not in entries]
        for _round in range(RETRIES_ON_CHANGE):  # other paths with the same bytes as a packed file
            missing = []
            for f, sha in rest:
                if sha in by_sha:
                    e = by_sha[sha]
                    entries[f.rel] = FileEntry(f.rel, f.size, sha, f.mtime_ns, f.mode, e.pack, e.offset)
                else:
                    missing.append((f, sha))
            if not missing:
                break
            await pack(missing)  # their twin changed while packing: store these on their own
            rest = [(f, sha) for f, sha in missing if f.rel not in entries]
        for f, sha in large:
            final = sent_as.get(sha, sha)
            entries[f.rel] = FileEntry(f.rel, f.size, final, f.mtime_ns, f.mode)
        manifest = Manifest(name, [entries[f.rel] for f in found.files], found.links, found.dirs,
                            meta=dict(meta or {}))
        reused = manifest.objects() - {blob_key(s) for s in sent_as.values()} - {
            pack_key(e.pack) for e in by_sha.values()}
        if reused - await p.existing(reused):  # a cleanup removed something we counted on meanwhile
            raise CryocloudError(f"objects in {store.url} vanished during the push (a cleanup ran?)",
                                 "push again: it uploads what is missing")
        written = await _write_manifest(store, key, manifest)
    finally:
        cache.close()
        index.close()
        progress.close()
    return PushResult(manifest, len(found.files), manifest.total_bytes, p.uploaded_objects, p.uploaded_bytes, written)


async def _write_manifest(store: ObjectStore, key: str, manifest: Manifest) -> bool:
    if await store.head(key):
        old = Manifest.from_json(await store.get(key), key)
        if old.content() == manifest.content():
            return False
    await store.put(key, manifest.to_json())
    return True


def push(store: ObjectStore, root: Path, paths: list[Path] | None = None, *, name: str, keep_links: bool = True,
         exclude: frozenset[str] = frozenset(), meta: dict[str, str] | None = None,
         tuning: Tuning | None = None, progress: Progress | None = None) -> PushResult:
    """Upload `paths` under `root` (default: all of it) by content; the manifest is stored under `name`."""
    return run(push_async(store, root, paths, name=name, keep_links=keep_links, exclude=exclude, meta=meta,
                          tuning=tuning, progress=progress))
