"""The local disk filling up in the middle of a pull: a clear error, nothing partial or wrong left behind,
and a clean resume once there is space again.

Two ways to fill it, both honest about what they are:
- `tmpfs`: the pull goes to a real 16 MiB tmpfs (mounted for the test; needs root, else skipped: the other
  variant covers the code). The space check at the start passes; then, as the first bytes arrive, another
  "program" takes all but 512 KiB of the filesystem, so the kernel itself answers ENOSPC to our writes.
- `injected`: pull's writes (`os.pwrite` in transfer.write_at, the one call that puts downloaded bytes on disk,
  for pack members and large files alike; local duplicates are copied from those) go through a fault injector
  that raises ENOSPC once 4 MB have been written, as a full disk would.
"""

from __future__ import annotations

import errno
import os
import tempfile
import types
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

import pytest

from cryocloud.errors import CryocloudError
from cryocloud.proc import run_command
from cryocloud.storage import transfer as transfer_mod
from cryocloud.storage.base import ObjectStore
from cryocloud.storage.pull import pull
from cryocloud.storage.push import push
from testtools import unavailable

from .test_push_pull import tree


@pytest.fixture
def small_tmpfs() -> Iterator[Path]:
    if os.geteuid() != 0:
        unavailable("mounting a tmpfs needs root (CI runs as root); the injected-fault variant covers the code")
    where = Path(tempfile.mkdtemp(prefix="cryocloud-enospc-"))
    try:
        run_command(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", where], timeout=30)
    except CryocloudError as e:
        where.rmdir()
        unavailable(f"cannot mount a tmpfs here: {e}")
    try:
        yield where
    finally:
        run_command(["umount", where], timeout=30)
        where.rmdir()


class FillingStore:
    """Wraps a store; when the first download arrives, `fill()` takes the destination's free space."""

    def __init__(self, inner: ObjectStore, fill: Any) -> None:
        self.inner, self.fill, self.url = inner, fill, inner.url
        self.filled = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get_stream(self, key: str, start: int | None = None,
                         end: int | None = None) -> AsyncGenerator[memoryview, None]:
        async for chunk in self.inner.get_stream(key, start, end):
            if key.startswith("cas/") and not self.filled:
                self.filled = True
                self.fill()
            yield chunk


def _injector(limit: int) -> tuple[types.SimpleNamespace, dict[str, int]]:
    """A stand-in for transfer.py's `os` whose data writes fail with ENOSPC after `limit` bytes."""
    state = {"written": 0}

    def guard(n: int) -> None:
        if state["written"] + n > limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        state["written"] += n

    def write(fd: int, data: Any) -> int:
        guard(len(data))
        return os.write(fd, data)

    def pwrite(fd: int, data: Any, offset: int) -> int:
        guard(len(data))
        return os.pwrite(fd, data, offset)

    fake = types.SimpleNamespace(**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")})
    fake.write, fake.pwrite = write, pwrite
    return fake, state


def _nothing_wrong(dest: Path, source: Path) -> None:
    assert not [p for p in dest.rglob("*") if p.name.endswith(".cryocloud-part")]
    for p in dest.rglob("*"):
        if p.is_file() and not p.is_symlink() and p.name != "filler":
            assert p.read_bytes() == (source / p.relative_to(dest)).read_bytes(), p  # whole and right, or absent


@pytest.mark.parametrize("how", ["tmpfs", "injected"])
def test_disk_fills_up_mid_pull(how: str, store: ObjectStore, project: Path, tmp_path: Path,
                                request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    push(store, project, name="p")
    if how == "tmpfs":
        mount: Path = request.getfixturevalue("small_tmpfs")
        dest, filler = mount / "out", mount / "filler"

        def fill() -> None:
            free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
            with open(filler, "wb") as f:
                f.write(b"\0" * free)  # all of it: the blobs reserved theirs already (posix_fallocate)

        source: ObjectStore = FillingStore(store, fill)  # type: ignore[assignment]
    else:
        dest = tmp_path / "out"
        fake, state = _injector(4_000_000)
        monkeypatch.setattr(transfer_mod, "os", fake)
        source = store
    with pytest.raises(CryocloudError, match="no space left on the device") as e:
        pull(source, "p", dest)
    assert "free space" in e.value.hint and "skipped" in e.value.hint
    if how == "injected":
        assert state["written"] > 0  # it failed in the middle, not before the first byte
    _nothing_wrong(dest, project)
    # space again: the same pull finishes, and keeps what was already in place
    if how == "tmpfs":
        filler.unlink()
    else:
        monkeypatch.setattr(transfer_mod, "os", os)
    before = {p for p in dest.rglob("*") if p.is_file()}
    again = pull(store, "p", dest)
    assert again.downloaded_files == 46 - len(before)
    assert tree(dest) == tree(project)
