"""Small formatting helpers shared by the CLI commands (rich is imported only when a table is printed)."""

from __future__ import annotations

import time
from typing import Any


def hms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped or logged: never squeeze a table into 80 columns
        console = Console(width=160)
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, justify="right" if c in {"id", "wall", "USD/h", "USD", "cost"} else "left",
                     no_wrap=c != "message")
    for r in rows:
        t.add_row(*(str(v) for v in r))
    console.print(t)
