"""A session's RELION jobs, RELION's own way: one Import, one MotionCorr (RELION's own implementation) and, when
an estimator is configured, one CtfFind, added once by `relion_pipeliner --addJob` and re-run on each batch by
`relion_pipeliner --RunJobs` (MotionCorr and CtfFind as continuations: --only_do_unfinished). RELION writes every
STAR file and the pipeline's states itself; MotionCorr and CtfFind go through "Submit to queue" (cryocloud-qsub),
so they are ordinary cryocloud jobs in the ledger. RELION never queues Import: the pipeliner runs it here."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryocloud.errors import CryocloudError
from cryocloud.proc import ProcessGroup, run_command, start_process_group
from cryocloud.session.settings import GAIN_FLIP, GAIN_ROT, SessionSettings

KINDS = ("Import", "MotionCorr", "CtfFind")  # in pipeline order
STATUS = {"0": "running", "1": "scheduled", "2": "succeeded", "3": "failed", "4": "aborted",
          "Running": "running", "Scheduled": "scheduled", "Succeeded": "succeeded", "Failed": "failed",
          "Aborted": "aborted"}
HINT = "install RELION (Debian: apt-get install relion openmpi-bin; or scripts/install-deps.sh)"
LOG = ".cryocloud/session/pipeliner.out"


def ensure_pipeline(project: Path) -> None:
    """A RELION project needs default_pipeline.star before the pipeliner runs (else it leaves a stale lock)."""
    pipeline = project / "default_pipeline.star"
    if not pipeline.exists():
        pipeline.write_text("data_pipeline_general\n\n_rlnPipeLineJobCounter 1\n", encoding="utf-8")


def process_status(project: Path) -> dict[str, str]:
    """RELION's state of every job in the project's pipeline (3.1 numbers, 4/5 labels)."""
    import gemmi

    path = project / "default_pipeline.star"
    if not path.exists():
        return {}
    doc = gemmi.cif.read_file(str(path))
    block = doc.find_block("pipeline_processes")
    if block is None:
        return {}
    table = block.find("_rlnPipeLineProcess", ["Name", "Status"])
    if not len(table):
        table = block.find("_rlnPipeLineProcess", ["Name", "StatusLabel"])
    return {row.str(0): STATUS.get(row.str(1), row.str(1)) for row in table}


def options(kind: str, s: SessionSettings, links: str, jobs: Mapping[str, str], queue: str) -> str:
    """RELION's job options (`label == value;...`, no space after ';', no ';' in a value) for one job."""
    q = {"do_queue": "Yes", "queuename": queue}
    if kind == "Import":
        o: dict[str, object] = {"fn_in_raw": f"{links}/*", "is_multiframe": "Yes", "do_raw": "Yes",
                                "optics_group_name": s.optics_group, "angpix": s.pixel_size, "kV": s.voltage,
                                "Cs": s.cs, "Q0": s.amplitude_contrast}
    elif kind == "MotionCorr":
        o = {"input_star_mics": jobs["Import"] + "movies.star", "do_own_motioncor": "Yes",
             "dose_per_frame": s.dose_per_frame, "fn_gain_ref": s.gain_ref or '""',
             "gain_rot": GAIN_ROT[s.gain_rot], "gain_flip": GAIN_FLIP[s.gain_flip], "eer_grouping": s.eer_grouping,
             "patch_x": s.patch_x, "patch_y": s.patch_y, "bin_factor": s.bin_factor, "bfactor": s.bfactor,
             "nr_threads": s.threads, **q}
    else:
        o = {"input_star_mics": jobs["MotionCorr"] + "corrected_micrographs.star", "use_ctffind4": "Yes",
             "fn_ctffind_exe": s.ctffind_exe, "box": s.ctf_box, "resmin": s.ctf_res_min, "resmax": s.ctf_res_max,
             "dfmin": s.ctf_defocus_min, "dfmax": s.ctf_defocus_max, "dfstep": s.ctf_defocus_step, **q}
    for key, value in o.items():
        if ";" in str(value):
            raise CryocloudError(f"{kind}'s {key} {value!r} holds a ';'", "RELION's pipeliner cannot take one: rename it")
    return ";".join(f"{k} == {v}" for k, v in o.items())


def environment(base: Mapping[str, str]) -> dict[str, str]:
    """What RELION needs beyond the queue's variables: a shell for CTFFIND's script when csh is missing."""
    env = dict(base)
    if not shutil.which("csh", path=env.get("PATH")):
        env.setdefault("RELION_SHELL", "bash")
    return env


def pipeliner(project: Path, args: list[str], env: Mapping[str, str]) -> str:
    done = run_command(["relion_pipeliner", *args], cwd=project, env=env, timeout=300, check=False, hint=HINT)
    if done.returncode != 0 or "ERROR" in done.stdout + done.stderr:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise CryocloudError(f"relion_pipeliner {args[0]} failed: {'; '.join(tail) or 'no output'}",
                             f"see {project / 'default_pipeline.star'}; the session settings may be wrong")
    return done.stdout


