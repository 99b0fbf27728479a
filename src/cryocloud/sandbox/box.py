"""`cryocloud sandbox up|down|status`: a local AWS on 127.0.0.1, for users to rehearse the cloud path and for the tests.

Parts, each a process this module starts and stops by PID (pid and start time recorded in sandbox.json):
- the moto server as the EC2, IAM and STS API (AMI and instance-type validation on);
- SeaweedFS over HTTPS with a CA made here (s3server.py), with two identities: the lab's (all of it) and the node
  role's, limited to the lab's bucket and prefix (SeaweedFS refuses the rest);
- the instance simulator (simulator.py), which boots what the EC2 API launches, each node in a mount namespace
  where the lab's folders and cryocloud's home are hidden, its credentials served by a metadata stub (imds.py).

`up` makes the lab's bucket, the node role and its instance profile (what `cryocloud aws bootstrap` makes on AWS),
and returns the `export` lines a shell evals: endpoints, region, the CA bundle and the lab's sandbox credentials
(made here, valid only here). Everything lives in $CRYOCLOUD_HOME/sandbox.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from cryocloud.errors import CryocloudError
from cryocloud.proc import pid_alive, process_start_time, run_command, spawn_detached, stop_pid
from cryocloud.sandbox import s3server
from cryocloud.sandbox.simulator import end_orphans
from cryocloud.settings import Settings

BUCKET = "cryocloud-sandbox"
PREFIX = "cryocloud"
ROLE = "cryocloud-node"
REGION = "us-east-1"


def sandbox_dir(settings: Settings) -> Path:
    return settings.home / "sandbox"


def _state(d: Path) -> dict[str, Any] | None:
    path = d / "sandbox.json"
    return json.loads(path.read_text()) if path.exists() else None


def _alive(proc: dict[str, Any] | None) -> bool:
    return bool(proc) and pid_alive(int(proc["pid"]), float(proc["started"]))  # type: ignore[index]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listeners(port: int, among: list[int] | None = None) -> set[int]:
    """PIDs (of `among`, else of every process) holding a listening TCP socket on `port`, read from /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                f = row.split()
                if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                    inodes.add(f"socket:[{f[9]}]")
    pids = set()
    dirs = [Path(f"/proc/{pid}/fd") for pid in among] if among is not None else Path("/proc").glob("[0-9]*/fd")
    for fd_dir in dirs:
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in inodes for fd in fd_dir.iterdir()):
                pids.add(int(fd_dir.parent.name))
    return pids


def _wait_port(pid: int, port: int, timeout: float, what: str, log: Path) -> None:
    """Wait until `what` (process `pid`) listens on `port`; fail at once if it died (e.g. the port was taken)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listeners(port, [pid]):  # itself: not a program that took the port first
            return
        if not pid_alive(pid):
            tail = log.read_text(errors="replace")[-600:] if log.exists() else ""
            taken = "in use" in tail or _taken(port)
            raise CryocloudError(
                f"{what} could not start" + (f": port {port} on 127.0.0.1 is in use by another program" if taken
                                              else f": {tail.strip()[-300:]}"),
                "run `cryocloud sandbox up` again (it picks free ports)" if taken else f"see {log}")
        time.sleep(0.05)
    raise CryocloudError(f"{what} did not start listening on 127.0.0.1:{port} within {timeout:g} s", f"see {log}")


def _taken(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def check_namespaces() -> None:
    """The sandbox is only honest if a node cannot see the lab's disk: a mount namespace must be possible."""
    if not shutil.which("unshare"):
        raise CryocloudError("unshare is not installed: the sandbox cannot hide the lab's folders from its nodes",
                             "install util-linux (apt install util-linux); a node that can read the lab's disk would "
                             "let a job succeed that fails on AWS")
    argv = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        argv += ["--user", "--map-root-user"]
    got = run_command([*argv, "true"], check=False)
    if got.returncode != 0:
        raise CryocloudError(
            f"this machine refuses a mount namespace ({got.stderr.strip() or got.returncode}): the sandbox cannot hide "
            "the lab's folders from its nodes",
            "run as root, or allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)")


def exports(state: dict[str, Any]) -> list[str]:
    pairs = [("AWS_ENDPOINT_URL_EC2", state["moto_url"]), ("AWS_ENDPOINT_URL_IAM", state["moto_url"]),
             ("AWS_ENDPOINT_URL_STS", state["moto_url"]),
             ("AWS_ENDPOINT_URL_SERVICE_QUOTAS", state["moto_url"]), ("AWS_ENDPOINT_URL_S3", state["s3_url"]),
             ("AWS_CA_BUNDLE", state["ca_file"]), ("AWS_DEFAULT_REGION", state["region"]),
             ("AWS_REGION", state["region"]), ("AWS_ACCESS_KEY_ID", state["lab_access_key"]),
             ("AWS_SECRET_ACCESS_KEY", state["lab_secret_key"])]
    return [f"export {k}={v}" for k, v in pairs]


def status(settings: Settings) -> dict[str, Any]:
    d = sandbox_dir(settings)
    state = _state(d)
    if state is None:
        return {"up": False, "parts": {}, "orphans": []}
    parts = {name: _alive(state.get(name)) for name in ("moto", "s3", "simulator")}
    orphans = end_orphans(d) if not parts["simulator"] else []
    nodes = json.loads((d / "nodes.json").read_text()) if (d / "nodes.json").exists() else {}
    return {"up": all(parts.values()), "parts": parts, "orphans": orphans, "nodes": sorted(nodes), "state": state}


