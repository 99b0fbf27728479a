"""The user-data an instance boots with: a short Python program for the image's Python, and its parameters as JSON.

It holds no secret and no key: the node reaches S3 with its instance profile's role, whose credentials boto3 finds
through the metadata service (IMDSv2) by its own chain. In order, it:
1. schedules the dead man's shutdown (`shutdown -h +M`): from now on a node whose agent hangs or dies ends itself;
2. fetches the lab's exact cryocloud wheel from the bucket and installs it with `pip install --no-deps --no-index`
   into its own folder (the image carries the dependencies; no Internet is needed);
3. runs the agent (agent/cloud.py): stage in, run, stream back, push the end;
4. shuts the machine down, whatever happened (InstanceInitiatedShutdownBehavior=terminate ends the billing).
A step that fails before the agent runs leaves its traceback at `<control>/boot-error` in the store, which the
lab's monitor shows in run.err: a node never fails silently.
"""

from __future__ import annotations

import json
from typing import Any

PROGRAM = r'''
import json, os, subprocess, sys, traceback
from pathlib import Path

P = json.loads(PARAMS)
base = Path(os.environ.get("HOME") or "/root") / "cryocloud"
base.mkdir(parents=True, exist_ok=True)


def shutdown(when):
    try:
        subprocess.run(["shutdown", "-h", when], check=False, timeout=30)
    except Exception as e:
        print("cryocloud boot: shutdown", when, "failed:", e, file=sys.stderr, flush=True)


def say(msg):
    print("cryocloud boot:", msg, flush=True)


shutdown("+%d" % P["deadman_minutes"])
code = 1
try:
    import boto3

    s3 = boto3.client("s3")
    wheel = base / P["wheel_name"]
    s3.download_file(P["bucket"], P["wheel_key"], str(wheel))
    say("fetched %s" % P["wheel_key"])
    lib = base / "lib"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--no-compile", "-q",
                    "--disable-pip-version-check", "--target", str(lib), str(wheel)], check=True)
    say("installed %s" % P["wheel_name"])
    (base / "job.json").write_text(json.dumps(P["job"]))
    env = dict(os.environ, PYTHONPATH=str(lib), CRYOCLOUD_SCRATCH=str(base / "scratch"),
               CRYOCLOUD_STREAM_SECONDS=str(P["stream_seconds"]))
    code = subprocess.run([sys.executable, "-m", "cryocloud.agent.cloud", str(base / "job.json")], env=env).returncode
    say("agent ended (%d)" % code)
except BaseException:
    text = traceback.format_exc()
    print(text, file=sys.stderr, flush=True)
    try:
        s3.put_object(Bucket=P["bucket"], Key=P["boot_error_key"], Body=text.encode())
    except Exception:
        pass
finally:
    shutdown("now")
sys.exit(code)
'''


def user_data(python: str, params: dict[str, Any]) -> str:
    """The script (under 16 KB, EC2's limit); `params` become a JSON literal, never shell or Python source."""
    text = f"#!{python}\n# cryocloud node bootstrap: see cryocloud/backends/aws/userdata.py\nPARAMS = {json.dumps(json.dumps(params))}\n{PROGRAM}"
    if len(text.encode()) > 16 * 1024:
        raise ValueError(f"user-data of {len(text.encode())} bytes is over EC2's 16 KB")
    return text
