#!/usr/bin/env python3
"""P3 (Slurm) and P7: what cryocloud adds over a bare `sbatch` of the same work, on a real single-node Slurm.

Starts its own cluster with scripts/slurm/start.sh (SLURM_NCPUS CPUs advertised) and stops it at the end.
1. P3, one trivial job: the script RELION fills (`true`) submitted by `cryocloud-qsub` (what RELION runs) until
   RELION_JOB_EXIT_SUCCESS exists, vs `sbatch` of a script doing the same then touching a done file, until that
   file exists (target: cryocloud < 1.2x bare). Also the submit call alone (cryocloud-qsub vs sbatch).
2. P7, fan-out of N trivial tasks: one cryocloud fan-out job (a Slurm array, each task runs the agent) until the
   job's marker, vs a bare `sbatch --array` whose tasks each touch a file, until all N files exist
   (target: per-task time within 1.2x).
3. P3 for a job longer than a minute (`sleep --long`, default 65 s): the same comparison (target < 2%).
Runs alternate (bare, cryocloud) and report medians of --repeat. Slurm starts jobs on a one-second scheduler
tick, so each submission waits a random 0-1 s first (seeded): otherwise the previous run's length sets the
phase against the tick and biases one side. Must run as root (slurmd).
usage: .venv/bin/python benchmarks/slurm_overhead.py [--repeat 5] [--tasks 200] [--cpus 8] [--long 65]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tests"))


def wait_files(paths: list[Path], timeout: float = 900) -> float:
    end = time.monotonic() + timeout
    pending = list(paths)
    while time.monotonic() < end:
        pending = [p for p in pending if not p.exists()]
        if not pending:
            return time.perf_counter()
        time.sleep(0.005)
    raise TimeoutError(f"{len(pending)} files never appeared, e.g. {pending[0]}")


def wait_marker(job_dir: Path, timeout: float = 900) -> float:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for m in ("RELION_JOB_EXIT_SUCCESS", "RELION_JOB_EXIT_FAILURE", "RELION_JOB_EXIT_ABORTED"):
            if (job_dir / m).exists():
                if m != "RELION_JOB_EXIT_SUCCESS":
                    raise RuntimeError(f"{job_dir} ended with {m}: {(job_dir / 'run.err').read_text()[-500:]}")
                return time.perf_counter()
        time.sleep(0.005)
    raise TimeoutError(job_dir)


def bare_job(work: Path, i: int, env: dict[str, str], command: str = "true") -> tuple[float, float]:
    """sbatch of a script that runs `command` and touches a done file (how a bare user would know it ended)."""
    d = work / f"bare{i}"
    d.mkdir()
    script = d / "job.sh"
    script.write_text(f"#!/bin/bash\n{command}\ntouch {d}/done\n")
    t0 = time.perf_counter()
    subprocess.run(["sbatch", "--parsable", "-o", str(d / "out"), str(script)], env=env, check=True,
                   capture_output=True)
    t1 = time.perf_counter()
    return t1 - t0, wait_files([d / "done"]) - t0


def cryocloud_job(project: Path, i: int, env: dict[str, str], command: str = "true") -> tuple[float, float]:
    from spine.helpers import make_job

    job_dir = f"External/job{i:03d}/"
    script = make_job(project, job_dir, [command])
    t0 = time.perf_counter()
    subprocess.run([str(BIN / "cryocloud-qsub"), str(script.relative_to(project))], cwd=project, env=env,
                   check=True, capture_output=True)
    t1 = time.perf_counter()
    return t1 - t0, wait_marker(project / job_dir) - t0


def bare_array(work: Path, i: int, tasks: int, env: dict[str, str]) -> float:
    """A bare `sbatch --array` whose tasks each run `true` and touch a file, until all exist. Above Slurm's default
    MaxArraySize (1001) it submits arrays of 1000, as a user must there."""
    d = work / f"bare_array{tasks}_{i}"
    d.mkdir()
    script = d / "job.sh"
    script.write_text(f"#!/bin/bash\ntrue\ntouch {d}/done_${{SLURM_ARRAY_JOB_ID}}_$SLURM_ARRAY_TASK_ID\n")
    t0 = time.perf_counter()
    for start in range(0, tasks, 1000):
        subprocess.run(["sbatch", "--parsable", f"--array=0-{min(tasks, start + 1000) - 1 - start}", "-o",
                        "/dev/null", str(script)], env=env, check=True, capture_output=True)
    end = time.monotonic() + 3600
    while sum(1 for _ in d.glob("done_*")) < tasks:
        if time.monotonic() > end:
            raise TimeoutError(d)
        time.sleep(0.02)
    return time.perf_counter() - t0


def cryocloud_array(project: Path, i: int, tasks: int) -> float:
    """A fan-out JobSpec submitted through service.submit_spec (what a fan-out client calls)."""
    from cryocloud.app.submit import submit_spec
    from cryocloud.jobs.relion import job_spec_from_script
    from cryocloud.settings import load_settings
    from spine.helpers import make_job

    job_dir = f"External/array{i:03d}/"
    script = make_job(project, job_dir, ["true"])
    t0 = time.perf_counter()
    spec = replace(job_spec_from_script(script, project), tasks=tasks)
    settings = load_settings()
    submit_spec(spec, settings.profile("slurm"), settings, os.environ)
    return wait_marker(project / job_dir) - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--long", type=int, default=65, help="seconds of the long job (0: skip it)")
    ap.add_argument("--no-pack", action="store_true", help="one agent per array task (profile pack_tasks = false)")
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--cpus", type=int, default=8, help="CPUs the test node advertises (SLURM_NCPUS)")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cc-slurm-bench-", dir="/tmp"))
    work.chmod(0o755)
    cluster = work / "cluster"
    base_env = dict(os.environ, SLURM_NCPUS=str(a.cpus), PATH=f"{BIN}:/usr/sbin:/sbin:{os.environ['PATH']}")
    subprocess.run(["bash", str(ROOT / "scripts/slurm/start.sh"), str(cluster)], env=base_env, check=True,
                   capture_output=True)
    try:
        home = work / "home"
        home.mkdir()
        (home / "config.toml").write_text('[profiles.slurm]\nbackend = "slurm"\n'
                                          + ("pack_tasks = false\n" if a.no_pack else ""))
        env = dict(base_env, SLURM_CONF=str(cluster / "slurm.conf"), CRYOCLOUD_HOME=str(home),
                   CRYOCLOUD_BACKEND="slurm")
        os.environ.update({k: env[k] for k in ("SLURM_CONF", "CRYOCLOUD_HOME", "CRYOCLOUD_BACKEND", "PATH")})
        project = work / "project"
        project.mkdir()
        r: dict[str, list[float]] = {k: [] for k in ("bare-submit", "bare", "cc-submit", "cc", "bare-array",
                                                     "cc-array", "bare-long", "cc-long")}
        rng = random.Random(6)
        for i in range(a.repeat + 1):  # the first round warms caches and the monitor; not counted
            time.sleep(rng.random())
            s, t = bare_job(work, i, env)
            time.sleep(rng.random())
            cs, ct = cryocloud_job(project, i, env)
            if i:
                r["bare-submit"].append(s)
                r["bare"].append(t)
                r["cc-submit"].append(cs)
                r["cc"].append(ct)
        for i in range(a.repeat):
            time.sleep(rng.random())
            r["bare-array"].append(bare_array(work, i, a.tasks, env))
            time.sleep(rng.random())
            r["cc-array"].append(cryocloud_array(project, i, a.tasks))
        for i in range(a.repeat if a.long else 0):
            time.sleep(rng.random())
            r["bare-long"].append(bare_job(work, 100 + i, env, f"sleep {a.long}")[1])
            time.sleep(rng.random())
            r["cc-long"].append(cryocloud_job(project, 100 + i, env, f"sleep {a.long}")[1])
        m = {k: statistics.median(v) for k, v in r.items() if v}
        print(f"# cryocloud on Slurm vs bare sbatch, median of {a.repeat} ({time.strftime('%Y-%m-%d')}, "
              f"{os.cpu_count()} cores, test node advertises {a.cpus} CPUs, "
              f"{'one agent per array task' if a.no_pack else 'shards packed per array task'})")
        print(f"submit call: sbatch {m['bare-submit']:.3f} s, cryocloud-qsub {m['cc-submit']:.3f} s")
        print(f"P3 trivial job submit->done: bare sbatch {m['bare']:.3f} s, cryocloud {m['cc']:.3f} s -> "
              f"{m['cc'] / m['bare']:.2f}x, +{m['cc'] - m['bare']:.3f} s (target < 1.2x)")
        print(f"P7 fan-out of {a.tasks}: bare --array {m['bare-array']:.2f} s "
              f"({1000 * m['bare-array'] / a.tasks:.1f} ms/task), cryocloud {m['cc-array']:.2f} s "
              f"({1000 * m['cc-array'] / a.tasks:.1f} ms/task) -> {m['cc-array'] / m['bare-array']:.2f}x "
              "(target within 1.2x)")
        if a.long:
            print(f"P3 job of {a.long} s submit->done: bare sbatch {m['bare-long']:.2f} s, cryocloud "
                  f"{m['cc-long']:.2f} s -> {100 * (m['cc-long'] / m['bare-long'] - 1):+.1f}% (target < 2%)")
        print("raw:", {k: [round(x, 3) for x in v] for k, v in r.items()})
    finally:
        subprocess.run(["bash", str(ROOT / "scripts/slurm/stop.sh"), str(cluster), "--purge"], env=base_env,
                       check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
