"""On-the-fly's own logic without RELION: detection with a fake clock, header checks, batching, settings, the
simulator's files, the ledger's session tables."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from cryocloud.errors import ConfigError, CryocloudError
from cryocloud.session import batching, records
from cryocloud.session import settings as ss
from cryocloud.session.detect import Detector, check_movie
from cryocloud.session.simulate import Plan, mrc_header, parse_rate, simulate


def mrc(path: Path, n: int = 2, size: int = 16, apix: float = 1.0, cut: int = 0) -> Path:
    data = mrc_header(size, size, n, apix) + np.zeros((n, size, size), np.float32).tobytes()
    path.write_bytes(data[: len(data) - cut] if cut else data)
    return path


def test_a_movie_settles_only_once_its_size_and_mtime_stop_changing(tmp_path: Path) -> None:
    d = Detector(tmp_path, settle=5, stuck=100)
    f = tmp_path / "a.mrc"
    f.write_bytes(b"x" * 10)
    assert d.poll(0).growing == ["a.mrc"]
    with open(f, "ab") as fh:  # a piece more: the clock starts again
        fh.write(b"y" * 10)
    os.utime(f, ns=(1, 2))
    assert d.poll(4).growing == ["a.mrc"]
    assert d.poll(8).growing == ["a.mrc"]  # 4 s since it last changed
    assert [s.rel for s in d.poll(9).settled] == ["a.mrc"]
    assert d.poll(20).settled == []  # once


def test_rsync_temporaries_partial_names_and_non_movies_are_never_looked_at(tmp_path: Path) -> None:
    d = Detector(tmp_path, settle=1, stuck=100)
    (tmp_path / ".b.mrc.Xy12Ab").write_bytes(b"x")
    (tmp_path / "c.tiff.part").write_bytes(b"x")
    (tmp_path / "notes.txt").write_bytes(b"x")
    (tmp_path / "Grid1" / "Data").mkdir(parents=True)
    (tmp_path / "Grid1" / "Data" / "d.EER").write_bytes(b"x")
    d.poll(0)
    assert [s.rel for s in d.poll(2).settled] == ["Grid1/Data/d.EER"]
    os.replace(tmp_path / ".b.mrc.Xy12Ab", tmp_path / "b.mrc")  # rsync's rename at the end
    d.poll(3)
    assert [s.rel for s in d.poll(5).settled] == ["b.mrc"]


def test_a_movie_never_finishing_is_reported_stuck_and_a_vanished_folder_is_reported(tmp_path: Path) -> None:
    session = tmp_path / "s"
    session.mkdir()
    d = Detector(session, settle=5, stuck=30)
    f = session / "slow.tif"
    for t in range(0, 40, 2):
        f.write_bytes(b"x" * (t + 1))
        got = d.poll(t)
        assert not got.settled
    assert got.stuck == ["slow.tif"]
    f.unlink()
    session.rmdir()
    assert d.poll(50).missing_folder


def test_header_checks_truncated_corrupt_pixel_size_and_tiff(tmp_path: Path) -> None:
    assert check_movie(mrc(tmp_path / "ok.mrc", apix=1.0), 1.0).ok
    cut = check_movie(mrc(tmp_path / "cut.mrc", cut=100), 1.0)
    assert not cut.ok and "truncated" in cut.problem and cut.hint
    bad = tmp_path / "bad.mrc"
    bad.write_bytes(b"\0" * 2000)
    assert "not an MRC file" in check_movie(bad, 1.0).problem
    px = check_movie(mrc(tmp_path / "px.mrc", apix=1.3), 1.0)
    assert not px.ok and "pixel size 1.3" in px.problem and "pixel_size" in px.hint
    # a little-endian TIFF with one frame: one strip of 64 bytes at offset 8
    ifd = struct.pack("<H", 2) + struct.pack("<HHII", 273, 4, 1, 8) + struct.pack("<HHII", 279, 4, 1, 64) + b"\0" * 4
    tif = b"II*\x00" + struct.pack("<I", 72) + b"\1" * 64 + ifd
    (tmp_path / "ok.tif").write_bytes(tif)
    assert check_movie(tmp_path / "ok.tif", 1.0).ok and check_movie(tmp_path / "ok.tif", 1.0).frames == 1
    short = tif.replace(struct.pack("<HHII", 279, 4, 1, 64), struct.pack("<HHII", 279, 4, 1, 640))
    (tmp_path / "short.eer").write_bytes(short)
    assert "truncated" in check_movie(tmp_path / "short.eer", 1.0).problem


def test_batches_follow_the_arrival_rate_and_split_a_large_backlog() -> None:
    s = ss.SessionSettings(pixel_size=1, dose_per_frame=1, min_batch=5, max_wait_seconds=30, max_batch=200,
                           split_from=50, max_split=4)
    assert batching.decide(3, 10, False, s) is None  # trickle: wait for more, up to max_wait
    assert batching.decide(3, 31, False, s) == batching.Decision(3, 1, "oldest waited 31 s >= max_wait_seconds 30")
    assert batching.decide(3, 1, False, s, draining=True).size == 3  # type: ignore[union-attr]
    assert batching.decide(40, 0, True, s) is None  # one batch at a time: the next one is larger
    big = batching.decide(500, 0, False, s)
    assert big is not None and big.size == 200 and big.split == 4
    assert batching.split_for(120, s) == 3 and batching.split_for(49, s) == 1


def test_settings_file_init_load_and_mistakes(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    with pytest.raises(ConfigError, match="no session settings") as e:
        ss.load(path)
    assert "--init" in e.value.hint
    path.write_text(ss.init_text(0.83, 1.1))
    loaded = ss.load(path)
    assert (loaded.pixel_size, loaded.dose_per_frame, loaded.gain_rot, loaded.ctf) == (0.83, 1.1, 0, False)
    path.write_text(ss.init_text())
    with pytest.raises(ConfigError, match="pixel_size is not set"):
        ss.load(path)
    with pytest.raises(ConfigError, match="unknown key 'pixelsize'") as e:
        ss.from_dict({"pixelsize": 1.0})
    assert "pixel_size" in e.value.hint
    with pytest.raises(ConfigError, match="gain_rot"):
        ss.from_dict({"pixel_size": 1, "dose_per_frame": 1, "gain_rot": 5})


def test_simulator_writes_whole_movies_through_every_mode(tmp_path: Path) -> None:
    assert parse_rate("1000/h") == 1000 and parse_rate("2/s") == 7200 and parse_rate("20/min") == 1200
    with pytest.raises(CryocloudError, match="not a rate"):
        parse_rate("fast")
    seen: list[str] = []
    paths = simulate(Plan(tmp_path, 3, 3600 * 50, size=32, frames=3), lambda p, _t: seen.append(p.name))
    assert [p.name for p in paths] == seen and len(seen) == 3
    assert sorted(os.listdir(tmp_path)) == sorted(seen)  # no temporary left behind
    for p in paths:
        c = check_movie(p, 3.0)
        assert c.ok and c.frames == 3


def test_each_movie_joins_one_batch_once(tmp_path: Path) -> None:
    from cryocloud.ledger import Ledger

    ledger = Ledger(tmp_path / "l.sqlite")
    s = records.open_session(ledger.db, "/s", "/p", "", "")
    for i in range(5):
        records.add_movie(ledger.db, s.id, f"m{i}.mrc", 10, float(i), float(i), records.SETTLED)
    b1, n1 = records.new_batch(ledger.db, s.id, 3, 1)
    b2, n2 = records.new_batch(ledger.db, s.id, 10, 1)
    assert (n1, n2) == (["m0.mrc", "m1.mrc", "m2.mrc"], ["m3.mrc", "m4.mrc"])
    assert {r["name"]: (r["batch_id"], r["batches"]) for r in records.movies(ledger.db, s.id)} == {
        "m0.mrc": (b1, 1), "m1.mrc": (b1, 1), "m2.mrc": (b1, 1), "m3.mrc": (b2, 1), "m4.mrc": (b2, 1)}
    ledger.close()


def test_an_older_ledger_gains_the_session_tables(tmp_path: Path) -> None:
    import sqlite3

    from cryocloud.ledger import SCHEMA, Ledger
    from cryocloud.session.records import SESSION_SCHEMA

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA.removesuffix(SESSION_SCHEMA))  # a ledger from before sessions
    db.execute("INSERT INTO jobs (name, client, job_type, project_dir, job_dir, profile, backend, user, state, "
               "submitted_at, spec) VALUES ('Class2D/job002/', 'relion', 'Class2D', '/p', 'Class2D/job002/', "
               "'local', 'local', 'u', 'succeeded', 0, '{}')")
    db.commit()
    db.close()
    with pytest.raises(sqlite3.OperationalError):
        sqlite3.connect(path).execute("SELECT * FROM session_movies")
    ledger = Ledger(path)
    assert ledger.db.execute("SELECT count(*) FROM session_movies").fetchone()[0] == 0
    assert ledger.db.execute("SELECT name FROM jobs").fetchone()[0] == "Class2D/job002/"
    ledger.close()