def up(settings: Settings, hide: list[Path] | None = None) -> tuple[dict[str, Any], bool]:
    """Start the sandbox (or find it up); (its state, whether it was already up)."""
    d = sandbox_dir(settings)
    now = status(settings)
    if now["up"]:
        return now["state"], True
    if now.get("state"):
        down(settings)  # a part died: start clean
    check_namespaces()
    d.mkdir(parents=True, exist_ok=True)
    (d / "log").mkdir(exist_ok=True)
    node_key, node_secret = "ccnode" + secrets.token_hex(6), secrets.token_hex(20)
    state: dict[str, Any] = {"dir": str(d), "region": REGION, "bucket": BUCKET, "prefix": PREFIX, "role": ROLE,
                             "node_access_key": node_key, "node_secret_key": node_secret,
                             "hide": sorted({str(p) for p in [settings.home, *(hide or [])]})}
    try:
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(MOTO_ENABLE_AMI_VALIDATION="true", MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION="true")
        pid = spawn_detached([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env,
                             stdout=d / "log" / "moto.out", stderr=d / "log" / "moto.err")
        state["moto"] = {"pid": pid, "started": process_start_time(pid)}
        state["moto_url"] = f"http://127.0.0.1:{port}"
        _save(d, state)
        _wait_port(pid, port, 30, "the moto server (EC2, IAM, STS)", d / "log" / "moto.err")
        s3 = s3server.start(d / "s3", "weed", tls=True, identities=[{
            "name": "node-role", "credentials": [{"accessKey": node_key, "secretKey": node_secret}],
            "actions": [f"{a}:{BUCKET}/{PREFIX}/*" for a in ("Read", "Write", "List", "Tagging")]}])
        state["s3"] = {"pid": s3["pid"], "started": s3["started"]}
        state.update(s3_url=s3["https_endpoint_url"], ca_file=s3["ca_file"], lab_access_key=s3["access_key"],
                     lab_secret_key=s3["secret_key"])
        _save(d, state)
        _lab_resources(state)
        pid = spawn_detached([sys.executable, "-m", "cryocloud.sandbox.simulator", str(d)], env=env,
                             stdout=d / "log" / "simulator.out", stderr=d / "log" / "simulator.err")
        state["simulator"] = {"pid": pid, "started": process_start_time(pid)}
        _save(d, state)
    except BaseException:
        down(settings)
        raise
    return state, False


def _save(d: Path, state: dict[str, Any]) -> None:
    tmp = d / "sandbox.json.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    tmp.chmod(0o600)  # the sandbox's own keys (valid only here)
    tmp.replace(d / "sandbox.json")


def _lab_resources(state: dict[str, Any]) -> None:
    """What `cryocloud aws bootstrap` makes on AWS, made here: the bucket, the node role, its profile, the group."""
    import boto3

    from cryocloud.aws.bootstrap import Bootstrap

    session = boto3.session.Session(aws_access_key_id=state["lab_access_key"],
                                    aws_secret_access_key=state["lab_secret_key"], region_name=state["region"])
    endpoints = {"s3": state["s3_url"], **{s: state["moto_url"] for s in ("ec2", "iam", "sts")}}
    Bootstrap(session, BUCKET, PREFIX, state["region"], endpoints=endpoints, ca_bundle=state["ca_file"]).run()
    images = session.client("ec2", endpoint_url=state["moto_url"]).describe_images(Owners=["amazon"])["Images"]
    state["image"] = sorted(i["ImageId"] for i in images)[0]  # the sandbox's "machine image": this host's RELION


def down(settings: Settings) -> list[str]:
    """Stop what `up` started, by PID; the names of what was running."""
    d = sandbox_dir(settings)
    state = _state(d)
    if state is None:
        return []
    stopped = []
    for name in ("simulator", "moto"):  # the simulator first: it ends its nodes
        proc = state.get(name)
        if proc is not None and stop_pid(int(proc["pid"]), float(proc["started"])):
            stopped.append(name)
    stopped += [f"node {iid}" for iid in end_orphans(d)]
    if state.get("s3") and s3server.signal_server(d / "s3", signal.SIGTERM):
        stopped.append("s3")
    (d / "sandbox.json").unlink(missing_ok=True)
    return stopped


def stop_s3(d: Path) -> bool:
    """Stop the sandbox's S3 server, by PID, to rehearse an outage of the bucket's endpoint (nodes and lab see
    connections refused); start_s3 brings it back. `d`: the sandbox's folder (its state's "dir")."""
    return s3server.signal_server(d / "s3", signal.SIGTERM)


def start_s3(d: Path) -> None:
    """Start the sandbox's S3 server (in sandbox folder `d`) again on its ports, with its data, keys and
    certificate."""
    state = _state(d)
    if state is None:
        raise CryocloudError("the sandbox is not up", "cryocloud sandbox up")
    s3 = s3server.launch(json.loads((d / "s3" / "server.json").read_text()), d / "s3")
    state["s3"] = {"pid": s3["pid"], "started": s3["started"]}
    _save(d, state)
