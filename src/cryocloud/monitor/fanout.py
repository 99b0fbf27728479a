"""Gathering a fan-out's shards, once, above the backends (DESIGN: each backend maps tasks to its native form;
gathering happens in the monitor). Each shard's agent reports into its own control folder (task<N>/), so the
first shard to finish cannot mark the job done; this folds them into the job's result.json and writes the
client's marker once. Two steps may follow the shards: a RELION split job's final `--only_do_unfinished` pass,
started here (the lab, where the job folder lives) once every shard succeeded, in its own control folder; and
a job file's `select` (monitor/select.py).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryocloud.errors import CryocloudError
from cryocloud.jobs import control, runlog
from cryocloud.jobs.spec import JobSpec
from cryocloud.jobs.states import State
from cryocloud.monitor import select
from cryocloud.proc import pid_alive, process_start_time, spawn_detached

FINAL_PID = "final.pid"


def final_running(cdir: Path) -> bool:
    """The final pass was started and has not reported yet, and its agent lives."""
    fdir = cdir / control.FINAL
    if not (fdir / FINAL_PID).exists() or (fdir / control.RESULT).exists():
        return False
    pid, _, started = (fdir / FINAL_PID).read_text().partition(" ")
    return pid_alive(int(pid), float(started) if started else None)


def _final(cdir: Path, spec: JobSpec, env: Mapping[str, str]) -> dict[str, Any] | None:
    """The final pass's result; None while it runs (started now if it has not been)."""
    fdir = cdir / control.FINAL
    result = control.read_json(fdir / control.RESULT)
    if result is not None:
        return result
    if (fdir / FINAL_PID).exists():
        if final_running(cdir):
            return None
        return {"state": State.FAILED, "message": "the final pass ended without reporting (killed or crashed)"}
    fdir.mkdir(exist_ok=True)
    launch = control.read_json(cdir / control.LAUNCH) or {}
    control.write_json(fdir / control.LAUNCH, {**launch, "final": True})
    runlog.note(spec.folder, f"all {spec.tasks} shards succeeded; RELION's final pass over the full list "
                "(--only_do_unfinished) starts here")
    log = fdir / "agent.log"
    pid = spawn_detached([sys.executable, "-m", "cryocloud.agent", str(fdir)], cwd=spec.project_dir, env=env,
                         stdout=log, stderr=log)
    (fdir / FINAL_PID).write_text(f"{pid} {process_start_time(pid) or ''}".strip())
    return None


def progress(cdir: Path, tasks: int) -> str:
    """How far a running fan-out is, for `status`: '7 of 16 tasks ended: 6 succeeded, 1 failed'."""
    states = [r.get("state") for i in range(tasks) if (r := control.read_json(control.task_dir(cdir, i) / control.RESULT))]
    ok = states.count(State.SUCCEEDED)
    return f"{len(states)} of {tasks} tasks ended: {ok} succeeded, {len(states) - ok} did not" if states else ""


def gather(cdir: Path, spec: JobSpec, tasks: int, ended_why: str | None,
           clock: Callable[[], float] = time.time, env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The job's result once every shard reported, or (`ended_why` given: the backend says the job ended) with
    shards that did not report counted as failed for that reason. None while shards (or the final pass) run."""
    results = [control.read_json(control.task_dir(cdir, i) / control.RESULT) for i in range(tasks)]
    if ended_why is None and any(r is None for r in results):
        return None
    cancelled = (cdir / control.CANCEL).exists()
    states = [str(r["state"]) if r else State.FAILED for r in results]
    bad = [(i, s) for i, s in enumerate(states) if s != State.SUCCEEDED]
    state: str = State.ABORTED if cancelled or State.ABORTED in states else State.FAILED if bad else State.SUCCEEDED
    messages = []
    for i, s in bad:
        r = results[i]
        why = str(r.get("message") or s) if r else (ended_why or "ended without reporting (killed or crashed)")
        messages.append(f"task {i}: {why}")
    started = [float(r["started_at"]) for r in results if r and isinstance(r.get("started_at"), int | float)]
    ended = [float(r["ended_at"]) for r in results if r and isinstance(r.get("ended_at"), int | float)]
    codes = [r.get("exit_code") for r in results if r and r.get("exit_code")]
    ok = states.count(State.SUCCEEDED)
    if spec.fanout.final and state == State.SUCCEEDED:
        final = _final(cdir, spec, env if env is not None else {})
        if final is None:
            return None
        state = str(final.get("state", State.FAILED))
        if state != State.SUCCEEDED:
            messages.append(f"final pass: {final.get('message') or state}")
            codes.append(final.get("exit_code"))
        if isinstance(final.get("ended_at"), int | float):
            ended.append(float(final["ended_at"]))
    if spec.fanout.select is not None and state != State.ABORTED:
        try:
            runlog.note(spec.folder, select.keep_best(spec, [i for i, s in enumerate(states) if s == State.SUCCEEDED]))
        except CryocloudError as e:
            state = State.FAILED
            messages.insert(0, runlog.with_hint(e.message, e.hint))
    counts = f"{ok} of {tasks} tasks succeeded" + (f", {tasks - ok} did not" if ok < tasks else "")
    result: dict[str, Any] = {
        "state": state, "exit_code": next((c for c in codes if c), 1) if state != State.SUCCEEDED else 0,
        "message": ("cancelled" if cancelled and state == State.ABORTED and not messages
                    else "; ".join([counts, *messages]) if messages else "")[:500],
        "started_at": min(started) if started else clock(), "ended_at": max(ended) if ended else clock(),
        "tasks": states,
    }
    control.write_json(cdir / control.RESULT, result)
    runlog.note(spec.folder, f"{counts}; job {state}")
    runlog.end_in_client_view(spec.folder, spec.client, state)
    return result
