"""The ObjectStore contract, run on every store (local folder, and S3 on a real SeaweedFS server)."""

from __future__ import annotations

import asyncio
import os

import pytest

from cryocloud.errors import CryocloudError
from cryocloud.storage.base import STREAM_CHUNK, ObjectInfo, ObjectNotFound, ObjectStore


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _list(store: ObjectStore, prefix: str = "") -> list[ObjectInfo]:
    return [i async for i in store.list(prefix)]


def test_check_passes(store: ObjectStore) -> None:
    run(store.check())


def test_put_get_roundtrip(store: ObjectStore) -> None:
    run(store.put("a/b/c.bin", b"hello world"))
    assert run(store.get("a/b/c.bin")) == b"hello world"
    info = run(store.head("a/b/c.bin"))
    assert info is not None and info.size == 11 and info.key == "a/b/c.bin"


def test_range_get(store: ObjectStore) -> None:
    run(store.put("r", b"0123456789"))
    assert run(store.get("r", 2, 5)) == b"234"
    assert run(store.get("r", 7)) == b"789"

    async def stream(start: int | None = None, end: int | None = None) -> bytes:
        return b"".join([bytes(c) async for c in store.get_stream("r", start, end)])

    assert run(stream(2, 5)) == b"234"
    assert run(stream(7)) == b"789"
    assert run(stream()) == b"0123456789"
    assert run(stream(4, 4)) == b""  # an empty range: no request, no bytes


def test_streamed_put_large_multipart(store: ObjectStore) -> None:
    chunks = [os.urandom(3 << 20) for _ in range(12)]  # 36 MiB: more than two multipart parts
    run(store.put("big", iter(chunks), size=36 << 20))
    assert run(store.head("big")).size == 36 << 20  # type: ignore[union-attr]

    async def read() -> bytes:
        got = [bytes(c) async for c in store.get_stream("big")]
        assert all(len(c) <= 2 * STREAM_CHUNK for c in got)  # streamed, not one buffer
        return b"".join(got)

    assert run(read()) == b"".join(chunks)


def test_overwrite_replaces(store: ObjectStore) -> None:
    run(store.put("k", b"one"))
    run(store.put("k", b"two!"))
    assert run(store.get("k")) == b"two!"


def test_missing_key(store: ObjectStore) -> None:
    assert run(store.head("nope")) is None
    with pytest.raises(ObjectNotFound):
        run(store.get("nope"))

    async def stream() -> None:
        async for _ in store.get_stream("nope"):
            pass

    with pytest.raises(ObjectNotFound):
        run(stream())


def test_list_prefix(store: ObjectStore) -> None:
    for key in ["x/1", "x/2", "x/sub/3", "y/1", "xz"]:
        run(store.put(key, key.encode()))
    assert sorted(i.key for i in run(_list(store, "x/"))) == ["x/1", "x/2", "x/sub/3"]
    assert sorted(i.key for i in run(_list(store, "x"))) == ["x/1", "x/2", "x/sub/3"]  # a folder, not "x*"
    assert {i.key for i in run(_list(store))} >= {"x/1", "y/1", "xz"}
    assert {i.size for i in run(_list(store, "y/"))} == {3}


def test_delete_missing_is_fine(store: ObjectStore) -> None:
    run(store.put("d/1", b"1"))
    run(store.delete(["d/1", "d/never"]))
    assert run(store.head("d/1")) is None
    assert run(_list(store, "d/")) == []


def test_many_parallel_puts(store: ObjectStore) -> None:
    async def go() -> None:
        await asyncio.gather(*(store.put(f"p/{i}", str(i).encode()) for i in range(200)))

    run(go())
    assert len(run(_list(store, "p/"))) == 200


def test_lifecycle_roundtrip(store: ObjectStore) -> None:
    try:
        store.set_lifecycle("cas/", {"glacier": 30})
    except CryocloudError as e:  # a server without lifecycle rules (SeaweedFS) must say so clearly
        assert "does not implement lifecycle" in e.message and e.hint
        return
    assert store.get_lifecycle().get("cas/", {}).get("glacier") == 30
    store.set_lifecycle("cas/", {})
    assert "cas/" not in store.get_lifecycle()


def test_put_with_tags(store: ObjectStore) -> None:
    """Every store takes cryocloud's tags with a put; it keeps them (S3) or ignores them (a folder)."""
    tags = {"cryocloud:owner": "alice", "cryocloud:project": "P", "cryocloud:job": "-", "cryocloud:expires": "never"}
    run(store.put("t/1", b"x", tags=tags))
    run(store.put("t/2", iter([b"a", b"b"]), size=2, tags=tags))
    assert run(store.get("t/2")) == b"ab"
    assert store.get_tags("t/1") in ({}, tags)
