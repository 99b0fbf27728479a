#!/usr/bin/env python3
"""P3 (local) and M1: what cryocloud adds to a RELION job on this workstation.

1. A trivial job (`true`): time from calling `cryocloud-qsub <script>` to the exit marker, vs `bash -c true`.
   Overhead = submit-to-start + end-to-marker (target < 0.5 s per job), warm (the user's monitor runs and
   takes the submission) and cold (no monitor yet: submit does the work and starts one).
2. A real RELION Class2D (relion_refine on the demo data): by hand vs through cryocloud, same command
   (target < 2% of a job longer than a minute).
3. Start-up of `cryocloud --help` and of `cryocloud submit` on a bad path (target < 0.3 s).
Medians of --repeat runs. usage: .venv/bin/python benchmarks/local_overhead.py [--repeat 3] [--iters 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def wait_marker(job_dir: Path, timeout: float = 3600) -> float:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any((job_dir / m).exists() for m in ("RELION_JOB_EXIT_SUCCESS", "RELION_JOB_EXIT_FAILURE")):
            return time.perf_counter()
        time.sleep(0.005)
    raise TimeoutError(job_dir)


def through_cryocloud(project: Path, job_dir: str, commands: list[str], env: dict[str, str], **kw: object) -> float:
    from spine.helpers import make_job

    script = make_job(project, job_dir, commands, **kw)
    t0 = time.perf_counter()
    subprocess.run([str(BIN / "cryocloud-qsub"), str(script.relative_to(project))], cwd=project, env=env,
                   check=True, capture_output=True)
    return wait_marker(project / job_dir) - t0


def by_hand(project: Path, commands: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    for c in commands:
        subprocess.run(["bash", "-c", c], cwd=project, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def startup(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=False)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--iters", type=int, default=8, help="Class2D iterations (8 is ~1 min on 2 cores)")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cc-bench-"))
    # the monitor leaves when no job is active; 60 s of linger keeps it up between the "warm" runs
    env = dict(os.environ, CRYOCLOUD_HOME=str(work / "home"), PATH=f"{BIN}:{os.environ['PATH']}",
               CRYOCLOUD_LOCAL_MONITOR_LINGER="60")
    os.environ["CRYOCLOUD_HOME"] = env["CRYOCLOUD_HOME"]
    from cryocloud.demo.dataset import make_project

    project = work / "project"
    make_project(project, n_particles=500, n_movies=0, seed=1)
    results: dict[str, list[float]] = {"help": [], "submit-bad": [], "true-hand": [], "true-cold": [],
                                       "true-cc": [], "2d-hand": [], "2d-cc": []}
    for _ in range(a.repeat):
        results["help"].append(startup([str(BIN / "cryocloud"), "--help"]))
        results["submit-bad"].append(startup([str(BIN / "cryocloud"), "submit", "/nonexistent/run_submit.script"]))
    for i in range(a.repeat):
        stop_monitor()  # cold: no monitor running, submit does all the work itself and starts one
        results["true-cold"].append(through_cryocloud(project, f"External/cold{i + 1:03d}/", ["true"], env))
        time.sleep(1.0)
        results["true-hand"].append(by_hand(project, ["true"], env))
        results["true-cc"].append(through_cryocloud(project, f"External/job{i + 1:03d}/", ["true"], env))
    refine = ("relion_refine --i Synthetic/particles.star --dont_combine_weights_via_disc --pool 30 --pad 2 --ctf "
              f"--iter {a.iters} --tau2_fudge 2 --particle_diameter 150 --K 2 --flatten_solvent --zero_mask "
              "--oversampling 1 --psi_step 12 --offset_range 5 --offset_step 2 --norm --scale --j 2 "
              "--random_seed 1 --o {out}")
    for i in range(a.repeat):
        (project / "Hand").mkdir(exist_ok=True)
        results["2d-hand"].append(by_hand(project, [refine.format(out=f"Hand/r{i}")], env))
        jd = f"Class2D/job{i + 1:03d}/"
        results["2d-cc"].append(through_cryocloud(project, jd, [refine.format(out=f"{jd}run")], env, threads=2))
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"# cryocloud local overhead, median of {a.repeat} ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores)")
    print(f"cryocloud --help start-up:            {med['help']:.3f} s (target < 0.3 s)")
    print(f"cryocloud submit (refused) start-up:  {med['submit-bad']:.3f} s (target < 0.3 s)")
    print(f"trivial job by hand:                  {med['true-hand']:.3f} s")
    print(f"trivial job through cryocloud, warm:  {med['true-cc']:.3f} s -> overhead "
          f"{med['true-cc'] - med['true-hand']:.3f} s per job (target < 0.5 s; monitor running)")
    print(f"trivial job through cryocloud, cold:  {med['true-cold']:.3f} s -> overhead "
          f"{med['true-cold'] - med['true-hand']:.3f} s per job (no monitor running yet)")
    print(f"Class2D ({a.iters} it) by hand:             {med['2d-hand']:.2f} s")
    print(f"Class2D ({a.iters} it) through cryocloud:   {med['2d-cc']:.2f} s -> overhead "
          f"{med['2d-cc'] - med['2d-hand']:+.2f} s = {100 * (med['2d-cc'] / med['2d-hand'] - 1):+.1f}% (target < 2%)")
    print("raw:", {k: [round(x, 3) for x in v] for k, v in results.items()})
    stop_monitor()
    shutil.rmtree(work, ignore_errors=True)


def stop_monitor() -> None:
    from cryocloud.monitor.loop import monitor_pid
    from cryocloud.settings import load_settings

    pid = monitor_pid(load_settings())
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        while monitor_pid(load_settings()) is not None:
            time.sleep(0.05)


if __name__ == "__main__":
    main()
