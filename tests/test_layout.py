"""The house's rules, read from the code's own imports (every import, also those inside functions):
no import cycle anywhere in src/, and imports run one way down the layers of docs/architecture.md."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = "cryocloud"

# Layers, top to bottom: a module may import its own layer's modules and any layer below, never one above.
LAYERS: list[tuple[str, ...]] = [
    ("cli", "server", "onthefly", "__main__"),
    ("app",),
    ("monitor",),
    ("backends",),
    ("jobs", "relion_setup", "planner", "storage", "ledger", "accounts", "session", "demo", "sandbox", "aws"),
    ("settings", "errors", "proc"),
]
# Leaves that live in a room of an upper floor but import nothing of cryocloud beyond errors: the ground floor.
LEAVES = ("cryocloud.backends.registry", "cryocloud.jobs.states")
# The agent runs on nodes that know nothing of the lab: it may import only these (and itself).
AGENT_MAY_IMPORT = ("agent", "jobs", "storage", "settings", "errors", "proc")  # settings: NodeSettings
# Sideways rules inside the jobs/planner/storage/ledger floor.
SIDEWAYS_FORBIDDEN = {
    "jobs": ("planner", "storage", "ledger", "demo"),
    "storage": ("planner", "ledger", "jobs", "demo"),
    "ledger": ("planner", "storage", "jobs", "demo"),
    "sandbox": ("planner", "jobs", "ledger", "demo"),  # a local AWS: knows nothing of cryocloud's jobs
    "aws": ("planner", "jobs", "ledger", "demo", "sandbox"),
    "session": ("planner", "jobs", "storage", "ledger", "demo", "sandbox"),  # on-the-fly's own logic, below app/
}


def modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / PKG).rglob("*.py"):
        rel = path.relative_to(SRC).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every cryocloud module `name` imports, at any depth of its code."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t.startswith(PKG + ".") and t != name:
                found.add(t)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports(name, path, known) for name, path in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def room(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def floor(module: str) -> int | None:
    if module in LEAVES:
        return len(LAYERS) - 1
    r = room(module)
    for i, rooms in enumerate(LAYERS):
        if r in rooms:
            return i
    return None


def test_no_import_cycle_anywhere() -> None:
    assert cycles(graph()) == []


def test_every_room_has_a_floor() -> None:
    unplaced = sorted({room(m) for m in graph() if room(m) and room(m) != "agent" and floor(m) is None})
    assert unplaced == [], f"add these to LAYERS (and to docs/architecture.md): {unplaced}"


def test_imports_run_down_the_layers() -> None:
    wrong = []
    for mod, deps in graph().items():
        here = floor(mod)
        if here is None:
            continue
        for dep in deps:
            there = floor(dep)
            if there is not None and there < here:
                wrong.append(f"{mod} -> {dep}")
            if room(dep) in SIDEWAYS_FORBIDDEN.get(room(mod), ()) and dep not in LEAVES:
                wrong.append(f"{mod} -> {dep} (sideways)")
            if room(dep) == "agent" and room(mod) not in ("cli", "app", "monitor", "backends"):
                wrong.append(f"{mod} -> {dep} (only launchers know the agent)")
    assert sorted(wrong) == []


def test_leaves_are_leaves() -> None:
    g = graph()
    assert {leaf: sorted(d for d in g[leaf] if d != "cryocloud.errors") for leaf in LEAVES} == \
        {leaf: [] for leaf in LEAVES}


def test_the_agent_knows_nothing_of_the_lab() -> None:
    wrong = sorted(f"{m} -> {d}" for m, deps in graph().items() if room(m) == "agent"
                   for d in deps if room(d) not in AGENT_MAY_IMPORT)
    assert wrong == []


def test_cycles_are_found() -> None:
    """The checker itself: a planted cycle and a planted upward import are reported."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
