"""Gathering a fan-out's shards, once, above the backends (DESIGN: each backend maps tasks to its native form;
gathering happens in the monitor). Each shard's agent reports into its own control folder (task<N>/), so the
first shard to finish cannot mark the job done; this folds them into the job's result.json and writes the
client's marker once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryocloud.jobs import control, runlog
from cryocloud.jobs.spec import JobSpec
from cryocloud.jobs.states import State


def gather(cdir: Path, spec: JobSpec, tasks: int, ended_why: str | None,
           clock: Callable[[], float] = time.time) -> dict[str, Any] | None:
    """The job's result once every shard reported, or (`ended_why` given: the backend says the job ended) with
    shards that did not report counted as failed for that reason. None while shards are still running."""
    results = [control.read_json(cdir / f"task{i}" / control.RESULT) for i in range(tasks)]
    if ended_why is None and any(r is None for r in results):
        return None
    cancelled = (cdir / control.CANCEL).exists()
    states = [str(r["state"]) if r else State.FAILED for r in results]
    bad = [(i, s) for i, s in enumerate(states) if s != State.SUCCEEDED]
    state = State.ABORTED if cancelled or State.ABORTED in states else State.FAILED if bad else State.SUCCEEDED
    messages = []
    for i, s in bad:
        r = results[i]
        why = str(r.get("message") or s) if r else (ended_why or "ended without reporting (killed or crashed)")
        messages.append(f"task {i}: {why}")
    started = [float(r["started_at"]) for r in results if r and isinstance(r.get("started_at"), int | float)]
    ended = [float(r["ended_at"]) for r in results if r and isinstance(r.get("ended_at"), int | float)]
    codes = [r.get("exit_code") for r in results if r and r.get("exit_code")]
    result: dict[str, Any] = {
        "state": state, "exit_code": (codes[0] if codes else 0) if bad else 0,
        "message": "cancelled" if cancelled and state == State.ABORTED and not messages else "; ".join(messages)[:500],
        "started_at": min(started) if started else clock(), "ended_at": max(ended) if ended else clock(),
        "tasks": states,
    }
    control.write_json(cdir / control.RESULT, result)
    runlog.note(spec.folder, f"{tasks} array tasks ended: {states.count(State.SUCCEEDED)} succeeded; job {state}")
    runlog.end_in_client_view(spec.folder, spec.client, state)
    return result
