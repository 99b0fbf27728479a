"""Bad input and faults: each gives a clear error or a clean resume, never a manifest naming a missing or
wrong object."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from cryocloud.errors import CryocloudError
from cryocloud.storage import pull as pull_mod
from cryocloud.storage import transfer
from cryocloud.storage.base import IntegrityError, ObjectStore
from cryocloud.storage.manifest import blob_key, manifest_key
from cryocloud.storage.pull import load_manifest, pull
from cryocloud.storage.push import push, push_async
from gate import wait_until

from .conftest import aws_env_for, make_bucket, server_cmd, write

pytestmark = pytest.mark.integration


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_endpoint(s3_env: dict[str, Any], project: Path) -> None:
    from cryocloud.storage.s3 import S3Store

    store = S3Store("anything", endpoint_url=f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(CryocloudError, match="cannot reach the S3 endpoint") as e:
        push(store, project, name="p")
    assert "endpoint_url" in e.value.hint


def test_wrong_credentials(s3_env: dict[str, Any], project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryocloud.storage.s3 import S3Store

    bucket = make_bucket(s3_env)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(CryocloudError, match="refused") as e:
        push(S3Store(bucket), project, name="p")
    assert "credentials" in e.value.hint
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(CryocloudError, match="no AWS credentials"):
        S3Store(bucket)


def test_missing_bucket(s3_env: dict[str, Any], project: Path, tmp_path: Path) -> None:
    from cryocloud.storage.s3 import S3Store

    store = S3Store("no-such-bucket-here")
    with pytest.raises(CryocloudError, match="does not exist") as e:
        push(store, project, name="p")
    assert "mb s3://no-such-bucket-here" in e.value.hint
    with pytest.raises(CryocloudError, match="does not exist"):
        pull(store, "p", tmp_path / "out")


def test_missing_manifest(store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(CryocloudError, match="no manifest 'nope'"):
        pull(store, "nope", tmp_path / "out")


class ChangingStore:
    """Wraps a store; another program rewrites `victim` while each of the first `times` blob uploads runs."""

    def __init__(self, inner: ObjectStore, victim: Path, times: int) -> None:
        self.inner, self.victim, self.times = inner, victim, times
        self.url = inner.url

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def put(self, key: str, data: Any, size: int | None = None, tags: dict[str, str] | None = None) -> None:
        if key.startswith("cas/b/") and self.times > 0:
            self.times -= 1
            await self.inner.put(key, data, size, tags)
            self.victim.write_bytes(os.urandom(4_000_000))
            return
        await self.inner.put(key, data, size, tags)


def test_file_changing_during_upload_is_stored_as_sent(store: ObjectStore, tmp_path: Path) -> None:
    root = tmp_path / "d"
    movie = write(root / "movie.tiff", os.urandom(4_000_000))
    r = push(ChangingStore(store, movie, times=1), root, name="d")  # type: ignore[arg-type]
    final = movie.read_bytes()
    assert r.manifest.files[0].sha256 == hashlib.sha256(final).hexdigest()
    pull(store, "d", tmp_path / "out")
    assert (tmp_path / "out" / "movie.tiff").read_bytes() == final


def test_file_that_never_settles_is_refused(store: ObjectStore, tmp_path: Path) -> None:
    root = tmp_path / "d"
    movie = write(root / "movie.tiff", os.urandom(4_000_000))
    with pytest.raises(CryocloudError, match="kept changing"):
        push(ChangingStore(store, movie, times=99), root, name="d")  # type: ignore[arg-type]
    assert asyncio.run(store.head(manifest_key("d"))) is None
    assert _aiter(store, "cas/b/") == []  # nothing left under a name that is not its content's hash


async def _alist(store: ObjectStore, prefix: str) -> list[str]:
    return [o.key async for o in store.list(prefix)]


def _aiter(store: ObjectStore, prefix: str) -> list[str]:
    return asyncio.run(_alist(store, prefix))  # type: ignore[return-value]


def test_corrupted_object_is_refused_and_nothing_wrong_lands(store: ObjectStore, project: Path,
                                                             tmp_path: Path) -> None:
    r = push(store, project, name="p")
    movie = next(f for f in r.manifest.files if f.path == "Movies/m1.tiff")
    star = next(f for f in r.manifest.files if f.path.endswith("m7.star"))
    asyncio.run(store.put(blob_key(movie.sha256), os.urandom(movie.size)))  # bit rot, same size
    with pytest.raises(IntegrityError, match=r"Movies/m1\.tiff") as e:
        pull(store, "p", tmp_path / "out")
    assert "push the folder again from a good copy" in e.value.hint
    assert not (tmp_path / "out" / "Movies" / "m1.tiff").exists()
    assert not list((tmp_path / "out").rglob("*.cryocloud-part"))
    # a corrupt pack: flip bytes inside it
    pack = asyncio.run(store.get(star.key))
    broken = bytearray(pack)
    broken[star.offset] ^= 0xFF
    asyncio.run(store.put(star.key, bytes(broken)))
    with pytest.raises(IntegrityError):
        pull(store, "p", tmp_path / "out2", only=["MotionCorr"])
    # re-pushing from the good copy repairs the store (the blob is rewritten), and pull then succeeds
    asyncio.run(store.delete([blob_key(movie.sha256), star.key]))
    push(store, project, name="p")
    pull(store, "p", tmp_path / "out3")
    assert (tmp_path / "out3" / "Movies" / "m1.tiff").read_bytes() == (project / "Movies" / "m1.tiff").read_bytes()


def test_large_file_in_many_ranges_is_checked_end_to_end(store: ObjectStore, tmp_path: Path) -> None:
    """A file downloaded as several streamed ranges (1 MiB here): right bytes land; a flipped byte in the
    last range (hashed from the written file, not as it arrives) is caught and nothing lands."""
    src = tmp_path / "src"
    data = os.urandom((5 << 20) + 12345)  # 6 ranges, the last one short
    write(src / "Movies" / "big.tiff", data)
    small = transfer.Tuning(range_size=1 << 20, parts_per_file=3)
    r = push(store, src, name="big")
    pull(store, "big", tmp_path / "out", tuning=small)
    assert (tmp_path / "out" / "Movies" / "big.tiff").read_bytes() == data
    entry = r.manifest.files[0]
    broken = bytearray(data)
    broken[-100] ^= 0xFF
    asyncio.run(store.put(blob_key(entry.sha256), bytes(broken)))
    with pytest.raises(IntegrityError, match=r"big\.tiff"):
        pull(store, "big", tmp_path / "out2", tuning=small)
    assert not list((tmp_path / "out2").rglob("*.tiff")) and not list((tmp_path / "out2").rglob("*.cryocloud-part"))
    asyncio.run(store.put(blob_key(entry.sha256), data[:-1]))  # truncated: a short read, refused the same way
    with pytest.raises(IntegrityError, match=r"short read"):
        pull(store, "big", tmp_path / "out3", tuning=small)


def test_no_space_left_locally(store: ObjectStore, project: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    push(store, project, name="p")

    class Usage:
        free = 1000

    monkeypatch.setattr(pull_mod.shutil, "disk_usage", lambda p: Usage())
    with pytest.raises(CryocloudError, match="not enough space") as e:
        pull(store, "p", tmp_path / "out")
    assert "free space" in e.value.hint


def test_server_killed_mid_transfer_then_restarted(s3_env: dict[str, Any], tmp_path_factory: pytest.TempPathFactory,
                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its own server: killed (SIGKILL) while a push runs, restarted on the same data; the push resumes."""
    from cryocloud.storage.s3 import S3Store

    d = tmp_path_factory.mktemp("killable")
    state = server_cmd("start", d)
    try:
        aws_env_for(state, monkeypatch)
        bucket = make_bucket(state)
        root = tmp_path / "movies"
        for i in range(24):
            write(root / f"m{i:02d}.tiff", os.urandom(4_000_000))
        store = HoldBlobsAfter(S3Store(bucket), 2)
        outcome: list[BaseException | None] = []

        def run_push() -> None:
            try:
                push(store, root, name="movies", tuning=transfer.Tuning(objects_in_flight=8))  # type: ignore[arg-type]
                outcome.append(None)
            except BaseException as e:
                outcome.append(e)

        t = threading.Thread(target=run_push)
        t.start()
        # the push cannot end before the kill: every blob after the first two waits for `release`
        assert store.held.wait(300) and wait_until(lambda: _some_blobs(store.inner), 300)
        server_cmd("kill", d)
        store.release.set()
        t.join(300)
        assert outcome and isinstance(outcome[0], CryocloudError), outcome  # a clear error, not a hang
        server_cmd("restart", d)
        store = S3Store(bucket)
        assert asyncio.run(store.head(manifest_key("movies"))) is None  # no manifest for a partial push
        again = push(store, root, name="movies")
        assert again.manifest_written and again.uploaded_objects <= 24
        m = asyncio.run(load_manifest(store, "movies"))
        assert len(m.files) == 24
        pull(store, "movies", tmp_path / "back")
        for i in range(24):
            name = f"m{i:02d}.tiff"
            assert (tmp_path / "back" / name).read_bytes() == (root / name).read_bytes()
    finally:
        server_cmd("stop", d)


