"""The spine on the local backend with plain shell commands (fast; no RELION needed)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from cryocloud.app.submit import submit_script
from cryocloud.cli.main import main
from gate import flag_wait
from spine.helpers import in_dir, job_state, make_job, markers, wait_for

pytestmark = pytest.mark.integration


def submit(project: Path, job_dir: str, commands: list[str], **kw: object) -> int:
    make_job(project, job_dir, commands, **kw)
    with in_dir(project):
        return submit_script(Path(job_dir) / "run_submit.script", project).job.id


def ended(job_id: int, timeout: float = 300) -> str:
    assert wait_for(lambda: job_state(job_id) not in ("queued", "starting", "running"), timeout)
    return job_state(job_id)


def test_success_writes_output_marker_and_cost(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = submit(tmp_path, "External/job001/", ["echo hello from the job", "echo oops >&2"])
    assert ended(job) == "succeeded"
    jd = tmp_path / "External/job001"
    assert markers(jd) == ["RELION_JOB_EXIT_SUCCESS"]
    assert "hello from the job" in (jd / "run.out").read_text()
    assert "oops" in (jd / "run.err").read_text()
    assert "[cryocloud" in (jd / "run.out").read_text()  # dated state lines for the user
    assert main(["costs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["backend"] == "local" and rows[0]["usd_per_hour"] == 0.63 and rows[0]["wall_seconds"] > 0


def test_first_failed_command_stops_the_job(tmp_path: Path) -> None:
    job = submit(tmp_path, "External/job001/", ["echo one", "exit 3", "echo never > never.txt"])
    assert ended(job) == "failed"
    assert markers(tmp_path / "External/job001") == ["RELION_JOB_EXIT_FAILURE"]
    assert not (tmp_path / "never.txt").exists()


def test_the_script_runs_as_one_program_so_site_lines_reach_the_commands(tmp_path: Path) -> None:
    # a facility's template: a `module` function from a sourced file, export, an if block, cd; then the command
    (tmp_path / "site env.sh").write_text('module() { export LOADED="$2"; }\nexport SITE_ROOT=/opt/site\n')
    lines = ['source "site env.sh"', "module load relion/5.0", "export OMP_NUM_THREADS=3",
             'if [ "$OMP_NUM_THREADS" = 3 ]; then', "  export FROM_IF=yes", "else", "  export FROM_IF=no", "fi",
             "cd External/job001",
             'echo "$LOADED $SITE_ROOT $OMP_NUM_THREADS $FROM_IF" > seen.txt']
    job = submit(tmp_path, "External/job001/", lines)
    assert ended(job) == "succeeded"
    assert (tmp_path / "External/job001/seen.txt").read_text() == "relion/5.0 /opt/site 3 yes\n"


def test_a_failed_line_inside_the_program_stops_it_and_is_named(tmp_path: Path) -> None:
    job = submit(tmp_path, "External/job001/", ["echo one", "ls /no/such/folder", "echo never > never.txt"])
    assert ended(job) == "failed"
    assert not (tmp_path / "never.txt").exists()
    from cryocloud.app.jobs import refresh
    from cryocloud.settings import load_settings

    ledger = refresh(load_settings())
    try:
        row = ledger.job(job)
        assert row is not None and "ls /no/such/folder" in row.message and "exited with 2" in row.message
    finally:
        ledger.close()


def _files_holding(roots: list[Path], needle: bytes) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_a_job_gets_what_it_needs_and_no_secret_is_written_anywhere(tmp_path: Path, cryocloud_home: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # secrets with ordinary names, which no list of secret-looking names catches; a lab setting its profile passes
    monkeypatch.setenv("DB_PASS", "hunter2-db")
    monkeypatch.setenv("MY_API_KEY", "key-0xC0FFEE")
    monkeypatch.setenv("MY_LAB_SCRATCH", "/scratch/lab")
    monkeypatch.setenv("RELION_SCRATCH_DIR", "/scratch/relion")
    monkeypatch.setenv("CRYOCLOUD_LOCAL_CPUS", "1")
    cryocloud_home.mkdir()
    (cryocloud_home / "config.toml").write_text('[profiles.local]\nbackend = "local"\npass_env = ["MY_LAB_*"]\n')
    project = tmp_path / "project"
    first = submit(project, "External/job001/", [f"{flag_wait(tmp_path / 'go')}"])  # holds the only CPU slot
    second = submit(project, "External/job002/", ["env > External/job002/env.txt"])
    assert job_state(second) == "queued"  # its environment waits for it somewhere private, not in the project
    kept = list((cryocloud_home / "run" / "env").glob("*.json"))
    assert kept and all(oct(p.stat().st_mode)[-3:] == "600" for p in kept)
    assert oct((cryocloud_home / "run").stat().st_mode)[-3:] == "700"
    (tmp_path / "go").touch()
    assert ended(first) == "succeeded" and ended(second) == "succeeded"
    seen = (project / "External/job002/env.txt").read_text()
    assert "MY_LAB_SCRATCH=/scratch/lab" in seen and "RELION_SCRATCH_DIR=/scratch/relion" in seen
    assert "PATH=" in seen
    for secret in (b"hunter2-db", b"key-0xC0FFEE"):
        assert _files_holding([project, cryocloud_home], secret) == []
    assert wait_for(lambda: not list((cryocloud_home / "run" / "env").glob("*.json")))  # gone once the jobs end
    # and so a snapshot of the project cannot carry them
    from cryocloud.storage.project import push_project
    from cryocloud.storage.stores import open_store

    push_project(open_store(str(tmp_path / "store")), project, "project")
    for secret in (b"hunter2-db", b"key-0xC0FFEE"):
        assert _files_holding([tmp_path / "store"], secret) == []
    assert _files_holding([tmp_path / "store"], b"/scratch/lab")  # the job's own output was backed up


def test_program_marker_is_kept(tmp_path: Path) -> None:
    # RELION programs write their own marker; the agent must not add a second one
    job = submit(tmp_path, "External/job001/", ["touch External/job001/RELION_JOB_EXIT_ABORTED"])
    assert ended(job) == "aborted"
    assert markers(tmp_path / "External/job001") == ["RELION_JOB_EXIT_ABORTED"]


def test_abort_file_stops_the_job(tmp_path: Path) -> None:
    job = submit(tmp_path, "External/job001/", ["sleep 300"])
    assert wait_for(lambda: (tmp_path / "External/job001/run.out").exists() and "started" in
                    (tmp_path / "External/job001/run.out").read_text())
    (tmp_path / "External/job001/RELION_JOB_ABORT_NOW").touch()
    assert ended(job) == "aborted"
    assert markers(tmp_path / "External/job001") == ["RELION_JOB_EXIT_ABORTED"]


def test_killed_agent_ends_as_failed_not_running(tmp_path: Path) -> None:
    job = submit(tmp_path, "External/job001/", ["sleep 300"])
    agent_json = tmp_path / f"External/job001/.cryocloud/job{job}/agent.json"
    # the agent writes its pid, then its command's process group: kill it once the command runs
    assert wait_for(lambda: agent_json.exists() and "child_pgid" in agent_json.read_text())
    pid = json.loads(agent_json.read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    assert ended(job) == "failed"
    jd = tmp_path / "External/job001"
    assert markers(jd) == ["RELION_JOB_EXIT_FAILURE"]
    assert "without reporting" in (jd / "run.err").read_text()
    pgid = json.loads(agent_json.read_text())["child_pgid"]
    assert wait_for(lambda: not _group_alive(pgid)), "the job's processes must not outlive its agent"


def test_monitor_then_agent_killed_is_marked_with_no_command_run(tmp_path: Path) -> None:
    """The OOM killer takes the monitor, then the job's agent: the agent restarted the monitor, which marks the
    job failed in RELION's view by itself. The test only watches files: it runs no cryocloud command."""
    from cryocloud.monitor.loop import monitor_pid
    from cryocloud.settings import load_settings
    from spine.helpers import running_with_monitor

    _job, jd, agent_json, first = running_with_monitor(tmp_path)
    settings = load_settings()
    os.kill(first, signal.SIGKILL)
    assert wait_for(lambda: monitor_pid(settings) not in (None, first), 120), "the agent did not restart the monitor"
    assert "monitor is not running; starting it" in (jd / "run.out").read_text()
    agent = json.loads(agent_json.read_text())
    os.kill(agent["pid"], signal.SIGKILL)
    assert wait_for(lambda: markers(jd) != [], 120), "no marker: RELION would show Running"
    assert markers(jd) == ["RELION_JOB_EXIT_FAILURE"]
    assert "without reporting" in (jd / "run.err").read_text()
    assert wait_for(lambda: not _group_alive(agent["child_pgid"]))


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cancel_by_job_folder_from_the_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = submit(tmp_path, "Class2D/job003/", ["sleep 300"])
    assert wait_for(lambda: job_state(job) == "running")
    with in_dir(tmp_path):
        assert main(["cancel", "Class2D/job003/"]) == 0
    assert "aborted" in capsys.readouterr().out
    assert job_state(job) == "aborted"
    assert markers(tmp_path / "Class2D/job003") == ["RELION_JOB_EXIT_ABORTED"]


