#!/usr/bin/env python3
"""P6: the API's status list with 1,000 jobs in the ledger, under a bounded load from a second process.

A fresh CRYOCLOUD_HOME gets 1,000 jobs (10 users, every state, one attempt each) and a manager's token; a real
`cryocloud serve` runs on loopback (its monitor loop in-process, as in production). A second process sends
`--requests` GETs per case over `--clients` keep-alive connections (each waits for its answer before the next:
a bounded load) and reports latency p50/p99. Peers in the same run: the same list computed in-process (app's
job_rows on one connection: the floor the HTTP layer adds to) and `cryocloud status --json --all` (a CLI call).
Target (TARGETS P6): p50 < 20 ms, p99 < 100 ms.
usage: .venv/bin/python benchmarks/api_status.py [--jobs 1000] [--requests 1000] [--clients 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

BIN = Path(sys.executable).parent
STATES = ["succeeded"] * 8 + ["failed", "aborted"]  # ended: the loop must not end made-up active jobs mid-run


def fill(home: Path, n: int) -> str:
    """n jobs over 10 users, each with one attempt; returns a manager's token."""
    os.environ["CRYOCLOUD_HOME"] = str(home)
    from cryocloud.app.facility import add_user, create_token
    from cryocloud.ledger import Ledger
    from cryocloud.settings import load_settings

    settings = load_settings()
    rng = random.Random(6)
    now = time.time()
    ledger = Ledger(settings.ledger_path)
    with ledger.transaction():
        for i in range(n):
            state = STATES[i % len(STATES)]
            start = now - rng.uniform(3600, 30 * 86400)
            end = None if state in ("running", "queued") else start + rng.uniform(60, 20000)
            job = ledger.add_job(
                name=f"Class2D/job{i:03d}/", client="relion", job_type="Class2D", project_dir=f"/data/p{i % 7}",
                job_dir=f"Class2D/job{i:03d}/", profile="aws-spot", backend="aws", user=f"u{i % 10}",
                project=f"p{i % 7}", state=state, submitted_at=start - 60, spec="{}", machine="g5.xlarge",
                started_at=None if state == "queued" else start, ended_at=end)
            if state != "queued":
                ledger.add_attempt(job, backend="aws", machine="g5.xlarge", market="spot", usd_per_hour=0.4,
                                   started_at=start, ended_at=end, state=state)
    ledger.close()
    add_user(settings, "boss", "manager")
    return create_token(settings, "boss")[1]


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def load(url: str, token: str, path: str, requests: int, clients: int) -> list[float]:
    """The second process: `clients` connections, each sending its share one after another."""
    parts = urlsplit(url)
    out: list[float] = []
    lock = threading.Lock()

    def one_client(count: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        mine = []
        for _ in range(count):
            t0 = time.perf_counter()
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            answer = conn.getresponse()
            body = answer.read()
            mine.append(time.perf_counter() - t0)
            assert answer.status == 200, body[:200]
        conn.close()
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=one_client, args=(requests // clients,)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--load", nargs=3, metavar=("URL", "TOKEN", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load:  # the second process
        print(json.dumps(load(*args.load, args.requests, args.clients)))
        return 0
    home = Path(tempfile.mkdtemp(prefix="cc-p6-"))
    token = fill(home, args.jobs)
    env = {**os.environ, "CRYOCLOUD_HOME": str(home)}
    log = home / "serve.log"
    server = subprocess.Popen([str(BIN / "cryocloud"), "serve", "--port", "0"], env=env,
                              stdout=open(log, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
    try:
        while "listening on" not in log.read_text():
            if server.poll() is not None:
                raise SystemExit(log.read_text())
            time.sleep(0.05)
        url = log.read_text().split("listening on ", 1)[1].split("/ ", 1)[0]
        print(f"{args.jobs} jobs, {args.requests} requests per case over {args.clients} keep-alive connections "
              f"from a second process; load average {os.getloadavg()[0]:.2f}")
        print(f"{'case':44} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
        for label, path in (("GET /api/v1/jobs (newest 100, all users)", "/api/v1/jobs"),
                            ("GET /api/v1/jobs?user=u3 (one user's, <=100)", "/api/v1/jobs?user=u3"),
                            ("GET /api/v1/jobs?limit=1000 (every job)", "/api/v1/jobs?limit=1000")):
            load(url, token, path, 40, 1)  # warm: imports, first connections
            done = subprocess.run([sys.executable, __file__, "--requests", str(args.requests), "--clients",
                                   str(args.clients), "--load", url, token, path], capture_output=True, text=True,
                                  check=True)
            xs = [x * 1000 for x in json.loads(done.stdout)]
            print(f"{label:44} {percentile(xs, 0.5):8.2f} {percentile(xs, 0.99):8.2f} {statistics.mean(xs):8.2f}")
        # peers, same run: the list computed in-process (no HTTP), and the CLI
        from cryocloud.app.jobs import job_rows
        from cryocloud.ledger import Ledger
        from cryocloud.settings import load_settings

        ledger = Ledger(load_settings().ledger_path)
        for label, limit in (("in-process job_rows (newest 100)", 100), ("in-process job_rows (every job)", 1000)):
            xs = []
            for _ in range(200):
                t0 = time.perf_counter()
                job_rows(ledger, limit=limit)
                xs.append((time.perf_counter() - t0) * 1000)
            print(f"{label:44} {percentile(xs, 0.5):8.2f} {percentile(xs, 0.99):8.2f} {statistics.mean(xs):8.2f}")
        ledger.close()
        xs = []
        for _ in range(10):
            t0 = time.perf_counter()
            subprocess.run([str(BIN / "cryocloud"), "status", "--json", "--all"], env=env, capture_output=True,
                           check=False)
            xs.append((time.perf_counter() - t0) * 1000)
        print(f"{'CLI: cryocloud status --json --all (x10)':44} {percentile(xs, 0.5):8.2f} {percentile(xs, 0.99):8.2f} "
              f"{statistics.mean(xs):8.2f}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
