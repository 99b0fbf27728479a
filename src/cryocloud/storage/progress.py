"""Progress reporting for transfers: a rich bar with throughput and ETA for people, nothing for scripts."""

from __future__ import annotations

import os
from typing import Any, Protocol


class Progress(Protocol):
    def phase(self, label: str, total_bytes: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def close(self) -> None: ...


class NullProgress:
    def phase(self, label: str, total_bytes: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def close(self) -> None:
        pass


class RichProgress:
    """One bar per phase (hashing, uploading, downloading) on stderr, with MB/s and time left."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RP

        self._bar = RP(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), console=Console(stderr=True), transient=False,
        )
        self._bar.start()
        self._task: Any = None

    def phase(self, label: str, total_bytes: int) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=self._bar.tasks[-1].total)
        self._task = self._bar.add_task(label, total=max(total_bytes, 1))

    def advance(self, nbytes: int) -> None:
        if self._task is not None:
            self._bar.advance(self._task, nbytes)

    def close(self) -> None:
        self._bar.stop()


def make_progress(quiet: bool) -> Progress:
    if quiet or not os.isatty(2):
        return NullProgress()
    return RichProgress()
