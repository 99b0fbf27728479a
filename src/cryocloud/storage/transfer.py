"""Shared pieces of push and pull: sizing to the machine, hashing, running a coroutine from sync code."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from cryocloud.errors import CryocloudError

if TYPE_CHECKING:
    from typing_extensions import Buffer

T = TypeVar("T")
READ_CHUNK = 1 << 20  # one reused buffer of this size for hashing (the choice is measured in BENCHMARKS.md)
# downloads reach the page cache in writes of this size, as s5cmd and rclone do: the kernel sizes a file's page-cache
# folio by the write, and on this VM a 1 MiB write's large folio cost up to 3x the system time of the whole download
# when it landed on memory the host had taken back (BENCHMARKS.md, issue 16); 4 KiB costs a syscall per page
WRITE_PIECE = 32 << 10


@dataclass(frozen=True)
class Tuning:
    """How hard a transfer pushes. Defaults are sized to the machine; measured in benchmarks/storage/."""

    pack_threshold: int = 2 << 20  # files smaller than this travel in packs
    pack_size: int = 8 << 20  # target size of one pack
    pack_files: int = 2048  # and at most this many files in it (memory: a pack's files are read at once)
    range_size: int = 64 << 20  # a large file downloads as streamed ranged GETs of this size...
    parts_per_file: int = 4  # ...this many in flight per file
    objects_in_flight: int = 0  # 0: from the CPU count
    hash_threads: int = 0

    @property
    def in_flight(self) -> int:
        return self.objects_in_flight or min(32, 8 * (os.cpu_count() or 2))

    @property
    def hashers(self) -> int:
        return self.hash_threads or max(2, os.cpu_count() or 2)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` from sync code (the CLI, the agent); refuse inside a running loop rather than deadlock."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("call the *_async variant from inside an event loop")
    box: list[T] = []

    async def main() -> None:
        # the main task's result stays small: on leaving, asyncio.run (3.11) looks up its SIGINT handler, which
        # formats the main task, result included: 0.2 s for the repr of a 10,000-file manifest
        box.append(await coro)

    asyncio.run(main())
    return box[0]


async def bounded(limit: int, jobs: Iterable[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run the jobs with at most `limit` in flight; the first failure cancels the rest and is raised."""
    sem = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with sem:
            return await job()

    tasks = [asyncio.ensure_future(one(j)) for j in jobs]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def in_thread(fn: Callable[[], T]) -> T:
    """Run `fn` in a worker thread; if the caller is cancelled, wait for the thread to finish first (a thread
    cannot be stopped, and one still writing must not outlive the files and descriptors it writes to)."""
    fut = asyncio.ensure_future(asyncio.to_thread(fn))
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        await asyncio.wait([fut])
        if not fut.cancelled():
            fut.exception()  # seen: the cancellation's cause is the error that counts
        raise


class Hasher(Protocol):
    def update(self, data: Buffer, /) -> None: ...
    def hexdigest(self) -> str: ...


def xxh128() -> Hasher:
    """XXH3-128, the fast check of a large file's bytes (manifest.py): ~10x cheaper than SHA-256 here."""
    import xxhash

    return xxhash.xxh3_128()


def hash_file(path: str) -> tuple[str, os.stat_result, os.stat_result]:
    """SHA-256 of a file, with its stat before and after reading (they differ if it changed meanwhile).
    Reads through `hash_range`'s one reused buffer: a fresh 8 MiB `bytes` per read cost ~2x the system time."""
    (sha,), before, after = hash_file_with(path, hashlib.sha256())
    return sha, before, after


def hash_file_with(path: str, *hashers: Hasher) -> tuple[list[str], os.stat_result, os.stat_result]:
    """The hex digests of a file by each of `hashers` (one read), with its stat before and after reading."""
    before = os.stat(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        hash_range(hashers, fd, 0, before.st_size)  # a file that grows or shrinks meanwhile: `after` tells
    finally:
        os.close(fd)
    return [h.hexdigest() for h in hashers], before, os.stat(path)


def hash_range(hashers: Iterable[Hasher], fd: int, start: int, end: int) -> None:
    """Feed bytes [start, end) of the open file `fd` to each of `hashers`, through one reused buffer."""
    buf = bytearray(READ_CHUNK)
    view = memoryview(buf)
    hs = list(hashers)
    at = start
    while at < end:
        n = os.preadv(fd, [view[: min(READ_CHUNK, end - at)]], at)
        if not n:
            break
        for h in hs:
            h.update(view[:n])
        at += n


def write_at(fd: int, data: Buffer, at: int) -> None:
    """Write all of `data` at offset `at`, in WRITE_PIECE pieces (a nearly full disk answers with a short write
    before ENOSPC: the rest is written, so a file never holds a hole while its checksum says it is right)."""
    view = memoryview(data).cast("B")
    done, size = 0, len(view)
    while done < size:
        done += os.pwrite(fd, view[done : done + WRITE_PIECE], at + done)


def same_stat(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ino) == (b.st_size, b.st_mtime_ns, b.st_ino)


def os_error(e: OSError, what: str) -> CryocloudError:
    import errno

    if e.errno == errno.ENOSPC:
        return CryocloudError(f"no space left on the device while {what}", "free space there, then run it again: "
                              "finished files are kept and skipped")
    if e.errno in (errno.EACCES, errno.EPERM):
        return CryocloudError(f"permission denied while {what}: {e.filename}", "check the folder's permissions")
    return CryocloudError(f"{e.strerror} while {what}: {e.filename}", "check the path")
