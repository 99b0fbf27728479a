"""Content-addressed push and pull, on both stores: layout, dedup, stat cache, resume, staging rules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cryocloud.storage import push as push_mod
from cryocloud.storage.base import ObjectStore
from cryocloud.storage.pull import pull
from cryocloud.storage.push import push
from cryocloud.storage.staging import stage_in, stage_out

from .conftest import write


def tree(root: Path) -> dict[str, object]:
    """Everything a restore must reproduce: file bytes and modes, link targets, empty folders."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        for name in dirnames + filenames:
            p = d / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_file():
                out[rel] = ("file", p.read_bytes(), p.stat().st_mode & 0o777)
            elif not any(p.iterdir()):
                out[rel] = ("emptydir",)
    return out


def test_roundtrip_exact_layout(store: ObjectStore, project: Path, tmp_path: Path) -> None:
    os.chmod(project / "Movies" / "m0.tiff", 0o600)
    result = push(store, project, name="backup/p1")
    assert result.files == 46 and result.manifest_written
    pull(store, "backup/p1", tmp_path / "restored")
    assert tree(tmp_path / "restored") == tree(project)
    assert (tmp_path / "restored" / "MotionCorr" / "first").is_symlink()
    src = (project / "Movies" / "m1.tiff").stat().st_mtime_ns
    assert (tmp_path / "restored" / "Movies" / "m1.tiff").stat().st_mtime_ns == src


def test_repush_unchanged_moves_nothing(store: ObjectStore, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    push(store, project, name="p")
    hashed: list[str] = []
    real = push_mod.hash_file_with
    monkeypatch.setattr(push_mod, "hash_file_with", lambda p, *hs: hashed.append(p) or real(p, *hs))
    again = push(store, project, name="p")
    assert (again.uploaded_bytes, again.uploaded_objects, again.manifest_written) == (0, 0, False)
    assert hashed == []  # the stat cache answered for every file


def test_same_files_other_name_and_fresh_cache_upload_nothing(
    store: ObjectStore, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    push(store, project, name="job1")
    monkeypatch.setenv("CRYOCLOUD_HOME", str(tmp_path / "other-user"))  # no caches: learns from the store
    second = push(store, project, name="job2")
    assert second.uploaded_bytes == 0 and second.manifest_written


def test_changed_file_only_it_moves(store: ObjectStore, project: Path) -> None:
    push(store, project, name="p")
    write(project / "Movies" / "m2.tiff", os.urandom(3_000_100))
    write(project / "MotionCorr" / "job002" / "Movies" / "m3.star", b"changed\n")
    again = push(store, project, name="p")
    assert again.uploaded_objects == 2  # one blob, one small pack
    assert again.uploaded_bytes == 3_000_100 + len(b"changed\n")


def test_pull_resumes_and_repairs(store: ObjectStore, project: Path, tmp_path: Path) -> None:
    push(store, project, name="p")
    dest = tmp_path / "out"
    first = pull(store, "p", dest)
    assert first.downloaded_files == 46
    (dest / "Movies" / "m0.tiff").unlink()
    write(dest / "Movies" / "m1.tiff", b"x" * (3_000_001))  # same size, wrong bytes
    (dest / "MotionCorr" / "job002" / "Movies" / "m5.star").write_bytes(b"bad")
    again = pull(store, "p", dest)
    assert again.downloaded_files == 3
    assert tree(dest) == tree(project)
    assert pull(store, "p", dest).downloaded_files == 0


def test_pull_only_some_paths(store: ObjectStore, project: Path, tmp_path: Path) -> None:
    push(store, project, name="p")
    pull(store, "p", tmp_path / "o", only=["Movies"])
    assert sorted(p.name for p in (tmp_path / "o").rglob("*")) == ["Movies", "m0.tiff", "m1.tiff", "m2.tiff"]


def test_stage_out_follows_outside_links_keeps_inside_ones(store: ObjectStore, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write(raw / "a.tiff", b"A" * 5000)
    proj = tmp_path / "proj"
    (proj).mkdir()
    (proj / "Movies").symlink_to(raw)
    write(proj / "Import" / "job001" / "movies.star", b"Movies/a.tiff\n")
    write(proj / "Import" / "job001" / "RELION_JOB_EXIT_SUCCESS", b"")
    (proj / "Import" / "latest").symlink_to("job001")
    m = stage_out(store, proj, [Path("Movies"), Path("Import")], name="jobs/j1-in")
    assert sorted(f.path for f in m.files) == ["Import/job001/movies.star", "Movies/a.tiff"]
    assert [(x.path, x.target) for x in m.links] == [("Import/latest", "job001")]
    node = tmp_path / "node"
    stage_in(store, "jobs/j1-in", node)
    assert (node / "Movies").is_dir() and not (node / "Movies").is_symlink()
    assert (node / "Movies" / "a.tiff").read_bytes() == b"A" * 5000
    assert (node / "Import" / "latest").is_symlink()
    assert not (node / "Import" / "job001" / "RELION_JOB_EXIT_SUCCESS").exists()


def test_duplicate_content_at_many_paths(store: ObjectStore, tmp_path: Path) -> None:
    root = tmp_path / "d"
    big = os.urandom(2_500_000)
    for i in range(3):
        write(root / f"big{i}", big)
        write(root / f"small{i}", b"same")
    r = push(store, root, name="d")
    assert r.uploaded_bytes == len(big) + 4
    pull(store, "d", tmp_path / "o")
    assert tree(tmp_path / "o") == tree(root)


def test_packed_files_spanning_stream_chunks(store: ObjectStore, tmp_path: Path) -> None:
    """Pack members of ~300 KiB arrive in ~1 MiB stream chunks: many span two chunks, some are empty; every
    one lands byte for byte."""
    src = tmp_path / "src"
    for i in range(24):
        write(src / "Extract" / f"p{i:02d}.mrcs", os.urandom(300_000 + 977 * i) if i % 7 else b"")
    r = push(store, src, name="parts")
    assert {f.pack for f in r.manifest.files} != {""}  # they travelled in packs
    pull(store, "parts", tmp_path / "out")
    assert tree(tmp_path / "out") == tree(src)
