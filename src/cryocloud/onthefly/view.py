"""The live terminal view of a watched session (rich), and its plain lines; the numbers come from app/."""

from __future__ import annotations

from typing import Any


def _num(v: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def render(n: dict[str, Any]) -> Any:
    """A rich renderable of the session's numbers."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Table.grid(padding=(0, 2))
    for _ in range(4):
        head.add_column()
    head.add_row("seen", str(n["seen"]), "being written", str(n["growing"]))
    head.add_row("uploaded", f"{n['uploaded']} ({n['verified']} verified)", "corrected", str(n["corrected"]))
    head.add_row("backlog", str(n["backlog"]), "throughput", f"{n['throughput_per_hour']:.0f} movies/h")
    head.add_row("latency p50/p95", f"{_num(n['latency_p50_s'])} / {_num(n['latency_p95_s'])} s",
                 "cost so far", f"{n['cost_usd']:.4f} USD")
    rb = n["running_batch"]
    head.add_row("batches", str(n["batches"]), "running",
                 f"batch {rb['id']}: {rb['movies']} movies" + (f" over {rb['split']} workers" if rb["split"] > 1 else "")
                 if rb else "-")
    head.add_row("rejected", str(n["rejected"]), "failed", str(n["failed"]))
    movies = Table(title="latest movies", title_justify="left")
    for col in ("movie", "state", "drift A", "CTF A", "archived"):
        movies.add_column(col)
    for m in n["recent"]:
        movies.add_row(m["name"], m["state"], _num(m["drift"], "{:.2f}"), _num(m["ctf_resolution"]),
                       "yes" if m["archived"] else "")
    parts: list[Any] = [Text(f"session {n['session']['dir']} -> {n['session']['project']}", style="bold"), head,
                        movies]
    for p in n["problems"]:
        parts.append(Text(f"! {p}", style="yellow"))
    return Group(*parts)


def status_table(n: dict[str, Any]) -> Any:
    """`watch --status`: every movie with its archive copy (deletable from the microscope's PC when verified)."""
    from rich.table import Table

    t = Table(title=f"{n['session']['dir']}: {n['verified']} of {n['seen']} movies archived and verified")
    for col in ("movie", "state", "archived and verified", "sha256", "batch", "note"):
        t.add_column(col)
    for m in n["movies"]:
        t.add_row(m["name"], m["state"], "yes" if m["archived_verified"] else "no", m["sha256"][:12],
                  str(m["batch"] or ""), m["message"])
    return t
