"""Notifications of facility mode: each API user is told, by webhook (a chat channel's incoming hook) and/or email
(the configured SMTP server), when one of their jobs ends (with its cost) and when a budget that concerns them
passes 80% and 100%. The server runs `Notifier` in a thread; each notice is sent once (the ledger remembers it).
Jobs that ended before the notifier first ran are not announced."""

from __future__ import annotations

import json
import smtplib
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage

from cryocloud import accounts
from cryocloud.ledger import Ledger
from cryocloud.settings import Settings

EVERY = 2.0  # s between looks at the ledger
SEND_WAIT = 10.0  # s a webhook or SMTP server may take
WATERMARK = "watermark"  # notices key: jobs that ended after this time are announced
LEVELS = ((1.0, "100%"), (0.8, "80%"))


@dataclass(frozen=True)
class Notice:
    key: str  # once per key, e.g. "job:17:ended", "budget:project:x:80%"
    users: tuple[str, ...]
    subject: str
    text: str


def start(ledger: Ledger, now: float) -> float:
    """The time after which ended jobs are announced: set to `now` the first time notifications run."""
    since = accounts.noticed(ledger.db, WATERMARK)
    if since is None:
        accounts.notice(ledger.db, WATERMARK, now)
        since = now
    return since


def pending(settings: Settings, ledger: Ledger, now: float | None = None) -> list[Notice]:
    """What is to be told and has not been: jobs ended since the watermark, budgets past 80% or 100%."""
    from cryocloud.app.costs import cost_rows
    from cryocloud.planner.budget import spent_usd

    now = time.time() if now is None else now
    db = ledger.db
    since = start(ledger, now)
    out = []
    rows = db.execute("SELECT id FROM jobs WHERE ended_at > ? ORDER BY ended_at", (since,)).fetchall()
    costs = {r["id"]: r for r in cost_rows(ledger, now=now)} if rows else {}
    for (job_id,) in rows:
        r = costs.get(job_id)
        if r is None or accounts.noticed(db, f"job:{job_id}:ended") is not None:
            continue
        text = (f"cryocloud job {job_id} ({r['job']}, {r['type']}) {r['state']} on {r['backend']} "
                f"{r['machine']}: {r['cost_usd']:.4f} USD")
        out.append(Notice(f"job:{job_id}:ended", (str(r["user"]),), f"job {job_id} {r['state']}", text))
    managers = tuple(u.name for u in accounts.users(db) if u.manager)
    for key, limit in sorted(settings.budgets.items()):
        spent = spent_usd(ledger, key, now)
        for fraction, label in LEVELS:
            if limit and spent >= fraction * limit:
                if accounts.noticed(db, f"budget:{key}:{label}") is None:
                    kind, _, name = key.partition(":")
                    who = (name,) if kind == "user" else tuple(sorted(
                        {str(u[0]) for u in db.execute("SELECT DISTINCT user FROM jobs WHERE project = ?", (name,))}
                        | set(managers)))
                    out.append(Notice(f"budget:{key}:{label}", who, f"budget {key} at {label}",
                                      f"cryocloud budget {key}: {spent:.2f} of {limit:.2f} USD spent ({label})"))
                break  # the highest level passed; the lower one needs no notice of its own any more
    return out


def send(settings: Settings, notice: Notice, webhook: str, email: str) -> list[str]:
    """Send one notice to one user's targets; returns what failed (for the server's log), never raises."""
    failed = []
    if webhook:
        body = json.dumps({"text": notice.text}).encode()
        request = urllib.request.Request(webhook, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=SEND_WAIT):
                pass
        except OSError as e:
            failed.append(f"webhook for {notice.key}: {e}")
    if email and settings.server.smtp_host:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = settings.server.smtp_from, email, notice.subject
        message.set_content(notice.text + "\n")
        try:
            with smtplib.SMTP(settings.server.smtp_host, settings.server.smtp_port, timeout=SEND_WAIT) as smtp:
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as e:
            failed.append(f"email for {notice.key}: {e}")
    return failed


def notify_once(settings: Settings, ledger: Ledger, now: float | None = None) -> list[str]:
    """One look: send what is pending, remember it as sent (a failed send is not retried). Returns failures."""
    failed: list[str] = []
    targets = accounts.targets(ledger.db)
    for n in pending(settings, ledger, now):
        for user in n.users:
            webhook, email = targets.get(user, ("", ""))
            failed += send(settings, n, webhook, email)
        accounts.notice(ledger.db, n.key, time.time())
    return failed


class Notifier:
    """`notify_once` every EVERY seconds in a thread of the server, until stopped."""

    def __init__(self, settings: Settings, log: Callable[[str], None]) -> None:
        self.settings, self.log = settings, log
        ledger = Ledger(settings.ledger_path)
        try:
            start(ledger, time.time())  # now, not when the thread first looks: a job that ends at once is told
        finally:
            ledger.close()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        ledger = Ledger(self.settings.ledger_path)
        try:
            while not self.stop_event.wait(EVERY):
                try:
                    for line in notify_once(self.settings, ledger):
                        self.log(line)
                except (sqlite3.Error, OSError) as e:
                    self.log(f"notifications: {e}")
        finally:
            ledger.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=30)
