"""The monitor's logic, branch by branch, on the fake backend and the fake clock (tests/monitor/fake.py).

Each test runs monitor passes as function calls: no process, no sleep. The tests that spawn real agents on the
local backend and on the real Slurm (tests/spine, tests/slurm) prove the wiring; these prove the branches."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from cryocloud.jobs import control
from cryocloud.jobs.spec import InputFile
from cryocloud.ledger import Ledger
from cryocloud.monitor.stager import Stager
from monitor.fake import FakeBackend, FakeClock, one_pass, queue, settings_for, state
from spine.helpers import markers

REFINE = "relion_refine --o Class2D/job002/run --i Synthetic/particles.star --iter 5 --pipeline_control Class2D/job002/"


@pytest.fixture()
def world(tmp_path: Path, cryocloud_home: Path):  # type: ignore[no-untyped-def]
    settings = settings_for(cryocloud_home)
    ledger = Ledger(settings.ledger_path)
    yield settings, ledger, FakeBackend(), FakeClock(), tmp_path / "project"
    ledger.close()


def test_slots_full_jobs_wait_and_start_first_in_first_out(world) -> None:  # type: ignore[no-untyped-def]
    settings, ledger, _, clock, project = world
    fake = FakeBackend(slots=2)
    a = queue(settings, ledger, project, "External/job001/", clock=clock)
    b = queue(settings, ledger, project, "External/job002/", clock=clock, cpus=2)
    c = queue(settings, ledger, project, "External/job003/", clock=clock)
    assert one_pass(settings, ledger, fake, clock) == [a]
    assert (state(ledger, b), state(ledger, c)) == ("queued", "queued")  # c would fit, but b came first
    assert one_pass(settings, ledger, fake, clock) == []
    clock.advance(10)
    fake.report(a, "succeeded", clock)
    assert one_pass(settings, ledger, fake, clock) == [b]
    attempt = ledger.last_attempt(a)
    assert attempt is not None and attempt.state == "succeeded" and attempt.compute_usd == pytest.approx(10.0)
    fake.report(b, "succeeded", clock)
    assert one_pass(settings, ledger, fake, clock) == [c]


def test_a_job_whose_agent_vanished_fails_with_its_marker(world) -> None:  # type: ignore[no-untyped-def]
    settings, ledger, fake, clock, project = world
    job = queue(settings, ledger, project, "External/job001/")
    one_pass(settings, ledger, fake, clock)
    fid = fake.launched(job)
    fake.vanish(job)
    one_pass(settings, ledger, fake, clock)
    assert state(ledger, job) == "failed"
    assert markers(project / "External/job001") == ["RELION_JOB_EXIT_FAILURE"]
    assert "without reporting" in (project / "External/job001/run.err").read_text()
    assert fake.cleaned == [fid]  # whatever it left behind is released


def _iterations(project: Path, *numbers: int) -> None:
    for n in numbers:
        for kind in ("optimiser", "model", "data", "sampling"):
            (project / f"Class2D/job002/run_it{n:03d}_{kind}.star").write_text("data_\n")


def test_a_preempted_job_is_requeued_from_its_last_iteration_until_the_limit(
        cryocloud_home: Path, tmp_path: Path) -> None:
    settings = settings_for(cryocloud_home, max_requeues=1)
    ledger, fake, clock, project = Ledger(settings.ledger_path), FakeBackend(), FakeClock(), tmp_path / "p"
    job = queue(settings, ledger, project, "Class2D/job002/", [REFINE], clock=clock)
    one_pass(settings, ledger, fake, clock)
    one_pass(settings, ledger, fake, clock)  # the backend says it runs: billed from now
    _iterations(project, 1, 2)
    clock.advance(60)
    fake.interrupt(job)
    assert one_pass(settings, ledger, fake, clock) == [job]  # requeued, and handed to the backend again
    attempts = ledger.attempts(job)
    assert [a.state for a in attempts] == ["requeued", "starting"]
    assert attempts[0].compute_usd == pytest.approx(60.0)  # the interrupted attempt is billed to its end
    launch = control.read_json(Path(ledger.job(job).control_dir) / control.LAUNCH)  # type: ignore[union-attr]
    assert launch is not None and "--continue Class2D/job002/run_it002_optimiser.star" in launch["spec"]["commands"][0]
    assert "preempted at it002; resuming" in (project / "Class2D/job002/run.out").read_text()
    _iterations(project, 3)
    fake.interrupt(job)  # again: max_requeues = 1 is used up
    one_pass(settings, ledger, fake, clock)
    assert [a.state for a in ledger.attempts(job)] == ["requeued", "failed"] and state(ledger, job) == "failed"
    assert "max_requeues" in ledger.job(job).message  # type: ignore[union-attr]
    assert markers(project / "Class2D/job002") == ["RELION_JOB_EXIT_FAILURE"]
    ledger.close()


def test_a_job_that_cannot_continue_is_not_requeued(world) -> None:  # type: ignore[no-untyped-def]
    settings, ledger, fake, clock, project = world
    job = queue(settings, ledger, project, "Class2D/job002/", [REFINE], clock=clock)
    one_pass(settings, ledger, fake, clock)
    fake.interrupt(job)  # before its first iteration ended
    one_pass(settings, ledger, fake, clock)
    assert state(ledger, job) == "failed" and "cannot continue" in ledger.job(job).message  # type: ignore[union-attr]
    assert len(fake.jobs) == 1


def test_a_budget_reached_mid_run_warns_then_stops_the_job(cryocloud_home: Path, tmp_path: Path) -> None:
    project = tmp_path / "betagal"
    settings = settings_for(cryocloud_home, budgets={"project:betagal": 10.0})
    ledger, fake, clock = Ledger(settings.ledger_path), FakeBackend(), FakeClock()
    job = queue(settings, ledger, project, "External/job001/", clock=clock)
    one_pass(settings, ledger, fake, clock)
    one_pass(settings, ledger, fake, clock)  # running from now
    clock.advance(5)  # 5 of 10 USD
    one_pass(settings, ledger, fake, clock)
    out = project / "External/job001/run.out"
    assert not out.exists() or "budget" not in out.read_text()
    clock.advance(3.5)  # 85%
    one_pass(settings, ledger, fake, clock)
    assert "budget project:betagal at 85%" in out.read_text() and fake.cancelled == []
    clock.advance(2)  # 10.5 USD: over
    one_pass(settings, ledger, fake, clock)
    assert fake.cancelled == [fake.launched(job)]
    cancel = Path(ledger.job(job).control_dir) / control.CANCEL  # type: ignore[union-attr]
    assert "exceeded" in cancel.read_text()
    fake.report(job, "aborted", clock)  # the agent stops the job on the cancel
    one_pass(settings, ledger, fake, clock)
    assert state(ledger, job) == "aborted" and "exceeded" in ledger.job(job).message  # type: ignore[union-attr]
    ledger.close()


def test_a_staging_failure_fails_the_job_before_launch(cryocloud_home: Path, tmp_path: Path) -> None:
    settings = settings_for(cryocloud_home, staging=str(tmp_path / "store"))
    ledger, fake, clock, project = Ledger(settings.ledger_path), FakeBackend(), FakeClock(), tmp_path / "p"
    outside = tmp_path / "elsewhere.star"
    outside.write_text("data_\n")
    job = queue(settings, ledger, project, "External/job001/", inputs=[InputFile(str(outside), 6)], clock=clock)
    assert one_pass(settings, ledger, fake, clock) == []  # a pass without staging never launches it unstaged
    assert state(ledger, job) == "queued"
    assert one_pass(settings, ledger, fake, clock, Stager(workers=0)) == []
    assert state(ledger, job) == "failed" and fake.jobs == {}
    assert "staging failed" in (project / "External/job001/run.err").read_text()
    assert markers(project / "External/job001") == ["RELION_JOB_EXIT_FAILURE"]
    ledger.close()


def test_a_slow_upload_stalls_no_other_job(cryocloud_home: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Staging runs beside the loop: while one job's upload is under way, a job of another profile is started,
    and the staged job starts on the first pass after its upload ended."""
    from cryocloud.monitor import staging

    settings = settings_for(cryocloud_home, staging=str(tmp_path / "store"))
    ledger, fake, clock, project = Ledger(settings.ledger_path), FakeBackend(slots=2), FakeClock(), tmp_path / "p"
    uploading, release = threading.Event(), threading.Event()
    real = staging.stage_job

    def slow_stage_job(*args: Any) -> Any:
        uploading.set()
        assert release.wait(60)
        return real(*args)

    monkeypatch.setattr(staging, "stage_job", slow_stage_job)
    stager = Stager(workers=1)
    try:
        staged = queue(settings, ledger, project, "External/job001/", clock=clock)
        plain = queue(settings, ledger, project, "External/job002/", clock=clock, profile="plain")
        assert one_pass(settings, ledger, fake, clock, stager) == [plain]  # not held up by the upload
        assert uploading.wait(60) and state(ledger, staged) == "queued"
        assert one_pass(settings, ledger, fake, clock, stager) == []  # still uploading: the pass returns at once
        release.set()
        future = stager.running[staged][0]
        future.result(60)
        assert one_pass(settings, ledger, fake, clock, stager) == [staged]
        assert stager.running == {}
    finally:
        release.set()
        stager.close()
        ledger.close()


