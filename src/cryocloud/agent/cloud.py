"""The agent on a cloud instance: remote.py's staged run, plus what a machine billed by the second needs.

    python -m cryocloud.agent.cloud JOB_JSON      (run by the user-data, backends/aws/userdata.py)

- the node's RELION must be the lab's (the JobSpec records the lab's `relion_refine --version`): a different one
  fails the job with both versions named, before any work is billed for nothing;
- a dead man's switch: the user-data scheduled `shutdown -h +M`; while the job is healthy this agent pushes it
  back every minute, until the job's hard deadline (the plan's hours times a margin, in the `expires` tag too);
  past it, it stops pushing and the machine ends itself. A lab that goes quiet (a laptop asleep) ends nothing;
- RELION's Abort (or a budget stop) reaches the node as an object in the store (`abort_key`): the job stops
  within seconds and its folder is pushed back as usual.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryocloud.agent import scratch
from cryocloud.agent.remote import run_staged
from cryocloud.errors import CryocloudError
from cryocloud.jobs import cmdline, control, runlog
from cryocloud.jobs.relion import installed_version
from cryocloud.proc import proc_stats, run_command

ABORT_POLL = 2.0  # s between looks for the abort object
DEADMAN_EVERY = 60.0  # s between pushes of the scheduled shutdown
STALL_POLL = 30.0  # s between looks for a stall


class Watch:
    """The threads beside the job: the abort object, the dead man's switch up to the hard deadline, and (when the
    profile sets stall_minutes) the stall watch."""

    def __init__(self, job: dict[str, Any], store: Any, control_dir: Path) -> None:
        self.job, self.store, self.control_dir = job, store, control_dir
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._abort, daemon=True),
                        threading.Thread(target=self._deadman, daemon=True)]
        if float(job.get("stall_minutes") or 0) > 0:
            self.threads.append(threading.Thread(target=self._stall, daemon=True))

    def __enter__(self) -> Watch:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)

    def _abort(self) -> None:
        from cryocloud.storage.transfer import run

        key = str(self.job["abort_key"])
        while not self.stop.wait(ABORT_POLL):
            try:
                info = run(self.store.head(key))
            except CryocloudError:
                continue  # the store answers again later; the dead man's switch still runs
            if info is not None:
                reason = run(self.store.get(key)).decode(errors="replace").strip() or "aborted on request"
                self.control_dir.mkdir(parents=True, exist_ok=True)
                (self.control_dir / control.CANCEL).write_text(reason)  # the Runner stops the job as cancelled
                return

    def _deadman(self) -> None:
        deadline = float(self.job["deadline_at"])
        minutes = int(self.job["deadman_minutes"])
        while not self.stop.wait(DEADMAN_EVERY):
            if time.time() + minutes * 60 < deadline:
                run_command(["shutdown", "-h", f"+{minutes}"], timeout=30, check=False)
            # past that point the scheduled shutdown is left to fire by the hard deadline

    def _stall(self) -> None:
        """A job whose folder gets no new output and whose processes use no CPU for stall_minutes: say so in
        run.out (streamed to the lab), and end it when the profile says so; once."""
        limit = float(self.job["stall_minutes"]) * 60
        job_dir = self.control_dir.parent.parent
        last, seen = time.monotonic(), (0.0, 0.0)
        while not self.stop.wait(min(STALL_POLL, limit / 4)):
            now = (_newest_mtime(job_dir), _cpu_seconds(self.control_dir))
            if now != seen:
                last, seen = time.monotonic(), now
                continue
            if time.monotonic() - last >= limit:
                minutes = limit / 60
                runlog.note(job_dir, f"stalled: no new output and no CPU use for {minutes:g} min")
                control.write_json(self.control_dir / control.STALLED, {  # streamed back: `status` shows it
                    "at": time.time(), "minutes": minutes, "ending": bool(self.job.get("end_stalled"))})
                if self.job.get("end_stalled"):
                    (self.control_dir / control.CANCEL).write_text(
                        f"ended: stalled for {minutes:g} min (no new output, no CPU use; the profile's end_stalled)")
                return


def _newest_mtime(folder: Path) -> float:
    newest = 0.0
    for p in folder.rglob("*"):
        with contextlib.suppress(OSError):
            newest = max(newest, p.stat().st_mtime)
    return newest


def _cpu_seconds(control_dir: Path) -> float:
    """CPU seconds used so far by the job's session (the Runner records its leader's pid, the session's id, in
    agent.json): its process group alone missed a command run under `timeout`, which moves it to a group of its
    own, and the stall watch would have seen a busy job as idle."""
    pgid = (control.read_json(control_dir / control.AGENT) or {}).get("child_pgid")
    if not isinstance(pgid, int):
        return 0.0
    ticks = sum(int(f[11]) + int(f[12]) for _pid, f in proc_stats() if int(f[3]) == pgid)  # user + system
    return ticks / os.sysconf("SC_CLK_TCK")


def portable(executables: dict[str, str], instance_store: Path | None = None) -> Callable[[Path], None]:
    """Rewrite the staged launch.json's command lines for this node (cmdline.for_node); with `instance_store`,
    mount the node's NVMe there first and give relion_refine lines it as --scratch_dir (agent/scratch.py)."""
    def prepare(control_dir: Path) -> None:
        launch = control.read_json(control_dir / control.LAUNCH) or {}
        spec = launch.get("spec") or {}
        lines = [cmdline.for_node(ln, executables) for ln in spec.get("commands", [])]
        if instance_store is not None:
            mounted, said = scratch.prepare(instance_store)
            runlog.note(control_dir.parent.parent, said)
            if mounted is not None:
                lines = [scratch.with_scratch(ln, str(mounted)) for ln in lines]
        if lines != spec.get("commands"):
            control.write_json(control_dir / control.LAUNCH, {**launch, "spec": {**spec, "commands": lines}})
    return prepare


