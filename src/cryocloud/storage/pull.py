"""Pull: restore a manifest's files, links and empty folders under a destination folder.

Resumable and idempotent: a file already in place with the right size and hash (stat cache first) is
skipped. Every byte is checked against its SHA-256 before it lands: downloads go to `.NAME.cryocloud-part`
and are renamed into place only when the hash matches, so a damaged object never leaves a wrong file behind.
A damaged object costs only its own files (a pack's other members are checked one by one and restored): the
pull restores every file it can, then raises `IntegrityError` naming the rest, and records the damaged
objects so that the next push of a good copy uploads them again (cache.PackIndex). Packs are fetched with one
ranged GET covering the files needed.
Everything arrives as a stream of ~1 MiB chunks written as they come (see `ObjectStore.get_stream`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from collections import defaultdict
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryocloud.errors import CryocloudError
from cryocloud.storage.base import IntegrityError, ObjectNotFound, ObjectStore
from cryocloud.storage.cache import PackIndex, StatCache, cache_dir
from cryocloud.storage.manifest import FileEntry, Manifest, manifest_key, packidx_key
from cryocloud.storage.progress import NullProgress, Progress
from cryocloud.storage.transfer import (
    Hasher,
    Tuning,
    bounded,
    hash_file,
    hash_range,
    in_thread,
    os_error,
    run,
    write_at,
    xxh128,
)

PART = ".cryocloud-part"


@dataclass(frozen=True)
class PullResult:
    files: int
    bytes_total: int
    downloaded_files: int
    downloaded_bytes: int


async def load_manifest(store: ObjectStore, name: str) -> Manifest:
    key = manifest_key(name)
    try:
        # passed straight in, not kept under a name here: from_json frees the bytes once they are parsed
        return Manifest.from_json(await store.get(key), f"{store.url}/{key}")
    except ObjectNotFound:
        raise ObjectNotFound(f"no manifest {name!r} in {store.url}", "list them with: cryocloud storage ls") from None


async def load_pack_index(store: ObjectStore, key: str) -> dict[str, Any] | None:
    """A pack's index (cas/i/: its members' hashes, offsets and sizes, and its bytes' SHA-256), by the pack's key;
    None when it is gone or unreadable."""
    try:
        body = json.loads(await store.get(packidx_key(key.removeprefix("cas/p/"))))
    except (ObjectNotFound, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _corrupt(entry: FileEntry, got: str, how: str = "SHA-256", want: str = "") -> IntegrityError:
    """The check `how` gave `got` where `want` (default: the entry's SHA-256) was due."""
    return _stored_copy_bad(entry, f"{how} {got[:12]}..., expected {(want or entry.sha256)[:12]}...")


def _stored_copy_bad(entry: FileEntry, what: str) -> IntegrityError:
    return IntegrityError(
        f"{entry.path}: the stored copy is corrupt (object {entry.key}: {what})",
        "nothing was written for this file; push it again from a good copy (cryocloud storage push)",
    )


def _part(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}{PART}")


def _place(tmp: Path, dest: Path, entry: FileEntry) -> None:
    os.chmod(tmp, entry.mode or 0o644)
    if entry.mtime_ns:
        os.utime(tmp, ns=(entry.mtime_ns, entry.mtime_ns))
    if dest.is_symlink() or dest.is_dir():
        _remove(dest)
    os.replace(tmp, dest)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    else:
        p.unlink(missing_ok=True)


def _write_checked(dest: str, data: memoryview, entry: FileEntry, made: set[str]) -> os.stat_result:
    """Hash `data`, then write it to a part file (mode and mtime set on the open file) renamed over `dest`;
    returns the placed file's stat. `made`: folders known to exist (one mkdir per folder, not per file)."""
    got = hashlib.sha256(data).hexdigest()
    if got != entry.sha256:
        raise _corrupt(entry, got)
    folder, _, name = dest.rpartition("/")
    if folder not in made:
        os.makedirs(folder, exist_ok=True)
        made.add(folder)
    tmp = f"{folder}/.{name}{PART}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write_at(fd, data, 0)
        os.fchmod(fd, entry.mode or 0o644)
        if entry.mtime_ns:
            os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
        st = os.fstat(fd)
    except BaseException:  # e.g. ENOSPC: no part file left behind
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, dest)  # over a file or a link: replaces it
    except OSError:
        if not os.path.isdir(dest):
            os.unlink(tmp)
            raise
        _remove(Path(dest))  # a folder where the file goes
        os.replace(tmp, dest)
    return st


