"""A node's final push of a job's results is tried again while the store is unreachable, and says so in run.err;
it gives up only past its time (the hard deadline on a cloud node). A fake clock: no test waits for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryocloud.agent.remote import push_back
from cryocloud.errors import CryocloudError


class Clock:
    def __init__(self) -> None:
        self.now, self.slept = 0.0, []  # type: ignore[var-annotated]

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def test_the_push_is_tried_again_until_the_store_answers(tmp_path: Path) -> None:
    clock, tries = Clock(), []

    def push() -> None:
        tries.append(clock.now)
        if len(tries) < 3:
            raise CryocloudError("S3 put failed: connection refused", "retry")

    push_back(push, tmp_path, minutes=30, clock=clock, sleep=clock.sleep)
    assert len(tries) == 3 and clock.slept == [2.0, 4.0]
    err = (tmp_path / "run.err").read_text()
    assert err.count("the store is unreachable (S3 put failed: connection refused); pushing the results again") == 2


def test_past_its_time_the_push_gives_up_with_the_stores_error(tmp_path: Path) -> None:
    clock = Clock()

    def push() -> None:
        raise OSError("network is unreachable")

    with pytest.raises(OSError, match="network is unreachable"):
        push_back(push, tmp_path, minutes=1, clock=clock, sleep=clock.sleep)
    assert sum(clock.slept) <= 60 and len(clock.slept) >= 3  # 2 + 4 + 8 + 16 + 30 would pass the minute


def test_a_dated_line_waits_for_the_labs_merge_of_a_pulled_run_out(tmp_path: Path) -> None:
    """The lab replaces run.out with the node's copy merged with its own lines, under the folder's lock; a line
    another process notes meanwhile waits for the merge instead of being written over."""
    import threading

    from cryocloud.jobs import runlog

    (tmp_path / "run.out").write_text("node line\n")
    noted = threading.Thread(target=runlog.note, args=(tmp_path, "running (instance i-1)"))
    with runlog.locked(tmp_path):
        noted.start()
        noted.join(0.5)
        assert noted.is_alive()  # blocked on the lock
        merged = tmp_path / ".run.out.merged"
        merged.write_text("node line\nmerged line\n")
        merged.replace(tmp_path / "run.out")
    noted.join(30)
    assert (tmp_path / "run.out").read_text().splitlines()[:2] == ["node line", "merged line"]
    assert "running (instance i-1)" in (tmp_path / "run.out").read_text()
