"""The planner learns from the lab's own runs.

When a job succeeds, the monitor records the runtime model's hours for it on the machine it ran on (`model_hours`,
from the job's own sizes). Once MIN_RUNS jobs of one type have succeeded on one machine, a new prediction for that
type and machine is the model's times the geometric mean of what those runs took over what the model said
(the newest RECENT of them): the lab's machine, data and RELION build, measured. `plan` and `submit` say how many runs
back a number and how far the model was from them; a job that took more than FAR_OFF times (or less than 1/FAR_OFF of)
its prediction gets a line in its run.out at its end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cryocloud.jobs import runlog
from cryocloud.jobs.spec import JobSpec
from cryocloud.ledger import JobRow, Ledger

MIN_RUNS = 3
RECENT = 10
FAR_OFF = 1.5


@dataclass(frozen=True)
class Learned:
    runs: int  # the lab's succeeded runs of this job type on this machine with a model prediction
    ratios: tuple[float, ...]  # took / the model's hours, newest first

    @property
    def factor(self) -> float:
        """What multiplies the model's hours: 1 until MIN_RUNS runs back it."""
        if self.runs < MIN_RUNS:
            return 1.0
        return math.exp(sum(math.log(r) for r in self.ratios) / len(self.ratios))

    def text(self, job_type: str, machine: str) -> str:
        if not self.runs:
            return ""
        spread = f"{min(self.ratios):.2f}x-{max(self.ratios):.2f}x" if self.runs > 1 else f"{self.ratios[0]:.2f}x"
        head = f"{self.runs} of the lab's own {job_type} runs on {machine} took {spread} the model's hours"
        if self.runs < MIN_RUNS:
            return f"{head}; the model stands until {MIN_RUNS} have run"
        return f"{head}: the prediction is the model's x {self.factor:.2f} (learned here)"


def learned(ledger: Ledger, job_type: str, backend: str, machine: str, excluding: int = 0) -> Learned:
    """What the newest succeeded runs of this type on this machine (other than job `excluding`) took."""
    rows = ledger.finished_like(job_type, backend, machine, excluding, RECENT)
    ratios = tuple((r.wall_seconds or 0) / 3600 / r.model_hours for r in rows if r.model_hours)
    return Learned(len(ratios), ratios)


def note_end(ledger: Ledger, job: JobRow, spec: JobSpec, hours: float | None) -> None:
    """At a job's success: record the model's `hours` for it (plan.model_hours), and say in run.out when it was far
    from its prediction (as learned from the runs before it)."""
    if hours is None or hours <= 0 or not job.wall_seconds:
        return
    ledger.update_job(job.id, model_hours=hours)
    predicted = hours * learned(ledger, job.job_type, job.backend, job.machine, job.id).factor
    took = job.wall_seconds / 3600
    if took > predicted * FAR_OFF or took < predicted / FAR_OFF:
        runlog.note(spec.folder, f"took {_hours(took)}, predicted {_hours(predicted)} ({job.job_type} on "
                                 f"{job.machine}): later predictions learn from it once {MIN_RUNS} such runs ended")


def _hours(h: float) -> str:
    return f"{h * 3600:.0f} s" if h < 1 / 60 else f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h"
