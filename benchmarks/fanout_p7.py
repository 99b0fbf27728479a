#!/usr/bin/env python3
"""P7: fan-out of trivial tasks through cryocloud (a job file, `cryocloud submit job.toml`) against its peers.

1. Local backend: N tasks of `true` from a job file until the job's exit marker (tasks/s; target >= 20), against
   `xargs -P W` running the same N commands with the same width W (what a user would do by hand).
2. Slurm (a single-node Slurm started by scripts/slurm/start.sh, stopped at the end): the same job file on the
   slurm profile until its marker, against a bare `sbatch --array` whose tasks each run `true` and touch a file,
   until all N files exist. At N above Slurm's default MaxArraySize (1001) the bare peer submits arrays of 1000
   (what a user must do there); cryocloud packs tasks onto as many array tasks as the node runs at once.
   Per-task overhead = elapsed / N; target: cryocloud <= 0.5x bare at 200 tasks, and no higher per task at 2,000.
Runs alternate (bare, cryocloud); medians of --repeat. Each Slurm submission waits a random 0-1 s first (Slurm's
one-second scheduler tick would otherwise bias one side). Slurm needs root (slurmd).
usage: .venv/bin/python benchmarks/fanout_p7.py [--repeat 3] [--local 200] [--slurm 200,2000] [--cpus 8]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from slurm_overhead import bare_array  # noqa: E402  (the bare peer, one definition for P3 and P7)

MARKERS = ("RELION_JOB_EXIT_SUCCESS", "RELION_JOB_EXIT_FAILURE", "RELION_JOB_EXIT_ABORTED")


def wait_marker(job_dir: Path, timeout: float = 3600) -> float:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for m in MARKERS:
            if (job_dir / m).exists():
                if m != MARKERS[0]:
                    raise RuntimeError(f"{job_dir} ended with {m}")
                return time.perf_counter()
        time.sleep(0.01)
    raise TimeoutError(job_dir)


def cryocloud_fanout(project: Path, tasks: int, profile: str) -> float:
    """A job file of `tasks` trivial tasks submitted as `cryocloud submit job.toml` does, until its marker."""
    from cryocloud.app.run import submit_jobfile

    jobfile = project / "trivial.toml"
    jobfile.write_text(f'command = ["true"]\ntasks = {tasks}\n')
    t0 = time.perf_counter()
    done = submit_jobfile(jobfile, profile=profile)
    return wait_marker(project / done.job.name) - t0


def xargs_peer(tasks: int, width: int) -> float:
    t0 = time.perf_counter()
    subprocess.run(["xargs", "-P", str(width), "-n", "1", "true"], input="\n".join(map(str, range(tasks))),
                   text=True, check=True)
    return time.perf_counter() - t0


def local_part(work: Path, a: argparse.Namespace) -> dict[str, list[float]]:
    from cryocloud.backends.local import LocalBackend
    from cryocloud.jobs.spec import JobSpec
    from cryocloud.settings import load_settings

    home = work / "home-local"
    home.mkdir()
    os.environ["CRYOCLOUD_HOME"] = str(home)
    os.environ.pop("CRYOCLOUD_BACKEND", None)
    settings = load_settings()
    width = LocalBackend(settings.profile("local"), settings).width(
        JobSpec("x", "command", "command", "/", "x/", ["true"], tasks=a.local))
    project = work / "local"
    project.mkdir()
    r: dict[str, list[float]] = {"local-cc": [], "local-xargs": []}
    cryocloud_fanout(project, 4, "local")  # warm: the monitor starts
    for _ in range(a.repeat):
        r["local-xargs"].append(xargs_peer(a.local, width))
        r["local-cc"].append(cryocloud_fanout(project, a.local, "local"))
    m = {k: statistics.median(v) for k, v in r.items()}
    print(f"local, {a.local} tasks of `true`, width {width}: cryocloud {m['local-cc']:.2f} s "
          f"({a.local / m['local-cc']:.1f} tasks/s; target >= 20), xargs -P {width} {m['local-xargs']:.2f} s "
          f"({a.local / m['local-xargs']:.0f} tasks/s) -> {m['local-cc'] / m['local-xargs']:.1f}x xargs")
    return r


def slurm_part(work: Path, a: argparse.Namespace) -> dict[str, list[float]]:
    cluster = work / "cluster"
    base_env = dict(os.environ, SLURM_NCPUS=str(a.cpus), PATH=f"{BIN}:/usr/sbin:/sbin:{os.environ['PATH']}")
    subprocess.run(["bash", str(ROOT / "scripts/slurm/start.sh"), str(cluster)], env=base_env, check=True,
                   capture_output=True)
    r: dict[str, list[float]] = {}
    try:
        home = work / "home-slurm"
        home.mkdir()
        (home / "config.toml").write_text('[profiles.slurm]\nbackend = "slurm"\n')
        env = dict(base_env, SLURM_CONF=str(cluster / "slurm.conf"), CRYOCLOUD_HOME=str(home))
        os.environ.update({k: env[k] for k in ("SLURM_CONF", "CRYOCLOUD_HOME", "PATH")})
        project = work / "slurm"
        project.mkdir()
        rng = random.Random(7)
        cryocloud_fanout(project, 8, "slurm")  # warm
        for n in a.slurm:
            r[f"bare-{n}"], r[f"cc-{n}"] = [], []
            for i in range(a.repeat):
                time.sleep(rng.random())
                r[f"bare-{n}"].append(bare_array(work, i, n, env))
                time.sleep(rng.random())
                r[f"cc-{n}"].append(cryocloud_fanout(project, n, "slurm"))
            bare, cc = statistics.median(r[f"bare-{n}"]), statistics.median(r[f"cc-{n}"])
            print(f"slurm, {n} tasks: bare sbatch --array {bare:.2f} s ({1000 * bare / n:.1f} ms/task), cryocloud "
                  f"{cc:.2f} s ({1000 * cc / n:.1f} ms/task) -> {cc / bare:.2f}x (target <= 0.5x)")
    finally:
        subprocess.run(["bash", str(ROOT / "scripts/slurm/stop.sh"), str(cluster), "--purge"], env=base_env,
                       check=False, capture_output=True)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--local", type=int, default=200, help="tasks of the local run (0: skip)")
    ap.add_argument("--slurm", type=lambda s: [int(x) for x in s.split(",") if x], default=[200, 2000],
                    help="task counts of the Slurm runs, comma separated (empty: skip)")
    ap.add_argument("--cpus", type=int, default=8, help="CPUs the test node advertises (SLURM_NCPUS)")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cc-p7-", dir="/tmp"))
    work.chmod(0o755)
    print(f"# P7 fan-out, median of {a.repeat}, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    raw: dict[str, list[float]] = {}
    try:
        if a.local:
            raw.update(local_part(work, a))
        if a.slurm:
            raw.update(slurm_part(work, a))
    finally:
        from cryocloud.monitor.loop import monitor_pid
        from cryocloud.settings import load_settings

        for home in work.glob("home-*"):  # stop the monitors this run started, by pid
            os.environ["CRYOCLOUD_HOME"] = str(home)
            pid = monitor_pid(load_settings())
            if pid:
                os.kill(pid, 15)
        print("raw:", {k: [round(x, 3) for x in v] for k, v in raw.items()})
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
