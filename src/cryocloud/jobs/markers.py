"""Exit and abort marker files, per client family (RELION, CCP-EM Pipeliner)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from cryocloud.jobs.states import State


@dataclass(frozen=True)
class MarkerFamily:
    success: str
    failure: str
    aborted: str
    abort_request: str
    gui_refresh: str = ""  # a file in the project folder that makes the client's GUI re-read its job states

    def for_state(self, state: str) -> str:
        return {State.SUCCEEDED.value: self.success, State.ABORTED.value: self.aborted}.get(state, self.failure)

    @property
    def exits(self) -> tuple[str, str, str]:
        return (self.success, self.failure, self.aborted)

    def existing(self, job_dir: Path) -> str | None:
        """The state an existing exit marker says, checked in RELION's order, or None."""
        for name, state in ((self.success, State.SUCCEEDED), (self.failure, State.FAILED), (self.aborted, State.ABORTED)):
            if (job_dir / name).exists():
                return state
        return None

    def write(self, job_dir: Path, state: str) -> bool:
        """Write the marker for `state` unless one exists already (the program may have written its own). True if
        written. Either way the client's GUI is told to look (RELION's re-reads job states only when its project
        holds `.pipeline_has_changed`, else when the user clicks a job)."""
        if self.existing(job_dir) is not None:
            self._refresh_gui(job_dir)
            return False
        try:
            (job_dir / self.for_state(state)).touch()
        except FileNotFoundError:  # the user deleted the job folder: nobody is left to tell
            return False
        self._refresh_gui(job_dir)
        return True

    def _refresh_gui(self, job_dir: Path) -> None:
        project = job_dir.parent.parent  # RELION's <project>/<Type>/jobNNN/
        if self.gui_refresh and (project / "default_pipeline.star").exists():
            with contextlib.suppress(OSError):
                (project / self.gui_refresh).touch()

    def abort_requested(self, job_dir: Path) -> bool:
        """The client asked to abort (RELION's Abort button touches its abort file in the job folder)."""
        return (job_dir / self.abort_request).exists()

    def clear(self, job_dir: Path) -> None:
        """Remove stale exit markers (and an old abort request) before a job (re)starts."""
        for name in (*self.exits, self.abort_request):
            (job_dir / name).unlink(missing_ok=True)


FAMILIES = {
    "relion": MarkerFamily(
        "RELION_JOB_EXIT_SUCCESS", "RELION_JOB_EXIT_FAILURE", "RELION_JOB_EXIT_ABORTED", "RELION_JOB_ABORT_NOW",
        ".pipeline_has_changed",
    ),
    "pipeliner": MarkerFamily(
        "PIPELINER_JOB_EXIT_SUCCESS", "PIPELINER_JOB_EXIT_FAILED", "PIPELINER_JOB_EXIT_ABORTED",
        "PIPELINER_JOB_ABORT_NOW",
    ),
}
# Jobs that are not RELION's still get RELION-style markers, so one mechanism serves all.
FAMILIES["command"] = FAMILIES["relion"]
