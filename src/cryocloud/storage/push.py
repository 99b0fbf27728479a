"""Push: upload a folder (or some paths in it) by content and write its manifest.

Order of work, and why a manifest never names a missing or wrong object:
1. `store.check()` first: unreachable endpoint, refused credentials or missing bucket fail before any work.
2. Hash every file, or take its hash from the stat cache when (size, mtime, inode) are unchanged.
3. Small files go into packs (few large objects instead of thousands of requests); a small file whose
   hash is already in a pack of this store (learned from `cas/i/`) is not uploaded again, after a HEAD
   confirms the pack still exists. Large files are blobs; a HEAD tells which are already there. An object a pull
   or `storage verify` found damaged is never counted on: a damaged blob is uploaded again (same key, good
   bytes: every manifest naming it is whole again), the files of a damaged pack go into a new pack.
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
    hash_file_with,
    os_error,
    run,
    same_stat,
    xxh128,
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
    uploaded_keys: frozenset[str] = frozenset()  # objects this push stored; the manifest's others were reused


class _Push:
    def __init__(self, store: ObjectStore, tuning: Tuning, progress: Progress,
                 tags: dict[str, str] | None = None, data_tags: dict[str, str] | None = None) -> None:
        self.store = store
        self.tags = tags or None  # cryocloud:* tags on every object this push uploads
        self.data_tags = {**(tags or {}), **data_tags} if data_tags else self.tags  # files and packs only
        self.tuning = tuning
        self.progress = progress
        self.uploaded_objects = 0
        self.uploaded_bytes = 0
        self.threads = asyncio.Semaphore(tuning.hashers)
        self.hashed_at: dict[str, tuple[int, int, int]] = {}  # rel -> (size, mtime_ns, ino) its hash is for
        self.xxh: dict[str, str] = {}  # large files' SHA-256 -> XXH3-128, as hashed by this push

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
                    sha, b, a = await asyncio.to_thread(self.hash_large, f.path)
                    valid = (b.st_size, b.st_mtime_ns, b.st_ino) if same_stat(b, a) else None
                    if valid is None:
                        continue
                    before = b
                await self.store.put(blob_key(sha), Path(f.path), size=before.st_size, tags=self.data_tags)
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

    def hash_large(self, path: str) -> tuple[str, os.stat_result, os.stat_result]:
        """A large file's SHA-256 and XXH3-128 in one read (the second kept in self.xxh), with its stats."""
        import hashlib

        (sha, xxh), before, after = hash_file_with(path, hashlib.sha256(), xxh128())
        if same_stat(before, after):
            self.xxh[sha] = xxh
        return sha, before, after

    async def xxh_for(self, large: list[LocalFile], shas: dict[str, str], cache: StatCache) -> None:
        """Fill self.xxh for every large file's SHA-256: known to this push, to the cache, or (a file the stat
        cache knew before it kept XXH3-128 too) read once more, if it is still the file its SHA-256 is of; what
        this push learned goes to the cache."""
        fresh = list(self.xxh.items())  # hashed by this push
        missing = {shas[f.rel] for f in large} - self.xxh.keys()
        self.xxh.update(cache.xxh_of(missing))
        todo = {shas[f.rel]: f for f in large if shas[f.rel] not in self.xxh}

        def one(sha: str, f: LocalFile) -> None:
            try:
                (xxh,), before, after = hash_file_with(f.path, xxh128())
            except OSError:
                return  # gone meanwhile: the pull checks this file's SHA-256 instead
            valid = self.hashed_at.get(f.rel)
            if same_stat(before, after) and valid is not None and _same(after, valid):
                fresh.append((sha, xxh))

        await bounded(self.tuning.hashers, [lambda s=s, f=f: asyncio.to_thread(one, s, f)  # type: ignore[misc]
                                            for s, f in todo.items()])
        self.xxh.update(fresh)
        cache.store_xxh(fresh)

    async def upload_pack(self, members: list[_Read], index: PackIndex,
                          slots: asyncio.Semaphore) -> dict[str, tuple[str, int]]:
        """Upload files already read (and hashed) as one pack plus its index; sha256 -> (pack, offset).
        `slots` bounds the pack PUTs in flight (the size check and the index PUT run outside it)."""
        import hashlib

        entries, off = [], 0
        for r in members:
            entries.append((r.sha, off, len(r.data)))
            off += len(r.data)
        # Named by the hash of its index: the files' hashes, offsets and sizes fix every byte of the pack, so
        # this is a content address too, without hashing the pack's bytes a second time.
        pack = hashlib.sha256(json.dumps(entries, separators=(",", ":")).encode()).hexdigest()
        data, whole = await asyncio.to_thread(_joined, [r.data for r in members])
        async with slots:
            await self.store.put(pack_key(pack), data, size=len(data), tags=self.data_tags)
        body = json.dumps({"pack": pack, "files": entries, "sha256": whole}).encode()
        await bounded(2, [lambda: self._verify_size(pack_key(pack), len(data), f"pack {pack[:12]}"),
                          lambda: self.store.put(packidx_key(pack), body, tags=self.tags)])
        index.add(pack, entries)
        self.uploaded_objects += 1
        self.uploaded_bytes += len(data)
        self.progress.advance(len(data))
        return {sha: (pack, o) for sha, o, _n in entries}


