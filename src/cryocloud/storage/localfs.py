"""A local folder as an object store: the embedded default ($CRYOCLOUD_HOME/store) and the test double.

Key `a/b/c` is the file `ROOT/a/b/c`. Writes go to `ROOT/.tmp/` first and are renamed into place, so a
reader never sees a partial object. Lifecycle rules are recorded (in `ROOT/.lifecycle.json`) but a folder
has no tiers: every object stays STANDARD. Object tags (cryocloud:*) are accepted and ignored: nothing here
acts on them (no tiers, no tag-based cleanup), and a sidecar per object would double the files.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from pathlib import Path

from cryocloud.errors import CryocloudError
from cryocloud.storage.base import STREAM_CHUNK, ObjectInfo, ObjectNotFound, joined, scope


class LocalFolderStore:
    keeps_checksums = ""  # a file system keeps none: `storage verify --full` hashes
    single_part_max = 0

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise CryocloudError(f"invalid object key {key!r}", "keys are relative paths without '..'")
        return self.root / key

    async def check(self) -> None:
        def _check() -> None:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                (self.root / ".tmp").mkdir(exist_ok=True)
            except OSError as e:
                raise CryocloudError(
                    f"cannot use {self.root} as a store: {e.strerror}", "check the path and its permissions"
                ) from None
            if not os.access(self.root, os.W_OK):
                raise CryocloudError(f"store folder {self.root} is not writable", "check its permissions")

        await asyncio.to_thread(_check)

    async def put(self, key: str, data: bytes | bytearray | Iterable[bytes] | Path, size: int | None = None,
                  tags: dict[str, str] | None = None) -> None:
        dest = self._path(key)

        def _put() -> None:
            tmp = self.root / ".tmp" / uuid.uuid4().hex
            tmp.parent.mkdir(parents=True, exist_ok=True)
            try:
                if isinstance(data, Path):
                    shutil.copyfile(data, tmp)
                with open(tmp, "ab") as f:
                    if isinstance(data, Path):
                        pass
                    elif isinstance(data, bytes | bytearray | memoryview):
                        f.write(data)
                    else:
                        for chunk in data:
                            f.write(chunk)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, dest)
            except OSError as e:
                tmp.unlink(missing_ok=True)
                raise CryocloudError(f"cannot write {key} to {self.root}: {e.strerror}", _space_hint(e)) from None
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise

        await asyncio.to_thread(_put)

    async def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        return await joined(self.get_stream(key, start, end))

    async def get_stream(self, key: str, start: int | None = None,
                         end: int | None = None) -> AsyncGenerator[memoryview, None]:
        path = self._path(key)
        try:
            f = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key} in {self.url}", "push it first, or check the name") from None
        try:
            if start:
                f.seek(start)
            left = -1 if end is None else end - (start or 0)
            while left:
                chunk = await asyncio.to_thread(f.read, STREAM_CHUNK if left < 0 else min(left, STREAM_CHUNK))
                if not chunk:
                    break
                left -= len(chunk) if left > 0 else 0
                yield memoryview(chunk)
        finally:
            f.close()

    async def head(self, key: str, checksum: bool = False) -> ObjectInfo | None:  # keeps no checksums
        try:
            st = await asyncio.to_thread(os.stat, self._path(key))
        except FileNotFoundError:
            return None
        return ObjectInfo(key, st.st_size, st.st_mtime)

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        folder = prefix.strip("/")
        base = self.root / folder if folder else self.root

        def _walk() -> list[ObjectInfo]:
            out = []
            for dirpath, dirnames, filenames in os.walk(base):
                if dirpath == str(self.root):
                    dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                rel = os.path.relpath(dirpath, self.root)
                for name in filenames:
                    if rel == "." and name.startswith("."):
                        continue
                    try:
                        st = os.stat(os.path.join(dirpath, name))
                    except FileNotFoundError:
                        continue
                    out.append(ObjectInfo(name if rel == "." else f"{rel}/{name}", st.st_size, st.st_mtime))
            return out

        for info in await asyncio.to_thread(_walk):
            yield info

    async def delete(self, keys: Iterable[str]) -> None:
        paths = [self._path(k) for k in keys]

        def _delete() -> None:
            for p in paths:
                p.unlink(missing_ok=True)

        await asyncio.to_thread(_delete)

    def set_lifecycle(self, prefix: str, rules: dict[str, int], tags: dict[str, str] | None = None) -> None:
        path = self.root / ".lifecycle.json"
        current = self.get_lifecycle()
        if rules:
            current[scope(prefix, tags)] = rules
        else:
            current.pop(scope(prefix, tags), None)
        self.root.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(current, indent=1, sort_keys=True))

    def get_lifecycle(self) -> dict[str, dict[str, int]]:
        path = self.root / ".lifecycle.json"
        return dict(json.loads(path.read_text())) if path.exists() else {}

    def get_tags(self, key: str) -> dict[str, str]:
        return {}

    def set_tags(self, key: str, tags: dict[str, str]) -> None:
        return None


def _space_hint(e: OSError) -> str:
    import errno

    if e.errno == errno.ENOSPC:
        return "the disk holding the store is full: free space or point storage.url elsewhere"
    return "check the store folder's permissions"
