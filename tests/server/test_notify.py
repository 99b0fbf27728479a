"""Notifications: a job's end (with its cost) and budgets passing 80% and 100%, each told once, by webhook and by
email, to receivers on loopback; the server sends them by itself."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryocloud.app.facility import set_notify
from cryocloud.app.notify import notify_once
from cryocloud.errors import CryocloudError
from cryocloud.ledger import Ledger
from cryocloud.settings import load_settings
from server.receivers import Smtp, Webhook
from server.support import Served, facility, qsub, submitter_config
from spine.helpers import make_job

pytestmark = pytest.mark.integration


@pytest.fixture
def receivers() -> Iterator[tuple[Webhook, Smtp]]:
    hook, smtp = Webhook(), Smtp()
    yield hook, smtp
    hook.close()
    smtp.close()


def _ended_job(ledger: Ledger, user: str, project: str, at: float, usd: float) -> int:
    job = ledger.add_job(name="Class2D/job002/", client="relion", job_type="Class2D", project_dir=f"/d/{project}",
                         job_dir="Class2D/job002/", profile="local", backend="local", user=user, project=project,
                         state="succeeded", submitted_at=at - 10, spec="{}", started_at=at - 5, ended_at=at)
    ledger.add_attempt(job, backend="local", machine="ws", started_at=at - 5, ended_at=at, state="succeeded",
                       compute_usd=usd)
    return job


def test_job_end_and_budget_levels_are_told_once_by_webhook_and_email(
        cryocloud_home: Path, tmp_path: Path, receivers: tuple[Webhook, Smtp]) -> None:
    hook, smtp = receivers
    facility(cryocloud_home, [tmp_path], extra=f'smtp_host = "127.0.0.1"\nsmtp_port = {smtp.port}\n'
             '[budgets]\n"user:alice" = 1.0\n')
    settings = load_settings()
    set_notify(settings, "alice", hook.url, "alice@lab.example.org")
    ledger = Ledger(settings.ledger_path)
    try:
        t0 = time.time()
        _ended_job(ledger, "alice", "old", t0 - 100, 0.1)  # ended before the notifier first looked: not told
        assert notify_once(settings, ledger, now=t0) == []
        assert hook.got == [] and smtp.mails == []
        first = _ended_job(ledger, "alice", "betagal", t0 + 1, 0.75)  # 0.85 of 1.0 USD: past 80%
        assert notify_once(settings, ledger, now=t0 + 2) == []
        texts = [g["text"] for g in hook.wait(2)]
        assert any(f"job {first}" in t and "succeeded" in t and "0.7500 USD" in t for t in texts)
        assert any("budget user:alice" in t and "80%" in t for t in texts)
        assert len(smtp.mails) == 2 and all(m[0] == ["alice@lab.example.org"] for m in smtp.mails)
        assert notify_once(settings, ledger, now=t0 + 3) == []  # nothing twice
        assert len(hook.got) == 2
        _ended_job(ledger, "bob", "betagal", t0 + 4, 0.5)  # bob's job: alice hears nothing of it
        _ended_job(ledger, "alice", "betagal", t0 + 5, 0.3)  # past 100%
        notify_once(settings, ledger, now=t0 + 6)
        texts = [g["text"] for g in hook.wait(4)]
        assert sum("100%" in t for t in texts) == 1 and not any("bob" in t for t in texts) and len(texts) == 4
    finally:
        ledger.close()


def test_a_receiver_that_is_down_is_logged_not_fatal(cryocloud_home: Path, tmp_path: Path) -> None:
    facility(cryocloud_home, [tmp_path])
    settings = load_settings()
    set_notify(settings, "alice", "http://127.0.0.1:9/nothing-listens", None)
    ledger = Ledger(settings.ledger_path)
    try:
        notify_once(settings, ledger, now=time.time())
        _ended_job(ledger, "alice", "p", time.time() + 1, 0.1)
        failed = notify_once(settings, ledger, now=time.time() + 2)
        assert len(failed) == 1 and failed[0].startswith("webhook for job:")
    finally:
        ledger.close()


def test_targets_are_checked(cryocloud_home: Path, tmp_path: Path) -> None:
    facility(cryocloud_home, [tmp_path])
    settings = load_settings()
    with pytest.raises(CryocloudError, match="not an http"):
        set_notify(settings, "alice", "ftp://x", None)
    with pytest.raises(CryocloudError, match="one email"):
        set_notify(settings, "alice", None, "a@b, c@d")
    with pytest.raises(CryocloudError, match="no user"):
        set_notify(settings, "nobody", "https://x", None)


def test_the_server_tells_a_users_webhook_when_their_job_ends(
        cryocloud_home: Path, tmp_path: Path, receivers: tuple[Webhook, Smtp], monkeypatch: pytest.MonkeyPatch) -> None:
    hook, _ = receivers
    project = tmp_path / "p1"
    project.mkdir()
    people = facility(cryocloud_home, [tmp_path])
    set_notify(load_settings(), "alice", hook.url, None)
    served = Served(tmp_path / "serve.log")
    try:
        monkeypatch.setenv("CRYOCLOUD_CONFIG", str(submitter_config(tmp_path, served.url)))
        monkeypatch.setenv("CRYOCLOUD_TOKEN", people.alice)
        make_job(project, "External/job001/", ["echo done"])
        done = qsub(project, "External/job001/")
        assert done.returncode == 0, done.stderr
        got = hook.wait(1)
        assert len(got) == 1 and "External/job001/" in got[0]["text"] and "succeeded" in got[0]["text"]
    finally:
        served.stop()
