"""The `ObjectStore` protocol: the few operations every object store offers, and how to open one by URL.

Keys are '/'-separated strings relative to the store's root (an S3 bucket plus prefix, or a local folder).
Every method is async: a transfer keeps dozens of requests in flight from one thread. A store raises
`CryocloudError` (never a vendor exception) with a hint, and `ObjectNotFound` for a missing key.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryocloud.errors import CryocloudError

STREAM_CHUNK = 1 << 20  # download chunk (chosen by benchmarks/storage/, BENCHMARKS.md)


async def joined(stream: AsyncGenerator[memoryview, None]) -> bytes:
    """All of a `get_stream` as one `bytes`: how every store answers `get` (small objects: manifests, indexes)."""
    return b"".join([bytes(chunk) async for chunk in stream])


class ObjectNotFound(CryocloudError):
    """A key that should exist does not."""


class IntegrityError(CryocloudError):
    """Bytes read back do not match their content hash."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    mtime: float = 0.0  # seconds since the epoch
    storage_class: str = "STANDARD"
    sha256: str = ""  # the store's own SHA-256 of the whole object, from `head(key, checksum=True)`; "" if none


@runtime_checkable
class ObjectStore(Protocol):
    """What cryocloud needs from object storage. A new store is one class implementing these methods.

    Contract (checked by tests/storage/test_conformance.py on every store):
    - `put` writes atomically: a reader sees the old object, the new one or none, never a part.
    - `put` accepts bytes, an iterable of byte chunks, or a local file's Path (possibly large).
    - `get` returns the whole object or `[start, end)`; a missing key raises `ObjectNotFound`. `get_stream`
      yields the same bytes as memoryviews of about `STREAM_CHUNK` (downloads use it: each chunk is written and
      hashed as it arrives, no large buffer is ever allocated). Callers close it (`contextlib.aclosing`) so
      a download stopped half-way releases its connection at once.
    - `head` returns None for a missing key. `head(key, checksum=True)` also fills `ObjectInfo.sha256` with the
      whole object's SHA-256 the store keeps, where it keeps one (`keeps_checksums` names the algorithm, "" for a
      store that keeps none; S3 keeps it for objects put in one request, up to `single_part_max` bytes). `list(prefix)` yields every key inside the folder `prefix`
      ('a/b' and 'a/b/' both mean the folder a/b: never 'a/bc'), in any order.
    - `delete` of a missing key is not an error.
    - `check` raises a clear `CryocloudError` when the store is unreachable, the credentials are refused or
      the bucket does not exist; it is the first call of every transfer.
    - `tags` (cryocloud:* tags, storage/tags.py) go with a `put` where the store supports object tags (S3);
      a store without them accepts and ignores them (`get_tags` answers {}, `set_tags` does nothing).
    - Lifecycle rules are keyed by scope: a prefix, or `prefix?key=value` for a rule that also filters on an
      object tag (see `scope`). `set_lifecycle(prefix, {}, tags)` removes that rule.
    """

    url: str
    keeps_checksums: str
    single_part_max: int

    async def check(self) -> None: ...

    async def put(self, key: str, data: bytes | bytearray | Iterable[bytes] | Path, size: int | None = None,
                  tags: dict[str, str] | None = None) -> None: ...

    async def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes: ...

    def get_stream(self, key: str, start: int | None = None, end: int | None = None) -> AsyncGenerator[memoryview, None]: ...

    async def head(self, key: str, checksum: bool = False) -> ObjectInfo | None: ...

    def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]: ...

    async def delete(self, keys: Iterable[str]) -> None: ...

    def set_lifecycle(self, prefix: str, rules: dict[str, int], tags: dict[str, str] | None = None) -> None: ...

    def get_lifecycle(self) -> dict[str, dict[str, int]]: ...

    def get_tags(self, key: str) -> dict[str, str]: ...

    def set_tags(self, key: str, tags: dict[str, str]) -> None: ...


def scope(prefix: str, tags: dict[str, str] | None = None) -> str:
    """The key of a lifecycle rule in `get_lifecycle()`: its prefix, plus `?k=v&k2=v2` for tag filters."""
    return prefix + ("?" + "&".join(f"{k}={v}" for k, v in sorted(tags.items())) if tags else "")


def parse_scope(text: str) -> tuple[str, dict[str, str]]:
    prefix, _, query = text.partition("?")
    return prefix, dict(part.split("=", 1) for part in query.split("&") if "=" in part)
