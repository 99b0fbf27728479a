"""Issue 23's acceptance: a simulated session of 20 small movies watched, uploaded, imported and motion-corrected
by RELION (its own MotionCorr, through cryocloud's queue), with the watcher killed (SIGKILL) half way and started
again. The ledger shows every movie uploaded once and in exactly one batch, no half-written or bad movie ever
appears in Import's STAR file, and RELION's own relion_pipeliner reads the project afterwards with the jobs
succeeded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cryocloud.ledger import Ledger
from cryocloud.session import records
from cryocloud.session.detect import check_movie
from cryocloud.session.simulate import Plan, mrc_header, simulate
from cryocloud.settings import load_settings
from gate import Background, wait_until
from relion_support import process_status
from testtools import require_tool

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SETTINGS = """pixel_size = 3.0
dose_per_frame = 0.5
settle_seconds = 1.0
poll_seconds = 0.3
min_batch = 4
max_wait_seconds = 2.0
split_from = 6
max_split = 2
"""


def watcher(session: Path, project: Path, store: Path, *extra: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "cryocloud", "watch", str(session), "--project", str(project),
            "--upload", str(store), "--json", *extra]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ledger_movies() -> list[dict[str, object]]:
    ledger = Ledger(load_settings().ledger_path)
    try:
        return [m for s in records.all_sessions(ledger.db) for m in records.movies(ledger.db, s.id)]
    finally:
        ledger.close()


class ImportObserver(threading.Thread):
    """Reads Import's movies.star each time it changes: every movie it ever lists must be whole then."""

    def __init__(self, star: Path) -> None:
        super().__init__(daemon=True)
        self.star, self.stop, self.bad, self.listed = star, threading.Event(), [], set()  # type: ignore[var-annotated]
        self.seen_mtime = 0

    def run(self) -> None:
        from cryocloud.session.relion import _table

        while not self.stop.wait(0.05):
            try:
                mtime = self.star.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            if mtime == self.seen_mtime:
                continue
            self.seen_mtime = mtime
            for (name,) in _table(self.star, "movies", ["MicrographMovieName"]):
                self.listed.add(name)
                target = (self.star.parents[2] / name).resolve()
                if target.name.startswith(".") or not check_movie(target, 3.0).ok:
                    self.bad.append(name)


def test_a_session_watched_killed_and_restarted(tmp_path: Path) -> None:
    require_tool("relion_run_motioncorr")
    session, project, store = tmp_path / "session", tmp_path / "project", tmp_path / "archive"
    project.mkdir()
    (project / "cryocloud-session.toml").write_text(SETTINGS)
    session.mkdir()
    # bad input beside the good: a movie cut short (its header says more), and one never renamed from its .part
    (session / "Cut_fractions.mrc").write_bytes(mrc_header(128, 128, 6, 3.0) + b"\0" * 1000)
    (session / "Never_fractions.mrc.part").write_bytes(b"\0" * 5000)
    plan = Plan(session, 20, 3600 * 3, size=128, frames=6)  # 3 movies a second, each mode in turn
    sim = Background(simulate, plan)
    observer = ImportObserver(project / "Import/job001/movies.star")
    observer.start()
    first = watcher(session, project, store)
    sim.start()
    try:
        assert wait_until(lambda: sum(1 for m in ledger_movies() if m["state"] == "corrected") >= 4, 300), \
            first.stderr.read() if first.poll() is not None and first.stderr else "no movie corrected"
        os.kill(first.pid, signal.SIGKILL)  # half way: mid-session, maybe mid-batch or mid-upload
        first.wait(30)
        assert len(ledger_movies()) < 21
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    sim.join(300)
    second = watcher(session, project, store, "--until-idle", "2")
    out, err = second.communicate(timeout=600)
    observer.stop.set()
    observer.join(5)
    assert second.returncode == 0, err[-3000:]
    final = json.loads(out.strip().splitlines()[-1])
    assert (final["corrected"], final["rejected"], final["failed"], final["backlog"]) == (20, 1, 0, 0)
    assert final["verified"] == 20 and final["latency_p50_s"] > 0

    movies = {str(m["name"]): m for m in ledger_movies()}
    good = {p.name for p in session.glob("FoilHole_*_fractions.mrc")}
    assert set(movies) == good | {"Cut_fractions.mrc"}  # never the .part file
    for name in good:
        m = movies[name]
        assert (m["uploads"], m["batches"], m["state"]) == (1, 1, "corrected"), (name, m)
        assert m["batch_id"] and m["verified_at"] and len(str(m["sha256"])) == 64
        assert float(m["drift"]) > 1  # type: ignore[arg-type]
    cut = movies["Cut_fractions.mrc"]
    assert cut["state"] == "rejected" and "truncated" in str(cut["message"]) and cut["batch_id"] is None
    ledger = Ledger(load_settings().ledger_path)
    batches = records.batches(ledger.db, records.all_sessions(ledger.db)[0].id)
    jobs = ledger.jobs()
    ledger.close()
    assert sum(int(b["movies"]) for b in batches) == 20 and all(b["state"] == "done" for b in batches)
    assert len(batches) >= 2
    # the backlog the restarted watcher found was split over workers (the fan-out's 'Split over N workers')
    assert any(int(b["split"]) == 2 for b in batches), batches
    assert "2 of 2 tasks succeeded" in (project / "MotionCorr/job002/run.out").read_text()
    assert {j.job_type for j in jobs} >= {"MotionCorr"} and all(j.state == "succeeded" for j in jobs)

    # what RELION shows: Import's STAR lists exactly the 20 whole movies, every one corrected
    assert observer.bad == [] and len(observer.listed) == 20
    subprocess.run(["relion_pipeliner", "--check_job_completion"], cwd=project, check=True, capture_output=True)
    assert process_status(project) == {"Import/job001/": "succeeded", "MotionCorr/job002/": "succeeded"}
    from cryocloud.session.relion import _table

    mics = _table(project / "MotionCorr/job002/corrected_micrographs.star", "micrographs", ["MicrographName"])
    assert len(mics) == 20 and all((project / m[0]).exists() for m in mics)

    # --status: which movies may leave the microscope's PC
    status = subprocess.run([sys.executable, "-m", "cryocloud", "watch", str(session), "--status", "--json"],
                            capture_output=True, text=True, check=True)
    listed = json.loads(status.stdout)["movies"]
    assert sorted(m["name"] for m in listed if m["archived_verified"]) == sorted(good)
