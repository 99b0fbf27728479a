"""A watched session's numbers as data, for every face (the live terminal view, `watch --json`, `watch --status`,
the dashboard's session page): counts, throughput, backlog, latency from file closed to corrected micrograph, cost so
far, and the same over time."""

from __future__ import annotations

import time
from typing import Any

from cryocloud.ledger import Ledger
from cryocloud.session import records
from cryocloud.session.records import CORRECTED, FAILED, REJECTED, SETTLED, Session

WINDOW = 600.0  # s: throughput is measured over the last ten minutes (or the session so far, if younger)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def cost_usd(ledger: Ledger, session: Session, now: float) -> float:
    ids = {i for b in records.batches(ledger.db, session.id) for i in b["job_ids"]}
    return round(sum(a.cost_usd(now) for i in ids for a in ledger.attempts(i)), 6)


def numbers(ledger: Ledger, session: Session, now: float | None = None, growing: int = 0,
            problems: list[str] | None = None, recent: int = 12) -> dict[str, Any]:
    now = time.time() if now is None else now
    rows = records.movies(ledger.db, session.id)
    batches = records.batches(ledger.db, session.id)
    by_state: dict[str, int] = {}
    for r in rows:
        by_state[r["state"]] = by_state.get(r["state"], 0) + 1
    corrected = [r for r in rows if r["state"] == CORRECTED and r["corrected_at"]]
    latencies = [r["corrected_at"] - r["closed_at"] for r in corrected]
    start = min((r["closed_at"] for r in rows), default=now)
    # the window ends now, or at the last movie corrected when the session has gone quiet (a page read later)
    end = min(now, max((r["corrected_at"] for r in corrected), default=now))
    span = min(WINDOW, max(end - start, 1.0))
    in_window = sum(1 for r in corrected if r["corrected_at"] >= end - span)
    running = next((b for b in reversed(batches) if b["state"] == records.RUNNING), None)
    waiting = sum(1 for r in rows if r["state"] == SETTLED and r["batch_id"] is None)
    return {
        "session": {"id": session.id, "dir": session.session_dir, "project": session.project_dir,
                    "profile": session.profile, "user": session.user, "store": session.store_url, "relion_jobs": session.relion_jobs},
        "at": now,
        "seen": len(rows) + growing,
        "growing": growing,
        "settled": len(rows) - by_state.get(REJECTED, 0),
        "rejected": by_state.get(REJECTED, 0),
        "uploaded": sum(1 for r in rows if r["uploaded_at"]),
        "verified": sum(1 for r in rows if r["verified_at"]),
        "corrected": len(corrected),
        "failed": by_state.get(FAILED, 0),
        "waiting": waiting,
        "backlog": by_state.get(SETTLED, 0),  # complete movies not corrected yet (waiting or in the running batch)
        "batches": len(batches),
        "running_batch": {"id": running["id"], "movies": running["movies"], "split": running["split"]}
        if running else None,
        "throughput_per_hour": round(in_window / span * 3600, 1) if corrected else 0.0,
        "latency_p50_s": percentile(latencies, 0.5),
        "latency_p95_s": percentile(latencies, 0.95),
        "cost_usd": cost_usd(ledger, session, now),
        "problems": list(problems if problems is not None else session.problems),
        "recent": [{"name": r["name"], "state": r["state"], "drift": r["drift"], "ctf_resolution": r["ctf_resolution"],
                    "archived": bool(r["verified_at"]), "message": r["message"]} for r in rows[-recent:]],
        "rejected_movies": [{"name": r["name"], "message": r["message"]} for r in rows if r["state"] == REJECTED],
    }


def timeline(ledger: Ledger, session: Session, points: int = 60) -> list[dict[str, float]]:
    """Backlog and throughput over time: at `points` instants from the first movie closed to the last event, the
    movies complete but not corrected (backlog) and those corrected in the step before (as per hour)."""
    rows = [r for r in records.movies(ledger.db, session.id) if r["state"] != REJECTED]
    if not rows:
        return []
    start = min(r["closed_at"] for r in rows)
    end = max([r["settled_at"] for r in rows] + [r["corrected_at"] or 0 for r in rows])
    step = max((end - start) / max(points - 1, 1), 1e-6)
    window = max(step, (end - start) / 10)  # throughput over a tenth of the session, so batches do not spike it
    out = []
    for i in range(points):
        t = start + i * step
        done = [r["corrected_at"] for r in rows if r["corrected_at"] and r["corrected_at"] <= t]
        out.append({"t": round(t - start, 3),
                    "backlog": sum(1 for r in rows if r["settled_at"] <= t) - len(done),
                    "per_hour": round(sum(1 for c in done if c > t - window) / window * 3600, 1) if i else 0.0})
    return out


def movie_list(ledger: Ledger, session: Session) -> list[dict[str, Any]]:
    """Every movie: its state, its archive copy (hash, object, verified) and what RELION measured."""
    return [{"name": r["name"], "state": r["state"], "size": r["size"], "sha256": r["sha256"],
             "object": r["object_key"], "uploaded": bool(r["uploaded_at"]), "archived_verified": bool(r["verified_at"]),
             "batch": r["batch_id"], "drift": r["drift"], "ctf_resolution": r["ctf_resolution"],
             "message": r["message"]} for r in records.movies(ledger.db, session.id)]


def visible_sessions(ledger: Ledger, user: str, manager: bool) -> list[Session]:
    """The watched sessions `user` may see: their own (a manager: every one), newest first."""
    return [s for s in records.all_sessions(ledger.db) if manager or s.user == user]


def visible_session(ledger: Ledger, session_id: int, user: str, manager: bool) -> Session:
    """Session `session_id` if `user` may see it; another user's is "not found", as their jobs are."""
    from cryocloud.errors import JobNotFound

    s = records.session_by_id(ledger.db, session_id)
    if s is None or not (manager or s.user == user):
        raise JobNotFound(f"no watched session {session_id} of yours", "the Sessions page lists yours")
    return s
