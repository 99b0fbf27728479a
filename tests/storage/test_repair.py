"""A damaged object in the store (other bytes under its key, as a disk or a bad server would leave it): a pull
restores every file it can and names the rest; `storage verify --full` finds it; a push from a good copy repairs
it, and so does `verify --repair` under the same keys. Run on the folder store and on SeaweedFS over HTTPS."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from cryocloud.errors import CryocloudError
from cryocloud.storage.base import IntegrityError, ObjectStore
from cryocloud.storage.pull import load_manifest, pull
from cryocloud.storage.push import push
from cryocloud.storage.transfer import run
from cryocloud.storage.verify import verify

from .conftest import write


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def _damage(store: ObjectStore, key: str, at: int) -> None:
    """One byte changed in the stored object (same length: a size check cannot see it)."""
    data = bytearray(run(store.get(key)))
    data[at] ^= 0xFF
    run(store.put(key, bytes(data)))


def test_a_damaged_blob_and_pack_are_found_survived_and_repaired(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "good"
    write(src / "Movies" / "big.tiff", os.urandom(3 << 20))  # a blob of its own
    for i in range(320):
        write(src / "Extract" / f"p{i:03d}.star", f"data_\n_rlnIndex {i}\n{os.urandom(64).hex()}\n".encode())
    push(store, src, name="set")
    m = run(load_manifest(store, "set"))
    blob = next(e for e in m.files if not e.pack)
    member = next(e for e in m.files if e.pack and e.path == "Extract/p100.star")
    _damage(store, blob.key, 12345)
    _damage(store, member.key, member.offset + 3)
    # a pull restores every file it can, and names the two it cannot
    with pytest.raises(IntegrityError) as e:
        pull(store, "set", tmp_path / "before")
    assert "2 of 321 files could not be restored" in e.value.message
    assert "Movies/big.tiff" in e.value.message and "Extract/p100.star" in e.value.message
    assert "push the folder again from a good copy" in e.value.hint
    got = _digest(tmp_path / "before")
    want = _digest(src)
    assert len(got) == 319 and all(want[k] == v for k, v in got.items())
    assert not list((tmp_path / "before").rglob("*cryocloud-part"))
    # a quick verify: on S3 the stored SHA-256 of objects put in one request (both: <= 8 MiB) shows the
    # overwrite; on a folder a HEAD sees nothing wrong (same sizes)
    quick = verify(store, "set")
    if store.keeps_checksums:
        assert set(quick.damaged) == {blob.key, member.key} and quick.by_checksum == 2
    else:
        assert quick.ok and quick.by_checksum == 0
    # --full hashes and names the objects and their files
    full = verify(store, "set", full=True)
    assert not full.ok and set(full.damaged) == {blob.key, member.key}
    assert full.damaged[member.key] == ["Extract/p100.star"] and full.damaged[blob.key] == ["Movies/big.tiff"]
    from cryocloud.cli.main import main

    assert main(["storage", "verify", "set", "--from", store.url, "--full", "-q"]) == 1
    # a push from the good copy uploads them again; every file comes back, and verify --full is clean
    again = push(store, src, name="set")
    assert blob.key in again.uploaded_keys and again.uploaded_objects >= 2
    pull(store, "set", tmp_path / "after")
    assert _digest(tmp_path / "after") == want
    assert verify(store, "set", full=True).ok


def test_a_missing_object_is_reported_by_a_quick_verify(store: ObjectStore, tmp_path: Path) -> None:
    write(tmp_path / "good" / "big.bin", os.urandom(3 << 20))
    push(store, tmp_path / "good", name="one")
    key = run(load_manifest(store, "one")).files[0].key
    run(store.delete([key]))
    r = verify(store, "one")
    assert not r.ok and r.missing == {key: ["big.bin"]}
    with pytest.raises(CryocloudError):
        pull(store, "one", tmp_path / "out")
    push(store, tmp_path / "good", name="one")  # the next push puts it back
    assert verify(store, "one", full=True).ok


def test_verify_repair_stores_the_same_bytes_under_the_same_keys(store: ObjectStore, tmp_path: Path) -> None:
    """A damaged blob and pack, and a missing blob: `--repair` rebuilds each from the good copy (the pack's
    undamaged members from the stored pack itself), the manifest and its keys do not change, and a member that no
    good copy has is named."""
    from cryocloud.cli.main import main
    from cryocloud.storage.repair import repair

    src = tmp_path / "good"
    write(src / "Movies" / "a.tiff", os.urandom(3 << 20))
    write(src / "Movies" / "b.tiff", os.urandom(2 << 20))
    for i in range(50):
        write(src / "Extract" / f"p{i:02d}.star", f"data_\n_rlnIndex {i}\n{os.urandom(32).hex()}\n".encode())
    push(store, src, name="set")
    m = run(load_manifest(store, "set"))
    a = next(e for e in m.files if e.path == "Movies/a.tiff")
    b = next(e for e in m.files if e.path == "Movies/b.tiff")
    member = next(e for e in m.files if e.path == "Extract/p07.star")
    _damage(store, a.key, 99)
    _damage(store, member.key, member.offset)
    run(store.delete([b.key]))
    found = verify(store, "set", full=True)
    assert set(found.damaged) == {a.key, member.key} and set(found.missing) == {b.key}

    # the good copy lacks the damaged member: the pack cannot be rebuilt, and says which file it needs
    partial = tmp_path / "partial"
    write(partial / "Movies" / "a.tiff", (src / "Movies" / "a.tiff").read_bytes())
    r = repair(store, m, set(found.damaged) | set(found.missing), partial)
    assert r.repaired == [a.key]
    assert "Extract/p07.star" in r.left[member.key] and "not found under" in r.left[member.key]
    assert "no file under" in r.left[b.key]

    # from the whole good copy, through the CLI: everything is stored again, then checked again
    assert main(["storage", "verify", "set", "--from", store.url, "--full", "--repair", str(src), "-q"]) == 0
    assert run(load_manifest(store, "set")).content() == m.content()  # same manifest, same keys
    assert verify(store, "set", full=True).ok and verify(store, "set").ok
    pull(store, "set", tmp_path / "out")
    assert _digest(tmp_path / "out") == _digest(src)
