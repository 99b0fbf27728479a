"""Who is calling: a bearer token (API) or a session cookie (dashboard), failed attempts rate limited, CSRF
tokens for the dashboard's forms. A token is never logged, put in a URL or shown on a page."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from cryocloud.accounts import User

log = logging.getLogger("cryocloud.server")

FAILURES_ALLOWED = 5  # failed logins per client address ...
FAILURE_WINDOW = 60.0  # ... within this many seconds; then 429 until the oldest one leaves the window
SESSION_SECONDS = 12 * 3600.0
COOKIE = "cryocloud_session"


class AuthError(Exception):
    """401 (no or wrong credentials) or 429 (too many failures), with a hint."""

    def __init__(self, status: int, message: str, hint: str, retry_after: int = 0) -> None:
        super().__init__(message)
        self.status, self.message, self.hint, self.retry_after = status, message, hint, retry_after


@dataclass
class Limiter:
    """Failed logins per client address in a sliding window (in memory: a restart forgets them)."""

    allowed: int = FAILURES_ALLOWED
    window: float = FAILURE_WINDOW
    failures: dict[str, deque[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self.lock:
            seen = self.failures.get(client)
            while seen and now - seen[0] > self.window:
                seen.popleft()
            if seen and len(seen) >= self.allowed:
                wait = int(self.window - (now - seen[0])) + 1
                raise AuthError(429, "too many failed logins from this address",
                                f"wait {wait} s; check that the token is the one `cryocloud tokens create` printed",
                                retry_after=wait)

    def failed(self, client: str, now: float | None = None) -> None:
        with self.lock:
            self.failures.setdefault(client, deque()).append(time.monotonic() if now is None else now)


@dataclass
class Session:
    user: User
    csrf: str
    expires: float


@dataclass
class Sessions:
    """Dashboard sessions in memory: an opaque id in an HttpOnly, SameSite=Strict cookie, and a CSRF token that
    every form which changes something must carry."""

    live: dict[str, Session] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, user: User) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(user, secrets.token_urlsafe(24), time.time() + SESSION_SECONDS)
        with self.lock:
            self.live[sid] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self.lock:
            session = self.live.get(sid)
            if session is not None and session.expires < time.time():
                del self.live[sid]
                return None
            return session

    def end(self, sid: str | None) -> None:
        with self.lock:
            self.live.pop(sid or "", None)


def refused(client: str, method: str, path: str, why: str) -> None:
    """A refused attempt in the server's log: who, what, why; never the token."""
    log.warning("refused %s %s from %s: %s", method, path, client, why)