class _Pull:
    def __init__(self, store: ObjectStore, dest: Path, tuning: Tuning, progress: Progress) -> None:
        self.store, self.dest, self.tuning, self.progress = store, dest, tuning, progress
        self.files = 0
        self.bytes = 0
        self.made: set[str] = set()  # folders created (or found) by this pull
        self.placed: list[tuple[str, int, int, int, str]] = []  # stat-cache rows of files written
        self.bad: dict[str, tuple[FileEntry, str]] = {}  # files not restored (their object is damaged): why

    async def guarded(self, entries: list[FileEntry], job: Callable[[], Awaitable[None]]) -> None:
        """Run one download; a damaged object fails only the files it holds that were not written."""
        try:
            await job()
        except IntegrityError as err:
            written = {r[0] for r in self.placed}
            for e in entries:
                if f"{self.dest}/{e.path}" not in written:
                    self.bad.setdefault(e.path, (e, err.message))

    async def up_to_date(self, entries: list[FileEntry], cache: StatCache) -> set[str]:
        known = cache.load(self.dest)
        done: set[str] = set()
        rehash: list[tuple[FileEntry, str]] = []
        for e in entries:
            p = str(self.dest / e.path)
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            if st.st_size != e.size or not os.path.isfile(p) or os.path.islink(p):
                continue
            hit = known.get(p)
            if hit and hit[:3] == (st.st_size, st.st_mtime_ns, st.st_ino):
                if hit[3] == e.sha256:
                    done.add(e.path)
            else:
                rehash.append((e, p))

        async def check(e: FileEntry, p: str) -> None:
            sha, before, _after = await asyncio.to_thread(hash_file, p)
            cache.store([(p, before.st_size, before.st_mtime_ns, before.st_ino, sha)])
            if sha == e.sha256:
                done.add(e.path)

        await bounded(self.tuning.hashers, [lambda e=e, p=p: check(e, p) for e, p in rehash])  # type: ignore[misc]
        return done

    async def blob(self, entry: FileEntry, copies: list[FileEntry]) -> None:
        """One large file, as streamed ranged GETs (a few in flight) written in place chunk by chunk. The
        first range is checked as it arrives; the others from the file (page cache) once the first is done,
        so what is checked is what was written. Checked by the XXH3-128 the manifest records for it, or by
        its SHA-256 if it records none (manifest.py)."""
        dest = self.dest / entry.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = _part(dest)
        h: Hasher = xxh128() if entry.xxh128 else hashlib.sha256()
        how, want = ("XXH3-128", entry.xxh128) if entry.xxh128 else ("SHA-256", entry.sha256)
        step = self.tuning.range_size
        ranges = [(o, min(o + step, entry.size)) for o in range(0, entry.size, step)]
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, entry.size)  # as rclone does: fewer extents; a full disk says so first
                async def fetch(start: int, end: int) -> None:
                    at = start
                    whole = len(ranges) == 1  # one range: the object, without a Range header
                    stream = self.store.get_stream(entry.key, *((None, None) if whole else (start, end)))
                    async with aclosing(stream):
                        async for chunk in stream:
                            if at + len(chunk) > end:
                                raise _stored_copy_bad(entry, f"long read (more than {end - start} bytes at {start})")

                            def take(chunk: memoryview = chunk, at: int = at) -> None:
                                if start == 0:
                                    h.update(chunk)
                                write_at(fd, chunk, at)

                            await in_thread(take)
                            at += len(chunk)
                            self.progress.advance(len(chunk))
                    if at != end:
                        raise _stored_copy_bad(entry, f"short read ({at - start} of {end - start} bytes at {start})")

                await bounded(self.tuning.parts_per_file, [lambda r=r: fetch(*r) for r in ranges])  # type: ignore[misc]
                if len(ranges) > 1:
                    await in_thread(lambda: hash_range([h], fd, ranges[0][1], entry.size))
            finally:
                os.close(fd)
            if h.hexdigest() != want:
                raise _corrupt(entry, h.hexdigest(), how, want)
            _place(tmp, dest, entry)
            for c in copies:  # same bytes at other paths: copy locally, not again over the network
                (self.dest / c.path).parent.mkdir(parents=True, exist_ok=True)
                try:
                    shutil.copyfile(dest, _part(self.dest / c.path))
                    _place(_part(self.dest / c.path), self.dest / c.path, c)
                finally:
                    _part(self.dest / c.path).unlink(missing_ok=True)
        except OSError as e:
            raise os_error(e, f"writing {dest}") from None
        finally:
            tmp.unlink(missing_ok=True)
        self.files += 1 + len(copies)
        self.bytes += entry.size

    async def pack(self, entries: list[FileEntry]) -> None:
        """Files stored side by side in one pack (`entries` sorted by offset): one streamed ranged GET; each
        file is hashed and written as soon as its last byte has arrived, straight from the chunk that holds
        it (only a file spanning two chunks is joined: no copy of the stream on the event loop)."""
        start = entries[0].offset
        end = max(e.offset + e.size for e in entries)
        root = str(self.dest)
        chunks: list[tuple[int, memoryview]] = []  # (offset, bytes) received and not yet all written
        got, i = start, 0

        def piece(off: int, size: int) -> memoryview | bytes:
            parts = [c[max(off, at) - at : min(off + size, at + len(c)) - at] for at, c in chunks
                     if at < off + size and off < at + len(c)]
            return parts[0] if len(parts) == 1 else b"".join(parts)

        def write(ready: list[FileEntry]) -> None:
            for e in ready:
                path = f"{root}/{e.path}"
                try:
                    st = _write_checked(path, memoryview(piece(e.offset, e.size)), e, self.made)
                except IntegrityError as err:  # this member's bytes are damaged; the pack's others may be whole
                    self.bad[e.path] = (e, err.message)
                    continue
                self.placed.append((path, st.st_size, st.st_mtime_ns, st.st_ino, e.sha256))

        async def drain() -> None:  # write the files whose bytes have all arrived
            nonlocal chunks, i
            j = i
            while j < len(entries) and entries[j].offset + entries[j].size <= got:
                j += 1
            if j > i:
                await in_thread(lambda ready=entries[i:j]: write(ready))  # type: ignore[misc]
                i = j
                keep = entries[i].offset if i < len(entries) else end
                chunks = [(at, c) for at, c in chunks if at + len(c) > keep]

        try:
            stream = self.store.get_stream(entries[0].key, start, end)
            async with aclosing(stream):
                async for chunk in stream:
                    if got + len(chunk) > end:
                        raise _stored_copy_bad(entries[0], f"long read (more than {end - start} bytes at {start})")
                    chunks.append((got, chunk))
                    got += len(chunk)
                    await drain()
                    self.progress.advance(len(chunk))
            await drain()  # empty files at the end of an empty range
        except OSError as e:
            raise os_error(e, f"writing into {self.dest}") from None
        if i < len(entries):
            raise _stored_copy_bad(entries[i], f"short read ({got - start} of {end - start} bytes)")
        self.files += sum(1 for e in entries if e.path not in self.bad)
        self.bytes += end - start


