#!/usr/bin/env python3
"""P4: on-the-fly (a simulated microscope, the local backend).

(a) Orchestration alone: detection + upload (content-addressed, each movie verified in the store) + hand-off (the
    batch recorded in the ledger, the movies linked where RELION's Import reads) for tiny movies, with RELION's run
    left out (a Watcher whose batch ends once linked). 1. capacity: N movies already there when the watcher starts,
    time until every one is archived, verified and handed off (movies/h); 2. paced: the simulator writes at
    --rate-a movies/h for --seconds-a while the watcher runs: latency from file closed to handed off and to
    verified, backlog over time. Target: >= 10,000 movies/h sustained.
(b) With RELION's own MotionCorr through cryocloud (`cryocloud watch` as users run it): 1. the same M small movies
    (--size-b px, --frames-b frames) processed by the watcher from a full session (one backlog) against the same
    relion_import + relion_run_motioncorr run by hand over all of them in one batch (same options, --j 1); ratio
    = by hand / watcher time (target >= 0.9); 2. paced at --rate-b movies/h: latency p50/p95 from file closed to
    corrected micrograph, backlog over time (a plot), no growth.
usage: .venv/bin/python benchmarks/onthefly_p4.py [--part a|b|all] [--repeat 3] [--s3] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cryocloud.app.session_numbers import percentile  # noqa: E402
from cryocloud.app.watch import Watcher, WatchRequest  # noqa: E402
from cryocloud.ledger import Ledger  # noqa: E402
from cryocloud.session import records  # noqa: E402
from cryocloud.session.simulate import Plan, simulate  # noqa: E402
from cryocloud.settings import load_settings  # noqa: E402


class HandOff(Watcher):
    """The watcher with RELION left out: a batch ends once its movies are linked where Import reads."""

    def _launch(self, batch: int, names: list[str], split: int) -> None:
        if self._link(names):
            now = self.clock()
            records.update_batch(self.ledger.db, batch, started_at=now, ended_at=now, state=records.DONE)


def settings_file(project: Path, extra: str = "") -> Path:
    path = project / "cryocloud-session.toml"
    path.write_text("pixel_size = 3.0\ndose_per_frame = 0.5\nsettle_seconds = 1.0\npoll_seconds = 0.5\n"
                    f"min_batch = 1\nmax_batch = 5000\n{extra}")
    return path


def fresh(base: Path, name: str) -> tuple[Path, Path, Path]:
    d = base / name
    shutil.rmtree(d, ignore_errors=True)
    session, project, store = d / "session", d / "project", d / "store"
    project.mkdir(parents=True)
    session.mkdir()
    os.environ["CRYOCLOUD_HOME"] = str(d / "home")
    return session, project, store


def s3_start(base: Path) -> str:
    """SeaweedFS over HTTPS with a private CA (scripts/s3-server), a bucket, boto3's chain pointed at it; its URL."""
    import uuid

    import boto3

    server = json.loads(subprocess.run([sys.executable, ROOT / "scripts" / "s3-server", "start", base / "s3",
                                        "--tls"], check=True, capture_output=True, text=True).stdout)
    for k in [k for k in os.environ if k.startswith("AWS_")]:
        del os.environ[k]
    os.environ.update({"AWS_ENDPOINT_URL_S3": server["https_endpoint_url"], "AWS_CA_BUNDLE": server["ca_file"],
                       "AWS_ACCESS_KEY_ID": server["access_key"], "AWS_SECRET_ACCESS_KEY": server["secret_key"],
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/dev/null",
                       "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"})
    bucket = "p4-" + uuid.uuid4().hex[:10]
    boto3.session.Session().client("s3", endpoint_url=server["endpoint_url"]).create_bucket(Bucket=bucket)
    return f"s3://{bucket}"