@dataclass
class _Read:
    """A small file read for packing: its bytes, their hash, and the stat they were read at."""

    file: LocalFile
    data: bytes
    sha: str
    mtime_ns: int
    stable: tuple[int, int, int] | None  # (size, mtime_ns, ino) when nothing changed while reading

    def entry(self, pack: str, offset: int) -> FileEntry:
        return FileEntry(self.file.rel, len(self.data), self.sha, self.mtime_ns, self.file.mode, pack, offset)


def _joined(parts: list[bytes]) -> tuple[bytes, str]:
    """A pack's bytes and their SHA-256 (~1.4 GB/s here: what a store's stored checksum is compared to)."""
    import hashlib

    data = b"".join(parts)
    return data, hashlib.sha256(data).hexdigest()


def _same(st: os.stat_result, key: tuple[int, int, int] | None) -> bool:
    return key is not None and (st.st_size, st.st_mtime_ns, st.st_ino) == key


def _read_batch(files: list[LocalFile]) -> list[_Read]:
    """Read and hash small files (one pass: these bytes are what the pack holds and what the hash names)."""
    import hashlib

    out = []
    for f in files:
        try:
            data, st = _read_stable(f)
        except FileNotFoundError:
            raise CryocloudError(f"{f.rel} vanished while pushing", "push again") from None
        except OSError as e:
            raise os_error(e, f"reading {f.rel}") from None
        out.append(_Read(f, data, hashlib.sha256(data).hexdigest(), st.st_mtime_ns,
                         (st.st_size, st.st_mtime_ns, st.st_ino)))
    return out


def _read_stable(f: LocalFile) -> tuple[bytes, os.stat_result]:
    for _ in range(RETRIES_ON_CHANGE):
        before = os.stat(f.path)
        with open(f.path, "rb") as fh:
            data = fh.read()
        if same_stat(before, os.stat(f.path)) and len(data) == before.st_size:
            return data, before
    raise CryocloudError(f"{f.rel} kept changing while it was uploading",
                         "push again once the program writing it has finished")


def _batches(files: list[LocalFile], size: int, most: int) -> list[list[LocalFile]]:
    """Files in path order, cut into packs of about `size` bytes and at most `most` files (8 MiB of 100-byte
    files would be 80,000 files: their reads, hashes and entries in memory at once, times the packs ahead)."""
    groups: list[list[LocalFile]] = [[]]
    total = 0
    for f in sorted(files, key=lambda x: x.rel):
        if (total >= size or len(groups[-1]) >= most) and groups[-1]:
            groups.append([])
            total = 0
        groups[-1].append(f)
        total += f.size
    return [g for g in groups if g]


async def push_async(
    store: ObjectStore, root: Path, paths: list[Path] | None = None, *, name: str, keep_links: bool = True,
    exclude: frozenset[str] = frozenset(), meta: dict[str, str] | None = None,
    tuning: Tuning | None = None, progress: Progress | None = None, tags: dict[str, str] | None = None,
    data_tags: dict[str, str] | None = None,
) -> PushResult:
    """`tags`: the cryocloud:* tags (storage/tags.py) for every object uploaded; default: owner only.
    `data_tags`: more tags for files and packs only (a project's `cryocloud:tier`, see tiers.py)."""
    from cryocloud.storage import tags as tagging

    tuning = tuning or Tuning()
    progress = progress or NullProgress()
    key = manifest_key(name)
    scanning = asyncio.ensure_future(asyncio.to_thread(scan, root, paths, keep_links=keep_links, exclude=exclude))
    try:
        await store.check()
    except BaseException:
        scanning.cancel()
        await asyncio.gather(scanning, return_exceptions=True)
        raise
    found = await scanning
    p = _Push(store, tuning, progress, tags if tags is not None else tagging.make(), data_tags)
    cdir = cache_dir()
    cache, index = StatCache(cdir / "stat.sqlite"), PackIndex(cdir, store.url)
    try:
        entries, sent = await _upload(p, found.files, cache, index, root.resolve())
        manifest = Manifest(name, [entries[f.rel] for f in found.files], found.links, found.dirs,
                            meta=dict(meta or {}), checksum=_checksum_kind(store))
        count = len(found.files)
        found.files.clear()  # the scan's and the upload's per-file state go before the manifest is serialized
        entries.clear()
        reused = manifest.objects() - sent
        if reused - await p.existing(reused):  # a cleanup removed something we counted on meanwhile
            raise CryocloudError(f"objects in {store.url} vanished during the push (a cleanup ran?)",
                                 "push again: it uploads what is missing")
        written = await _write_manifest(store, key, manifest, p.tags)
    finally:
        cache.close()
        index.close()
        progress.close()
    return PushResult(manifest, count, manifest.total_bytes, p.uploaded_objects, p.uploaded_bytes, written,
                      frozenset(sent))