def test_a_job_cancelled_while_queued_never_starts(world, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from cryocloud.app.jobs import cancel_job

    settings, ledger, fake, clock, project = world
    a = queue(settings, ledger, project, "External/job001/", clock=clock)
    b = queue(settings, ledger, project, "External/job002/", clock=clock)
    one_pass(settings, ledger, fake, clock)
    assert cancel_job(settings, str(b), project).state == "aborted"
    assert markers(project / "External/job002") == ["RELION_JOB_EXIT_ABORTED"]
    fake.report(a, "succeeded", clock)
    assert one_pass(settings, ledger, fake, clock) == []
    assert len(fake.jobs) == 1 and state(ledger, b) == "aborted"


def test_a_backend_that_refuses_at_launch_fails_the_job_with_its_reason(world) -> None:  # type: ignore[no-untyped-def]
    settings, ledger, fake, clock, project = world
    fake.refuse = "partition 'gpu' does not exist"
    job = queue(settings, ledger, project, "External/job001/", clock=clock)
    assert one_pass(settings, ledger, fake, clock) == []
    assert state(ledger, job) == "failed" and "partition 'gpu'" in ledger.job(job).message  # type: ignore[union-attr]
    err = (project / "External/job001/run.err").read_text()
    assert "partition 'gpu' does not exist" in err and "hint: fix the profile" in err
    assert markers(project / "External/job001") == ["RELION_JOB_EXIT_FAILURE"]


def test_a_restarted_monitor_picks_up_jobs_in_every_state(cryocloud_home: Path, tmp_path: Path) -> None:
    settings = settings_for(cryocloud_home)
    fake, clock, project = FakeBackend(slots=3), FakeClock(), tmp_path / "p"
    first = Ledger(settings.ledger_path)
    done, ok, lost, busy, waiting1, waiting2 = (
        queue(settings, first, project, f"External/job00{i}/", clock=clock) for i in range(1, 7))
    one_pass(settings, first, fake, clock)  # starts done, ok, lost
    fake.report(done, "succeeded", clock)
    one_pass(settings, first, fake, clock)  # done recorded; busy starts
    first.close()  # the monitor dies; meanwhile one job ends, one agent vanishes
    clock.advance(30)
    fake.report(ok, "failed", clock, message="exit 3")
    fake.vanish(lost)
    second = Ledger(settings.ledger_path)  # a new monitor, a new connection
    started = one_pass(settings, second, fake, clock)
    assert {j: state(second, j) for j in (done, ok, lost, busy)} == {
        done: "succeeded", ok: "failed", lost: "failed", busy: "running"}
    assert started == [waiting1, waiting2]  # two slots freed, oldest first
    assert "exit 3" in second.job(ok).message  # type: ignore[union-attr]
    assert markers(project / "External/job003") == ["RELION_JOB_EXIT_FAILURE"]  # the vanished one, by the monitor
    second.close()


def test_a_fan_out_ends_once_when_its_last_shard_reports(world) -> None:  # type: ignore[no-untyped-def]
    settings, ledger, fake, clock, project = world
    job = queue(settings, ledger, project, "External/job001/", clock=clock, tasks=3)
    one_pass(settings, ledger, fake, clock)
    cdir = Path(ledger.job(job).control_dir)  # type: ignore[union-attr]
    for i in (0, 2):
        (cdir / f"task{i}").mkdir()
        control.write_json(cdir / f"task{i}" / control.RESULT, {"state": "succeeded", "ended_at": clock()})
    one_pass(settings, ledger, fake, clock)
    assert state(ledger, job) == "running" and markers(project / "External/job001") == []  # task1 still runs
    fake.vanish(job)  # the array ended, task1 never reported
    one_pass(settings, ledger, fake, clock)
    assert state(ledger, job) == "failed" and "task 1: " in ledger.job(job).message  # type: ignore[union-attr]
    assert markers(project / "External/job001") == ["RELION_JOB_EXIT_FAILURE"]
    assert "2 of 3 tasks succeeded, 1 did not; job failed" in (project / "External/job001/run.out").read_text()


def test_a_job_waiting_in_the_backends_queue_is_starting_and_costs_nothing(world) -> None:  # type: ignore[no-untyped-def]
    """A PENDING Slurm job is not "running": no wall time, no cost, until the backend says it runs."""
    settings, ledger, fake, clock, project = world
    job = queue(settings, ledger, project, "External/job001/", clock=clock)
    assert one_pass(settings, ledger, fake, clock) == [job]
    fake.jobs[fake.launched(job)].state = "queued"  # the scheduler holds it
    clock.advance(600)
    one_pass(settings, ledger, fake, clock)
    row = ledger.job(job)
    assert row is not None and row.state == "starting" and row.started_at is None and row.wall_seconds is None
    assert ledger.attempts(job)[0].cost_usd(clock()) == 0
    fake.jobs[fake.launched(job)].state = "running"
    one_pass(settings, ledger, fake, clock)
    clock.advance(10)
    row = ledger.job(job)
    assert row is not None and row.state == "running" and ledger.attempts(job)[0].cost_usd(clock()) == 10.0
