"""The dashboard: server-rendered HTML (no JavaScript, no build step, no asset from the network). Signs in with
a token once (POSTed, never in a URL) and keeps a session cookie (HttpOnly, SameSite=Strict); every form that
changes something carries the session's CSRF token."""

from __future__ import annotations

import hmac
import time
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cryocloud.app import costs, facility, jobs
from cryocloud.errors import CryocloudError
from cryocloud.server.auth import COOKIE, AuthError, Session
from cryocloud.server.state import state_of

router = APIRouter(include_in_schema=False)
REFRESH = 10  # s: the jobs page reloads itself, so states are live without JavaScript


def _page(title: str, body: str, session: Session | None = None, refresh: bool = False) -> HTMLResponse:
    nav = ""
    if session is not None:
        nav = ('<a href="/">Jobs</a><a href="/sessions">Sessions</a><a href="/costs">Costs</a><a href="/storage">Storage</a><a href="/instances">Instances</a>'
               f'<span class="who">{escape(session.user.name)} ({escape(session.user.role)})</span>'
               f'<form class="inline" method="post" action="/logout"><input type="hidden" name="csrf" '
               f'value="{escape(session.csrf)}"><button>Sign out</button></form>')
    meta = f'<meta http-equiv="refresh" content="{REFRESH}">' if refresh else ""
    return HTMLResponse(
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} · cryocloud</title>'
        f'{meta}<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="stylesheet" href="/static/style.css"></head><body><header><strong>cryocloud</strong>{nav}'
        f'</header><main><h1>{escape(title)}</h1>{body}</main></body></html>',
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                 "Content-Security-Policy": "default-src 'self'; form-action 'self'; frame-ancestors 'none'"})


def _session(request: Request) -> Session | None:
    return state_of(request).sessions.get(request.cookies.get(COOKIE))


