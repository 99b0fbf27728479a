"""A RELION per-micrograph job (MotionCorr, CtfFind, AutoPick, Extract) split over N workers: each shard runs the
job's program on its own slice of the input STAR file (the optics table kept whole), reporting into its own
control folder; then one `--only_do_unfinished` pass over the full list, run where the job folder lives, lets
RELION write its own STAR files and exit marker, as its on-the-fly mode does."""

from __future__ import annotations

import re
import shlex
from dataclasses import replace
from pathlib import Path

import gemmi

from cryocloud.errors import SubmissionError
from cryocloud.jobs import cmdline
from cryocloud.jobs.spec import Fanout, JobSpec

# the programs of RELION's per-micrograph jobs (each also as _mpi), by the job type that runs them
PROGRAMS = {"MotionCorr": "relion_run_motioncorr", "CtfFind": "relion_run_ctffind", "AutoPick": "relion_autopick",
            "Extract": "relion_preprocess"}
SHARD_STAR = "input.star"  # in the shard's control folder
UNFINISHED = "--only_do_unfinished"


def _value(flag: str) -> re.Pattern[str]:
    return re.compile(rf"(\s{re.escape(flag)}\s+)(?:\"[^\"]*\"|'[^']*'|\S+)")


def program_line(commands: list[str], job_type: str) -> int | None:
    """The index of the line that runs the job type's RELION program, or None."""
    want = PROGRAMS.get(job_type)
    for i, line in enumerate(commands):
        if want and cmdline.program(line).removesuffix("_mpi") == want:
            return i
    return None


def _table(doc: gemmi.cif.Document) -> gemmi.cif.Loop:
    """The list to split: the first loop outside data_optics (movies, micrographs)."""
    for block in doc:
        if block.name == "optics":
            continue
        for item in block:
            if item.loop is not None:
                return item.loop
    raise SubmissionError("the input STAR file has no table of movies or micrographs",
                          "choose the job's input from a finished Import/MotionCorr/CtfFind job")


def count_rows(path: Path) -> int:
    try:
        return int(_table(gemmi.cif.read_file(str(path))).length())
    except (RuntimeError, ValueError) as e:
        raise SubmissionError(f"cannot read {path}: {e}", "check the job's input STAR file") from None


def workers_asked(spec: JobSpec) -> int:
    """RELION's 'Split over N workers' field (the template's 4th extra); 1 = not split."""
    text = spec.extras.get("split", "").strip()
    if not text:
        return 1
    try:
        n = int(text)
    except ValueError:
        raise SubmissionError(f"'Split over N workers' is {text!r}, not a number",
                              "give a whole number such as 4, or leave it empty") from None
    if n < 1:
        raise SubmissionError(f"'Split over N workers' is {n}", "give 1 or more, or leave it empty")
    return n


def split_spec(spec: JobSpec, workers: int) -> JobSpec:
    """`spec` as `workers` shards plus the final pass; refused (before anything runs) when it cannot be split."""
    if workers <= 1:
        return spec
    if spec.job_type not in PROGRAMS:
        raise SubmissionError(f"a {spec.job_type} job cannot be split over workers",
                              f"only {', '.join(PROGRAMS)} jobs split; set 'Split over N workers' to 1 or empty")
    line = program_line(spec.commands, spec.job_type)
    inp = cmdline.option(spec.commands[line], "--i") if line is not None else None
    if line is None or not inp:
        raise SubmissionError(f"no {PROGRAMS[spec.job_type]} line with --i in the job's script",
                              "split only RELION's own per-micrograph jobs")
    rows = count_rows(Path(spec.project_dir) / inp)
    if workers > rows:
        raise SubmissionError(f"'Split over N workers' is {workers}, but {inp} lists only {rows} items",
                              f"split over at most {rows} workers")
    final = list(spec.commands)
    if UNFINISHED not in (cmdline.words(final[line]) or []):
        final[line] = f"{final[line]} {UNFINISHED}"
    fanout = Fanout(split={"line": line, "input": inp, "rows": rows}, final=final,
                    retries=spec.fanout.retries, pack=spec.fanout.pack)
    return replace(spec, tasks=workers, fanout=fanout)


def shard_rows(rows: int, workers: int, index: int) -> range:
    """Shard `index`'s rows: every `workers`-th row from `index` (sizes differing by at most one). Interleaved, not
    contiguous: on-the-fly re-runs a job whose list grows at its end, where RELION's --only_do_unfinished skips the
    rows already done; contiguous slices would hand every new row to the last shard."""
    return range(index, rows, workers)


def write_shard(source: Path, target: Path, index: int, workers: int) -> int:
    """Shard `index` of `source` (every block kept, its list sliced) written to `target`; returns its rows."""
    doc = gemmi.cif.read_file(str(source))
    loop = _table(doc)
    width, values = loop.width(), list(loop.values)
    rows = [values[r * width:(r + 1) * width] for r in shard_rows(loop.length(), workers, index)]
    loop.set_all_values([[row[c] for row in rows] for c in range(width)])
    target.write_text(doc.as_string(), encoding="utf-8")
    return len(rows)


def shard_commands(spec: JobSpec, index: int, control_dir: Path, project: Path) -> list[str]:
    """Shard `index`'s lines: the program on its slice (written now into its control folder), reporting there."""
    split = spec.fanout.split or {}
    line_no, inp = int(split["line"]), str(split["input"])
    shard = control_dir / SHARD_STAR
    write_shard(project / inp, shard, index, spec.tasks)
    line = _value("--i").sub(lambda m: m.group(1) + shlex.quote(str(shard)), spec.commands[line_no], count=1)
    line = _value("--pipeline_control").sub(lambda m: m.group(1) + shlex.quote(f"{control_dir}/"), line, count=1)
    return [*spec.commands[:line_no], line, *spec.commands[line_no + 1:]]
