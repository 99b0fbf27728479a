"""The ledger: one SQLite file per user (under CRYOCLOUD_HOME) holding jobs, attempts and events.

Every command that starts or spends writes here first. Agents never write the ledger: they report through
files in the job's control folder, which the monitor (and every status call) records here.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryocloud.accounts import SCHEMA as ACCOUNTS_SCHEMA
from cryocloud.errors import CryocloudError
from cryocloud.jobs.states import ACTIVE, State
from cryocloud.session.records import SESSION_SCHEMA
from cryocloud.settings import private_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    client TEXT NOT NULL,
    job_type TEXT NOT NULL,
    project_dir TEXT NOT NULL,
    job_dir TEXT NOT NULL,
    profile TEXT NOT NULL,
    backend TEXT NOT NULL,
    user TEXT NOT NULL,
    project TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    machine TEXT NOT NULL DEFAULT '',
    submitted_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    exit_code INTEGER,
    predicted_usd REAL,
    control_dir TEXT NOT NULL DEFAULT '',
    spec TEXT NOT NULL,
    model_hours REAL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_dir ON jobs(project_dir, job_dir);
CREATE INDEX IF NOT EXISTS jobs_user ON jobs(user, id);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    backend TEXT NOT NULL,
    handle TEXT NOT NULL DEFAULT '{}',
    machine TEXT NOT NULL DEFAULT '',
    market TEXT NOT NULL DEFAULT 'on-demand',
    price_source TEXT NOT NULL DEFAULT '',
    usd_per_hour REAL NOT NULL DEFAULT 0,
    started_at REAL,
    ended_at REAL,
    state TEXT NOT NULL DEFAULT 'starting',
    compute_usd REAL NOT NULL DEFAULT 0,
    storage_usd REAL NOT NULL DEFAULT 0,
    transfer_usd REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS attempts_job ON attempts(job_id);
CREATE TABLE IF NOT EXISTS events (
    job_id INTEGER NOT NULL,
    at REAL NOT NULL,
    message TEXT NOT NULL
);
""" + SESSION_SCHEMA


@dataclass(frozen=True)
class JobRow:
    id: int
    name: str
    client: str
    job_type: str
    project_dir: str
    job_dir: str
    profile: str
    backend: str
    user: str
    project: str
    state: str
    message: str
    machine: str
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    exit_code: int | None
    predicted_usd: float | None
    control_dir: str
    spec: str
    model_hours: float | None = None  # the runtime model's hours for this job on its machine (set when it ended)

    @property
    def wall_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.ended_at or time.time()) - self.started_at

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


@dataclass(frozen=True)
class AttemptRow:
    id: int
    job_id: int
    backend: str
    handle: str
    machine: str
    market: str
    price_source: str
    usd_per_hour: float
    started_at: float | None
    ended_at: float | None
    state: str
    compute_usd: float
    storage_usd: float
    transfer_usd: float

    @property
    def handle_data(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.handle or "{}")
        return data

    @property
    def total_usd(self) -> float:
        return self.compute_usd + self.storage_usd + self.transfer_usd

    def cost_usd(self, now: float | None = None) -> float:
        """What the attempt has cost: as recorded once it ended; a running one accrues its rate until `now`."""
        compute = self.compute_usd
        if self.ended_at is None and self.started_at is not None and not compute:
            compute = compute_usd(self.usd_per_hour, self.started_at, time.time() if now is None else now)
        return compute + self.storage_usd + self.transfer_usd


def compute_usd(usd_per_hour: float, started_at: float, ended_at: float) -> float:
    """The one cost formula: the attempt's rate times its wall time (to the second), never negative."""
    return round(max(0.0, ended_at - started_at) / 3600 * usd_per_hour, 6)


LOCK_WAIT = 30.0  # s a write waits for another process's lock (the queue command waits less: app/submit.py)


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".backup")


