"""How a job that the platform interrupted (Slurm preemption, a node failure) goes on from where it was.

- An iterative RELION job (relion_refine[_mpi]: Class2D, Class3D, Refine3D, InitialModel) continues from its
  last complete iteration: `--continue <root>_itNNN_optimiser.star`, with `--o` left at the root the pipeline
  registered. relion_refine names a continue's outputs after its `--o`: RELION's GUI passes `--o run_ct<N>` (so
  the files become run_ct<N>_it...), which would leave the registered run_it<N>_... / run_data.star missing.
  Keeping `--o <job>/run` makes the continue write exactly the names the pipeline expects (measured with RELION
  3.1: run_it002.., run_it003.. after a continue from it001; tests/slurm/test_slurm_requeue.py runs a
  downstream job on the final file). `--i` is dropped: a continue reads its data from the optimiser file.
- A per-micrograph job (MotionCorr, CtfFind, Extract, AutoPick) runs again with `--only_do_unfinished`, never
  from scratch.
- Any other RELION program cannot continue: `plan_resume` says why, and the job ends as failed with that hint.
  A job with no RELION program that can continue (a plain command) cannot either. A facility's own template
  lines (`module load`, `export`, an `if` block) stay as written and run again before the continued command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cryocloud.jobs import cmdline
from cryocloud.jobs.spec import JobSpec

REFINE = ("relion_refine", "relion_refine_mpi")
PER_MICROGRAPH = tuple(f"relion_{p}{mpi}" for p in ("run_motioncorr", "run_ctffind", "preprocess", "autopick")
                       for mpi in ("", "_mpi"))
ITERATION = re.compile(r"_it(\d+)_optimiser\.star$")
# An iteration is complete when all of these exist (relion_refine writes them at the end of each iteration;
# it000 has no sampling file and is never a continue point).
ITERATION_FILES = ("optimiser", "model", "data", "sampling")


@dataclass(frozen=True)
class Resume:
    commands: list[str] | None  # None: the job cannot continue
    where: str  # "it012", "unfinished micrographs", or why it cannot continue


def last_iteration(project: Path, root: str) -> tuple[int, str] | None:
    """(N, path of <root>_itNNN_optimiser.star relative to the project) for the last complete iteration."""
    base = project / root
    best: tuple[int, str] | None = None
    for path in base.parent.glob(f"{base.name}_it*_optimiser.star"):
        m = ITERATION.search(path.name)
        if not m or path.name != f"{base.name}_it{m.group(1)}_optimiser.star":
            continue
        stem = path.name.removesuffix("_optimiser.star")
        if all((path.parent / f"{stem}_{kind}.star").is_file() for kind in ITERATION_FILES):
            n = int(m.group(1))
            if best is None or n > best[0]:
                best = (n, f"{root}_it{m.group(1)}_optimiser.star")
    return best


def plan_resume(spec: JobSpec) -> Resume:
    """The commands that continue `spec` from what its job folder holds now, or why it cannot continue."""
    project = Path(spec.project_dir)
    out: list[str] = []
    where = ""
    for line in spec.commands:
        text = line.strip()
        if not text or text.startswith("#"):
            out.append(line)
            continue
        name = cmdline.program(text)
        if name in REFINE:
            root = cmdline.option(text, "--o")
            if not root:
                return Resume(None, "the relion_refine command has no --o")
            it = last_iteration(project, root)
            if it is None:
                return Resume(None, f"it had not finished an iteration yet (no {root}_itNNN_optimiser.star)")
            end = cmdline.program_end(text)
            rest = cmdline.without_option(cmdline.without_option(text[end:], "--continue"), "--i")
            out.append(f"{text[:end]} --continue {it[1]}{rest}")
            where = f"it{it[0]:03d}"
            continue
        if name in PER_MICROGRAPH:
            out.append(text if "--only_do_unfinished" in (cmdline.words(text) or []) else f"{text} --only_do_unfinished")
            where = where or "unfinished micrographs"
            continue
        if not name:  # a facility's own line (module load, export, source, if ... fi): runs again as written
            out.append(line)
            continue
        return Resume(None, f"{name} cannot continue from where it was (only relion_refine iterations "
                            "and per-micrograph jobs can)")
    if not where:
        return Resume(None, "it has no command that can continue")
    return Resume(out, where)