class HoldBlobsAfter:
    """A store whose blob uploads after the first `n` wait (off the event loop) until `release` is set."""

    def __init__(self, inner: ObjectStore, n: int) -> None:
        self.inner, self.url, self.n, self.started = inner, inner.url, n, 0
        self.held, self.release = threading.Event(), threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def put(self, key: str, data: Any, size: int | None = None, tags: Any = None) -> None:
        if key.startswith("cas/b/"):
            self.started += 1
            if self.started > self.n:
                self.held.set()
                await asyncio.to_thread(self.release.wait)
        await self.inner.put(key, data, size, tags)


def _some_blobs(store: ObjectStore) -> bool:
    try:
        return len(_aiter(store, "cas/b/")) >= 2
    except CryocloudError:
        return False


def test_a_full_server_is_reported_as_the_servers_problem(s3_env: dict[str, Any], project: Path,
                                                          tmp_path_factory: pytest.TempPathFactory,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Its own server, allowed one volume: the first bucket fills it, a push to a second bucket gets the
    server's 500 back as the server's problem (not as 'cannot reach' or 'refused'), and writes no manifest."""
    from cryocloud.storage.s3 import S3Store

    d = tmp_path_factory.mktemp("full")
    state = server_cmd("start", d, "--volumes", "1")
    try:
        aws_env_for(state, monkeypatch)
        push(S3Store(make_bucket(state)), project, name="p")
        second = S3Store(make_bucket(state))
        one = write(project.parent / "one" / "run.star", b"data_\n")  # one request, retried by obstore (~6 s)
        with pytest.raises(CryocloudError, match=r"S3 server at .* failed \(500") as e:
            push(second, one.parent, name="p")
        assert "server's side" in e.value.hint and "free space" in e.value.hint
        assert _aiter(second, "manifests/") == []
    finally:
        server_cmd("kill", d)  # a full weed ignores SIGTERM for the script's 20 s grace; its data is throwaway


def test_a_failing_upload_beside_twin_files_raises_only_its_own_error(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """Two paths with the same large bytes (one upload, the twin waits for it) and a small file whose pack
    upload fails: the push raises that failure after cancelling and awaiting the large-file uploads (they
    used to run on unawaited), and cancelling the waiting twin leaves no second error behind (it used to
    cancel the shared upload's future, and the upload then failed to record its own end)."""
    from cryocloud.storage.localfs import LocalFolderStore

    inner = LocalFolderStore(tmp_path / "store")
    same = os.urandom(3_000_000)
    started: list[str] = []
    stopped: list[str] = []
    uploads: list[str] = []

    class Failing:
        url = inner.url
        blob_started = asyncio.Event()

        def __getattr__(self, name: str) -> Any:
            return getattr(inner, name)

        async def put(self, key: str, data: Any, size: int | None = None, tags: Any = None) -> None:
            if key.startswith("cas/p/"):
                await self.blob_started.wait()  # the large upload is under way when the pack fails
                raise CryocloudError("boom", "test")
            started.append(key)
            self.blob_started.set()
            try:
                await asyncio.Event().wait()  # an upload that only ends when it is cancelled
            except asyncio.CancelledError:
                stopped.append(key)
                raise
            await inner.put(key, data, size, tags)
            uploads.append(key)

    src = tmp_path / "src"
    write(src / "a2.tiff", same)
    push(LocalFolderStore(tmp_path / "elsewhere"), src, name="warm")  # the stat cache now knows a2's hash...
    write(src / "a1.tiff", same)  # ...so a2 starts the upload and a1, first in order, is the twin that waits
    write(src / "b.star", b"data_\n")

    async def attempt() -> None:
        with pytest.raises(CryocloudError, match="boom"):
            await push_async(Failing(), src, name="p")  # type: ignore[arg-type]

    with caplog.at_level("ERROR", logger="asyncio"):
        asyncio.run(attempt())
    assert started and stopped == started  # push raised only after every upload it started had stopped
    assert uploads == []
    assert not [r for r in caplog.records if "InvalidStateError" in r.getMessage() + str(r.exc_info)]