def handoff_run(base: Path, name: str, n: int, rate: float, paced: bool, s3: str = "") -> dict[str, Any]:
    session, project, store_dir = fresh(base, name)
    store = f"{s3}/{name}" if s3 else str(store_dir)
    plan = Plan(session, n, rate, size=16, frames=2)
    if not paced:
        simulate(plan)
    w = HandOff(WatchRequest(session, project, settings_file(project), upload=str(store)))
    stop = threading.Event()
    samples: list[tuple[float, int]] = []
    sim = threading.Thread(target=simulate, args=(plan,)) if paced else None
    t0 = time.time()
    if sim:
        sim.start()

    def render(numbers: dict[str, Any]) -> None:
        samples.append((time.time() - t0, numbers["waiting"] + numbers["growing"]))
        done = w.ledger.db.execute("SELECT count(*) FROM session_movies WHERE verified_at IS NOT NULL AND "
                                   "batch_id IS NOT NULL").fetchone()[0]
        if done >= n and not w.busy():
            stop.set()

    w.prepare = lambda: None  # type: ignore[method-assign]  # no RELION jobs to add
    w.loop(render, stop)
    elapsed = time.time() - t0
    if sim:
        sim.join()
    ledger = Ledger(load_settings().ledger_path)
    sess = records.all_sessions(ledger.db)[0]
    rows = records.movies(ledger.db, sess.id)
    created = {b["id"]: b["created_at"] for b in records.batches(ledger.db, sess.id)}
    ledger.close()
    handed = [created[r["batch_id"]] - r["closed_at"] for r in rows]
    verified = [r["verified_at"] - r["closed_at"] for r in rows]
    assert len(rows) == n and all(r["uploads"] == 1 and r["batches"] == 1 for r in rows)
    closed = [r["closed_at"] for r in rows]
    last_done = max(max(created[r["batch_id"]], r["verified_at"]) for r in rows)
    rate_key, span = ("arrived_per_hour", max(closed) - min(closed)) if paced else ("capacity_per_hour", last_done - t0)
    return {"movies": n, "elapsed_s": round(elapsed, 2), rate_key: round(n / max(span, 1e-9) * 3600),
            "last_done_after_last_closed_s": round(last_done - max(closed), 2),
            "handoff_p50_s": round(percentile(handed, 0.5) or 0, 2), "handoff_p95_s": round(percentile(handed, 0.95) or 0, 2),
            "verified_p50_s": round(percentile(verified, 0.5) or 0, 2),
            "verified_p95_s": round(percentile(verified, 0.95) or 0, 2),
            "max_backlog": max((b for _t, b in samples), default=0), "samples": samples}


def part_a(base: Path, repeat: int, n: int, rate: float, seconds: float, s3: bool = False) -> dict[str, Any]:
    url = s3_start(base) if s3 else ""
    try:
        capacity = [handoff_run(base, f"a-capacity-{i}", n, 1e9, paced=False, s3=url) for i in range(repeat)]
        paced_n = int(rate * seconds / 3600)
        paced = [handoff_run(base, f"a-paced-{i}", paced_n, rate, paced=True, s3=url) for i in range(repeat)]
    finally:
        if s3:
            subprocess.run([sys.executable, ROOT / "scripts" / "s3-server", "stop", base / "s3"], check=False)
    return {"store": "SeaweedFS over HTTPS" if s3 else "local folder", "capacity": capacity, "paced": paced,
            "rate": rate,
            "capacity_median_per_hour": statistics.median(r["capacity_per_hour"] for r in capacity),
            "paced_median_handoff_p95_s": statistics.median(r["handoff_p95_s"] for r in paced),
            "paced_median_max_backlog": statistics.median(r["max_backlog"] for r in paced)}


MC_ARGS = ["--first_frame_sum", "1", "--last_frame_sum", "-1", "--use_own", "--j", "1", "--bin_factor", "1",
           "--bfactor", "150", "--dose_per_frame", "0.5", "--preexposure", "0", "--patch_x", "1", "--patch_y", "1",
           "--eer_grouping", "32", "--dose_weighting"]


def by_hand(session: Path, d: Path) -> float:
    """relion_import + relion_run_motioncorr over every movie in one batch, as a user would by hand."""
    work = d / "byhand"
    shutil.rmtree(work, ignore_errors=True)
    (work / "Import/job001").mkdir(parents=True)
    (work / "Movies").symlink_to(session)
    t0 = time.time()
    subprocess.run(["relion_import", "--do_movies", "--optics_group_name", "opticsGroup1", "--angpix", "3.0",
                    "--kV", "300", "--Cs", "2.7", "--Q0", "0.1", "--i", "Movies/*.mrc", "--odir", "Import/job001/",
                    "--ofile", "movies.star"], cwd=work, check=True, capture_output=True)
    subprocess.run(["relion_run_motioncorr", "--i", "Import/job001/movies.star", "--o", "MotionCorr/job002/",
                    *MC_ARGS], cwd=work, check=True, capture_output=True)
    return time.time() - t0


