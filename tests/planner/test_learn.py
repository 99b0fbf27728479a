"""The planner learns from the lab's own runs: three succeeded jobs of a type on this workstation move the
prediction to what they took; a job far from its prediction says so in its run.out."""

from __future__ import annotations

import math
import sqlite3
import time
from pathlib import Path

import pytest

from cryocloud.jobs.spec import JobSpec
from cryocloud.ledger import Ledger
from cryocloud.planner import learn
from cryocloud.planner.model import JobSize
from cryocloud.planner.plan import model_hours, plan_job
from cryocloud.settings import Settings, load_settings

SIZE = JobSize(particles=2000, box=64, classes=4, iterations=5, data_gb=0.05)
CMD = "`which relion_refine` --i Extract/job003/particles.star --o Class2D/job{n:03d}/run --K 4 --iter 5 --j 2"


def _settings(home: Path) -> Settings:
    return load_settings(env={}, path=home / "none.toml")


def _succeeded(ledger: Ledger, settings: Settings, project: Path, n: int, took_h: float, model_h: float) -> int:
    spec = JobSpec(f"Class2D/job{n:03d}/", "relion", "Class2D", str(project), f"Class2D/job{n:03d}/",
                   [CMD.format(n=n)])
    (project / spec.job_dir).mkdir(parents=True, exist_ok=True)
    end = time.time() - 1000 + n
    return ledger.add_job(name=spec.name, client="relion", job_type="Class2D", project_dir=str(project),
                          job_dir=spec.job_dir, profile="local", backend="local", user="lab", project=project.name,
                          state="succeeded", machine=settings.local_machine, submitted_at=end - took_h * 3600 - 1,
                          started_at=end - took_h * 3600, ended_at=end, spec=spec.to_json(), model_hours=model_h)


def test_three_runs_here_move_the_prediction_toward_them(cryocloud_home: Path, tmp_path: Path) -> None:
    settings = _settings(cryocloud_home)
    model_only = plan_job("Class2D", SIZE, settings).local
    assert model_only is not None
    ledger = Ledger(settings.ledger_path)
    _succeeded(ledger, settings, tmp_path, 1, 2.0, 1.0)
    _succeeded(ledger, settings, tmp_path, 2, 2.2, 1.0)
    two = plan_job("Class2D", SIZE, settings)
    assert two.local is not None and two.local.hours == pytest.approx(model_only.hours)  # not yet: 2 runs
    assert any("2 of the lab's own Class2D runs" in n and "the model stands until 3" in n for n in two.notes)
    _succeeded(ledger, settings, tmp_path, 3, 1.8, 1.0)
    three = plan_job("Class2D", SIZE, settings)
    factor = (2.0 * 2.2 * 1.8) ** (1 / 3)
    assert three.local is not None and three.local.hours == pytest.approx(model_only.hours * factor)
    assert any("3 of the lab's own Class2D runs on this workstation took 1.80x-2.20x" in n and
               f"x {factor:.2f} (learned here)" in n for n in three.notes)
    # another machine's runs teach nothing about this one
    assert learn.learned(ledger, "Class2D", "local", "workstation (64 CPUs)").runs == 0
    ledger.close()


def test_a_job_far_from_its_prediction_says_so_at_its_end(cryocloud_home: Path, tmp_path: Path) -> None:
    settings = _settings(cryocloud_home)
    ledger = Ledger(settings.ledger_path)
    job = _succeeded(ledger, settings, tmp_path, 7, 0.5, 0.0)
    ledger.update_job(job, model_hours=None)
    row = ledger.job(job)
    assert row is not None
    spec = JobSpec.from_json(row.spec)
    hours = model_hours(spec, "local", settings)
    assert hours is not None and hours > 0
    learn.note_end(ledger, row, spec, hours / 10)  # as if the model had said a tenth of what it took
    after = ledger.job(job)
    assert after is not None and after.model_hours == pytest.approx(hours / 10)
    out = (tmp_path / "Class2D/job007/run.out").read_text()
    assert "took 30 min, predicted" in out and "(Class2D on workstation" in out
    ledger.close()


def test_a_ledger_from_before_model_hours_gets_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old" / "ledger.sqlite"
    path.parent.mkdir()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, client TEXT NOT NULL, "
                   "job_type TEXT NOT NULL, project_dir TEXT NOT NULL, job_dir TEXT NOT NULL, profile TEXT NOT NULL, "
                   "backend TEXT NOT NULL, user TEXT NOT NULL, project TEXT NOT NULL DEFAULT '', state TEXT NOT NULL, "
                   "message TEXT NOT NULL DEFAULT '', machine TEXT NOT NULL DEFAULT '', submitted_at REAL NOT NULL, "
                   "started_at REAL, ended_at REAL, exit_code INTEGER, predicted_usd REAL, "
                   "control_dir TEXT NOT NULL DEFAULT '', spec TEXT NOT NULL)")
    ledger = Ledger(path)
    assert "model_hours" in {r[1] for r in ledger.db.execute("PRAGMA table_info(jobs)")}
    ledger.close()


def test_p9_lab_rows_learned_from_three_others_come_closer_than_the_model_alone() -> None:
    """scripts/fit_runtime_model.py's lab table: a lab whose machine takes 2x what published runs say; each of its runs
    predicted without it, then x what its other three took over that model, lands nearer than the model alone."""
    from cryocloud.planner import calibrate

    def run(source: str, particles: int, factor: float) -> calibrate.Run:
        size = JobSize(particles=particles, box=128, classes=10, iterations=25)
        kind = calibrate.job_kind("Class2D")
        return calibrate.Run(source, "Class2D", "cpu", size, 8.0, factor * 0.3 * kind.work(size.with_defaults(
            kind.defaults)) / 8.0, "lab-box" if source == "lab" else "elsewhere")

    runs = [run("published", n, 1.0) for n in (10_000, 20_000, 40_000, 80_000, 160_000, 320_000)]
    runs += [run("lab", n, 2.0) for n in (15_000, 30_000, 60_000, 120_000)]
    rows = calibrate.lab_rows(calibrate.fit(runs), source="lab")
    assert len(rows) == 4 and all(n == 3 for *_, n in rows)
    for _, r, model_h, learned_h, _ in rows:
        assert abs(math.log(learned_h / r.hours)) < abs(math.log(model_h / r.hours)) / 2
        assert learned_h / r.hours == pytest.approx(1.0, rel=0.15)
