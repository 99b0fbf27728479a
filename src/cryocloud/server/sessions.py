"""The dashboard's on-the-fly pages: every watched session (a manager sees all, a user their own) and one session:
what arrived, was archived and corrected, the backlog and throughput over time, per-movie drift and CTF resolution,
and what went wrong. Server-rendered (inline SVG plots, no JavaScript); the numbers come from app/session_numbers."""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from cryocloud.app import session_numbers
from cryocloud.errors import JobNotFound
from cryocloud.server.api import Caller
from cryocloud.server.pages import _page, _session, _table, _usd, _when, lines
from cryocloud.server.state import state_of

router = APIRouter(include_in_schema=False)
api_router = APIRouter()


def _n(v: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


@router.get("/sessions")
def sessions_page(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return RedirectResponse("/login", status_code=303)
    ledger = state_of(request).ledger()
    rows = []
    for s in session_numbers.visible_sessions(ledger, session.user.name, session.user.manager):
        n = session_numbers.numbers(ledger, s)
        rows.append([f'<a href="/sessions/{s.id}">{s.id}</a>', escape(s.session_dir), escape(s.project_dir),
                     escape(s.user), str(n["seen"]), str(n["corrected"]), str(n["backlog"]),
                     f'{n["throughput_per_hour"]:.0f}', _when(s.heartbeat_at)])
    body = _table(["id", "session", "project", "user", "movies", "corrected", "backlog", "movies/h", "last seen"],
                  rows, {4, 5, 6, 7}) if rows else '<p class="note">no watched session yet (cryocloud watch)</p>'
    return _page("Sessions", body, session, refresh=True)


@router.get("/sessions/{session_id}")
def session_page(request: Request, session_id: int) -> Response:
    session = _session(request)
    if session is None:
        return RedirectResponse("/login", status_code=303)
    ledger = state_of(request).ledger()
    try:
        s = session_numbers.visible_session(ledger, session_id, session.user.name, session.user.manager)
    except JobNotFound as e:
        return _page("Session not found", f'<p class="error">{escape(e.message)}</p>', session)
    n = session_numbers.numbers(ledger, s)
    line = session_numbers.timeline(ledger, s)
    movies = session_numbers.movie_list(ledger, s)
    corrected = [m for m in movies if m["drift"] is not None]
    facts = _table(["", ""], [[k, escape(str(v))] for k, v in (
        ("session folder", s.session_dir), ("project", s.project_dir), ("where", s.profile or "default"),
        ("archive", s.store_url or "none"), ("movies seen", n["seen"]), ("being written", n["growing"]),
        ("archived and verified", n["verified"]), ("corrected", n["corrected"]), ("backlog", n["backlog"]),
        ("throughput", f'{n["throughput_per_hour"]:.0f} movies/h'),
        ("latency p50 / p95", f'{_n(n["latency_p50_s"])} / {_n(n["latency_p95_s"])} s'),
        ("rejected / failed", f'{n["rejected"]} / {n["failed"]}'), ("cost so far", f'{_usd(n["cost_usd"])} USD'),
        ("watcher last seen", _when(s.heartbeat_at)))])
    problems = "".join(f'<p class="error">{escape(p)}</p>' for p in n["problems"])
    plots = ('<div class="grid"><div><h2>Backlog over time</h2>'
             + lines({"backlog": [(p["t"], float(p["backlog"])) for p in line]}, "movies waiting", x_label="second")
             + '</div><div><h2>Throughput over time</h2>'
             + lines({"throughput": [(p["t"], p["per_hour"]) for p in line]}, "movies/h", x_label="second")
             + '</div><div><h2>Drift per movie</h2>'
             + lines({"drift": [(float(i), float(m["drift"])) for i, m in enumerate(corrected, 1)]},
                     "total motion (Å)", x_label="movie")
             + '</div><div><h2>CTF resolution per movie</h2>'
             + lines({"ctf": [(float(i), float(m["ctf_resolution"])) for i, m in enumerate(corrected, 1)
                              if m["ctf_resolution"] is not None]}, "CTF max resolution (Å)", x_label="movie")
             + "</div></div>")
    table = _table(["movie", "state", "archived and verified", "drift Å", "CTF Å", "batch", "note"], [
        [escape(m["name"]), f'<span class="state {escape(m["state"])}">{escape(m["state"])}</span>',
         "yes" if m["archived_verified"] else "no", _n(m["drift"], "{:.2f}"), _n(m["ctf_resolution"]),
         str(m["batch"] or ""), escape(m["message"])] for m in movies[-200:]], {3, 4})
    return _page(f"Session {s.id}: {s.session_dir}", problems + f"<div>{facts}</div>" + plots
                 + "<h2>Movies (latest 200)</h2>" + table, session, refresh=True)


@api_router.get("/sessions")
def api_sessions(request: Request, user: Caller) -> list[dict[str, Any]]:
    """Watched sessions (`cryocloud watch`) with their numbers: your own (a manager: every one)."""
    ledger = state_of(request).ledger()
    return [session_numbers.numbers(ledger, s)
            for s in session_numbers.visible_sessions(ledger, user.name, user.manager)]


@api_router.get("/sessions/{session_id}")
def api_session(request: Request, session_id: int, user: Caller) -> dict[str, Any]:
    """One session: its numbers, backlog and throughput over time, and every movie."""
    ledger = state_of(request).ledger()
    s = session_numbers.visible_session(ledger, session_id, user.name, user.manager)
    return {**session_numbers.numbers(ledger, s), "timeline": session_numbers.timeline(ledger, s),
            "movies": session_numbers.movie_list(ledger, s)}
