"""P3 on the AWS sandbox (../shared/TARGETS.md): a trivial job through the AWS backend, as a user submits it.

    .venv/bin/python benchmarks/sandbox/bench_aws_job.py [--reps 5]

For each job it reads the times the parts recorded themselves:
- staged: the lab's "staged N files" line (inputs in S3) and launched: RunInstances answered (the handle);
  "instance time while the lab uploads" is launched - staged when negative, else 0 (launch waits for staging);
- up: the simulator started the user-data (the node's user-data file is written at that moment);
- command started: the agent's started_at in result.json (pushed back with the job folder);
- command ended: result.json's ended_at; terminate requested: the simulator's shutdown request file (the node's
  `shutdown -h now`), which is what ends the billing (InstanceInitiatedShutdownBehavior=terminate).
Median and max of --reps. One sandbox for all reps (its own CRYOCLOUD_HOME under /tmp); stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _stamp_time(run_out: str, needle: str) -> float:
    for line in run_out.splitlines():
        if needle in line and line.startswith("[cryocloud "):
            return time.mktime(time.strptime(line[11:30], "%Y-%m-%d %H:%M:%S"))
    raise SystemExit(f"no {needle!r} line in run.out")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    base = Path(tempfile.mkdtemp(prefix="ccaws-"))
    os.environ.update(CRYOCLOUD_HOME=str(base / "lab-home"))
    for k in [k for k in os.environ if k.startswith("AWS_")]:
        del os.environ[k]
    from cryocloud.app.submit import submit_script
    from cryocloud.aws import profiles
    from cryocloud.jobs import control
    from cryocloud.jobs.relion import template_text
    from cryocloud.ledger import Ledger
    from cryocloud.sandbox import box
    from cryocloud.settings import General, Settings, load_settings

    sandbox_settings = Settings(home=base / "sbx", config_path=base / "sbx" / "c.toml", general=General(user="lab"))
    state, _ = box.up(sandbox_settings, [base / "lab"])
    rows: list[dict[str, float]] = []
    try:
        for line in box.exports(state):
            k, _, v = line.removeprefix("export ").partition("=")
            os.environ[k] = v
        os.environ["CRYOCLOUD_BACKEND"] = "aws"
        profiles.ensure(base / "lab-home" / "config.toml", {
            "region": state["region"], "staging": f"s3://{state['bucket']}/{state['prefix']}",
            "image": state["image"], "python": sys.executable, "instance_type": "c7i.large"}, "bench")
        for i in range(a.reps):
            project = base / "lab" / f"p{i}"
            jd = project / "External" / "job001"
            jd.mkdir(parents=True)
            text = template_text()
            for ph, v in {"XXXnameXXX": "External/job001/", "XXXmpinodesXXX": "1", "XXXthreadsXXX": "1",
                          "XXXqueueXXX": "aws", "XXXoutfileXXX": "External/job001/run.out",
                          "XXXerrfileXXX": "External/job001/run.err", "XXXcommandXXX": "true"}.items():
                text = text.replace(ph, v)
            text = text.replace("XXXextra1XXX", "").replace("XXXextra2XXX", "").replace("XXXextra3XXX", "")
            (jd / "run_submit.script").write_text(text)
            cwd = os.getcwd()
            os.chdir(project)
            try:
                job = submit_script(Path("External/job001/run_submit.script"), project).job
            finally:
                os.chdir(cwd)
            while not (jd / "RELION_JOB_EXIT_SUCCESS").exists():
                if (jd / "RELION_JOB_EXIT_FAILURE").exists():
                    raise SystemExit(f"the job failed: {(jd / 'run.err').read_text()} (nodes: {state['dir']}/nodes)")
                time.sleep(0.05)
            ledger = Ledger(load_settings().ledger_path)
            try:
                attempt = ledger.last_attempt(job.id)
                assert attempt is not None
                handle: dict[str, Any] = attempt.handle_data
            finally:
                ledger.close()
            cdir = Path(handle["control_dir"])
            result = control.read_json(cdir / control.RESULT) or {}
            node = Path(state["dir"]) / "nodes" / handle["instance_id"]
            shutdown = node / ".shutdown"
            while not shutdown.exists() or "now" not in shutdown.read_text():
                time.sleep(0.05)
            run_out = (jd / "run.out").read_text()
            staged = _stamp_time(run_out, "staged ")
            rows.append({
                "up_to_command_s": float(result["started_at"]) - (node / "user-data").stat().st_mtime,
                "end_to_terminate_s": shutdown.stat().st_mtime - float(result["ended_at"]),
                "billed_while_uploading_s": max(0.0, staged - float(handle["launched_at"])),
                "compute_usd": attempt.compute_usd,
            })
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if os.environ.get("KEEP") is None:
            box.down(sandbox_settings)
    out = {k: {"median": statistics.median(r[k] for r in rows), "max": max(r[k] for r in rows)} for k in rows[0]}
    print(json.dumps({"reps": a.reps, **out}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
