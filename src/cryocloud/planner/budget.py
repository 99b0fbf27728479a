"""Budgets per project or user (config [budgets], "project:NAME" / "user:NAME" = USD).

- `check_budget`: what `submit` calls before anything runs; raises SubmissionError with the prediction shown.
- `over_budget`: what the monitor calls for a running job; a BudgetBreach means stop it and mark it.
Spent = every attempt's recorded cost; a running attempt accrues usd_per_hour x seconds so far (injectable clock).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from cryocloud.errors import SubmissionError
from cryocloud.ledger import AttemptRow, Ledger
from cryocloud.settings import Settings

WARN_FRACTION = 0.8


@dataclass(frozen=True)
class BudgetState:
    key: str  # "project:NAME" or "user:NAME"
    limit_usd: float
    spent_usd: float

    @property
    def fraction(self) -> float:
        return self.spent_usd / self.limit_usd if self.limit_usd else float("inf")


@dataclass(frozen=True)
class BudgetBreach:
    job_id: int
    state: BudgetState

    @property
    def message(self) -> str:
        s = self.state
        return f"budget {s.key} exceeded: {s.spent_usd:.2f} of {s.limit_usd:.2f} USD spent; stopping job {self.job_id}"


def _keys(user: str, project: str) -> list[str]:
    return [k for k in (f"project:{project}" if project else "", f"user:{user}" if user else "") if k]


def spent_usd(ledger: Ledger, key: str, now: float | None = None) -> float:
    """What the jobs under `key` have cost so far, running attempts included up to `now`."""
    now = time.time() if now is None else now
    column = "project" if key.startswith("project:") else "user"
    name = key.partition(":")[2]
    rows = ledger.db.execute(f"SELECT a.* FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE j.{column} = ?",
                             (name,)).fetchall()
    return sum(AttemptRow(**dict(r)).cost_usd(now) for r in rows)


def budget_states(settings: Settings, ledger: Ledger, user: str, project: str,
                  now: float | None = None) -> list[BudgetState]:
    return [BudgetState(k, settings.budgets[k], spent_usd(ledger, k, now))
            for k in _keys(user, project) if k in settings.budgets]


def check_budget(settings: Settings, ledger: Ledger, user: str, project: str, predicted_usd: float | None,
                 now: float | None = None) -> list[BudgetState]:
    """Refuse a submission whose predicted cost would take a project's or user's spending past its budget.

    Returns the budget states checked (empty when none applies). A job without a prediction (None) is refused only
    when a budget is already used up.
    """
    predicted = predicted_usd or 0.0
    states = budget_states(settings, ledger, user, project, now)
    for s in states:
        if s.spent_usd + predicted > s.limit_usd:
            raise SubmissionError(
                f"over budget {s.key}: this job is predicted at {predicted:.2f} USD, {s.spent_usd:.2f} of "
                f"{s.limit_usd:.2f} USD is already spent ({s.limit_usd - s.spent_usd:.2f} left)",
                f"raise [budgets] \"{s.key}\" in {settings.config_path}, pick a cheaper machine "
                "(`cryocloud plan` lists them), or run it locally",
            )
    return states


def over_budget(settings: Settings, ledger: Ledger, job_id: int, now: float | None = None) -> BudgetBreach | None:
    """For the monitor: a running job whose project or user has spent its budget (None while within it)."""
    job = ledger.job(job_id)
    if job is None or not job.active:
        return None
    for s in budget_states(settings, ledger, job.user, job.project, now):
        if s.spent_usd >= s.limit_usd:
            return BudgetBreach(job_id, s)
    return None


def budget_warning(settings: Settings, ledger: Ledger, user: str, project: str,
                   now: float | None = None) -> str | None:
    """A run.out line when spending passed WARN_FRACTION of a budget ("budget project:x at 84%")."""
    for s in budget_states(settings, ledger, user, project, now):
        if s.fraction >= WARN_FRACTION:
            return f"budget {s.key} at {s.fraction:.0%} ({s.spent_usd:.2f} of {s.limit_usd:.2f} USD)"
    return None
