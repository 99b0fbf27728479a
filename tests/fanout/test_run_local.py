"""`cryocloud run` and job-file fan-outs on the local backend: real processes, waited on by ledger state."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryocloud.app.jobs import cancel_job
from cryocloud.app.run import submit_command, submit_jobfile
from cryocloud.cli.main import main
from cryocloud.errors import SubmissionError
from cryocloud.settings import load_settings
from fanout.helpers import best_tasks, ended, job_row
from fanout.tasklib import jobfile, score
from gate import flag_wait
from spine.helpers import wait_for


def test_run_any_command_as_a_job(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--output", "out.txt", "--", "sh", "-c", "echo hello; echo x > out.txt"]) == 0
    assert "Submitted job 1 (Runs/run001/ on local)" in capsys.readouterr().out
    assert ended(1) == "succeeded"
    jd = tmp_path / "Runs/run001"
    assert "hello" in (jd / "run.out").read_text() and (tmp_path / "out.txt").exists()
    assert (jd / "RELION_JOB_EXIT_SUCCESS").exists()
    assert main(["costs", "--json"]) == 0 and "Runs/run001/" in capsys.readouterr().out


def test_run_exit_status_missing_output_and_unknown_command(tmp_path: Path) -> None:
    failing = submit_command(["sh", "-c", "exit 7"], tmp_path)
    silent = submit_command(["true"], tmp_path, outputs=["result_*.json"])
    assert ended(failing.job.id) == "failed" and job_row(failing.job.id).exit_code == 7
    assert ended(silent.job.id) == "failed"
    assert "no output matched 'result_*.json'" in job_row(silent.job.id).message
    with pytest.raises(SubmissionError, match="command not found: no-such-program") as e:
        submit_command(["no-such-program", "--x"], tmp_path)
    assert "full path" in e.value.hint
    with pytest.raises(SubmissionError, match=r"input 'missing\.dat' does not exist"):
        submit_command(["true"], tmp_path, inputs=["missing.dat"])
    assert sorted(p.name for p in (tmp_path / "Runs").iterdir()) == ["run001", "run002"]  # refusals leave none


def test_cancel_a_running_command(tmp_path: Path) -> None:
    flag = tmp_path / "never"
    done = submit_command(["sh", "-c", flag_wait(flag) + " && echo late"], tmp_path)
    jd = tmp_path / done.job.name
    assert wait_for(lambda: "started on" in (jd / "run.out").read_text())
    cancel_job(load_settings(), str(done.job.id), tmp_path, wait=15.0)
    assert ended(done.job.id) == "aborted" and (jd / "RELION_JOB_EXIT_ABORTED").exists()


def test_fanout_keeps_the_best_and_retries_a_failing_task(tmp_path: Path) -> None:
    """16 tasks, one seed per task; seed 4 always fails: it runs twice (one retry), then counts as failed while
    the 15 others are gathered: scores.csv, the best 4 copied, the job failed with the counts said."""
    (tmp_path / "job.toml").write_text(jobfile(tasks=16, keep=4, retries=1, fail_seed=4))
    done = submit_jobfile(tmp_path / "job.toml")
    assert ended(done.job.id) == "failed"
    jd = tmp_path / "Runs/job001"
    row = job_row(done.job.id)
    assert row.message.startswith("15 of 16 tasks succeeded, 1 did not; task 3: command exited with 3")
    assert (jd / "tasks/0003/run.out").read_text().count("started on") == 2  # retried once
    assert "retry 1 of 1" in (jd / "tasks/0003/run.out").read_text()
    seeds = [s for s in range(1, 17) if s != 4]
    expect = sorted(seeds, key=lambda s: (score(s), s))[:4]
    assert best_tasks(jd) == sorted(f"task{s - 1:04d}" for s in expect)
    lines = (jd / "scores.csv").read_text().splitlines()
    assert lines[0] == "rank,task,total_score,description" and len(lines) == 16
    assert "scores (total_score, 15 from 15 tasks)" in (jd / "run.out").read_text()
    assert (jd / "RELION_JOB_EXIT_FAILURE").exists()


def test_params_tables_are_substituted(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("data\n")
    (tmp_path / "p.toml").write_text(
        'command = ["sh", "-c", "cat in.txt > out_{name}.txt; echo {task} {seed} {name} >> out_{name}.txt"]\n'
        'inputs = ["in.txt"]\noutputs = ["out_{name}.txt"]\n'
        '[[params]]\nname = "a"\n[[params]]\nname = "b"\nseed = 42\n')
    done = submit_jobfile(tmp_path / "p.toml")
    assert ended(done.job.id) == "succeeded"
    jd = tmp_path / "Runs/p001/tasks"
    assert (jd / "0000/out_a.txt").read_text() == "data\n0 1 a\n"
    assert (jd / "0001/out_b.txt").read_text() == "data\n1 42 b\n"


def test_cancel_a_fanout(tmp_path: Path) -> None:
    flag = tmp_path / "never"
    (tmp_path / "c.toml").write_text(f'command = ["sh", "-c", {flag_wait(flag)!r}]\ntasks = 6\n')
    done = submit_jobfile(tmp_path / "c.toml")
    jd = tmp_path / done.job.name
    assert wait_for(lambda: (jd / "tasks/0000/run.out").exists()
                    and "started on" in (jd / "tasks/0000/run.out").read_text())
    cancel_job(load_settings(), str(done.job.id), tmp_path, wait=15.0)
    assert ended(done.job.id) == "aborted" and (jd / "RELION_JOB_EXIT_ABORTED").exists()


def test_aws_refuses_a_fanout_when_submitted(tmp_path: Path, cryocloud_home: Path) -> None:
    cryocloud_home.mkdir(parents=True, exist_ok=True)
    (cryocloud_home / "config.toml").write_text('[profiles.cloud]\nbackend = "aws"\nregion = "us-east-1"\n'
                                               '[storage]\nurl = "s3://lab-bucket/cryocloud"\n')
    (tmp_path / "f.toml").write_text(jobfile(tasks=2, keep=1))
    with pytest.raises(SubmissionError, match="aws backend cannot run a fan-out") as e:
        submit_jobfile(tmp_path / "f.toml", profile="cloud")
    assert "local or Slurm" in e.value.hint
    assert not (tmp_path / "Runs/f001").exists()


def test_a_fanout_says_how_far_it_is_and_a_killed_driver_fails_it(tmp_path: Path) -> None:
    """While it runs, `status` counts the tasks that ended; a driver killed outright (OOM killer, kill -9) ends
    the job as failed, and the tasks it left running are stopped."""
    import os
    import signal

    from cryocloud.app.jobs import refresh
    from cryocloud.proc import pid_alive

    flag = tmp_path / "never"
    (tmp_path / "k.toml").write_text(
        f'command = ["sh", "-c", "[ {{task}} = 0 ] || {flag_wait(flag)}"]\ntasks = 3\n[resources]\ncores = 1\n')
    done = submit_jobfile(tmp_path / "k.toml")
    jd = tmp_path / done.job.name

    def message() -> str:
        refresh(load_settings()).close()
        return str(job_row(done.job.id).message)

    assert wait_for(lambda: message().startswith("1 of 3 tasks ended: 1 succeeded"))
    assert wait_for(lambda: (jd / "tasks/0001/run.out").exists()
                    and "started on" in (jd / "tasks/0001/run.out").read_text())
    from cryocloud.jobs import control

    cdir = jd / ".cryocloud" / f"job{done.job.id}"
    assert wait_for(lambda: "child_pgid" in (control.read_json(control.task_dir(cdir, 1) / control.AGENT) or {}))
    pgid = control.read_json(control.task_dir(cdir, 1) / control.AGENT)["child_pgid"]  # type: ignore[index]
    from cryocloud.ledger import Ledger

    ledger = Ledger(load_settings().ledger_path)
    attempt = ledger.last_attempt(done.job.id)
    ledger.close()
    assert attempt is not None
    os.kill(int(attempt.handle_data["pid"]), signal.SIGKILL)
    assert ended(done.job.id) == "failed"
    assert wait_for(lambda: not pid_alive(pgid))
    assert (jd / "RELION_JOB_EXIT_FAILURE").exists()


def test_a_task_without_its_score_file_or_column_fails_saying_so(tmp_path: Path) -> None:
    (tmp_path / "none.toml").write_text('command = ["true"]\ntasks = 2\n'
                                        '[select]\nfile = "score.sc"\ncolumn = "total_score"\nkeep = 1\n')
    (tmp_path / "col.toml").write_text('command = ["sh", "-c", "printf \'energy\\\\n-3.5\\\\n\' > score.sc"]\n'
                                       'tasks = 2\n[select]\nfile = "score.sc"\ncolumn = "total_score"\nkeep = 1\n')
    none, col = submit_jobfile(tmp_path / "none.toml"), submit_jobfile(tmp_path / "col.toml")
    assert ended(none.job.id) == "failed" and ended(col.job.id) == "failed"
    assert "0 of 2 tasks succeeded" in job_row(none.job.id).message
    assert "no task wrote a score in column 'total_score'" in job_row(none.job.id).message
    assert "task 0: the task wrote no score file score.sc" in job_row(none.job.id).message
    assert "score.sc has no number in a column 'total_score'" in job_row(col.job.id).message
    assert "its columns: energy" in job_row(col.job.id).message
