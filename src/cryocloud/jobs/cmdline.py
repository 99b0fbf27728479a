"""The one reader of a RELION command line, as RELION writes it into a queue script (`` `which relion_refine` ``,
an absolute path, quoted paths with spaces) and as a lab types it. Everything that looks into a command line
(input discovery, GPU count, the planner's sizes, the MPI launcher, resume) asks here.

Values come from a shell-like split (quotes and comments honoured); rewriting a line (resume) edits its text, so
what the user wrote stays as written.
"""

from __future__ import annotations

import itertools
import re
import shlex

# the program at the start of a line: optional `which ...` backticks and a folder, then relion_<name>[_mpi]
PROGRAM = re.compile(r"^\s*(?:`which\s+)?(?:\S*/)?(?P<name>relion_\w+)`?")


def words(line: str) -> list[str] | None:
    """The line split as the shell would (comments dropped); None when its quotes do not balance."""
    try:
        return shlex.split(line, comments=True)
    except ValueError:
        return None


def program(line: str) -> str:
    """The RELION program a line runs (`relion_refine_mpi`), or '' when it does not start with one."""
    m = PROGRAM.match(line)
    return m.group("name") if m else ""


def program_end(line: str) -> int:
    """Where the program (with its `which` backticks) ends in the line's text; 0 when there is none."""
    m = PROGRAM.match(line)
    return m.end() if m else 0


def is_mpi(line: str) -> bool:
    return program(line).endswith("_mpi")


def option(line: str, flag: str) -> str | None:
    """The value after `flag` (quotes removed); '' when the flag stands alone; None when it is absent."""
    ws = words(line)
    if ws is None or flag not in ws:
        return None
    i = ws.index(flag)
    value = ws[i + 1] if i + 1 < len(ws) else ""
    return "" if value.startswith("--") else value


def int_option(line: str, flag: str) -> int | None:
    value = option(line, flag)
    try:
        return int(value) if value else None
    except ValueError:
        return None


def pairs(line: str) -> list[tuple[str, str]]:
    """(word, next word) for every word followed by a value (a word that is not a flag)."""
    return [(a, b) for a, b in itertools.pairwise(words(line) or []) if b and not b.startswith("--")]


def without_option(line: str, flag: str) -> str:
    """The line's text with `flag` and its value removed (quoted values included)."""
    return re.sub(rf"\s{re.escape(flag)}\s+(?:\"[^\"]*\"|'[^']*'|\S+)", "", line)


GPU_LIST = re.compile(r"(\s--gpu)\s+(?:\"[^\"]*\"|'[^']*'|(?!--)\S+)")


def for_node(line: str, executables: dict[str, str]) -> str:
    """A lab's command line as a cloud node runs it: the program's folder mapped (`executables`: the lab's path
    prefix -> the node's), and RELION's `--gpu` device list (the lab's card numbers) left to RELION: `--gpu ""`
    uses every GPU the node has."""
    stripped = line.lstrip()
    indent = line[: len(line) - len(stripped)]
    for lab, node in executables.items():
        for head in (lab, f"`which {lab}"):
            if stripped.startswith(head):
                stripped = stripped.replace(lab, node, 1)
                break
    out = indent + stripped
    return GPU_LIST.sub(r'\1 ""', out) if option(out, "--gpu") else out
