"""How a pull checks what it downloads: a large file by the XXH3-128 its manifest records (computed at push in the
same read as its SHA-256), anything else by SHA-256; and manifests of format 1 (no XXH3-128) still pull."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path

import pytest
import xxhash

from cryocloud.errors import CryocloudError
from cryocloud.storage import push as push_mod
from cryocloud.storage.base import IntegrityError, ObjectStore
from cryocloud.storage.cache import cache_dir
from cryocloud.storage.manifest import Manifest, manifest_key
from cryocloud.storage.pull import pull
from cryocloud.storage.push import push

from .test_push_pull import tree


def _manifest(store: ObjectStore, name: str) -> Manifest:
    return Manifest.from_json(asyncio.run(store.get(manifest_key(name))))


def _rewrite(store: ObjectStore, name: str, edit: object) -> None:
    """Store the manifest `name` again with its JSON changed by `edit(body)`."""
    body = json.loads(asyncio.run(store.get(manifest_key(name))))
    edit(body)  # type: ignore[operator]
    asyncio.run(store.put(manifest_key(name), json.dumps(body).encode()))


def test_large_files_carry_xxh128_small_ones_do_not(store: ObjectStore, project: Path) -> None:
    push(store, project, name="p")
    m = _manifest(store, "p")
    large = [f for f in m.files if not f.pack]
    assert len(large) == 3
    for f in large:
        assert f.xxh128 == xxhash.xxh3_128((project / f.path).read_bytes()).hexdigest()
    assert all(f.xxh128 == "" for f in m.files if f.pack)
    body = json.loads(asyncio.run(store.get(manifest_key("p"))))
    assert body["format"] == 2 and body["fields"][-1] == "xxh128"
    assert {len(row) for row in body["files"]} == {7, 8}  # a small file's row stops before the empty xxh128


def test_pull_checks_large_files_by_their_xxh128(store: ObjectStore, project: Path, tmp_path: Path) -> None:
    """A manifest whose XXH3-128 for one movie is wrong (its bytes are whole): that movie is refused with the
    XXH3-128 named, the others are restored: the recorded XXH3-128 is what a large file is checked against."""
    push(store, project, name="p")

    def spoil(body: dict[str, list[list[object]]]) -> None:
        for row in body["files"]:
            if row[0] == "Movies/m1.tiff":
                row[7] = "0" * 32

    _rewrite(store, "p", spoil)
    with pytest.raises(IntegrityError) as e:
        pull(store, "p", tmp_path / "out")
    assert "Movies/m1.tiff" in e.value.message and "XXH3-128" in str(e.value)
    assert not (tmp_path / "out" / "Movies" / "m1.tiff").exists()
    assert (tmp_path / "out" / "Movies" / "m0.tiff").read_bytes() == (project / "Movies" / "m0.tiff").read_bytes()


def test_format_1_manifests_pull_and_check_by_sha256(store: ObjectStore, project: Path, tmp_path: Path) -> None:
    """A manifest written before XXH3-128 (format 1, seven fields) restores exactly, each large file checked by
    its SHA-256: a movie whose object holds other bytes is refused by it."""
    push(store, project, name="p")

    def old(body: dict[str, object]) -> None:
        body["format"] = 1
        body["fields"] = body["fields"][:7]  # type: ignore[index]
        body["files"] = [row[:7] for row in body["files"]]  # type: ignore[attr-defined]

    _rewrite(store, "p", old)
    assert all(f.xxh128 == "" for f in _manifest(store, "p").files)
    pull(store, "p", tmp_path / "out")
    assert tree(tmp_path / "out") == tree(project)

    m2 = next(f for f in _manifest(store, "p").files if f.path == "Movies/m2.tiff")
    asyncio.run(store.put(m2.key, os.urandom(m2.size)))
    with pytest.raises(IntegrityError, match=r"Movies/m2\.tiff") as e:
        pull(store, "p", tmp_path / "again")
    assert "SHA-256" in e.value.message


def test_a_manifest_of_an_unknown_format_says_to_upgrade(store: ObjectStore, project: Path) -> None:
    push(store, project, name="p")
    _rewrite(store, "p", lambda body: body.update(format=3))
    with pytest.raises(CryocloudError, match="format 3; this cryocloud reads formats 1, 2") as e:
        _manifest(store, "p")
    assert "upgrade cryocloud" in e.value.hint


def test_repush_with_a_cache_from_before_xxh128_reads_each_large_file_once(
    store: ObjectStore, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stat cache knows every file's SHA-256 but not yet its XXH3-128 (a cache from an older cryocloud): a
    re-push reads each large file once for the XXH3-128 alone, never hashes SHA-256 again, uploads nothing,
    and the next re-push reads nothing."""
    push(store, project, name="p")
    db = sqlite3.connect(cache_dir() / "stat.sqlite")
    with db:
        db.execute("DELETE FROM xxh")
    db.close()
    calls: list[int] = []
    real = push_mod.hash_file_with
    monkeypatch.setattr(push_mod, "hash_file_with", lambda p, *hs: calls.append(len(hs)) or real(p, *hs))
    again = push(store, project, name="p")
    assert (again.uploaded_bytes, again.manifest_written) == (0, False)
    assert calls == [1, 1, 1]  # the XXH3-128 of each of the three movies, nothing else
    assert all(f.xxh128 for f in _manifest(store, "p").files if not f.pack)
    calls.clear()
    push(store, project, name="p")
    assert calls == []