def watch_cli(session: Path, project: Path, until_idle: float, sim: threading.Thread | None = None) -> float:
    t0 = time.time()
    p = subprocess.Popen([sys.executable, "-m", "cryocloud", "watch", str(session), "--project", str(project),
                          "--until-idle", str(until_idle), "--json"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    if sim:
        sim.start()
    _, err = p.communicate()
    if p.returncode:
        raise RuntimeError(err[-2000:])
    return time.time() - t0


def corrected_rows() -> tuple[list[dict[str, Any]], list[dict[str, float]]]:
    from cryocloud.app.session_numbers import timeline

    ledger = Ledger(load_settings().ledger_path)
    sess = records.all_sessions(ledger.db)[0]
    rows = records.movies(ledger.db, sess.id)
    line = timeline(ledger, sess, 80)
    ledger.close()
    return rows, line


def part_b(base: Path, repeat: int, m: int, size: int, frames: int, rate: float, paced_n: int,
           max_split: int = 4) -> dict[str, Any]:
    ratios = []
    for i in range(repeat):
        session, project, _ = fresh(base, f"b-backlog-{i}")
        simulate(Plan(session, m, 1e9, size=size, frames=frames, modes=("inplace",)))
        settings_file(project, f"max_split = {max_split}\n")
        os.sync()  # the movies just written reach the disk before either side is timed
        if i % 2:  # alternate which side goes first
            took = watch_cli(session, project, 1.0)
            os.sync()
            hand = by_hand(session, base / f"b-backlog-{i}")
        else:
            hand = by_hand(session, base / f"b-backlog-{i}")
            os.sync()
            took = watch_cli(session, project, 1.0)
        rows, _ = corrected_rows()
        assert sum(1 for r in rows if r["state"] == "corrected") == m, "not every movie was corrected"
        last = max(r["corrected_at"] for r in rows)
        first = min(r["settled_at"] for r in rows)
        ratios.append({"by_hand_s": round(hand, 2), "watcher_s": round(last - first, 2),
                       "watcher_wall_s": round(took, 2), "ratio": round(hand / (last - first), 3)})
    out: dict[str, Any] = {"movies": m, "size": size, "frames": frames, "max_split": max_split, "backlog_runs": ratios,
                           "ratio_median": statistics.median(r["ratio"] for r in ratios)}
    if not paced_n:
        return out
    session, project, _ = fresh(base, "b-paced")
    settings_file(project, "max_wait_seconds = 5.0\n")
    sim = threading.Thread(target=simulate, args=(Plan(session, paced_n, rate, size=size, frames=frames),))
    watch_cli(session, project, 3.0, sim)
    sim.join()
    rows, line = corrected_rows()
    lat = [r["corrected_at"] - r["closed_at"] for r in rows if r["corrected_at"]]
    return {**out, "paced": {"rate": rate, "movies": paced_n, "corrected": len(lat),
                      "latency_p50_s": round(percentile(lat, 0.5) or 0, 2),
                      "latency_p95_s": round(percentile(lat, 0.95) or 0, 2),
                      "max_backlog": max(p["backlog"] for p in line), "timeline": line}}


def plot(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    if "a" in result:
        run = result["a"]["paced"][0]
        axes[0].plot([t for t, _ in run["samples"]], [b for _, b in run["samples"]])
        axes[0].set_title(f"(a) hand-off at {result['a']['rate']:.0f} movies/h: backlog")
        axes[0].set_xlabel("s")
        axes[0].set_ylabel("movies waiting or being written")
    if "b" in result and "paced" in result["b"]:
        line = result["b"]["paced"]["timeline"]
        axes[1].plot([p["t"] for p in line], [p["backlog"] for p in line])
        axes[1].set_title(f"(b) MotionCorr at {result['b']['paced']['rate']:.0f} movies/h: backlog")
        axes[1].set_xlabel("s since the first movie closed")
        axes[1].set_ylabel("movies complete, not corrected")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", default="all", choices=["a", "b", "all"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--movies-a", type=int, default=2000)
    ap.add_argument("--rate-a", type=float, default=10000)
    ap.add_argument("--s3", action="store_true", help="(a) archives to SeaweedFS over HTTPS (scripts/s3-server)")
    ap.add_argument("--seconds-a", type=float, default=90)
    ap.add_argument("--movies-b", type=int, default=150)
    ap.add_argument("--size-b", type=int, default=384)
    ap.add_argument("--frames-b", type=int, default=12)
    ap.add_argument("--rate-b", type=float, default=1000)
    ap.add_argument("--paced-b", type=int, default=40, help="0: no paced run")
    ap.add_argument("--split-b", type=int, default=4, help="the watcher's max_split in the backlog runs")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    base = Path(tempfile.mkdtemp(prefix="p4-"))
    result: dict[str, Any] = {"load_before": os.getloadavg()}
    try:
        if args.part in ("a", "all"):
            result["a"] = part_a(base, args.repeat, args.movies_a, args.rate_a, args.seconds_a, args.s3)
        if args.part in ("b", "all"):
            result["b"] = part_b(base, args.repeat, args.movies_b, args.size_b, args.frames_b, args.rate_b,
                                 args.paced_b, args.split_b)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    result["load_after"] = os.getloadavg()
    name = f"onthefly_p4_{args.part}" + (f"_{args.movies_b}x{args.split_b}" if args.part == "b" else "") + \
        ("_s3" if args.s3 else "")
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=1))
    plot(result, args.out / f"{name}_backlog.png")
    brief = {k: v for k, v in result.items() if k not in ("a", "b")}
    if "a" in result:
        brief["a"] = {k: v for k, v in result["a"].items() if k not in ("capacity", "paced")}
        brief["a"]["runs"] = [{k: v for k, v in r.items() if k != "samples"}
                              for r in result["a"]["capacity"] + result["a"]["paced"]]
    if "b" in result:
        brief["b"] = {k: v for k, v in result["b"].items() if k != "paced"}
        if "paced" in result["b"]:
            brief["b"]["paced"] = {k: v for k, v in result["b"]["paced"].items() if k != "timeline"}
    print(json.dumps(brief, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
