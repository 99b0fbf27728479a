"""Which commands continue an interrupted job (jobs/resume.py): pure logic on job folders."""

from __future__ import annotations

from pathlib import Path

from cryocloud.jobs.resume import plan_resume
from cryocloud.jobs.spec import JobSpec

REFINE = ("`which relion_refine_mpi` --o Class2D/job002/run --i Select/job001/particles.star --iter 25 --j 2 "
          "--pipeline_control Class2D/job002/")


def spec(project: Path, *commands: str) -> JobSpec:
    return JobSpec("Class2D/job002/", "relion", "Class2D", str(project), "Class2D/job002/", list(commands))


def iteration(project: Path, n: int, kinds: tuple[str, ...] = ("optimiser", "model", "data", "sampling")) -> None:
    for kind in kinds:
        path = project / f"Class2D/job002/run_it{n:03d}_{kind}.star"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("data_\n")


def test_refine_continues_from_the_last_complete_iteration_with_the_registered_root(tmp_path: Path) -> None:
    iteration(tmp_path, 0, ("optimiser", "model", "data"))  # it000 has no sampling file: never a continue point
    iteration(tmp_path, 1)
    iteration(tmp_path, 2)
    iteration(tmp_path, 3, ("optimiser",))  # killed while writing it003
    plan = plan_resume(spec(tmp_path, REFINE))
    assert plan.where == "it002" and plan.commands is not None
    line = plan.commands[0]
    assert line.startswith("`which relion_refine_mpi` --continue Class2D/job002/run_it002_optimiser.star ")
    assert " --o Class2D/job002/run " in line and "--i " not in line and "--pipeline_control Class2D/job002/" in line
    # a second interruption continues from the newer iteration, not from the first continue point
    iteration(tmp_path, 3)
    again = plan_resume(spec(tmp_path, line)).commands
    assert again is not None and again[0].count("--continue") == 1 and "run_it003_optimiser.star" in again[0]


def test_refine_without_an_iteration_cannot_continue(tmp_path: Path) -> None:
    plan = plan_resume(spec(tmp_path, REFINE))
    assert plan.commands is None and "not finished an iteration" in plan.where


def test_per_micrograph_jobs_resume_only_unfinished(tmp_path: Path) -> None:
    line = "relion_run_motioncorr --i Import/job001/movies.star --o MotionCorr/job002/ --use_own --j 2"
    plan = plan_resume(spec(tmp_path, line, "relion_run_ctffind_mpi --i x.star --o CtfFind/job003/ --only_do_unfinished"))
    assert plan.commands == [line + " --only_do_unfinished",
                             "relion_run_ctffind_mpi --i x.star --o CtfFind/job003/ --only_do_unfinished"]
    assert plan.where == "unfinished micrographs"


def test_other_commands_cannot_continue(tmp_path: Path) -> None:
    plan = plan_resume(spec(tmp_path, "relion_postprocess --i half1.mrc"))
    assert plan.commands is None and "relion_postprocess" in plan.where