async def pull_async(
    store: ObjectStore, manifest: Manifest | str, dest: Path, *, only: list[str] | None = None,
    tuning: Tuning | None = None, progress: Progress | None = None,
) -> PullResult:
    """Restore `manifest` (or the manifest named so) under `dest`; `only` limits it to these paths/folders."""
    tuning = tuning or Tuning()
    progress = progress or NullProgress()
    await store.check()
    m = manifest if isinstance(manifest, Manifest) else await load_manifest(store, manifest)
    entries = m.files
    if only:
        prefixes = [o.strip("/") for o in only]
        entries = [e for e in entries if any(e.path == p or e.path.startswith(p + "/") for p in prefixes)]
    dest = Path(os.path.abspath(dest))
    dest.mkdir(parents=True, exist_ok=True)
    cache = StatCache(cache_dir() / "stat.sqlite")
    try:
        done = await _Pull(store, dest, tuning, progress).up_to_date(entries, cache)
        todo = [e for e in entries if e.path not in done]
        need = sum(e.size for e in todo)
        free = shutil.disk_usage(dest).free
        if need > free:
            raise CryocloudError(
                f"not enough space in {dest}: {need / 1e9:.2f} GB to download, {free / 1e9:.2f} GB free",
                "free space or pull to another folder (files already in place are skipped)",
            )
        p = _Pull(store, dest, tuning, progress)
        progress.phase(f"downloading {len(todo)} files", need)
        blobs: dict[str, list[FileEntry]] = defaultdict(list)
        packs: dict[str, list[FileEntry]] = defaultdict(list)
        for e in todo:
            (packs[e.pack] if e.pack else blobs[e.sha256]).append(e)
        blob_jobs = [lambda es=es: p.guarded(es, lambda: p.blob(es[0], es[1:])) for es in blobs.values()]
        jobs = []
        for group in packs.values():
            group.sort(key=lambda e: e.offset)
            chunk: list[FileEntry] = []
            for e in group:  # split big packs into ranges of ~pack_size so they download in parallel
                if chunk and e.offset + e.size - chunk[0].offset > tuning.pack_size:
                    jobs.append(lambda c=chunk: p.guarded(c, lambda: p.pack(c)))
                    chunk = []
                chunk.append(e)
            jobs.append(lambda c=chunk: p.guarded(c, lambda: p.pack(c)))
        await bounded(2, [  # large files: a few at a time, each in parallel parts; pack ranges: many
            lambda: bounded(max(1, tuning.in_flight // tuning.parts_per_file), blob_jobs),  # type: ignore[arg-type]
            lambda: bounded(tuning.in_flight, jobs),  # type: ignore[arg-type]
        ])  # bounded: the first failure cancels and awaits the rest, so nothing writes after we return
        _links_and_dirs(m, dest, only)
        rows = p.placed
        written = {r[0] for r in rows}
        for e in todo:
            path = f"{dest}/{e.path}"
            if path not in written and e.path not in p.bad:
                st = os.stat(path)
                rows.append((path, st.st_size, st.st_mtime_ns, st.st_ino, e.sha256))
        cache.store(rows)
        if p.bad:
            record_damaged(store, {e.key for e, _why in p.bad.values()})
            raise _damaged(store, p.bad, len(todo))
    finally:
        cache.close()
        progress.close()
    return PullResult(len(entries), sum(e.size for e in entries), p.files, p.bytes)


def record_damaged(store: ObjectStore, keys: set[str]) -> None:
    index = PackIndex(cache_dir(), store.url)
    try:
        index.mark_damaged(keys)
    finally:
        index.close()


def _damaged(store: ObjectStore, bad: dict[str, tuple[FileEntry, str]], tried: int) -> IntegrityError:
    keys = {e.key for e, _why in bad.values()}
    names = ", ".join(sorted(bad)[:5]) + (", ..." if len(bad) > 5 else "")
    first = bad[min(bad)][1]
    return IntegrityError(
        f"{len(bad)} of {tried} files could not be restored: their stored copies are damaged ({len(keys)} objects "
        f"in {store.url}): {names}; first: {first}",
        "every other file was restored and verified; push the folder again from a good copy (cryocloud storage "
        "push): it uploads the damaged objects again; `cryocloud storage verify NAME` checks the rest",
    )


def _links_and_dirs(m: Manifest, dest: Path, only: list[str] | None) -> None:
    def wanted(path: str) -> bool:
        return not only or any(path == o.strip("/") or path.startswith(o.strip("/") + "/") for o in only)

    for d in m.dirs:
        if wanted(d):
            (dest / d).mkdir(parents=True, exist_ok=True)
    for link in m.links:
        if not wanted(link.path):
            continue
        p = dest / link.path
        if p.is_symlink() and os.readlink(p) == link.target:
            continue
        if os.path.lexists(p):
            _remove(p)
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(link.target, p)


def pull(store: ObjectStore, manifest: Manifest | str, dest: Path, *, only: list[str] | None = None,
         tuning: Tuning | None = None, progress: Progress | None = None) -> PullResult:
    return run(pull_async(store, manifest, dest, only=only, tuning=tuning, progress=progress))
