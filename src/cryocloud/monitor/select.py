"""Keep the best of a fan-out (DESIGN: gathering happens once, above the backends): every succeeded task's score
file merged into one table (<jobdir>scores.csv, best first), the best K rows' outputs copied to <jobdir>best/, and
one summary line (min / median / max) for run.out."""

from __future__ import annotations

import csv
import shutil
import statistics
from pathlib import Path

from cryocloud.errors import CryocloudError
from cryocloud.jobs import scores, tasks
from cryocloud.jobs.spec import JobSpec

SCORES, BEST = "scores.csv", "best"


def _outputs(spec: JobSpec, index: int, folder: Path, row: dict[str, str]) -> list[Path]:
    """What a kept row's task produced: the model its `description` names (Rosetta's way: one task, many
    models), else every file the task's output globs match, else every file in its folder."""
    name = row.get("description", "")
    if name:
        named = sorted(p for p in folder.glob(f"{name}*") if p.is_file())
        if named:
            return named
    fields = tasks.values(spec, index)
    matched = {p for g in spec.outputs for p in folder.glob(tasks.substitute(g, fields)) if p.is_file()}
    if matched:
        return sorted(matched)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name not in ("run.out", "run.err"))


def keep_best(spec: JobSpec, succeeded: list[int]) -> str:
    """Merge, rank and copy; returns the summary line. Raises CryocloudError when no task has a score."""
    select = spec.fanout.select
    assert select is not None
    rows: list[tuple[float, int, dict[str, str]]] = []
    problems: list[str] = []
    for i in succeeded:
        folder = Path(spec.project_dir) / tasks.workdir(spec, i)
        try:
            found = scores.read_scores(folder / tasks.substitute(select.file, tasks.values(spec, i)), select.column)
        except CryocloudError as e:
            problems.append(f"task {i}: {e.message}")
            continue
        rows.extend((score, i, row) for score, row in found)
    if not rows:
        raise CryocloudError(f"no task wrote a score in column {select.column!r} of {select.file}",
                             "; ".join(problems[:3]) or "check the job file's `select`")
    rows.sort(key=lambda r: (r[0] if select.order == "min" else -r[0], r[1]))
    columns = list(dict.fromkeys(c for _, _, row in rows for c in row))
    job = spec.folder
    with open(job / SCORES, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["rank", "task", *columns])
        for rank, (_, i, row) in enumerate(rows, start=1):
            out.writerow([rank, i, *(row.get(c, "") for c in columns)])
    best = job / BEST
    shutil.rmtree(best, ignore_errors=True)
    best.mkdir()
    kept = rows[: select.keep]
    for rank, (_, i, row) in enumerate(kept, start=1):
        folder = Path(spec.project_dir) / tasks.workdir(spec, i)
        for path in _outputs(spec, i, folder, row) if spec.fanout.task_dirs else []:
            shutil.copy2(path, best / f"{rank:03d}_task{i:04d}_{path.name}")
    values = [s for s, _, _ in rows]
    return (f"scores ({select.column}, {len(values)} from {len(succeeded)} tasks): min {min(values):g}, "
            f"median {statistics.median(values):g}, max {max(values):g}; best {len(kept)} in "
            f"{spec.job_dir}{BEST}/, all in {spec.job_dir}{SCORES}")
