"""The Slurm backend end to end against the real single-node Slurm (shell commands; no RELION needed)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from cryocloud.app.submit import submit_script, submit_spec
from cryocloud.backends.base import Handle, Launch, get_backend
from cryocloud.cli.main import main
from cryocloud.errors import CryocloudError
from cryocloud.jobs.relion import job_spec_from_script
from cryocloud.ledger import Ledger
from cryocloud.proc import run_command
from cryocloud.settings import load_settings
from slurm.conftest import Cluster, write_config
from spine.helpers import in_dir, job_state, make_job, markers, wait_for

pytestmark = pytest.mark.integration


def submit(project: Path, job_dir: str, commands: list[str], **kw: object) -> int:
    make_job(project, job_dir, commands, **kw)
    with in_dir(project):
        return submit_script(Path(job_dir) / "run_submit.script", project).job.id


def submit_fanout(project: Path, job_dir: str, commands: list[str], tasks: int) -> int:
    """A fan-out job (JobSpec with `tasks` shards) submitted through service.submit_spec."""
    script = make_job(project, job_dir, ["true"])  # shard commands name per-task files: no input discovery
    spec = replace(job_spec_from_script(script, project), tasks=tasks, commands=commands)
    settings = load_settings()
    return submit_spec(spec, settings.profile("slurm"), settings, os.environ).job.id


def ended(job_id: int, timeout: float = 300) -> str:
    assert wait_for(lambda: job_state(job_id) not in ("queued", "starting", "running"), timeout, every=0.3)
    return job_state(job_id)


def slurm_job_id(job_id: int) -> str:
    ledger = Ledger(load_settings().ledger_path)
    try:
        attempt = ledger.last_attempt(job_id)
        assert attempt is not None
        return str(attempt.handle_data["job_id"])
    finally:
        ledger.close()


def slurm_state(slurm_id: str) -> str:
    out = run_command(["scontrol", "-o", "show", "job", slurm_id]).stdout
    return out.split("JobState=", 1)[1].split()[0]


def started(jd: Path) -> bool:
    return (jd / "run.out").exists() and " started on " in (jd / "run.out").read_text()


def test_success_output_marker_and_cost(slurm: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = submit(tmp_path, "External/job001/", ["echo hello from $SLURM_JOB_ID", "echo oops >&2", "pwd"])
    assert ended(job) == "succeeded"
    jd = tmp_path / "External/job001"
    assert markers(jd) == ["RELION_JOB_EXIT_SUCCESS"]
    out = (jd / "run.out").read_text()
    sid = slurm_job_id(job)
    assert f"hello from {sid}" in out and f"Slurm job {sid}" in out
    assert str(tmp_path) in out  # the working directory is the project folder
    assert "oops" in (jd / "run.err").read_text()
    assert wait_for(lambda: slurm_state(sid) == "COMPLETED")  # the marker may land before Slurm's end
    capsys.readouterr()
    assert main(["costs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["backend"] == "slurm" and rows[0]["usd_per_hour"] == 0.1


def _holding(roots: list[Path], needle: str) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_secrets_do_not_reach_the_job(slurm: Cluster, cryocloud_home: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(cryocloud_home, mpi_launcher=["mpirun", "-n", "{ranks}"], usd_per_hour=0.1, pass_env=["MY_LAB_*"],
                 sbatch_args=["--hold"])
    for name, value in [("AWS_SECRET_ACCESS_KEY", "s3cr3t"), ("DB_PASS", "hunter2-db"), ("MY_API_KEY", "key-0xC0FFEE")]:
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MY_LAB_SETTING", "kept-for-the-lab")
    job = submit(tmp_path, "External/job001/", ["env > env.txt"])
    # held in the queue: slurmctld keeps the job's environment in its state folder (sbatch got an explicit
    # --export list); what the profile passes is there, no secret is
    sid = slurm_job_id(job)
    assert _holding([slurm.dir / "state"], "kept-for-the-lab")
    for secret in ("s3cr3t", "hunter2-db", "key-0xC0FFEE"):
        assert _holding([slurm.dir / "state"], secret) == []
    run_command(["scontrol", "release", sid])
    assert ended(job) == "succeeded"
    env = (tmp_path / "env.txt").read_text()
    assert "MY_LAB_SETTING=kept-for-the-lab" in env and "PATH=" in env
    for secret in ("s3cr3t", "hunter2-db", "key-0xC0FFEE"):
        assert secret not in env and secret not in run_command(["scontrol", "show", "job", "-dd", sid]).stdout
        assert _holding([tmp_path, cryocloud_home], secret) == []


def test_failure_stops_at_first_failed_command(slurm: Cluster, tmp_path: Path) -> None:
    job = submit(tmp_path, "External/job001/", ["echo one", "exit 3", "touch never.txt"])
    assert ended(job) == "failed"
    assert markers(tmp_path / "External/job001") == ["RELION_JOB_EXIT_FAILURE"]
    assert not (tmp_path / "never.txt").exists()
    assert wait_for(lambda: slurm_state(slurm_job_id(job)) == "FAILED")


def test_cancel_by_job_folder(slurm: Cluster, tmp_path: Path) -> None:
    job = submit(tmp_path, "Class2D/job003/", ["sleep 300"])
    jd = tmp_path / "Class2D/job003"
    assert wait_for(lambda: started(jd))
    with in_dir(tmp_path):
        assert main(["cancel", "Class2D/job003/"]) == 0
    assert ended(job) == "aborted"
    assert markers(jd) == ["RELION_JOB_EXIT_ABORTED"]
    assert wait_for(lambda: slurm_state(slurm_job_id(job)) == "CANCELLED")


def test_abort_file_stops_the_running_job(slurm: Cluster, tmp_path: Path) -> None:
    job = submit(tmp_path, "External/job001/", ["sleep 300"])
    jd = tmp_path / "External/job001"
    assert wait_for(lambda: started(jd))
    (jd / "RELION_JOB_ABORT_NOW").touch()
    assert ended(job) == "aborted"
    assert markers(jd) == ["RELION_JOB_EXIT_ABORTED"]


def test_abort_while_pending_cancels_in_slurm(slurm: Cluster, cryocloud_home: Path, tmp_path: Path) -> None:
    write_config(cryocloud_home, sbatch_args=["--hold"])  # held: it stays PENDING until released
    job = submit(tmp_path, "External/job001/", ["touch ran.txt"])
    sid = slurm_job_id(job)
    # waiting in Slurm's queue: "starting" (handed to Slurm), not running, with no wall time counting
    assert job_state(job) == "starting" and slurm_state(sid) == "PENDING"
    ledger = Ledger(load_settings().ledger_path)
    try:
        row = ledger.job(job)
        assert row is not None and row.started_at is None and row.wall_seconds is None
    finally:
        ledger.close()
    (tmp_path / "External/job001/RELION_JOB_ABORT_NOW").touch()
    assert ended(job) == "aborted"
    assert markers(tmp_path / "External/job001") == ["RELION_JOB_EXIT_ABORTED"]
    assert slurm_state(sid) == "CANCELLED" and not (tmp_path / "ran.txt").exists()


@pytest.mark.slow
def test_timeout_ends_as_failed_with_the_reason(slurm: Cluster, tmp_path: Path) -> None:
    job = submit(tmp_path, "External/job001/", ["sleep 600"], extras={"extra1": "00:01:00"})
    sid = slurm_job_id(job)
    assert ended(job, 240) == "failed"
    jd = tmp_path / "External/job001"
    assert markers(jd) == ["RELION_JOB_EXIT_FAILURE"]
    assert wait_for(lambda: slurm_state(sid) == "TIMEOUT")
    assert "TIME LIMIT" in (jd / "run.err").read_text()


def test_agent_killed_without_result_is_failed_with_marker(slurm: Cluster, tmp_path: Path) -> None:
    job = submit(tmp_path, "External/job001/", ["sleep 300"])
    jd = tmp_path / "External/job001"
    agent = jd / f".cryocloud/job{job}/agent.json"
    assert wait_for(agent.exists)
    os.kill(json.loads(agent.read_text())["pid"], 9)
    assert ended(job) == "failed"
    assert markers(jd) == ["RELION_JOB_EXIT_FAILURE"]


def test_fan_out_is_one_array_with_one_marker(slurm: Cluster, tmp_path: Path) -> None:
    job = submit_fanout(tmp_path, "External/job001/", [
        "echo $CRYOCLOUD_TASK_INDEX/$CRYOCLOUD_TASK_COUNT > shard_$CRYOCLOUD_TASK_INDEX.txt",
        "sleep $CRYOCLOUD_TASK_INDEX"], tasks=3)
    assert ended(job) == "succeeded"
    assert sorted(p.read_text().strip() for p in tmp_path.glob("shard_*.txt")) == ["0/3", "1/3", "2/3"]
    assert markers(tmp_path / "External/job001") == ["RELION_JOB_EXIT_SUCCESS"]
    assert "3 of 3 tasks succeeded; job succeeded" in (tmp_path / "External/job001/run.out").read_text()


def test_fan_out_larger_than_the_node_packs_shards(slurm: Cluster, tmp_path: Path) -> None:
    job = submit_fanout(tmp_path, "External/job001/", ["touch shard_$CRYOCLOUD_TASK_INDEX.txt"], tasks=20)
    assert ended(job) == "succeeded"
    assert sorted(int(p.stem.split("_")[1]) for p in tmp_path.glob("shard_*.txt")) == list(range(20))
    out = (tmp_path / "External/job001/run.out").read_text()
    assert "3 per array task" in out  # 20 shards on 8 CPUs: 7 array tasks
    assert markers(tmp_path / "External/job001") == ["RELION_JOB_EXIT_SUCCESS"]


def test_fan_out_with_a_failed_task_fails_once(slurm: Cluster, tmp_path: Path) -> None:
    job = submit_fanout(tmp_path, "External/job001/", ["test $CRYOCLOUD_TASK_INDEX != 1"], tasks=3)
    assert ended(job) == "failed"
    assert markers(tmp_path / "External/job001") == ["RELION_JOB_EXIT_FAILURE"]
    ledger = Ledger(load_settings().ledger_path)
    row = ledger.job(job)
    ledger.close()
    assert row is not None and "task 1" in row.message


def test_a_job_that_vanished_is_gone(slurm: Cluster, tmp_path: Path) -> None:
    backend = get_backend(load_settings().profile("slurm"), load_settings())
    status = backend.status(Handle("slurm", {"job_id": "987654", "control_dir": str(tmp_path)}))
    assert status.state == "gone" and "disappeared" in status.message


# -- bad input ------------------------------------------------------------------------------------------------
def _ledger_states() -> list[str]:
    path = load_settings().ledger_path
    if not path.exists():
        return []
    ledger = Ledger(path)
    try:
        return [j.state for j in ledger.jobs()]
    finally:
        ledger.close()


@pytest.mark.parametrize("kw, needle, hint", [
    ({"queue": "nosuch"}, "no partition 'nosuch'", "debug"),
    ({"threads": 64}, "larger than any node", "fewer"),
    ({"extras": {"extra1": "soon"}}, "not a time", "HH:MM:SS"),
])
def test_bad_requests_are_refused_with_a_hint(slurm: Cluster, tmp_path: Path, kw: dict[str, object], needle: str,
                                              hint: str) -> None:
    from cryocloud.errors import LaunchRefused

    with pytest.raises(LaunchRefused) as refused:  # the submitter is told, not "Submitted job 1"
        submit(tmp_path, "External/job001/", ["touch ran.txt"], **kw)
    assert needle in refused.value.message
    job = 1
    assert job_state(job) == "failed"
    jd = tmp_path / "External/job001"
    assert markers(jd) == ["RELION_JOB_EXIT_FAILURE"]
    err = (jd / "run.err").read_text()
    assert needle in err and hint in err
    assert _ledger_states() == ["failed"]  # nothing recorded as running
    ledger = Ledger(load_settings().ledger_path)
    assert ledger.attempts(job) == []
    ledger.close()
    # the backend itself raises a CryocloudError with a hint
    spec = job_spec_from_script(jd / "run_submit.script", tmp_path)
    backend = get_backend(load_settings().profile("slurm"), load_settings())
    with pytest.raises(CryocloudError) as e:
        backend.submit(Launch(99, spec, jd / ".cryocloud" / "job1", dict(os.environ)))
    assert needle in e.value.message and e.value.hint


def test_sbatch_not_on_path(slurm: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    make_job(tmp_path, "External/job001/", ["touch ran.txt"])
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with in_dir(tmp_path):
        assert main(["submit", "External/job001/run_submit.script"]) == 2
    err = capsys.readouterr().err
    assert "sbatch is not on PATH" in err and "hint:" in err
    assert markers(tmp_path / "External/job001") == ["RELION_JOB_EXIT_FAILURE"]
    assert _ledger_states() == []


@pytest.mark.slow
def test_controller_down(slurm: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = tmp_path / "dead.conf"
    text = slurm.conf.read_text()
    port = 1 + max(int(p) for p in (os.environ.get("SLURMCTLD_PORT", "29000"), "29000"))
    dead.write_text("\n".join(f"SlurmctldPort={port}" if ln.startswith("SlurmctldPort=") else ln
                              for ln in text.splitlines()) + "\n")
    monkeypatch.setenv("SLURM_CONF", str(dead))
    from cryocloud.errors import LaunchRefused

    with pytest.raises(LaunchRefused, match="controller does not answer"):
        submit(tmp_path, "External/job001/", ["touch ran.txt"])
    job = 1
    assert job_state(job) == "failed"
    jd = tmp_path / "External/job001"
    assert markers(jd) == ["RELION_JOB_EXIT_FAILURE"]
    err = (jd / "run.err").read_text()
    assert "controller does not answer" in err and "scontrol ping" in err
    assert _ledger_states() == ["failed"]
    backend = get_backend(load_settings().profile("slurm"), load_settings())
    with pytest.raises(CryocloudError):  # unreachable: the monitor asks again later, never guesses an end
        backend.status(Handle("slurm", {"job_id": "1", "control_dir": str(tmp_path)}))


def test_a_cluster_prices_itself_free_unless_its_profile_names_a_rate(slurm: Cluster, cryocloud_home: Path,
                                                                      tmp_path: Path) -> None:
    from cryocloud.errors import SubmissionError
    from spine.test_budget_submit import class2d_job

    # no rates: free, so a Max cost of 0.0001 USD is no obstacle (it was priced at AWS's cheapest machine)
    write_config(cryocloud_home, mpi_launcher=["mpirun", "-n", "{ranks}"])
    job = submit(tmp_path, "Class2D/job003/", ["echo classified"], extras={"extra2": "0.0001"})
    assert ended(job) == "succeeded"
    out = (tmp_path / "Class2D/job003/run.out").read_text()
    assert "predicted at 0 USD (slurm profile slurm sets no rate)" in out
    # a site that charges 1000 USD per CPU-hour: the same Max cost refuses a real Class2D, with the figures
    write_config(cryocloud_home, mpi_launcher=["mpirun", "-n", "{ranks}"], usd_per_cpu_hour=1000.0,
                 sbatch_args=["--hold"])  # accepted jobs wait in Slurm's queue: the test cancels them
    project = tmp_path / "priced"
    script = class2d_job(project, extras={"extra2": "0.0001"})
    with in_dir(project), pytest.raises(SubmissionError) as e:
        submit_script(script.relative_to(project), project)
    assert "over its Max cost of 0.0001 USD" in e.value.message and "USD/h on slurm profile slurm" in e.value.message
    assert markers(project / "Class2D/job002") == ["RELION_JOB_EXIT_FAILURE"]
    # priced, accepted: the prediction is a dated line in run.out, and the attempt is billed at that rate
    (project / "Class2D/job002/RELION_JOB_EXIT_FAILURE").unlink()
    script.write_text(script.read_text().replace("# cryocloud.extra2: 0.0001", "# cryocloud.extra2: "))
    with in_dir(project):
        accepted = submit_script(script.relative_to(project), project).job
    assert accepted.predicted_usd is not None and accepted.predicted_usd > 0.0001
    line = next(ln for ln in (project / "Class2D/job002/run.out").read_text().splitlines() if "predicted" in ln)
    assert line.startswith("[cryocloud 20") and "at 1000 USD/h on slurm profile slurm" in line
    assert job_state(accepted.id) == "starting"  # held in Slurm's queue: not running, not billed
    from cryocloud.app.jobs import cancel_job

    cancel_job(load_settings(), str(accepted.id), project)
    assert ended(accepted.id) == "aborted"
