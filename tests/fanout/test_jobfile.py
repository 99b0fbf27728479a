"""The job file's checks (line-numbered errors with hints) and the score-file parser: pure functions, no jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryocloud.errors import CryocloudError, SubmissionError
from cryocloud.jobs import scores, split
from cryocloud.jobs.jobfile import read_jobfile

GOOD = '''name = "relax"
command = ["relax", "-nstruct", "1", "-seed", "{seed}"]
outputs = ["*.pdb"]
tasks = 4
seed = 100
[resources]
cores = 2
[select]
file = "score.sc"
column = "total_score"
keep = 2
'''


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.toml"
    path.write_text(text)
    return path


def test_a_good_job_file(tmp_path: Path) -> None:
    v = read_jobfile(_write(tmp_path, GOOD))
    assert v["tasks"] == 4 and v["resources"]["cores"] == 2 and v["select"]["keep"] == 2
    assert v["seed"] == 100 and v["params"] == []  # task i's {seed}: 100 + i (jobs/tasks.py)


@pytest.mark.parametrize(("edit", "message", "hint"), [
    (("tasks = 4", "taks = 4"), "job.toml, line 4: unknown key 'taks'", "did you mean 'tasks'?"),
    (("cores = 2", "cores = \"two\""), "job.toml, line 7: resources.cores: Input should be a valid integer", ""),
    (("cores = 2", "core = 2"), "job.toml, line 7: unknown key 'resources.core'", "did you mean 'cores'?"),
    (("keep = 2", "keep = 9"), "job.toml, line 11: select.keep = 9 is more than the job's 4 tasks", "keep at most 4"),
    (("keep = 2", "keep = 2\norder = \"best\""), "job.toml, line 12: select.order: Input should be 'min' or 'max'",
     ""),
    (('outputs = ["*.pdb"]', 'inputs = ["missing.pdb"]'), "job.toml, line 3: input 'missing.pdb' does not exist",
     "relative to the job file"),
    (("tasks = 4", "tasks = 4\n[[params]]\nx = 1"), "job.toml, line 4: give `tasks = N` or [[params]] tables",
     "number of tables"),
    (("command = [", "command = ("), "job.toml, line 2: not valid TOML: Invalid value at column 11", "quotes"),
    (('command = ["relax", "-nstruct", "1", "-seed", "{seed}"]\n', ""), "job.toml: command is missing", ""),
])
def test_bad_job_files_name_the_line(tmp_path: Path, edit: tuple[str, str], message: str, hint: str) -> None:
    with pytest.raises(SubmissionError) as e:
        read_jobfile(_write(tmp_path, GOOD.replace(*edit)))
    assert e.value.message.startswith(message), e.value.message
    assert hint in e.value.hint


def test_params_tables_set_the_tasks(tmp_path: Path) -> None:
    text = GOOD.replace("tasks = 4\n", "").replace("keep = 2", "keep = 1") + \
        '[[params]]\ntemp = 300\n[[params]]\ntemp = 310\nseed = 7\n'
    v = read_jobfile(_write(tmp_path, text))
    assert v["tasks"] == 2 and v["params"] == [{"temp": "300"}, {"seed": "7", "temp": "310"}]


# Written in the layout Rosetta's score files have (score_jd2, -out:file:scorefile): a SEQUENCE: line, a SCORE:
# header naming the terms, one SCORE: line per model, `description` last.
ROSETTA = """SEQUENCE:
SCORE: total_score       score dslf_fa13    fa_atr    fa_rep    fa_sol description
SCORE:    -1159.282   -1159.282     -1.583 -2018.640   236.556  1144.232 S_0001
SCORE:    -1170.004   -1170.004     -1.102 -2023.118   231.900  1140.785 S_0002
"""


def test_rosetta_score_files_parse() -> None:
    rows = scores.parse_scores(ROSETTA)
    assert [r["description"] for r in rows] == ["S_0001", "S_0002"]
    assert [scores.score_of(r, "total_score") for r in rows] == [-1159.282, -1170.004]
    assert scores.parse_scores("a,b\n1,x\n2,y\n") == [{"a": "1", "b": "x"}, {"a": "2", "b": "y"}]


def test_a_score_column_nobody_wrote_and_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "score.sc").write_text(ROSETTA)
    with pytest.raises(CryocloudError, match="no number in a column 'totl_score'") as e:
        scores.read_scores(tmp_path / "score.sc", "totl_score")
    assert "total_score" in e.value.hint
    with pytest.raises(CryocloudError, match=r"wrote no score file other\.sc"):
        scores.read_scores(tmp_path / "other.sc", "total_score")


def test_shards_interleave_and_cover_every_row_once() -> None:
    covered = [list(split.shard_rows(7, 3, i)) for i in range(3)]
    assert covered == [[0, 3, 6], [1, 4], [2, 5]]
    # a list that grew at its end (on-the-fly: rows 0-5 done before) spreads its new rows over every shard
    assert [len([r for r in split.shard_rows(9, 3, i) if r >= 6]) for i in range(3)] == [1, 1, 1]


def test_each_task_gets_its_fields_and_a_small_launch_file(tmp_path: Path) -> None:
    """{task}, {seed} (base + task unless a table names one) and [[params]] names; a task's launch.json holds
    only its place (the spec is read from the job's, one folder up), so N tasks do not write N copies of N sets."""
    from dataclasses import asdict

    from cryocloud.jobs import control, tasks
    from cryocloud.jobs.command import command_spec

    spec = command_spec(["fit", "--seed", "{seed}", "--t", "{temp}", "--i", "{task}", "{other}"], tmp_path, tasks=2,
                        params=[{"temp": "300"}, {"temp": "310", "seed": "7"}], seed=100)
    assert tasks.commands(spec, 0, tmp_path, tmp_path) == ["fit --seed 100 --t 300 --i 0 '{other}'"]
    assert tasks.commands(spec, 1, tmp_path, tmp_path) == ["fit --seed 7 --t 310 --i 1 '{other}'"]
    cdir = tmp_path / "c"
    cdir.mkdir()
    control.write_json(cdir / control.LAUNCH, {"spec": asdict(spec), "mpi_launcher": []})
    tasks.write_shards(cdir, spec)
    assert "spec" not in (control.read_json(control.task_dir(cdir, 1) / control.LAUNCH) or {})
    launch = control.read_launch(control.task_dir(cdir, 1)) or {}
    assert launch["shard"] == {"index": 1, "count": 2} and launch["spec"]["fanout"]["params"][1]["seed"] == "7"
    assert launch["stdout"] == f"{spec.job_dir}tasks/0001/run.out"
