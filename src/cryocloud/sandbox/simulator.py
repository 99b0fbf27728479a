"""The instance simulator: boots each instance the EC2 API (moto) launches, as the machine would.

    python -m cryocloud.sandbox.simulator SANDBOX_DIR      (started by `cryocloud sandbox up`)

Every POLL seconds it asks the EC2 API for instances. A new one gets a metadata service of its own (imds.py) and,
after BOOT_SECONDS, its user-data runs as a script in a fresh working folder (nodes/<id>/), with a clean
environment (nothing of the lab's: the sandbox's endpoints, its CA and the metadata endpoint only), in its own
mount namespace where the lab's folders and cryocloud's home are hidden (node.py). Then:
- TerminateInstances (or StopInstances): the node's processes end (SIGTERM, then SIGKILL);
- `shutdown`/`poweroff`/`halt` from inside (shims first on the node's PATH): the instance is terminated when it
  was launched with InstanceInitiatedShutdownBehavior=terminate (cryocloud always does), else stopped;
- a hard deadline (MAX_HOURS after boot, or the instance's cryocloud:expires tag, whichever is first): terminated;
- user-data that just ends leaves the instance running and billed, as on EC2.
The nodes it runs are listed in nodes.json (pid and start time), so a later `sandbox up`/`status`/`down` can end
them by PID if the simulator itself was killed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shlex
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryocloud.proc import ProcessGroup, descendants, pid_alive, process_start_time, start_process_group
from cryocloud.sandbox.imds import InstanceFacts, MetadataServer

POLL = 0.25
BOOT_SECONDS = 1.0
MAX_HOURS = 12.0
SHUTDOWN_NAMES = ("shutdown", "poweroff", "halt")


@dataclass
class Node:
    instance_id: str
    workdir: Path
    imds: MetadataServer | None
    boot_at: float
    deadline: float
    process: ProcessGroup | None = None
    ended: bool = False
    halt_at: float | None = None  # a `shutdown -h +M` scheduled from inside (None: none, or cancelled with -c)
    request_seen: float = 0.0  # mtime of the last shutdown request read


def _expires(tags: dict[str, str]) -> float | None:
    with contextlib.suppress(ValueError, KeyError):
        return float(tags["cryocloud:expires"])
    return None


class Simulator:
    def __init__(self, sandbox: Path) -> None:
        import boto3

        self.dir = sandbox
        self.state = json.loads((sandbox / "sandbox.json").read_text())
        self.ec2 = boto3.session.Session().client(
            "ec2", endpoint_url=self.state["moto_url"], region_name=self.state["region"],
            aws_access_key_id="sandbox", aws_secret_access_key="sandbox")
        self.nodes: dict[str, Node] = {}
        self.stopping = False

    # --- the EC2 side ---------------------------------------------------------------------------------
    def _instances(self, ids: list[str] | None = None) -> list[dict[str, Any]]:
        kw: dict[str, Any] = {"InstanceIds": ids} if ids else {
            "Filters": [{"Name": "instance-state-name", "Values": ["pending", "running"]}]}
        out: list[dict[str, Any]] = []
        for page in self.ec2.get_paginator("describe_instances").paginate(**kw):
            for r in page["Reservations"]:
                out.extend(dict(i) for i in r["Instances"])
        return out

    def _user_data(self, iid: str) -> bytes:
        got = self.ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
        value = got.get("UserData", {}).get("Value", "")
        return base64.b64decode(value) if value else b""

    def _shutdown_behaviour(self, iid: str) -> str:
        got = self.ec2.describe_instance_attribute(InstanceId=iid, Attribute="instanceInitiatedShutdownBehavior")
        return str(got.get("InstanceInitiatedShutdownBehavior", {}).get("Value", "stop"))

    # --- a node's life --------------------------------------------------------------------------------
    def _new(self, inst: dict[str, Any], now: float) -> None:
        iid = inst["InstanceId"]
        work = self.dir / "nodes" / iid
        work.mkdir(parents=True, exist_ok=True)
        self.nodes[iid] = Node(iid, work, None, now + BOOT_SECONDS, now + BOOT_SECONDS + MAX_HOURS * 3600)
        self._log(f"{iid}: launched ({inst.get('InstanceType', '')}); booting")

    def _facts(self, node: Node) -> None:
        """What the machine's metadata service tells it, read at boot: the EC2 API may still be filling in the
        instance (its profile, its tags) when the simulator first sees it."""
        inst = self._instances([node.instance_id])[0]
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        profile = inst.get("IamInstanceProfile", {}).get("Arn", "")
        facts = InstanceFacts(node.instance_id, inst.get("InstanceType", ""),
                              inst.get("Placement", {}).get("AvailabilityZone", ""), inst.get("ImageId", ""),
                              profile.rsplit("/", 1)[-1] if profile else "",
                              self.state["node_access_key"], self.state["node_secret_key"], tags)
        if not facts.role:  # no instance profile: no credentials, as on EC2
            facts.access_key = facts.secret_key = ""
        node.imds = MetadataServer(facts)
        expires = _expires(tags)
        if expires:
            node.deadline = min(node.deadline, expires)

    def _boot(self, node: Node) -> None:
        self._facts(node)
        assert node.imds is not None
        work = node.workdir
        script = work / "user-data"
        body = self._user_data(node.instance_id)
        script.write_bytes(body if body.startswith(b"#!") else b"#!/bin/bash\n" + body)
        script.chmod(0o700)
        shutil.copyfile(self.state["ca_file"], work / "ca.pem")
        bindir = work / "bin"
        bindir.mkdir(exist_ok=True)
        for name in SHUTDOWN_NAMES:  # `shutdown -h now` asks the "hypervisor" (us) to end the machine
            shim = bindir / name
            req, tmp = shlex.quote(str(work / ".shutdown")), shlex.quote(str(work / ".shutdown.tmp"))
            shim.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" > {tmp}.$$ && mv -f {tmp}.$$ {req}\n")
            shim.chmod(0o755)
        env = {
            "PATH": os.pathsep.join([str(bindir), str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin",
                                     "/bin", "/usr/sbin", "/sbin"]),
            "HOME": str(work), "LANG": "C.UTF-8", "AWS_EC2_METADATA_SERVICE_ENDPOINT": node.imds.endpoint,
            "AWS_REGION": self.state["region"], "AWS_DEFAULT_REGION": self.state["region"],
            "AWS_ENDPOINT_URL_S3": self.state["s3_url"], "AWS_ENDPOINT_URL_EC2": self.state["moto_url"],
            "AWS_CA_BUNDLE": str(work / "ca.pem"),
        }
        argv = ["unshare", "--mount", "--propagation", "private"]
        if os.geteuid() != 0:
            argv += ["--user", "--map-root-user"]
        argv += [sys.executable, "-m", "cryocloud.sandbox.node", "--workdir", str(work)]
        for h in self.state["hide"]:
            argv += ["--hide", h]
        for k in (str(work), sys.prefix, str(Path(sys.executable).resolve().parent)):
            argv += ["--keep", k]
        argv += ["--", str(script)]
        node.process = start_process_group(argv, cwd=work, env=env, stdout_path=work / "console.out",
                                           stderr_path=work / "console.err")
        self._log(f"{node.instance_id}: booted; user-data running (pid {node.process.pid})")
        self._save()

    def _end(self, node: Node, why: str) -> None:
        if node.process is not None and node.process.returncode is None:
            tree = descendants(node.process.pid)  # the agent starts the job in a session of its own
            node.process.stop(0, 5)
            for pid, started in tree:  # a machine that ends takes all its processes with it
                if pid_alive(pid, started):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        if node.imds is not None:
            node.imds.close()
        node.ended = True
        self._log(f"{node.instance_id}: {why}")
        self._save()

    def _halt_due(self, node: Node, now: float) -> bool:
        """Read a new `shutdown` request from inside: `now` (or no time), `+M` (in M minutes; a later call
        replaces it, as systemd's does) or `-c` (cancel). True when the machine is to go down now."""
        req = node.workdir / ".shutdown"
        with contextlib.suppress(OSError):
            mtime = req.stat().st_mtime
            if mtime != node.request_seen:
                node.request_seen = mtime
                args = req.read_text().split()
                later = [a for a in args if a.startswith("+") and a[1:].isdigit()]
                if "-c" in args:
                    node.halt_at = None
                    self._log(f"{node.instance_id}: scheduled shutdown cancelled")
                elif later:
                    node.halt_at = now + int(later[0][1:]) * 60
                    self._log(f"{node.instance_id}: shutdown scheduled in {later[0][1:]} min")
                else:
                    node.halt_at = now
        return node.halt_at is not None and now >= node.halt_at

    def step(self, now: float) -> None:
        for inst in self._instances():
            if inst["InstanceId"] not in self.nodes:
                self._new(inst, now)
        live = [n for n in self.nodes.values() if not n.ended]
        states = {i["InstanceId"]: i["State"]["Name"] for i in self._instances([n.instance_id for n in live])} \
            if live else {}
        for node in live:
            iid = node.instance_id
            if states.get(iid) not in ("pending", "running"):
                self._end(node, f"{states.get(iid, 'gone')}: processes ended")
            elif self._halt_due(node, now):
                if self._shutdown_behaviour(iid) == "terminate":
                    self.ec2.terminate_instances(InstanceIds=[iid])
                    self._end(node, "shut down from inside: terminated")
                else:
                    self.ec2.stop_instances(InstanceIds=[iid])
                    self._end(node, "shut down from inside: stopped")
            elif now >= node.deadline:
                self.ec2.terminate_instances(InstanceIds=[iid])
                self._end(node, "past its hard deadline: terminated")
            elif node.process is None and now >= node.boot_at:
                self._boot(node)
            elif node.process is not None and node.process.returncode is None and node.process.wait(0) is not None:
                self._log(f"{iid}: user-data ended ({node.process.returncode}); the instance keeps running")

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        self._log("simulator up")
        while not self.stopping:
            try:
                self.step(time.time())
            except Exception as e:  # the EC2 API restarting, a transient error: try again next poll
                self._log(f"poll failed: {type(e).__name__}: {e}")
            time.sleep(POLL)
        for node in self.nodes.values():
            if not node.ended:
                self._end(node, "sandbox going down: processes ended")
        self._log("simulator down")

    def _save(self) -> None:
        rows = {n.instance_id: {"pid": n.process.pid, "started": process_start_time(n.process.pid)}
                for n in self.nodes.values() if n.process is not None and not n.ended and
                pid_alive(n.process.pid)}
        tmp = self.dir / "nodes.json.tmp"
        tmp.write_text(json.dumps(rows))
        tmp.replace(self.dir / "nodes.json")

    def _log(self, msg: str) -> None:
        print(time.strftime("%H:%M:%S ") + msg, flush=True)


def end_orphans(sandbox: Path) -> list[str]:
    """Nodes a killed simulator left running: end their process groups (by the PIDs it recorded)."""
    path = sandbox / "nodes.json"
    ended, rows = [], []
    if path.exists():
        for iid, row in json.loads(path.read_text()).items():
            if pid_alive(int(row["pid"]), float(row["started"])):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(int(row["pid"]), signal.SIGKILL)
                ended.append(iid)
                rows.append(row)
        deadline = time.monotonic() + 10  # SIGKILL is not instant: return once they are gone
        while any(pid_alive(int(r["pid"]), float(r["started"])) for r in rows) and time.monotonic() < deadline:
            time.sleep(0.02)
        path.unlink()
    return ended


if __name__ == "__main__":
    Simulator(Path(sys.argv[1])).run()
