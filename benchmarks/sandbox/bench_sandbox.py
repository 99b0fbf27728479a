"""The AWS sandbox: `sandbox up` wall time, a simulated boot (RunInstances -> the user-data's first line on the node),
the RSS of the whole sandbox (moto, SeaweedFS, the simulator, one idle node), and `sandbox down`. Median of --reps.

    .venv/bin/python benchmarks/sandbox/bench_sandbox.py [--reps 3]

Each rep uses a fresh CRYOCLOUD_HOME under /tmp and runs the CLI as a user would (start-up included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_mb(pid: int) -> float:
    """RSS of `pid` and its descendants, MB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            todo += [int(c) for t in Path(f"/proc/{p}/task").iterdir()
                     for c in (t / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / 1024


def one() -> dict[str, float]:
    import boto3

    home = Path(tempfile.mkdtemp(prefix="ccsbx-"))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CRYOCLOUD_"))},
           "CRYOCLOUD_HOME": str(home)}
    cli = [sys.executable, "-m", "cryocloud", "sandbox"]
    t = time.perf_counter()
    out = subprocess.run([*cli, "up"], env=env, capture_output=True, text=True, check=True).stdout
    up = time.perf_counter() - t
    try:
        state = json.loads((home / "sandbox" / "sandbox.json").read_text())
        s = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
        ec2 = s.client("ec2", endpoint_url=state["moto_url"])
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        t = time.perf_counter()
        iid = ec2.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1,
                                UserData="#!/bin/bash\necho booted > booted\nexec sleep 600\n")["Instances"][0]["InstanceId"]
        mark = home / "sandbox" / "nodes" / iid / "booted"
        while not mark.exists():
            time.sleep(0.01)
        boot = time.perf_counter() - t
        rss = sum(rss_mb(int(state[k]["pid"])) for k in ("moto", "s3", "simulator"))
    finally:
        t = time.perf_counter()
        subprocess.run([*cli, "down"], env=env, capture_output=True, text=True, check=True)
        down = time.perf_counter() - t
    assert "export AWS_ENDPOINT_URL_EC2" in out
    return {"up_s": up, "boot_s": boot, "rss_mb": rss, "down_s": down}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    runs = [one() for _ in range(a.reps)]
    for r in runs:
        print(" ".join(f"{k} {v:.2f}" for k, v in r.items()))
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"median of {a.reps}: sandbox up {med['up_s']:.2f} s; simulated boot (RunInstances -> user-data running) "
          f"{med['boot_s']:.2f} s (of which the simulator's BOOT_SECONDS 1.0); RSS of the sandbox with one idle node "
          f"{med['rss_mb']:.0f} MB; sandbox down {med['down_s']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