async def _upload(p: _Push, files: list[LocalFile], cache: StatCache, index: PackIndex,
                  root: Path) -> tuple[dict[str, FileEntry], set[str]]:
    """Hash and upload what the store lacks, hashing overlapped with uploading; (rel -> entry, keys sent).

    Large files: one task each (hash unless the stat cache knows it, HEAD, upload), so one file hashes while
    others upload. Small files: files the stat cache and the pack index already place are reused at once;
    the others are read once, in batches of about a pack, hashed as read, and each batch is uploaded as a
    pack while the next batches are read.
    """
    tuning, store = p.tuning, p.store
    known = cache.load(root)
    damaged = index.damaged()
    shas: dict[str, str] = {}
    for f in files:
        hit = known.get(f.path)
        if hit and hit[:3] == (f.size, f.mtime_ns, f.ino):
            shas[f.rel] = hit[3]
            p.hashed_at[f.rel] = hit[:3]
    small = [f for f in files if f.size < tuning.pack_threshold]
    large = [f for f in files if f.size >= tuning.pack_threshold]
    entries: dict[str, FileEntry] = {}
    sent: set[str] = set()
    placed: dict[str, tuple[str, int]] = {}  # small files' sha -> (pack, offset), reused or uploaded now
    # small files whose bytes another file of this push is packing: placed once that pack is uploaded;
    # (rel, size, sha, mtime_ns, mode), never their bytes
    later: list[tuple[str, int, str, int, int]] = []
    alive: dict[str, bool] = {}
    rows: list[tuple[str, int, int, int, str]] = []
    to_read: list[LocalFile] = []
    if small:
        await p.sync_pack_index(index)

        async def reusable(shas_: list[str]) -> dict[str, tuple[str, int]]:
            """Of these hashes, those already in a pack that still exists."""
            hits = index.lookup(shas_)
            unknown = {pk for pk, _o in hits.values() if pk not in alive}
            there = await p.existing({pack_key(pk) for pk in unknown})
            for pk in unknown:
                alive[pk] = pack_key(pk) in there and pack_key(pk) not in damaged
            index.forget(pk for pk in unknown if not alive[pk])
            return {s: v for s, v in hits.items() if alive[v[0]]}

        cached = await reusable([shas[f.rel] for f in small if f.rel in shas])
        for f in small:
            sha = shas.get(f.rel)
            if sha is not None and sha in cached:
                pk, off = cached[sha]
                entries[f.rel] = FileEntry(f.rel, f.size, sha, f.mtime_ns, f.mode, pk, off)
                placed.setdefault(sha, (pk, off))
            else:
                to_read.append(f)
    p.progress.phase(f"pushing {len(large) + len(to_read)} files", sum(f.size for f in [*to_read, *large]))

    # --- large files ---------------------------------------------------------------------------------
    many = len(large) > 2000
    listed: set[str] = set()
    if many:
        listed = {info.key async for info in store.list("cas/b/")}
    hash_slots = asyncio.Semaphore(tuning.hashers)
    # 2 files x PART_CONCURRENCY parts in flight (with in_flight 16): measured faster than 4 files here,
    # the server's ingest being the limit; the next files hash meanwhile
    upload_slots = asyncio.Semaphore(max(2, tuning.in_flight // 8))
    by_sha: dict[str, asyncio.Future[str]] = {}
    final_sha: dict[str, str] = {}

    async def large_one(f: LocalFile) -> None:
        sha = shas.get(f.rel, "")
        if not sha:
            async with hash_slots:
                try:
                    sha, before, after = await asyncio.to_thread(p.hash_large, f.path)
                except FileNotFoundError:
                    raise CryocloudError(f"{f.rel} vanished while pushing", "push again") from None
                except OSError as e:
                    raise os_error(e, f"reading {f.rel}") from None
            if same_stat(before, after):
                p.hashed_at[f.rel] = (after.st_size, after.st_mtime_ns, after.st_ino)
                rows.append((f.path, after.st_size, after.st_mtime_ns, after.st_ino, sha))
        if sha in by_sha:  # the same bytes at another path: uploaded once
            final_sha[f.rel] = await asyncio.shield(by_sha[sha])  # a twin cancelled must not cancel the upload
            p.progress.advance(f.size)
            return
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        by_sha[sha] = fut
        try:
            there = blob_key(sha) in listed if many else await store.head(blob_key(sha)) is not None
            if there and blob_key(sha) not in damaged:
                got = sha
                p.progress.advance(f.size)
            else:
                async with upload_slots:
                    got = await p.upload_blob(f, sha)
                sent.add(blob_key(got))
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError):
                fut.cancel()
            else:
                fut.set_exception(e)
                fut.exception()  # retrieved: twins waiting on it re-raise it
            raise
        fut.set_result(got)
        final_sha[f.rel] = got

    # --- small files ---------------------------------------------------------------------------------
    read_slots = asyncio.Semaphore(tuning.hashers)
    pack_slots = asyncio.Semaphore(max(2, tuning.in_flight // 4))
    claimed: set[str] = set()

    async def batch(files_: list[LocalFile]) -> None:
        async with read_slots:
            got = await asyncio.to_thread(_read_batch, files_)
        # hashes go to the stat cache now, not all at the end (true whatever happens to the upload; a million
        # rows would otherwise wait in memory)
        cache.store([(r.file.path, *r.stable, r.sha) for r in got if r.stable])
        fresh = [r for r in got if r.sha not in placed and r.sha not in claimed]
        reuse = await reusable(list({r.sha for r in fresh}))
        members: list[_Read] = []
        for r in got:
            if r.sha in reuse or r.sha in placed:
                pk, off = reuse.get(r.sha) or placed[r.sha]
                placed.setdefault(r.sha, (pk, off))
                entries[r.file.rel] = r.entry(pk, off)
                p.progress.advance(len(r.data))
            elif r.sha in claimed:  # the same bytes at another path: stored once
                later.append((r.file.rel, len(r.data), r.sha, r.mtime_ns, r.file.mode))
                p.progress.advance(len(r.data))
            else:
                claimed.add(r.sha)
                members.append(r)
        if members:
            done = await p.upload_pack(members, index, pack_slots)
            placed.update(done)
            sent.update(pack_key(pk) for pk, _o in done.values())
            for r in members:
                pk, off = done[r.sha]
                entries[r.file.rel] = r.entry(pk, off)

    groups = _batches(to_read, tuning.pack_size, tuning.pack_files)
    ahead = max(2, tuning.in_flight // 4) + tuning.hashers  # packs in memory at once, at most
    await bounded(2, [  # the first failure cancels and awaits the rest: nothing uploads after we return
        lambda: bounded(ahead, [lambda f=f: large_one(f) for f in large]),  # type: ignore[misc]
        lambda: bounded(ahead, [lambda g=g: batch(g) for g in groups]),  # type: ignore[misc]
    ])
    cache.store(rows)
    await p.xxh_for(large, final_sha, cache)
    index.clear_damaged(damaged & sent)  # uploaded again with good bytes
    for rel, size, sha, mtime_ns, mode in later:
        pk, off = placed[sha]
        entries[rel] = FileEntry(rel, size, sha, mtime_ns, mode, pk, off)
    for f in large:
        sha = final_sha[f.rel]
        entries[f.rel] = FileEntry(f.rel, f.size, sha, f.mtime_ns, f.mode, xxh128=p.xxh.get(sha, ""))
    return entries, sent


def _checksum_kind(store: ObjectStore) -> dict[str, object]:
    kind = store.keeps_checksums
    return {"algorithm": kind, "whole_up_to": store.single_part_max} if kind else {}


async def _write_manifest(store: ObjectStore, key: str, manifest: Manifest, tags: dict[str, str] | None) -> bool:
    if await store.head(key):
        old = Manifest.from_json(await store.get(key), key)
        if old.content() == manifest.content():
            return False
    await store.put(key, manifest.to_json(), tags=tags)
    return True


def push(store: ObjectStore, root: Path, paths: list[Path] | None = None, *, name: str, keep_links: bool = True,
         exclude: frozenset[str] = frozenset(), meta: dict[str, str] | None = None,
         tuning: Tuning | None = None, progress: Progress | None = None,
         tags: dict[str, str] | None = None) -> PushResult:
    """Upload `paths` under `root` (default: all of it) by content; the manifest is stored under `name`."""
    return run(push_async(store, root, paths, name=name, keep_links=keep_links, exclude=exclude, meta=meta,
                          tuning=tuning, progress=progress, tags=tags))