def fail_before_start(project: Path, job: dict[str, Any], store: Any, message: str) -> int:
    """End the job on the node before its commands ran: result.json and run.err pushed back as a run's would be."""
    from cryocloud.storage.staging import stage_out

    job_dir, cdir = project / job["job_dir"], project / job["control"]
    runlog.note(job_dir, message, runlog.ERR, make=True)
    cdir.mkdir(parents=True, exist_ok=True)
    now = time.time()
    control.write_json(cdir / control.RESULT, {"state": "failed", "exit_code": None, "message": message,
                                               "started_at": now, "ended_at": now})
    stage_out(store, project, [Path(job["job_dir"])], name=job["outputs"])
    return 1


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m cryocloud.agent.cloud JOB_JSON", file=sys.stderr)
        return 2
    import cryocloud
    from cryocloud.agent.remote import scratch_root
    from cryocloud.settings import NodeSettings
    from cryocloud.storage.stores import open_store

    job = json.loads(Path(argv[0]).read_text())
    print(f"cryocloud agent {cryocloud.__file__}", flush=True)
    store = open_store(job["store"])
    project = scratch_root(NodeSettings.from_env()) / "project"
    want, have = str(job.get("relion_version") or ""), installed_version()
    if want and have != want:
        return fail_before_start(project, job, store,
                                 f"this node's RELION is {have or 'not installed'}, the lab's is {want}: the image "
                                 "must carry the lab's version (docs/node-image.md builds one per version)")
    nvme = NodeSettings.from_env().scratch / "instance-store" if job.get("instance_store") else None
    with Watch(job, store, project / job["control"]):
        # the results are pushed again while the store is away, up to the hard deadline (the machine ends then)
        return run_staged(job["store"], job["inputs"], job["outputs"], job["job_dir"], job["control"],
                          prepare=portable(dict(job.get("executables") or {}), nvme),
                          final_push_minutes=max(1.0, (float(job["deadline_at"]) - time.time()) / 60))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