def test_status_from_any_folder_by_id_and_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = submit(tmp_path, "External/job001/", ["true"])
    ended(job)
    capsys.readouterr()
    assert main(["status", str(job), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["state"] == "succeeded"
    assert main(["status", str(tmp_path / "External/job001")]) == 0
    assert "succeeded" in capsys.readouterr().out
    assert main(["status", "999"]) != 0


def test_queue_is_first_in_first_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYOCLOUD_LOCAL_CPUS", "1")
    go = tmp_path / "go"
    a = submit(tmp_path, "External/job001/", [flag_wait(go), "date +%s.%N > a.txt"])
    b = submit(tmp_path, "External/job002/", ["date +%s.%N > b_start.txt"])
    assert job_state(b) == "queued"  # the single slot is taken (job001 waits for the test)
    go.touch()
    assert ended(a) == "succeeded" and ended(b) == "succeeded"
    assert float((tmp_path / "b_start.txt").read_text()) >= float((tmp_path / "a.txt").read_text())


def test_busy_job_folder_is_refused_without_touching_it(tmp_path: Path) -> None:
    job = submit(tmp_path, "External/job001/", ["sleep 300"])
    before = sorted(p.name for p in (tmp_path / "External/job001").iterdir())
    with in_dir(tmp_path):
        assert main(["submit", "External/job001/run_submit.script"]) == 2
    assert sorted(p.name for p in (tmp_path / "External/job001").iterdir()) == before
    assert job_state(job) == "running"


def _ledger_rows() -> int:
    path = Path(os.environ["CRYOCLOUD_HOME"]) / "ledger.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])


@pytest.mark.parametrize("setup, needle", [
    ("unknown_backend", "unknown backend or profile"),
    ("config_typo", "unknown key"),
    ("not_relion", "not made from cryocloud's template"),
    ("missing_input", "missing file"),
    ("malformed_star", "not a readable STAR file"),
])
def test_refusals_tell_relion_and_leave_no_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str], setup: str, needle: str) -> None:
    cmds = ["echo hi"]
    if setup == "unknown_backend":
        monkeypatch.setenv("CRYOCLOUD_BACKEND", "awss")
    if setup == "config_typo":
        home = Path(os.environ["CRYOCLOUD_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text("[local]\ncpuz = 2\n")
    if setup == "missing_input":
        cmds = ["relion_refine --i Extract/job001/nothere.star --o Class2D/job002/run"]
    if setup == "malformed_star":
        (tmp_path / "Extract/job001").mkdir(parents=True)
        (tmp_path / "Extract/job001/parts.star").write_bytes(b"data_\nloop_\n_rlnImageName #1\n\x00\x01\xff")
        cmds = ["relion_refine --i Extract/job001/parts.star --o Class2D/job002/run"]
    script = make_job(tmp_path, "Class2D/job002/", cmds)
    if setup == "not_relion":
        script.write_text("#!/bin/bash\n#SBATCH -n 2\nrelion_refine --i x\n")
    with in_dir(tmp_path):
        assert main(["submit", "Class2D/job002/run_submit.script"]) == 2
    err = capsys.readouterr().err
    assert needle in err and "hint:" in err
    assert len(err.strip().splitlines()) == 2  # one line of error, one of hint
    jd = tmp_path / "Class2D/job002"
    assert markers(jd) == ["RELION_JOB_EXIT_FAILURE"]  # RELION's GUI must not wait forever
    assert needle in (jd / "run.err").read_text()
    assert sorted(p.name for p in jd.iterdir()) == ["RELION_JOB_EXIT_FAILURE", "run.err", "run_submit.script"]
    assert _ledger_rows() == 0


def test_pipeliner_jobs_get_the_pipeliner_marker_family(tmp_path: Path) -> None:
    runner = tmp_path / "fake" / "job_runner.py"
    runner.parent.mkdir()
    runner.write_text("import sys; sys.exit(1)\n")
    job = submit(tmp_path, "Class2D/job001/", [f"python3 {runner} Class2D/job001/job.star"])
    assert ended(job) == "failed"
    names = sorted(p.name for p in (tmp_path / "Class2D/job001").iterdir() if "_JOB_EXIT_" in p.name)
    assert names == ["PIPELINER_JOB_EXIT_FAILED"]


def test_queue_name_selects_a_profile_and_a_typo_is_refused_on_local(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from cryocloud.app.submit import choose_profile
    from cryocloud.jobs.relion import job_spec_from_script
    from cryocloud.settings import load_settings

    home = Path(os.environ["CRYOCLOUD_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text('[profiles.big]\nbackend = "local"\n')
    settings = load_settings()
    for queue, expected in (("big", "big"), ("local", "local"), ("default", "local"), ("openmpi", "local")):
        script = make_job(tmp_path, f"External/{queue}/", ["true"], queue=queue)
        assert choose_profile(job_spec_from_script(script, tmp_path), settings).name == expected
    # "bigg": no such profile, and local has no queues: it would run here without a word
    make_job(tmp_path, "External/job009/", ["true"], queue="bigg")
    with in_dir(tmp_path):
        assert main(["submit", "External/job009/run_submit.script"]) == 2
    err = capsys.readouterr().err
    assert "Queue name 'bigg' is no profile" in err and "did you mean 'big'" in err
    assert markers(tmp_path / "External/job009") == ["RELION_JOB_EXIT_FAILURE"]


def test_warm_submissions_go_through_the_running_monitor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from cryocloud.monitor.loop import monitor_pid
    from cryocloud.settings import load_settings

    monkeypatch.setenv("CRYOCLOUD_LOCAL_MONITOR_LINGER", "3600")  # it would leave once job001 ends
    make_job(tmp_path, "External/job001/", ["true"])
    with in_dir(tmp_path):
        assert main(["submit", "External/job001/run_submit.script"]) == 0  # cold: starts the monitor
    assert wait_for(lambda: monitor_pid(load_settings()) is not None)
    assert wait_for(lambda: (load_settings().run_dir / "submit.sock").exists())
    # the second submitter's own environment reaches its job (what jobs get); its secrets do not
    monkeypatch.setenv("RELION_SCRATCH_DIR", "from-the-second-shell")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-copy-me")
    make_job(tmp_path, "External/job002/", ["echo setting=$RELION_SCRATCH_DIR secret=${AWS_SECRET_ACCESS_KEY:-none}"])
    from cryocloud.monitor.handoff import hand_off

    answer = hand_off(load_settings(), Path("External/job002/run_submit.script"), tmp_path, os.environ)
    assert answer is not None and answer["job_id"] == 2  # the monitor took it
    assert ended(2) == "succeeded"
    out = (tmp_path / "External/job002/run.out").read_text()
    assert "setting=from-the-second-shell secret=none" in out
    # a refusal answered by the monitor reads the same as a cold one
    make_job(tmp_path, "Class2D/job003/", ["relion_refine --i nothere.star --o Class2D/job003/run"])
    with in_dir(tmp_path):
        assert main(["submit", "Class2D/job003/run_submit.script"]) == 2
    err = capsys.readouterr().err
    assert "missing file" in err and "hint:" in err
    assert markers(tmp_path / "Class2D/job003") == ["RELION_JOB_EXIT_FAILURE"]


def test_job_folder_deleted_while_running_ends_failed_and_the_monitor_survives(tmp_path: Path) -> None:
    import shutil

    job = submit(tmp_path, "External/job001/", ["sleep 300"])
    agent_json = tmp_path / f"External/job001/.cryocloud/job{job}/agent.json"
    assert wait_for(lambda: agent_json.exists() and "child_pgid" in agent_json.read_text())
    pgid = json.loads(agent_json.read_text())["child_pgid"]
    folder = tmp_path / "External/job001"
    # the runner may write in it meanwhile (rmtree then meets a new file): remove until it is gone
    assert wait_for(lambda: shutil.rmtree(folder, ignore_errors=True) or not folder.exists())
    os.killpg(pgid, signal.SIGKILL)  # the job's command dies with its folder gone
    assert ended(job) == "failed"
    later = submit(tmp_path, "External/job002/", ["true"])
    assert ended(later) == "succeeded"


def test_a_monitor_leaving_as_a_submission_arrives_starts_the_next_one(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The monitor (run here in-process) finds nothing to do and leaves; while it closes its socket a
    submission arrives and is answered (as `handoff.close` answers late submitters). The job it started
    must not be left without a monitor: the leaving one starts the next, and that one sees the job end."""
    from cryocloud.app.submit import answer_submission
    from cryocloud.monitor import handoff
    from cryocloud.monitor import loop as monitor
    from cryocloud.settings import load_settings

    real_close = handoff.close
    late: list[int] = []

    go = tmp_path / "go"

    def close_with_a_late_submission(settings: object, sock: object, handler: object) -> None:
        late.append(submit(tmp_path, "External/job001/", [flag_wait(go)]))  # it sees a monitor holding the lock
        real_close(settings, sock, handler)  # type: ignore[arg-type]

    monkeypatch.setattr(handoff, "close", close_with_a_late_submission)
    monkeypatch.setattr(monitor.signal, "signal", lambda *a: None)  # leave this process's SIGTERM alone
    settings = load_settings()
    assert monitor.run_monitor(settings, answer_submission) == 0  # nothing active: it leaves at once
    assert late and monitor.monitor_pid(settings, starting=True) is not None  # ...and started the next
    assert wait_for(lambda: monitor.monitor_pid(settings) is not None)  # the job waits for `go` meanwhile
    go.touch()
    assert ended(late[0]) == "succeeded"
    assert wait_for(lambda: monitor.monitor_pid(settings, starting=True) is None)  # it leaves in turn
