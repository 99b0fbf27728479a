"""A watched session's archive copy (app/session_upload.py) on both stores: movies pushed by content and each
object verified in the store; a movie whose object was damaged in the store is not called verified, and the next
round stores it again and verifies it. (Here, beside the storage tests, to share their S3 server.)"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from cryocloud.app.session_upload import manifest_name, upload
from cryocloud.storage.base import ObjectStore


def test_movies_archived_verified_and_damage_found(store: ObjectStore, tmp_path: Path) -> None:
    session = tmp_path / "session"
    (session / "Grid1").mkdir(parents=True)
    big = session / "Grid1" / "a.tiff"
    big.write_bytes(os.urandom(3_000_000))  # a blob of its own
    (session / "b.mrc").write_bytes(os.urandom(50_000))  # packed
    names = ["Grid1/a.tiff", "b.mrc"]
    first = upload(store, session, names, manifest_name(1, session, 1))
    assert [(m.name, m.verified) for m in first.movies] == [("Grid1/a.tiff", True), ("b.mrc", True)]
    assert first.movies[0].key == f"cas/b/{first.movies[0].sha256[:2]}/{first.movies[0].sha256}"
    again = upload(store, session, names, manifest_name(1, session, 2))
    assert again.bytes_sent == 0 and all(m.verified for m in again.movies)  # by content: nothing moves twice

    asyncio.run(store.put(first.movies[0].key, os.urandom(3_000_000)))  # other bytes under its name
    damaged = upload(store, session, ["Grid1/a.tiff"], manifest_name(1, session, 3))
    assert [m.verified for m in damaged.movies] == [False]
    repaired = upload(store, session, ["Grid1/a.tiff"], manifest_name(1, session, 4))
    assert [m.verified for m in repaired.movies] == [True] and repaired.bytes_sent == 3_000_000
