"""Score files a fan-out's tasks write, read into rows of named values: a table with a header line (whitespace,
comma or tab separated: `score.sc`, a CSV) and Rosetta's score files (`SEQUENCE:` line, then `SCORE:` lines, the
first of which names the columns). Pure functions, tested on captured text."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from cryocloud.errors import CryocloudError

ROSETTA_PREFIXES = ("SCORE:", "SEQUENCE:", "REMARK")


def parse_scores(text: str) -> list[dict[str, str]]:
    """The rows of a score file as {column: value} (a Rosetta file's `SCORE:` prefix dropped)."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if any(ln.startswith("SCORE:") for ln in lines):
        lines = [ln.removeprefix("SCORE:") for ln in lines if ln.startswith("SCORE:")]
    if not lines:
        return []
    if "," in lines[0] or "\t" in lines[0]:
        reader = csv.reader(io.StringIO("\n".join(lines)), delimiter="," if "," in lines[0] else "\t")
        rows = [[c.strip() for c in r] for r in reader]
    else:
        rows = [ln.split() for ln in lines]
    header, body = rows[0], rows[1:]
    return [dict(zip(header, r, strict=False)) for r in body if len(r) == len(header)]


def score_of(row: dict[str, str], column: str) -> float | None:
    try:
        value = float(row[column])
    except (KeyError, ValueError):
        return None
    return None if math.isnan(value) else value


def read_scores(path: Path, column: str) -> list[tuple[float, dict[str, str]]]:
    """(score, row) of every row of `path` with a number in `column`. Raises CryocloudError (with a hint) when
    the file is missing, or no row has that column."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        raise CryocloudError(f"the task wrote no score file {path.name}",
                             "check the command writes it in the task's folder, or fix `select.file`") from None
    rows = parse_scores(text)
    scored = [(s, r) for r in rows if (s := score_of(r, column)) is not None]
    if not scored:
        columns = sorted({c for r in rows for c in r}) or ["none"]
        raise CryocloudError(f"{path.name} has no number in a column {column!r}",
                             f"its columns: {', '.join(columns[:12])}; fix `select.column`")
    return scored
