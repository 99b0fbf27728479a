"""Shared by the fan-out tests: submit a job file and wait for its end (an event: the ledger state)."""

from __future__ import annotations

from pathlib import Path

from spine.helpers import job_state, wait_for

ACTIVE = ("queued", "starting", "running")


def ended(job_id: int, timeout: float = 300) -> str:
    assert wait_for(lambda: job_state(job_id) not in ACTIVE, timeout, every=0.1)
    return job_state(job_id)


def best_tasks(job_dir: Path) -> list[str]:
    return sorted(p.name.split("_")[1] for p in (job_dir / "best").glob("*_model.pdb"))


def job_row(job_id: int):  # type: ignore[no-untyped-def]
    from cryocloud.ledger import Ledger
    from cryocloud.settings import load_settings

    ledger = Ledger(load_settings().ledger_path)
    try:
        return ledger.job(job_id)
    finally:
        ledger.close()
