"""The agent on a node that does not see the lab's disk (a staged job; see jobstage.py for the lab's side).

1. stage in the job's inputs, job folder and launch.json from the store into node-local scratch
   ($CRYOCLOUD_SCRATCH, else $TMPDIR, else /tmp: `cryocloud-<Slurm job id>/project`);
2. run the job there with the ordinary Runner (the commands' working directory is the scratch project);
3. push the job folder back while it runs (every CRYOCLOUD_STREAM_SECONDS, so RELION's GUI shows iterations as they
   land) and once at the end, after result.json is written: that final manifest is what the lab verifies
   before it writes RELION's marker. Markers and abort files never travel (storage.staging.CONTROL_FILES);
4. remove the scratch folder.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cryocloud.agent.runner import Runner
from cryocloud.errors import CryocloudError
from cryocloud.jobs import runlog
from cryocloud.jobs.states import State
from cryocloud.settings import NodeSettings


def scratch_root(node: NodeSettings) -> Path:
    return node.scratch / f"cryocloud-{node.slurm_job_id or os.getpid()}"


def push_back(push: Callable[[], object], job_folder: Path, minutes: float,
              clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
    """The final push of a job's outputs, tried again while the store is unreachable (a network outage, the
    bucket's endpoint restarting) for up to `minutes`: a finished job's results are never given up at the first
    error. Each failed try is a run.err line, which travels back with the push that succeeds."""
    deadline, wait = clock() + minutes * 60, 2.0
    while True:
        try:
            push()
            return
        except (CryocloudError, OSError) as e:
            why = e.message if isinstance(e, CryocloudError) else str(e)
            if clock() + wait > deadline:
                raise
            line = f"the store is unreachable ({why}); pushing the results again in {wait:.0f} s"
            runlog.note(job_folder, line, runlog.ERR)
            print(f"cryocloud agent: {line}", file=sys.stderr, flush=True)
            sleep(wait)
            wait = min(wait * 2, 60.0)


def run_staged(store_url: str, inputs: str, outputs: str, job_dir: str, control_rel: str,
               prepare: Callable[[Path], None] | None = None, final_push_minutes: float = 30.0) -> int:
    """`prepare(control_dir)`, when given, runs once the job is staged in and before it starts (a cloud node makes
    the lab's command lines portable there: agent/cloud.py). The final push is tried for `final_push_minutes`
    while the store is unreachable (push_back)."""
    from cryocloud.storage.staging import stage_in, stage_out
    from cryocloud.storage.stores import open_store

    node = NodeSettings.from_env()
    scratch = scratch_root(node)
    project = scratch / "project"
    store = open_store(store_url)
    try:
        got = stage_in(store, inputs, project)
        runlog.note(project / job_dir, f"staged in {got.files} files ({got.bytes_total / 1e6:.1f} MB) to node-local "
                    f"scratch {project}", make=True)
        if prepare is not None:
            prepare(project / control_rel)
        runner = Runner(project / control_rel, project=project)
        runner.lab_marks_signals = True  # markers stay here; the lab writes RELION's, and asks Slurm why on a signal
        stop = threading.Event()

        def stream() -> None:
            while not stop.wait(node.stream_seconds):
                try:
                    stage_out(store, project, [Path(job_dir)], name=outputs)
                except (CryocloudError, OSError) as e:  # the final push below decides; keep running
                    print(f"cryocloud agent: streaming outputs failed ({e}); trying again later", file=sys.stderr)

        streamer = threading.Thread(target=stream, daemon=True)
        streamer.start()
        try:
            outcome = runner.run()
        finally:
            stop.set()
            streamer.join()
        runlog.note(project / job_dir, "pushing the job folder back to the lab", make=True)
        push_back(lambda: stage_out(store, project, [Path(job_dir)], name=outputs),  # result.json inside
                  project / job_dir, final_push_minutes)
        if outcome.state == State.SUCCEEDED and node.slurm_job_id:  # Slurm's own output on the node
            Path(f"/tmp/cryocloud-{node.slurm_job_id}.out").unlink(missing_ok=True)  # kept on failure
        return 0 if outcome.state == State.SUCCEEDED else 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print("usage: python -m cryocloud.agent.remote STORE INPUTS OUTPUTS JOB_DIR CONTROL_DIR", file=sys.stderr)
        return 2
    store, inputs, outputs, job_dir, control_dir = argv
    return run_staged(store, inputs, outputs, job_dir, control_dir)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
