"""API users and their tokens, in the ledger (facility mode: `cryocloud serve`; the tables are made with the ledger's).

Users are identities for scope, budgets and accounting, not Unix users: every job runs as the server's account.
A token is shown once when it is made; the ledger keeps only its SHA-256 (a token is 256 random bits, so a
plain hash is as strong as a slow one and costs microseconds per request).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass

from cryocloud.errors import CryocloudError

ROLES = ("user", "manager")
PREFIX = "cct_"  # recognisable in a leaked paste, so secret scanners can find it
NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    created_at REAL NOT NULL,
    slurm_account TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL REFERENCES users(name),
    sha256 TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS notify_targets (
    user TEXT PRIMARY KEY REFERENCES users(name),
    webhook TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS notices (
    key TEXT PRIMARY KEY,
    at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    slurm_account: str = ""  # their jobs on a Slurm profile are charged to this --account (fair share)

    @property
    def manager(self) -> bool:
        return self.role == "manager"


@dataclass(frozen=True)
class TokenRow:
    id: int
    user: str
    created_at: float
    revoked_at: float | None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_user(db: sqlite3.Connection, name: str, role: str, slurm_account: str = "") -> User:
    if not NAME.match(name):
        raise CryocloudError(f"{name!r} is not a valid user name",
                             "use lower-case letters, digits, '.', '_' or '-', starting with a letter (at most 32)")
    if role not in ROLES:
        raise CryocloudError(f"unknown role {role!r}", "choose one of: " + ", ".join(ROLES))
    if slurm_account and not re.match(r"^[A-Za-z0-9_.-]{1,64}$", slurm_account):
        raise CryocloudError(f"{slurm_account!r} is not a Slurm account name", "`sacctmgr show account` lists them")
    try:
        db.execute("INSERT INTO users (name, role, created_at, slurm_account) VALUES (?, ?, ?, ?)",
                   (name, role, time.time(), slurm_account))
    except sqlite3.IntegrityError:
        raise CryocloudError(f"user {name!r} exists already", "`cryocloud users list` shows the users") from None
    return User(name, role, slurm_account)


def users(db: sqlite3.Connection) -> list[User]:
    return [User(*r) for r in db.execute("SELECT name, role, slurm_account FROM users ORDER BY name")]


def create_token(db: sqlite3.Connection, name: str) -> tuple[int, str]:
    """A new token for user `name`: (its id, the token). The token itself is never stored."""
    if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is None:
        raise CryocloudError(f"no user {name!r}", f"add the user first: cryocloud users add {name}")
    token = PREFIX + secrets.token_urlsafe(32)
    cur = db.execute("INSERT INTO tokens (user, sha256, created_at) VALUES (?, ?, ?)", (name, digest(token), time.time()))
    assert cur.lastrowid is not None
    return cur.lastrowid, token


def tokens(db: sqlite3.Connection, name: str | None = None) -> list[TokenRow]:
    sql = "SELECT id, user, created_at, revoked_at FROM tokens" + (" WHERE user = ?" if name else "")
    return [TokenRow(*r) for r in db.execute(sql + " ORDER BY id", (name,) if name else ())]


def revoke(db: sqlite3.Connection, token_id: int) -> TokenRow:
    db.execute("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (time.time(), token_id))
    row = db.execute("SELECT id, user, created_at, revoked_at FROM tokens WHERE id = ?", (token_id,)).fetchone()
    if row is None:
        raise CryocloudError(f"no token {token_id}", "`cryocloud tokens list` shows the tokens and their ids")
    return TokenRow(*row)


def authenticate(db: sqlite3.Connection, token: str) -> User | None:
    """The user a live token belongs to, or None (unknown, revoked, or the user is gone)."""
    row = db.execute(
        "SELECT u.name, u.role, u.slurm_account FROM tokens t JOIN users u ON u.name = t.user "
        "WHERE t.sha256 = ? AND t.revoked_at IS NULL", (digest(token),)).fetchone()
    return User(*row) if row else None


def set_targets(db: sqlite3.Connection, name: str, webhook: str | None, email: str | None) -> tuple[str, str]:
    """Where user `name` is told of their jobs' ends and budgets: a webhook URL and/or an email address
    (None: unchanged; "": none). Returns (webhook, email) as they are now."""
    if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is None:
        raise CryocloudError(f"no user {name!r}", f"add the user first: cryocloud users add {name}")
    if webhook and not webhook.startswith(("https://", "http://")):
        raise CryocloudError(f"webhook {webhook!r} is not an http(s) URL", "give the chat channel's incoming hook URL")
    if email and ("@" not in email or any(c in email for c in " \r\n,;")):
        raise CryocloudError(f"{email!r} is not one email address", "e.g. alice@lab.example.org")
    db.execute("INSERT OR IGNORE INTO notify_targets (user) VALUES (?)", (name,))
    for column, value in (("webhook", webhook), ("email", email)):
        if value is not None:
            db.execute(f"UPDATE notify_targets SET {column} = ? WHERE user = ?", (value, name))
    row = db.execute("SELECT webhook, email FROM notify_targets WHERE user = ?", (name,)).fetchone()
    return str(row[0]), str(row[1])


def targets(db: sqlite3.Connection) -> dict[str, tuple[str, str]]:
    return {r[0]: (r[1], r[2]) for r in db.execute("SELECT user, webhook, email FROM notify_targets")}


def noticed(db: sqlite3.Connection, key: str) -> float | None:
    row = db.execute("SELECT at FROM notices WHERE key = ?", (key,)).fetchone()
    return float(row[0]) if row else None


def notice(db: sqlite3.Connection, key: str, at: float) -> None:
    db.execute("INSERT OR REPLACE INTO notices VALUES (?, ?)", (key, at))
