"""The ledger's on-the-fly tables (created with the ledger's own, `IF NOT EXISTS`, so an older ledger gains them
when it is next opened): a watched session, each movie (when it closed, its upload and verification, the one batch
it joined, what RELION measured) and each batch. The watcher counts every upload and every batch a movie joins,
so a duplicate would show here even where RELION's --only_do_unfinished would hide it.

Functions take the ledger's sqlite3 connection; this module imports nothing of the ledger (the ledger imports it).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

SESSION_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_dir TEXT NOT NULL,
    project_dir TEXT NOT NULL,
    profile TEXT NOT NULL DEFAULT '',
    user TEXT NOT NULL DEFAULT '',
    store_url TEXT NOT NULL DEFAULT '',
    relion_jobs TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    watcher_pid INTEGER,
    heartbeat_at REAL,
    problems TEXT NOT NULL DEFAULT '[]',
    UNIQUE (session_dir, project_dir)
);
CREATE TABLE IF NOT EXISTS session_movies (
    session_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    closed_at REAL NOT NULL,
    settled_at REAL NOT NULL,
    state TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    sha256 TEXT NOT NULL DEFAULT '',
    object_key TEXT NOT NULL DEFAULT '',
    uploads INTEGER NOT NULL DEFAULT 0,
    uploaded_at REAL,
    verified_at REAL,
    batch_id INTEGER,
    batches INTEGER NOT NULL DEFAULT 0,
    corrected_at REAL,
    drift REAL,
    ctf_resolution REAL,
    PRIMARY KEY (session_id, name)
);
CREATE INDEX IF NOT EXISTS session_movies_batch ON session_movies(session_id, batch_id);
CREATE TABLE IF NOT EXISTS session_batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL,
    movies INTEGER NOT NULL,
    split INTEGER NOT NULL DEFAULT 1,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    job_ids TEXT NOT NULL DEFAULT '[]',
    message TEXT NOT NULL DEFAULT '',
    pipeliner_pid INTEGER,
    pipeliner_started REAL
);
"""

# a movie's states: settled (complete, checked), rejected (bad input: message says why), then corrected once RELION
# wrote its micrograph, or failed when its batch did not produce one
SETTLED, REJECTED, CORRECTED, FAILED = "settled", "rejected", "corrected", "failed"
# a batch's: running (handed to RELION), done, failed
RUNNING, DONE = "running", "done"


@dataclass(frozen=True)
class Session:
    id: int
    session_dir: str
    project_dir: str
    profile: str
    user: str
    store_url: str
    relion_jobs: dict[str, str]
    created_at: float
    watcher_pid: int | None
    heartbeat_at: float | None
    problems: list[str]


def _session(row: sqlite3.Row) -> Session:
    d = dict(row)
    d["relion_jobs"] = json.loads(d["relion_jobs"])
    d["problems"] = json.loads(d["problems"])
    return Session(**d)


def open_session(db: sqlite3.Connection, session_dir: str, project_dir: str, profile: str, store_url: str,
                 user: str = "") -> Session:
    db.execute("INSERT OR IGNORE INTO sessions (session_dir, project_dir, user, created_at) VALUES (?, ?, ?, ?)",
               (session_dir, project_dir, user, time.time()))
    db.execute("UPDATE sessions SET profile = ?, store_url = CASE WHEN ? != '' THEN ? ELSE store_url END "
               "WHERE session_dir = ? AND project_dir = ?", (profile, store_url, store_url, session_dir, project_dir))
    found = find_session(db, session_dir, project_dir)
    assert found is not None
    return found


def find_session(db: sqlite3.Connection, session_dir: str, project_dir: str | None = None) -> Session | None:
    if project_dir is None:
        row = db.execute("SELECT * FROM sessions WHERE session_dir = ? ORDER BY id DESC", (session_dir,)).fetchone()
    else:
        row = db.execute("SELECT * FROM sessions WHERE session_dir = ? AND project_dir = ?",
                         (session_dir, project_dir)).fetchone()
    return _session(row) if row else None


def session_by_id(db: sqlite3.Connection, session_id: int) -> Session | None:
    row = db.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
    return _session(row) if row else None


def all_sessions(db: sqlite3.Connection) -> list[Session]:
    return [_session(r) for r in db.execute("SELECT * FROM sessions ORDER BY id DESC")]


def update_session(db: sqlite3.Connection, session_id: int, **cols: Any) -> None:
    for k in ("relion_jobs", "problems"):
        if k in cols:
            cols[k] = json.dumps(cols[k])
    sets = ", ".join(f"{k} = ?" for k in cols)
    db.execute(f"UPDATE sessions SET {sets} WHERE id = ?", (*cols.values(), session_id))


def movie_names(db: sqlite3.Connection, session_id: int) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM session_movies WHERE session_id = ?", (session_id,))}


def add_movie(db: sqlite3.Connection, session_id: int, name: str, size: int, closed_at: float, settled_at: float,
              state: str, message: str = "") -> None:
    db.execute("INSERT OR IGNORE INTO session_movies (session_id, name, size, closed_at, settled_at, state, message) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)", (session_id, name, size, closed_at, settled_at, state, message))


def update_movie(db: sqlite3.Connection, session_id: int, name: str, **cols: Any) -> None:
    sets = ", ".join(f"{k} = ?" for k in cols)
    db.execute(f"UPDATE session_movies SET {sets} WHERE session_id = ? AND name = ?",
               (*cols.values(), session_id, name))


def movies(db: sqlite3.Connection, session_id: int, where: str = "", args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    sql = "SELECT * FROM session_movies WHERE session_id = ?" + (f" AND {where}" if where else "")
    return [dict(r) for r in db.execute(sql + " ORDER BY closed_at, name", (session_id, *args))]


def new_batch(db: sqlite3.Connection, session_id: int, size: int, split: int) -> tuple[int, list[str]]:
    """The `size` oldest settled movies in no batch join a new one, in one transaction; (batch id, their names)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        names = [r[0] for r in db.execute(
            "SELECT name FROM session_movies WHERE session_id = ? AND state = ? AND batch_id IS NULL "
            "ORDER BY closed_at, name LIMIT ?", (session_id, SETTLED, size))]
        cur = db.execute("INSERT INTO session_batches (session_id, movies, split, state, created_at) "
                         "VALUES (?, ?, ?, ?, ?)", (session_id, len(names), split, RUNNING, time.time()))
        batch = int(cur.lastrowid or 0)
        db.executemany("UPDATE session_movies SET batch_id = ?, batches = batches + 1 WHERE session_id = ? AND name = ?",
                       [(batch, session_id, n) for n in names])
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return batch, names


def batches(db: sqlite3.Connection, session_id: int) -> list[dict[str, Any]]:
    out = [dict(r) for r in db.execute("SELECT * FROM session_batches WHERE session_id = ? ORDER BY id", (session_id,))]
    for b in out:
        b["job_ids"] = json.loads(b["job_ids"])
    return out


def update_batch(db: sqlite3.Connection, batch_id: int, **cols: Any) -> None:
    if "job_ids" in cols:
        cols["job_ids"] = json.dumps(cols["job_ids"])
    sets = ", ".join(f"{k} = ?" for k in cols)
    db.execute(f"UPDATE session_batches SET {sets} WHERE id = ?", (*cols.values(), batch_id))


def batch_movies(db: sqlite3.Connection, session_id: int, batch_id: int) -> list[str]:
    return [r[0] for r in db.execute("SELECT name FROM session_movies WHERE session_id = ? AND batch_id = ? "
                                     "ORDER BY closed_at, name", (session_id, batch_id))]
