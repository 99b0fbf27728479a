"""The dashboard in a real headless Chromium (Debian's, driven by Playwright: nothing downloaded, nothing sent
off this machine): sign in with a token, see a finished job with its state and cost, open its page, the costs
and the storage pages; a stale form is refused. Screenshots go to the test's folder, or to $SCREENSHOTS_DIR
(`SCREENSHOTS_DIR=docs/img pytest tests/server/test_dashboard.py` refreshes the ones the docs show)."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.support import Served, auth, facility, submitter_config
from spine.helpers import wait_for
from testtools import unavailable

pytestmark = pytest.mark.integration
# keep the browser from calling out: updates, sync, safe browsing, metrics (shared/notes/browser)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-default-apps", "--no-first-run", "--metrics-recording-only",
         "--disable-domain-reliability", "--disable-features=OptimizationHints,MediaRouter,Translate"]


def api(url: str, token: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={**auth(token), "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium")
    if chromium is None:
        unavailable("chromium is not installed (scripts/install-deps.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=FLAGS)
        try:
            yield b
        finally:
            b.close()


def test_sign_in_see_jobs_costs_and_storage(browser: Any, cryocloud_home: Path, tmp_path: Path) -> None:
    root = tmp_path / "projects"
    (root / "betagal").mkdir(parents=True)
    people = facility(cryocloud_home, [root])
    shots = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path)
    served = Served(tmp_path / "serve.log")
    try:
        jobs = f"{served.url}/api/v1/jobs"
        done = api(jobs, people.alice, {"project_dir": str(root / "betagal"), "job_dir": "External/job001",
                                        "commands": ["echo iteration 1", "echo iteration 2"], "name": "demo job"})
        mine = f"{jobs}/{done['id']}"
        assert wait_for(lambda: api(mine, people.alice)["state"] == "succeeded", 300)
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(served.url + "/")
        assert page.url.endswith("/login")
        page.fill("input[name=token]", "cct_wrong")
        page.click("button")
        assert "not valid" in page.locator(".error").inner_text()
        page.fill("input[name=token]", people.alice)
        page.click("button")
        page.wait_for_url(served.url + "/")
        row = page.locator("tbody tr").first
        assert "demo job" in row.inner_text() and "succeeded" in row.inner_text()
        assert people.alice not in page.content() and "token" not in page.url
        cookie = next(c for c in page.context.cookies() if c["name"] == "cryocloud_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        page.screenshot(path=str(shots / "dashboard-jobs.png"))
        row.locator("a").click()
        page.wait_for_url(f"{served.url}/jobs/{done['id']}")
        assert "iteration 2" in page.locator("pre").first.inner_text()
        assert "succeeded" in page.inner_text("main")
        page.screenshot(path=str(shots / "dashboard-job.png"), full_page=True)
        page.click("text=Costs")
        assert page.locator("svg rect.bar").count() >= 1 and "betagal" in page.inner_text("main")
        page.screenshot(path=str(shots / "dashboard-costs.png"), full_page=True)
        page.click("text=Storage")
        assert "USD per month" in page.inner_text("main") and "Per project" in page.inner_text("main")
        page.click("text=Instances")  # this server has no AWS profile: said, with the way to make one
        assert "no AWS profile is configured" in page.inner_text("main") and "aws bootstrap" in page.inner_text("main")
        # a form without the session's CSRF token changes nothing
        page.goto(f"{served.url}/login")
        answer = page.request.post(f"{served.url}/jobs/{done['id']}/cancel", form={"csrf": "forged"})
        assert "stale" in answer.text()
    finally:
        served.stop()


@pytest.mark.slow
def test_a_relion_class2d_through_the_server_shows_its_progress_and_class_averages(
        browser: Any, cryocloud_home: Path, demo_project: Path, tmp_path: Path) -> None:
    from relion_support import CLASS2D, add_job, relion_env, run_job

    people = facility(cryocloud_home, [demo_project.parent])
    shots = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path)
    served = Served(tmp_path / "serve.log")
    try:
        env = {**relion_env(demo_project), "CRYOCLOUD_CONFIG": str(submitter_config(tmp_path, served.url)),
               "CRYOCLOUD_TOKEN": people.alice}
        job = add_job(demo_project, "Class2D", CLASS2D + ";nr_mpi == 1;nr_threads == 2;do_queue == Yes", env=env)
        assert run_job(demo_project, job, env=env) == "succeeded"  # RELION -> cryocloud-qsub -> the server
        jobs = f"{served.url}/api/v1/jobs"
        # RELION's own marker can come before the agent's report: wait for the server's ledger to say it ended
        assert wait_for(lambda: api(jobs, people.alice)[0]["state"] not in ("queued", "starting", "running"), 300)
        mine = api(jobs, people.alice)
        assert [(j["name"], j["state"], j["user"]) for j in mine] == [(job, "succeeded", "alice")]
        job_id = mine[0]["id"]
        prog = api(f"{served.url}/api/v1/jobs/{job_id}/progress", people.alice)
        assert [i["iteration"] for i in prog["iterations"]][-1] == 3
        assert all(len(i["distribution"]) == 2 for i in prog["iterations"]) and prog["class_averages"] == 2
        assert [i["resolution"] is not None for i in prog["iterations"]][-3:] == [True] * 3  # finite, in Å
        assert all(0 < i["resolution"] < 1000 for i in prog["iterations"] if i["resolution"] is not None)
        with urllib.request.urlopen(urllib.request.Request(
                f"{served.url}/api/v1/jobs/{job_id}/classes/1.png", headers=auth(people.alice)), timeout=30) as r:
            assert r.headers["content-type"] == "image/png" and r.read().startswith(b"\x89PNG")
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(served.url + "/login")
        page.fill("input[name=token]", people.alice)
        page.click("button")
        page.wait_for_url(served.url + "/")
        assert job in page.locator("tbody tr").first.inner_text()
        page.click(f"a[href='/jobs/{job_id}']")
        page.wait_for_url(f"{served.url}/jobs/{job_id}")
        assert page.locator("svg polyline.series").count() == 3  # resolution, and one line per class
        images = page.locator("img.class-average")
        assert images.count() == 2
        for n in range(2):  # rendered: the browser decoded each PNG
            assert images.nth(n).evaluate("img => img.complete && img.naturalWidth > 0")
        page.screenshot(path=str(shots / "dashboard-class2d.png"))
    finally:
        served.stop()


def _watched_session(home: Path, session_dir: str, user: str, movies: int) -> int:
    """A session as `cryocloud watch` records it (ledger rows written through its own functions): movies that
    closed a few seconds apart, two batches, each movie corrected with a drift and a CTF resolution, one rejected."""
    from cryocloud.ledger import Ledger
    from cryocloud.session import records

    ledger = Ledger(home / "ledger.sqlite")
    s = records.open_session(ledger.db, session_dir, f"{session_dir}-project", "local", "s3://archive/raw", user)
    t0 = time.time() - 3600  # an hour ago
    for i in range(movies):
        records.add_movie(ledger.db, s.id, f"FoilHole_{i:05d}.tiff", 1000, t0 + 4 * i, t0 + 4 * i + 2, records.SETTLED)
        records.update_movie(ledger.db, s.id, f"FoilHole_{i:05d}.tiff", uploaded_at=t0 + 4 * i + 3,
                             verified_at=t0 + 4 * i + 3, sha256="ab" * 32)
    records.add_movie(ledger.db, s.id, "Cut.tiff", 10, t0, t0 + 2, records.REJECTED, "truncated (hint: copy it again)")
    for size in (movies // 2, movies - movies // 2):
        batch, names = records.new_batch(ledger.db, s.id, size, 1)
        for n, name in enumerate(names):
            i = int(name[9:14])
            records.update_movie(ledger.db, s.id, name, state=records.CORRECTED, corrected_at=t0 + 4 * i + 9 + n,
                                 drift=2.0 + (i % 5) * 0.7, ctf_resolution=4.0 + (i % 3))
        records.update_batch(ledger.db, batch, state=records.DONE)
    records.update_session(ledger.db, s.id, heartbeat_at=t0 + 4 * movies + 20,
                           problems=["Late.tiff is still being written after 600 s"])
    ledger.close()
    return s.id


def test_a_watched_session_page_shows_backlog_throughput_drift_and_ctf(browser: Any, cryocloud_home: Path,
                                                                      tmp_path: Path) -> None:
    people = facility(cryocloud_home, [tmp_path])
    mine = _watched_session(cryocloud_home, "/data/alice-session", "alice", 12)
    _watched_session(cryocloud_home, "/data/bob-session", "bob", 3)
    shots = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path)
    served = Served(tmp_path / "serve.log")
    try:
        assert [s["session"]["dir"] for s in api(f"{served.url}/api/v1/sessions", people.alice)] == \
            ["/data/alice-session"]
        assert len(api(f"{served.url}/api/v1/sessions", people.boss)) == 2  # a manager sees every session
        one = api(f"{served.url}/api/v1/sessions/{mine}", people.alice)
        assert (one["corrected"], one["rejected"], one["verified"]) == (12, 1, 12) and len(one["movies"]) == 13
        assert 100 < one["throughput_per_hour"] < 2000  # 12 movies over ~50 s of a session gone quiet
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(served.url + "/login")
        page.fill("input[name=token]", people.alice)
        page.click("button")
        page.wait_for_url(served.url + "/")
        page.click("text=Sessions")
        page.wait_for_url(served.url + "/sessions")
        rows = page.locator("tbody tr")
        assert rows.count() == 1 and "/data/alice-session" in rows.first.inner_text()
        assert "bob-session" not in page.content()
        rows.first.locator("a").click()
        page.wait_for_url(f"{served.url}/sessions/{mine}")
        main = page.inner_text("main")
        assert "Backlog over time" in main and "Throughput over time" in main
        assert "Drift per movie" in main and "CTF resolution per movie" in main
        assert page.locator("svg polyline.series").count() == 4  # backlog, throughput, drift, CTF
        assert "still being written" in page.locator(".error").first.inner_text()
        assert "truncated" in main and "FoilHole_00011.tiff" in main
        page.screenshot(path=str(shots / "dashboard-session.png"), full_page=True)
        page.goto(f"{served.url}/sessions/{mine + 1}")  # bob's: not found for alice
        assert "not found" in page.inner_text("main").lower()
    finally:
        served.stop()
