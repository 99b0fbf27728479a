"""Bad input at the watcher, without RELION running (each pass driven by hand with a fake clock): the movie or
the session is reported with a hint and the rest goes on; nothing is recorded twice."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from cryocloud.app.watch import Watcher, WatchRequest
from cryocloud.session import records
from onthefly.test_units import mrc


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(tmp_path: Path, extra: str = "") -> tuple[Watcher, Clock, Path]:
    session, project = tmp_path / "session", tmp_path / "project"
    session.mkdir()
    project.mkdir()
    (project / "s.toml").write_text(f"pixel_size = 1.0\ndose_per_frame = 1.0\nsettle_seconds = 2\n{extra}")
    clock = Clock()
    w = Watcher(WatchRequest(session, project, project / "s.toml", upload=str(tmp_path / "store")), clock=clock)
    w.jobs = {"Import": "Import/job001/", "MotionCorr": "MotionCorr/job002/"}  # as prepare() would record them
    return w, clock, session


def passes(w: Watcher, clock: Clock, n: int = 3) -> dict[str, object]:
    out: dict[str, object] = {}
    for _ in range(n):
        clock.t += 3
        out = w.step()
        if w.uploading is not None:
            w.uploading.result()
    return out


def test_wrong_pixel_size_and_missing_gain_are_reported_and_uploads_go_on(tmp_path: Path) -> None:
    w, clock, session = make(tmp_path, 'gain_ref = "Gain/gain.mrc"\n')
    mrc(session / "good.mrc", apix=1.0)
    mrc(session / "wrong.mrc", apix=1.4)
    n = passes(w, clock)
    assert n["rejected"] == 1 and n["batches"] == 0  # the gain is missing: processing waits
    assert any("gain reference Gain/gain.mrc is missing" in p for p in n["problems"])  # type: ignore[attr-defined]
    rows = {m["name"]: m for m in records.movies(w.ledger.db, w.session.id)}
    assert "pixel size 1.4" in rows["wrong.mrc"]["message"] and "hint:" in rows["wrong.mrc"]["message"]
    assert rows["good.mrc"]["verified_at"] and rows["good.mrc"]["uploads"] == 1  # the archive copy is made anyway
    assert rows["wrong.mrc"]["uploaded_at"] is None
    w.close()


def test_a_vanished_session_folder_is_reported_and_nothing_is_lost(tmp_path: Path) -> None:
    w, clock, session = make(tmp_path, "min_batch = 10\nmax_wait_seconds = 600\n")
    mrc(session / "a.mrc")
    passes(w, clock)
    os.rename(session, session.with_name("away"))  # the share unmounted
    n = passes(w, clock, 2)
    assert any("is not there" in p for p in n["problems"])  # type: ignore[attr-defined]
    os.rename(session.with_name("away"), session)
    mrc(session / "b.mrc")
    n = passes(w, clock)
    assert n["problems"] == [] and n["settled"] == 2
    assert [m["uploads"] for m in records.movies(w.ledger.db, w.session.id)] == [1, 1]
    w.close()


def test_a_full_disk_while_linking_is_reported_and_the_batch_kept(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    w, clock, session = make(tmp_path)
    mrc(session / "a.mrc")

    def full(self: Path, target: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "symlink_to", full)
    n = passes(w, clock)
    assert any("No space left" in p and "free space" in p for p in n["problems"])  # type: ignore[attr-defined]
    (batch,) = records.batches(w.ledger.db, w.session.id)
    assert batch["state"] == "running" and records.batch_movies(w.ledger.db, w.session.id, batch["id"]) == ["a.mrc"]
    w.close()


def test_the_live_view_shows_the_numbers_and_problems(tmp_path: Path) -> None:
    from rich.console import Console

    from cryocloud.onthefly.view import render

    w, clock, session = make(tmp_path, 'gain_ref = "Gain/gain.mrc"\n')
    mrc(session / "good.mrc")
    n = passes(w, clock)
    console = Console(record=True, width=160)
    console.print(render(n))
    text = console.export_text()
    assert "uploaded" in text and "1 (1 verified)" in text and "good.mrc" in text and "yes" in text
    assert "! the gain reference Gain/gain.mrc is missing" in text
    w.close()


def test_fixed_settings_and_retry_failed_take_movies_back_in(tmp_path: Path) -> None:
    from testtools import require_tool

    require_tool("relion_pipeliner")  # prepare() adds the session's RELION jobs
    w, clock, session = make(tmp_path, "min_batch = 10\nmax_wait_seconds = 600\n")
    mrc(session / "wrong.mrc", apix=1.4)
    mrc(session / "lost.mrc", apix=1.4)
    passes(w, clock)
    records.update_movie(w.ledger.db, w.session.id, "lost.mrc", state=records.FAILED, batch_id=7, batches=1)
    w.close()
    settings = tmp_path / "project" / "s.toml"
    settings.write_text(settings.read_text().replace("pixel_size = 1.0", "pixel_size = 1.4"))
    again = Watcher(WatchRequest(session, tmp_path / "project", settings, retry_failed=True))
    again.prepare()
    rows = {m["name"]: m for m in records.movies(again.ledger.db, again.session.id)}
    assert rows["wrong.mrc"]["state"] == "settled" and rows["wrong.mrc"]["message"] == ""  # the settings were fixed
    lost = rows["lost.mrc"]
    assert (lost["state"], lost["batch_id"], lost["batches"]) == ("settled", None, 1)  # waits for its next batch
    again.close()


def test_a_second_watcher_of_the_same_session_is_refused(tmp_path: Path) -> None:
    import subprocess

    from cryocloud.errors import CryocloudError

    w, _clock, session = make(tmp_path)
    # stands for a watcher still running elsewhere (its command line names watch; a reused pid would not)
    sleeper = subprocess.Popen(["sh", "-c", "sleep 60", "cryocloud-watch"])
    try:
        records.update_session(w.ledger.db, w.session.id, watcher_pid=sleeper.pid)
        w.ledger.close()
        with pytest.raises(CryocloudError, match=f"another watcher \\(pid {sleeper.pid}\\)") as e:
            Watcher(WatchRequest(session, tmp_path / "project", tmp_path / "project" / "s.toml"))
        assert f"kill {sleeper.pid}" in e.value.hint
    finally:
        sleeper.kill()
        sleeper.wait()
    w.pool.shutdown()
    after = Watcher(WatchRequest(session, tmp_path / "project", tmp_path / "project" / "s.toml"))  # it died: fine
    after.close()