def _usd(x: float | None) -> str:
    return "-" if x is None else f"{x:,.4f}" if x < 1 else f"{x:,.2f}"


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def _table(head: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    th = "".join(f'<th{" class=num" if i in numeric else ""}>{escape(h)}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td{" class=num" if i in numeric else ""}>{c}</td>' for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def bars(rows: list[tuple[str, float]], unit: str = "USD") -> str:
    """A horizontal bar chart as inline SVG (no script, no library)."""
    if not rows:
        return '<p class="note">nothing yet</p>'
    top = max(v for _, v in rows) or 1.0
    height = 22 * len(rows) + 4
    parts = [f'<svg role="img" width="520" height="{height}" viewBox="0 0 520 {height}">']
    for i, (label, value) in enumerate(rows):
        y, width = 22 * i + 2, max(1.0, 300 * value / top)
        parts.append(f'<text x="0" y="{y + 14}">{escape(label[:22])}</text>'
                     f'<rect class="bar" x="150" y="{y}" width="{width:.1f}" height="16"/>'
                     f'<text x="{156 + width:.1f}" y="{y + 14}">{_usd(value)} {unit}</text>')
    return "".join(parts) + "</svg>"


def lines(series: dict[str, list[tuple[float, float]]], y_label: str, width: int = 520, height: int = 200,
          x_label: str = "iteration") -> str:
    """A line plot as inline SVG: one polyline per series, x and y axes with their ranges."""
    points = [p for s in series.values() for p in s]
    if not points:
        return '<p class="note">nothing yet</p>'
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(0.0, min(p[1] for p in points)), max(p[1] for p in points)
    left, bottom = 50, height - 24

    def at(x: float, y: float) -> str:
        px = left + (width - left - 10) * ((x - x0) / (x1 - x0) if x1 > x0 else 0.5)
        py = bottom - (bottom - 10) * ((y - y0) / (y1 - y0) if y1 > y0 else 0.5)
        return f"{px:.1f},{py:.1f}"

    colours = ("#1d3557", "#e63946", "#2a9d8f", "#f4a261", "#6a4c93", "#8ab17d")
    parts = [f'<svg role="img" aria-label="{escape(y_label)}" width="{width}" height="{height}">',
             f'<line x1="{left}" y1="{bottom}" x2="{width - 10}" y2="{bottom}" stroke="#889"/>',
             f'<line x1="{left}" y1="10" x2="{left}" y2="{bottom}" stroke="#889"/>',
             f'<text x="0" y="14">{y1:.3g}</text><text x="0" y="{bottom}">{y0:.3g}</text>',
             f'<text x="{left}" y="{height - 6}">{escape(x_label)} {x0:g}</text>'
             f'<text x="{width - 90}" y="{height - 6}">{escape(x_label)} {x1:g}</text>',
             f'<text x="{left + 10}" y="24">{escape(y_label)}</text>']
    for i, (name, pts) in enumerate(series.items()):
        colour = colours[i % len(colours)]
        parts.append(f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="2" '
                     f'points="{" ".join(at(x, y) for x, y in pts)}"><title>{escape(name)}</title></polyline>')
    return "".join(parts) + "</svg>"


def _progress_html(job_id: int, prog: dict[str, Any]) -> str:
    its = prog["iterations"]
    if not its and not prog["class_averages"]:
        return ""
    out = "<h2>RELION's progress</h2><div class=\"grid\"><div>"
    res = [(float(i["iteration"]), float(i["resolution"])) for i in its if i["resolution"] is not None]
    out += lines({"resolution": res}, "resolution (Å)") + "</div><div>"
    k = max((len(i["distribution"]) for i in its), default=0)
    shares = {f"class {c + 1}": [(float(i["iteration"]), i["distribution"][c]) for i in its
                                 if len(i["distribution"]) > c] for c in range(k)}
    out += lines(shares, "class distribution") + "</div></div>"
    if prog["class_averages"]:
        out += f'<h2>Class averages ({escape(str(prog["classes_file"]))})</h2><div class="classes">' + "".join(
            f'<figure><img class="class-average" src="/jobs/{job_id}/classes/{n}.png" width="96" height="96" '
            f'alt="class {n}"><figcaption>{n}</figcaption></figure>' for n in range(1, prog["class_averages"] + 1)
        ) + "</div>"
    return out


@router.get("/static/style.css")
def style() -> Response:
    css = resources.files("cryocloud.server").joinpath("static/style.css").read_text(encoding="utf-8")
    return Response(css, media_type="text/css", headers={"Cache-Control": "max-age=3600"})


@router.get("/login")
def login_form(request: Request, error: str = "") -> HTMLResponse:
    msg = f'<p class="error">{escape(error)}</p>' if error else ""
    return _page("Sign in", f'{msg}<form method="post" action="/login"><p><label>API token '
                 '<input type="password" name="token" autocomplete="off" size="50" autofocus></label></p>'
                 '<p><button>Sign in</button></p></form><p class="note">A token comes from '
                 '<code>cryocloud tokens create NAME</code>; it is sent once and never shown again.</p>')


async def _form(request: Request) -> dict[str, str]:
    raw = (await request.body()).decode(errors="replace")
    return {k: v[0] for k, v in parse_qs(raw).items()}


@router.post("/login")
async def login(request: Request) -> Response:
    state = state_of(request)
    token = (await _form(request)).get("token", "").strip()
    try:
        user = state.user_for_token(request, token)
    except AuthError as e:
        return login_form(request, f"{e.message}; {e.hint}")
    sid, _ = state.sessions.start(user)
    answer = RedirectResponse("/", status_code=303)
    answer.set_cookie(COOKIE, sid, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                      max_age=12 * 3600)
    return answer


def _csrf_ok(session: Session, form: dict[str, str]) -> bool:
    return hmac.compare_digest(form.get("csrf", ""), session.csrf)


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = _session(request)
    if session is not None and _csrf_ok(session, await _form(request)):
        state_of(request).sessions.end(request.cookies.get(COOKIE))
    answer = RedirectResponse("/login", status_code=303)
    answer.delete_cookie(COOKIE)
    return answer


def _job_rows(rows: list[dict[str, Any]], manager: bool) -> str:
    head = ["id", "job", "type", "where", "state", "submitted", "wall", "USD", *(["user"] if manager else [])]
    out = []
    for r in rows:
        wall = f"{r['wall_seconds'] / 60:.1f} min" if r["wall_seconds"] is not None else "-"
        out.append([f'<a href="/jobs/{r["id"]}">{r["id"]}</a>', escape(r["name"]), escape(r["job_type"]),
                    escape(r["profile"]), f'<span class="state {escape(r["state"])}">{escape(r["state"])}</span>',
                    _when(r["submitted_at"]), wall, _usd(r["cost_usd"]), *([escape(r["user"])] if manager else [])])
    return _table(head, out, {6, 7})


@router.get("/")
def home(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return RedirectResponse("/login", status_code=303)
    ledger = state_of(request).ledger()
    user = session.user
    rows = jobs.job_rows(ledger, user=None if user.manager else user.name, limit=200)
    body = _job_rows(rows, user.manager) if rows else '<p class="note">no jobs yet</p>'
    return _page("Jobs", body + f'<p class="note">refreshes every {REFRESH} s</p>', session, refresh=True)


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: int) -> Response:
    session = _session(request)
    if session is None:
        return RedirectResponse("/login", status_code=303)
    ledger = state_of(request).ledger()
    try:
        job = facility.visible_job(ledger, session.user, job_id)
    except CryocloudError as e:
        return _page("Job not found", f'<p class="error">{escape(e.message)}</p>', session)
    d = jobs.job_detail(ledger, job)
    facts = _table(["", ""], [[k, escape(str(v))] for k, v in (
        ("state", d["state"]), ("type", d["job_type"]), ("folder", f'{d["project_dir"]}/{d["job_dir"]}'),
        ("where", f'{d["profile"]} ({d["backend"]}) {d["machine"]}'), ("owner", d["user"]),
        ("submitted", _when(d["submitted_at"])), ("ended", _when(d["ended_at"])),
        ("predicted USD", _usd(d["predicted_usd"])), ("cost USD", _usd(d["cost_usd"])), ("message", d["message"]))])
    attempts = _table(["backend", "machine", "market", "state", "USD/h", "USD"], [
        [escape(a["backend"]), escape(a["machine"]), escape(a["market"]), escape(a["state"]),
         _usd(a["usd_per_hour"]), _usd(a["cost_usd"])] for a in d["attempts"]], {4, 5})
    events = "".join(f"<li>{_when(e['at'])} {escape(e['message'])}</li>" for e in d["events"])
    logs = jobs.log_tail(job, 40)
    cancel = ""
    if job.active:
        cancel = (f'<form method="post" action="/jobs/{job.id}/cancel"><input type="hidden" name="csrf" '
                  f'value="{escape(session.csrf)}"><button>Cancel this job</button></form>')
    body = (f'{cancel}<div class="grid"><div>{facts}</div><div><h2>Attempts</h2>{attempts}<h2>Events</h2>'
            f'<ul>{events}</ul></div></div>{_progress_html(job.id, jobs.relion_progress(job))}'
            f'<h2>run.out (last lines)</h2><pre>{escape(chr(10).join(logs["run.out"]))}'
            f'</pre><h2>run.err</h2><pre>{escape(chr(10).join(logs["run.err"]))}</pre>')
    return _page(f"Job {job.id}: {job.name}", body, session, refresh=job.active)


@router.get("/jobs/{job_id}/classes/{index}.png")
def class_average(request: Request, job_id: int, index: int) -> Response:
    session = _session(request)
    if session is None:
        return Response(status_code=401)
    try:
        job = facility.visible_job(state_of(request).ledger(), session.user, job_id)
        return Response(jobs.class_average_png(job, index), media_type="image/png",
                        headers={"Cache-Control": "private, max-age=5"})
    except CryocloudError as e:
        return Response(e.message, status_code=404, media_type="text/plain")


@router.post("/jobs/{job_id}/cancel")
async def cancel(request: Request, job_id: int) -> Response:
    session = _session(request)
    if session is None:
        return RedirectResponse("/login", status_code=303)
    if not _csrf_ok(session, await _form(request)):
        return _page("Refused", '<p class="error">this form is stale or did not come from this dashboard; '
                     "reload the job's page and try again</p>", session)
    state = state_of(request)
    try:
        job = facility.visible_job(state.ledger(), session.user, job_id)
        jobs.cancel_job(state.settings, str(job.id), Path(job.project_dir), wait=0.0)
    except CryocloudError as e:
        return _page("Refused", f'<p class="error">{escape(e.message)}</p>', session)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.get("/costs")
def costs_page(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return RedirectResponse("/login", status_code=303)
    ledger, user = state_of(request).ledger(), session.user
    mine = None if user.manager else user.name
    body = ""
    for by, title in (("day", "per day"), ("project", "per project"), ("user", "per user")):
        rows = costs.cost_rows(ledger, by=by, user=mine)
        body += f"<h2>USD {title}</h2>" + bars([(str(r[by]), float(r["cost_usd"])) for r in rows])
        body += _table([by, "jobs", "hours", "USD"], [[escape(str(r[by])), str(r["jobs"]),
                       f'{r["wall_seconds"] / 3600:.2f}', _usd(r["cost_usd"])] for r in rows], {1, 2, 3})
    return _page("Costs", body, session)


@router.get("/storage")
def storage_page(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return RedirectResponse("/login", status_code=303)
    use = facility.storage_use(state_of(request).settings)
    if use.get("error"):
        body = f'<p class="error">{escape(use["error"])}</p><p class="note">{escape(use["hint"])}</p>'
    else:
        body = f'<p>Store <code>{escape(use["store"])}</code>: {use["bytes"] / 1e9:.3f} GB, ' \
               f'{_usd(use["usd_per_month"])} USD per month</p>' + _table(
                   ["kind", "storage class", "objects", "GB", "USD/month"],
                   [[escape(r["kind"]), escape(r["storage_class"]), str(r["objects"]), f'{r["bytes"] / 1e9:.3f}',
                     _usd(r["usd_per_month"])] for r in use["rows"]], {2, 3, 4})
        body += "<h2>Per project</h2>" + bars([(str(r["project"]), float(r["usd_per_month"])) for r in
                                               use["projects"]], "USD/month") + _table(
            ["project", "objects", "GB", "shared GB", "USD/month"],
            [[escape(r["project"]), str(r["objects"]), f'{r["bytes"] / 1e9:.3f}', f'{r["shared_bytes"] / 1e9:.3f}',
              _usd(r["usd_per_month"])] for r in use["projects"]], {1, 2, 3, 4})
    return _page("Data in storage", body, session)


@router.get("/instances")
def instances_page(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return RedirectResponse("/login", status_code=303)
    st = state_of(request)
    got = facility.instances_for(st.settings, st.ledger(), session.user)
    if got.get("error"):
        body = f'<p class="error">{escape(got["error"])}</p><p class="note">{escape(got["hint"])}</p>'
    elif not got["instances"]:
        body = '<p class="note">no cryocloud instance is running</p>'
    else:
        body = f'<p>{len(got["instances"])} running, {_usd(got["usd_per_hour"])} USD per hour</p>' + _table(
            ["instance", "job", "type", "market", "zone", "state", "age", "USD/h", "USD so far"],
            [[escape(r["id"]), f'<a href="/jobs/{r["job_id"]}">{escape(str(r["job"]))}</a>' if r["job_dir"]
              else escape(str(r["job"] or "-")), escape(r["type"]), escape(r["market"]), escape(r["zone"]),
              escape(r["state"]), f'{r["age_seconds"] / 3600:.1f} h', _usd(r["usd_per_hour"]),
              _usd(r["cost_so_far_usd"])] for r in got["instances"]], {6, 7, 8})
    return _page("Instances", body, session, refresh=True)