def add_jobs(project: Path, s: SessionSettings, links: str, env: Mapping[str, str], queue: str,
             have: Mapping[str, str]) -> dict[str, str]:
    """Add the session's jobs not yet in `have` (kind -> RELION job folder); returns all of them."""
    ensure_pipeline(project)
    jobs = dict(have)
    for kind in KINDS:
        if kind in jobs or (kind == "CtfFind" and not s.ctf):
            continue
        before = set(process_status(project))
        pipeliner(project, ["--addJob", kind, "--addJobOptions", options(kind, s, links, jobs, queue)], env)
        new = [j for j in process_status(project) if j not in before]
        if len(new) != 1:
            raise CryocloudError(f"relion_pipeliner --addJob {kind} added {len(new)} jobs", "check default_pipeline.star")
        jobs[kind] = new[0]
    return jobs


def set_split(project: Path, job_dir: str, workers: int) -> bool:
    """Set RELION's 4th queue field ('Split over N workers') in the job's job.star, as the GUI would; False when
    the job has no such field (a queue without it)."""
    import gemmi

    path = project / job_dir / "job.star"
    if not path.exists():
        return False
    doc = gemmi.cif.read_file(str(path))
    for block in doc:
        table = block.find("_rlnJobOption", ["Variable", "Value"])
        for row in table:
            if row.str(0) == "qsub_extra4":
                row[1] = gemmi.cif.quote(str(workers) if workers > 1 else "")
                doc.write_file(str(path))
                return True
    return False


class Run:
    """The session's jobs run in pipeline order, one `relion_pipeliner --RunJobs JOB` each (RELION 3.1's parser
    keeps only the first of several job names); a job that does not succeed stops the chain. Each pipeliner runs
    in its own session: a watcher killed meanwhile does not take RELION's run with it."""

    def __init__(self, project: Path, jobs: list[str], env: Mapping[str, str]) -> None:
        if not shutil.which("relion_pipeliner", path=env.get("PATH", os.defpath)):
            raise CryocloudError("relion_pipeliner: command not found", HINT)
        self.project, self.jobs, self.env = project, list(jobs), dict(env)
        self.todo = list(jobs)
        self.log = project / LOG
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.group: ProcessGroup | None = None
        self._next()

    @property
    def pid(self) -> int:
        return self.group.pid if self.group else 0

    def _next(self) -> None:
        job = self.todo.pop(0)
        argv = ["relion_pipeliner", "--RunJobs", job, "--sec_wait_after", "1"]
        self.group = start_process_group(argv, cwd=self.project, env=self.env, stdout_path=self.log,
                                         stderr_path=self.log)

    def finished(self) -> bool:
        """True once the last job ended or one did not succeed (RELION's pipeline says which)."""
        if self.group is None:
            return True
        if self.group.wait(0) is None:
            return False
        self.group.close()
        self.group = None
        done = self.jobs[len(self.jobs) - len(self.todo) - 1]
        if self.todo and process_status(self.project).get(done) == "succeeded":
            self._next()
            return False
        return True

    def close(self) -> None:
        if self.group is not None:
            self.group.close()
            self.group = None


def run_jobs(project: Path, jobs: list[str], env: Mapping[str, str]) -> Run:
    return Run(project, jobs, env)

def _table(path: Path, block_name: str, columns: list[str]) -> list[list[str]]:
    """Rows of one STAR table (gemmi), [] when the file or the block is not there yet."""
    import gemmi

    if not path.exists():
        return []
    block = gemmi.cif.read_file(str(path)).find_block(block_name)
    if block is None:
        return []
    table = block.find("_rln", columns)
    return [[gemmi.cif.as_string(row[i]) for i in range(len(columns))] for row in table]


@dataclass(frozen=True)
class Micrograph:
    movie: str  # the movie as Import named it (the link, relative to the project)
    micrograph: str  # the corrected micrograph, relative to the project
    drift: float  # RELION's rlnAccumMotionTotal, A
    ctf_resolution: float | None = None  # rlnCtfMaxResolution, A


def _stem(path: str, job_dir: str) -> str:
    return path.removeprefix(job_dir).rsplit(".", 1)[0].removesuffix("_noDW")


def results(project: Path, jobs: Mapping[str, str], movies: list[str]) -> dict[str, Micrograph]:
    """What RELION wrote for these movies (Import names), from MotionCorr's and CtfFind's own STAR files."""
    mc = jobs["MotionCorr"]
    rows = _table(project / mc / "corrected_micrographs.star", "micrographs", ["MicrographName", "AccumMotionTotal"])
    by_stem = {_stem(mic, mc): (mic, float(drift)) for mic, drift in rows}
    ctf: dict[str, float] = {}
    if "CtfFind" in jobs:
        for mic, res in _table(project / jobs["CtfFind"] / "micrographs_ctf.star", "micrographs",
                               ["MicrographName", "CtfMaxResolution"]):
            ctf[_stem(mic, mc)] = float(res)
    out = {}
    for movie in movies:
        stem = movie.rsplit(".", 1)[0]
        if stem in by_stem:
            mic, drift = by_stem[stem]
            out[movie] = Micrograph(movie, mic, drift, ctf.get(stem))
    return out


def imported(project: Path, jobs: Mapping[str, str]) -> list[str]:
    """The movies Import's STAR file lists (what RELION will process)."""
    return [r[0] for r in _table(project / jobs["Import"] / "movies.star", "movies", ["MicrographMovieName"])]
