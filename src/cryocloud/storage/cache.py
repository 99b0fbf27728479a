"""Local caches under $CRYOCLOUD_HOME/cache (never on NFS: SQLite's locking needs a local disk).

- `StatCache`: (absolute path, size, mtime_ns, inode) -> SHA-256, so unchanged files cost a stat, not a hash;
  and SHA-256 -> XXH3-128 for large files' bytes (manifest.py), so an unchanged file's manifest entry has both.
- `PackIndex`: per store, which small files (by SHA-256) already sit in which pack, learned from the store's
  `cas/i/` objects; a later push reuses them instead of uploading the bytes again. It also holds the objects a
  pull or `storage verify` found damaged in that store: a push never counts on them (it uploads a damaged blob
  again, and packs the files of a damaged pack anew).
Both are only hints: a stale entry costs a hash or an upload, never a wrong manifest (see push.py).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable
from pathlib import Path


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


class StatCache:
    def __init__(self, path: Path) -> None:
        self.db = _connect(path)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS stat (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER,"
            " ino INTEGER, sha256 TEXT)"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS xxh (sha256 TEXT PRIMARY KEY, xxh128 TEXT)")

    def load(self, root: Path) -> dict[str, tuple[int, int, int, str]]:
        """Every cached entry under `root`: path -> (size, mtime_ns, ino, sha256)."""
        lo = str(root).rstrip("/") + "/"
        rows = self.db.execute(
            "SELECT path, size, mtime_ns, ino, sha256 FROM stat WHERE path >= ? AND path < ?", (lo, lo[:-1] + "0")
        )
        return {p: (s, m, i, h) for p, s, m, i, h in rows}

    def store(self, rows: Iterable[tuple[str, int, int, int, str]]) -> None:
        batch = list(rows)
        if batch:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany("INSERT OR REPLACE INTO stat VALUES (?, ?, ?, ?, ?)", batch)

    def xxh_of(self, shas: Iterable[str]) -> dict[str, str]:
        """SHA-256 -> XXH3-128 of the same bytes, for those of `shas` hashed both ways before."""
        wanted = list(set(shas))
        out: dict[str, str] = {}
        for i in range(0, len(wanted), 500):
            part = wanted[i : i + 500]
            marks = ",".join("?" * len(part))
            out.update(self.db.execute(f"SELECT sha256, xxh128 FROM xxh WHERE sha256 IN ({marks})", part))
        return out

    def store_xxh(self, pairs: Iterable[tuple[str, str]]) -> None:
        batch = list(pairs)
        if batch:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany("INSERT OR REPLACE INTO xxh VALUES (?, ?)", batch)

    def close(self) -> None:
        self.db.close()


class PackIndex:
    def __init__(self, cache_dir: Path, store_url: str) -> None:
        name = hashlib.sha256(store_url.encode()).hexdigest()[:16]
        self.db = _connect(cache_dir / "stores" / f"{name}.sqlite")
        self.db.execute("CREATE TABLE IF NOT EXISTS packs (pack TEXT PRIMARY KEY)")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS entries (sha256 TEXT PRIMARY KEY, pack TEXT, off INTEGER, size INTEGER)"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS damaged (key TEXT PRIMARY KEY)")

    def damaged(self) -> set[str]:
        return {k for (k,) in self.db.execute("SELECT key FROM damaged")}

    def mark_damaged(self, keys: Iterable[str]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR IGNORE INTO damaged VALUES (?)", ((k,) for k in keys))

    def clear_damaged(self, keys: Iterable[str]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("DELETE FROM damaged WHERE key = ?", ((k,) for k in keys))

    def known_packs(self) -> set[str]:
        return {p for (p,) in self.db.execute("SELECT pack FROM packs")}

    def add(self, pack: str, entries: Iterable[tuple[str, int, int]]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("INSERT OR IGNORE INTO packs VALUES (?)", (pack,))
            self.db.executemany(
                "INSERT OR IGNORE INTO entries VALUES (?, ?, ?, ?)", ((s, pack, o, n) for s, o, n in entries)
            )

    def forget(self, packs: Iterable[str]) -> None:
        gone = [(p,) for p in packs]
        if gone:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany("DELETE FROM packs WHERE pack = ?", gone)
                self.db.executemany("DELETE FROM entries WHERE pack = ?", gone)

    def lookup(self, shas: Iterable[str]) -> dict[str, tuple[str, int]]:
        """sha256 -> (pack, offset) for those of `shas` known to be packed."""
        wanted = list(set(shas))
        out: dict[str, tuple[str, int]] = {}
        for i in range(0, len(wanted), 500):
            part = wanted[i : i + 500]
            marks = ",".join("?" * len(part))
            for sha, pack, off in self.db.execute(
                f"SELECT sha256, pack, off FROM entries WHERE sha256 IN ({marks})", part
            ):
                out[sha] = (pack, off)
        return out

    def close(self) -> None:
        self.db.close()


def cache_dir() -> Path:
    from cryocloud.settings import default_home

    return default_home() / "cache"
