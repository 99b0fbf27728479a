"""What every request handler shares: the server's state (settings, limiter, sessions, a ledger connection per
thread) and who is calling the API."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from fastapi import Request

from cryocloud import accounts
from cryocloud.accounts import User
from cryocloud.ledger import Ledger
from cryocloud.server.auth import AuthError, Limiter, Sessions, refused
from cryocloud.settings import Settings


@dataclass
class State:
    settings: Settings
    limiter: Limiter = field(default_factory=Limiter)
    sessions: Sessions = field(default_factory=Sessions)
    local: threading.local = field(default_factory=threading.local)

    def ledger(self) -> Ledger:
        """This thread's connection to the ledger (SQLite connections stay in their thread)."""
        ledger: Ledger | None = getattr(self.local, "ledger", None)
        if ledger is None:
            ledger = Ledger(self.settings.ledger_path)
            self.local.ledger = ledger
        return ledger

    def user_for_token(self, request: Request, token: str) -> User:
        client = request.client.host if request.client else "?"
        self.limiter.check(client)
        user = accounts.authenticate(self.ledger().db, token) if token else None
        if user is None:
            self.limiter.failed(client)
            refused(client, request.method, request.url.path, "unknown or revoked token")
            raise AuthError(401, "that token is not valid (unknown or revoked)",
                            "ask for a new one: cryocloud tokens create NAME")
        return user


def state_of(request: Request) -> State:
    got: State = request.app.state.cryocloud
    return got


async def bearer_user(request: Request) -> User:
    """The API caller, from `Authorization: Bearer TOKEN` (only there: never a query parameter). On the event loop:
    one indexed read, cheaper than a hop to a worker thread."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        client = request.client.host if request.client else "?"
        refused(client, request.method, request.url.path, "no bearer token")
        raise AuthError(401, "this call needs a token", "send the header `Authorization: Bearer TOKEN`; "
                        "a token comes from `cryocloud tokens create NAME`")
    return state_of(request).user_for_token(request, token.strip())
