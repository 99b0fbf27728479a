"""When to start the next batch and how large, from what waits: RELION's own way, one batch at a time through
the same Import -> MotionCorr -> CtfFind job folders with --only_do_unfinished. Movies that arrive while a batch
runs wait for the next one, so a batch's size follows the arrival rate by itself: small batches (low latency)
when movies trickle in, larger ones (throughput) when they pile up; a backlog large enough splits MotionCorr over
workers (the fan-out's 'Split over N workers')."""

from __future__ import annotations

from dataclasses import dataclass

from cryocloud.session.settings import SessionSettings


@dataclass(frozen=True)
class Decision:
    size: int  # movies in the batch (the oldest first)
    split: int  # MotionCorr workers: 1 = not split
    why: str


def decide(waiting: int, oldest_wait: float, running: bool, s: SessionSettings,
           draining: bool = False) -> Decision | None:
    """`waiting`: settled movies in no batch yet; `oldest_wait`: seconds the oldest of them has waited;
    `draining`: nothing more is expected (the watcher is ending), so what waits goes now."""
    if running or waiting == 0:
        return None
    if waiting >= s.min_batch:
        why = f"{waiting} waiting >= min_batch {s.min_batch}"
    elif oldest_wait >= s.max_wait_seconds:
        why = f"oldest waited {oldest_wait:.0f} s >= max_wait_seconds {s.max_wait_seconds:g}"
    elif draining:
        why = "nothing more is arriving"
    else:
        return None
    size = min(waiting, s.max_batch)
    return Decision(size, split_for(size, s), why)


def split_for(size: int, s: SessionSettings) -> int:
    """Workers for a batch of `size`: one below `split_from`, then one more per `split_from` movies."""
    if s.max_split <= 1 or size < s.split_from:
        return 1
    return max(1, min(s.max_split, size // max(1, s.split_from) + 1, size))