def _age(path: Path) -> str:
    try:
        return time.strftime("at %Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))
    except OSError:
        return "earlier"


@dataclass(frozen=True)
class LedgerCheck:
    path: Path
    problems: list[str]  # empty: the file is sound
    jobs: int | None  # None when it cannot be read
    backup: Path | None  # the backup, if there is a sound one
    backup_jobs: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def _inspect(path: Path) -> tuple[list[str], int | None]:
    """Problems SQLite finds in the file (read-only), and its number of jobs."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=LOCK_WAIT)
    except sqlite3.Error as e:
        return [str(e)], None
    try:
        rows = [str(r[0]) for r in db.execute("PRAGMA integrity_check").fetchall()]
        problems = [] if rows == ["ok"] else rows[:20]
        jobs = int(db.execute("SELECT count(*) FROM jobs").fetchone()[0])
        return problems, jobs
    except sqlite3.Error as e:
        return [str(e)], None
    finally:
        db.close()


def check_ledger(path: Path) -> LedgerCheck:
    problems, jobs = _inspect(path) if path.exists() else (["there is no ledger yet"], None)
    saved = backup_path(path)
    backup_problems, backup_jobs = _inspect(saved) if saved.exists() else (["none"], None)
    return LedgerCheck(path, problems, jobs, saved if not backup_problems else None, backup_jobs)


def restore_ledger(path: Path) -> Path:
    """Put the last sound backup in place of a damaged ledger; the damaged file (and its WAL) is kept beside it,
    never deleted. Returns where it went."""
    found = check_ledger(path)
    if found.backup is None:
        raise CryocloudError(f"there is no sound backup of {path} to restore",
                             f"move the damaged file aside (mv {path} {path}.damaged): cryocloud starts a new ledger")
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):  # the WAL belongs to the damaged file: never replay it into the backup
        part = path.with_name(path.name + suffix)
        if part.exists():
            os.replace(part, aside.with_name(aside.name + suffix))
    tmp = path.with_name(path.name + ".restoring")
    shutil.copyfile(found.backup, tmp)
    tmp.chmod(0o600)
    os.replace(tmp, path)
    return aside


class Ledger:
    def __init__(self, path: Path, wait: float = LOCK_WAIT) -> None:
        """`wait`: seconds a write waits for another process's lock before sqlite3 says "database is locked"."""
        self.path = path
        try:
            private_dir(path.parent)
            new = not path.exists()
            self.db = sqlite3.connect(path, timeout=wait, isolation_level=None)
            if new:
                path.chmod(0o600)  # jobs' folders, command lines and costs: the user's own (WAL files follow it)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
            self.db.executescript(SCHEMA + ACCOUNTS_SCHEMA)
            if "model_hours" not in {r[1] for r in self.db.execute("PRAGMA table_info(jobs)")}:
                self.db.execute("ALTER TABLE jobs ADD COLUMN model_hours REAL")  # a ledger from before it
        except sqlite3.DatabaseError as e:
            if "not a database" not in str(e) and "malformed" not in str(e):
                raise CryocloudError(f"cannot open the ledger {path}: {e}",
                                     "set CRYOCLOUD_HOME to a writable local (not NFS) folder") from None
            saved = backup_path(path)
            raise CryocloudError(
                f"the ledger {path} is damaged ({e})",
                ("run `cryocloud ledger check --restore`: it moves the damaged file aside and puts back the backup the "
                 f"monitor took {_age(saved)}" if saved.exists() else
                 f"move it aside (mv {path} {path}.damaged) and cryocloud starts a new, empty one")
                + "; the jobs' folders and their RELION markers are not touched",
            ) from None
        except OSError as e:
            raise CryocloudError(
                f"cannot open the ledger {path}: {e}",
                "set CRYOCLOUD_HOME to a writable local (not NFS) folder",
            ) from None
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        self.db.close()

    def backup(self) -> Path | None:
        """A consistent copy beside the ledger (SQLite's online backup, private), replaced atomically; only
        from a sound ledger, so a damaged one never overwrites the last good copy. None when it was not sound."""
        if [r[0] for r in self.db.execute("PRAGMA quick_check").fetchall()] != ["ok"]:
            return None
        dest = backup_path(self.path)
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.unlink(missing_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600))
        target = sqlite3.connect(tmp)
        try:
            self.db.backup(target)
        finally:
            target.close()
        os.replace(tmp, dest)
        return dest

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An immediate (write-locked) transaction: what is read inside is still true when it commits."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # jobs
    def add_job(self, **cols: Any) -> int:
        keys = ", ".join(cols)
        marks = ", ".join("?" for _ in cols)
        cur = self.db.execute(f"INSERT INTO jobs ({keys}) VALUES ({marks})", tuple(cols.values()))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def update_job(self, job_id: int, **cols: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in cols)
        self.db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*cols.values(), job_id))

    def finished_like(self, job_type: str, backend: str, machine: str, excluding: int = 0,
                      limit: int = 10) -> list[JobRow]:
        """The newest succeeded jobs of this type on this machine with model hours, other than job `excluding`."""
        rows = self.db.execute(
            "SELECT * FROM jobs WHERE job_type = ? AND backend = ? AND machine = ? AND state = ? "
            "AND model_hours > 0 AND started_at IS NOT NULL AND ended_at > started_at AND id != ? "
            "ORDER BY ended_at DESC LIMIT ?", (job_type, backend, machine, State.SUCCEEDED, excluding, limit)).fetchall()
        return [JobRow(**dict(r)) for r in rows]

    def job(self, job_id: int) -> JobRow | None:
        row = self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return JobRow(**dict(row)) if row else None

    def jobs(self, *, states: tuple[str, ...] | None = None, limit: int | None = None,
             user: str | None = None, project: str | None = None) -> list[JobRow]:
        where, args = [], []
        if states:
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            args = list(states)
        for column, value in (("user", user), ("project", project)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [JobRow(**dict(r)) for r in self.db.execute(sql, args)]

    def jobs_in_dir(self, project_dir: str, job_dir: str) -> list[JobRow]:
        rows = self.db.execute(
            "SELECT * FROM jobs WHERE project_dir = ? AND job_dir = ? ORDER BY id DESC", (project_dir, job_dir)
        )
        return [JobRow(**dict(r)) for r in rows]

    # attempts
    def add_attempt(self, job_id: int, **cols: Any) -> int:
        cols["job_id"] = job_id
        keys = ", ".join(cols)
        cur = self.db.execute(
            f"INSERT INTO attempts ({keys}) VALUES ({', '.join('?' for _ in cols)})", tuple(cols.values())
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def update_attempt(self, attempt_id: int, **cols: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in cols)
        self.db.execute(f"UPDATE attempts SET {sets} WHERE id = ?", (*cols.values(), attempt_id))

    def attempts(self, job_id: int) -> list[AttemptRow]:
        rows = self.db.execute("SELECT * FROM attempts WHERE job_id = ? ORDER BY id", (job_id,))
        return [AttemptRow(**dict(r)) for r in rows]

    def attempts_of(self, job_ids: list[int]) -> dict[int, list[AttemptRow]]:
        """Every attempt of these jobs in one query (a list page costs one round trip, not one per job)."""
        out: dict[int, list[AttemptRow]] = {i: [] for i in job_ids}
        for start in range(0, len(job_ids), 500):  # SQLite's limit on bound parameters
            part = job_ids[start:start + 500]
            rows = self.db.execute(f"SELECT * FROM attempts WHERE job_id IN ({', '.join('?' for _ in part)}) "
                                   "ORDER BY id", part)
            for r in rows:
                out[r["job_id"]].append(AttemptRow(**dict(r)))
        return out

    def last_attempt(self, job_id: int) -> AttemptRow | None:
        rows = self.attempts(job_id)
        return rows[-1] if rows else None

    # events
    def event(self, job_id: int, message: str, at: float | None = None) -> None:
        self.db.execute("INSERT INTO events VALUES (?, ?, ?)", (job_id, at or time.time(), message))

    def events(self, job_id: int) -> list[tuple[float, str]]:
        return [(r[0], r[1]) for r in self.db.execute(
            "SELECT at, message FROM events WHERE job_id = ? ORDER BY at", (job_id,))]
