"""The pure Slurm functions on captured text (fixtures/README.md says where each file came from)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryocloud.backends import slurm_text as st
from cryocloud.errors import ConfigError, CryocloudError, SubmissionError
from cryocloud.jobs.spec import JobSpec, Resources

FIX = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIX / name).read_text()


def spec(**kw: object) -> JobSpec:
    base: dict[str, object] = {"name": "Class2D/job002/", "client": "relion", "job_type": "Class2D",
                               "project_dir": "/data/my project", "job_dir": "Class2D/job002/",
                               "commands": ["relion_refine --o Class2D/job002/run"]}
    base.update(kw)
    return JobSpec(**base)  # type: ignore[arg-type]


def argv(s: JobSpec, opts: st.SlurmOptions | None = None, exports: list[str] | None = None) -> list[str]:
    return st.sbatch_argv(s, opts or st.SlurmOptions(), batch_script="/cc/slurm_batch.py", control_dir="/cc",
                          exports=["PATH", "HOME"] if exports is None else exports, job_name="cryocloud-1-Class2D")


# -- sbatch lines --------------------------------------------------------------------------------------------
def test_sbatch_line_for_an_mpi_job() -> None:
    a = argv(spec(resources=Resources(mpi=3, threads=2), queue="cpu_short", extras={"wall_time": "00:30:00"}),
             st.SlurmOptions(account="lab1", qos="normal"))
    assert a[:2] == ["sbatch", "--parsable"]
    assert "--ntasks=3" in a and "--cpus-per-task=2" in a
    assert "--partition=cpu_short" in a and "--account=lab1" in a and "--qos=normal" in a
    assert "--time=0-00:30:00" in a
    assert "--output=/data/my project/Class2D/job002/run.out" in a
    assert "--error=/data/my project/Class2D/job002/run.err" in a
    assert "--chdir=/data/my project" in a and "--open-mode=append" in a
    assert "--export=HOME,PATH" in a or "--export=PATH,HOME" in a
    assert a[-2:] == ["/cc/slurm_batch.py", "/cc"]
    assert not any(x.startswith("--array") or x.startswith("--gres") for x in a)


def test_gpus_memory_gpu_partition_and_flags() -> None:
    opts = st.SlurmOptions(partition="cpu", gpu_partition="gpu", sbatch_args=("--constraint=a100",))
    a = argv(spec(resources=Resources(gpus=2, memory_gb=1.5)), opts)
    assert "--partition=gpu" in a and "--gres=gpu:2" in a and "--mem=1536M" in a and "--constraint=a100" in a
    a = argv(spec(resources=Resources(gpus=1)), st.SlurmOptions(gpu_flag="gpus"))
    assert "--gpus=1" in a
    assert "--partition=cpu" in argv(spec(), opts)  # no GPUs: the profile's partition
    assert "--partition=short" in argv(spec(queue="short", resources=Resources(gpus=1)), opts)  # RELION's queue wins
    named = st.SlurmOptions.from_profile("hpc", {"partition": "cpu"})
    assert "--partition=cpu" in argv(spec(queue="hpc"), named)  # a Queue name that chose the profile is no partition


def test_fan_out_is_an_array() -> None:
    a = argv(spec(tasks=200))
    assert "--array=0-199" in a and a[-4:] == ["/cc/slurm_batch.py", "/cc", "1", "200"]


def test_a_fan_out_larger_than_the_partition_packs_shards() -> None:
    nodes = st.parse_sinfo("a|8|1000|(null)|cpu*|infinite\nb|8|1000|gpu:2|gpu|infinite\n")
    assert st.slots(spec(), "", nodes) == 8
    assert st.slots(spec(resources=Resources(threads=3)), "cpu", nodes) == 2
    assert st.slots(spec(resources=Resources(gpus=1)), "gpu", nodes) == 2
    assert st.shards_per_task(200, 8) == 25 and st.shards_per_task(8, 8) == 1 and st.shards_per_task(5, 0) == 1
    a = st.sbatch_argv(spec(tasks=200), st.SlurmOptions(), batch_script="/cc/b.py", control_dir="/cc",
                       exports=[], job_name="x", pack=25)
    assert "--array=0-7" in a and a[-2:] == ["25", "200"]
    a = st.sbatch_argv(spec(tasks=201), st.SlurmOptions(), batch_script="/cc/b.py", control_dir="/cc",
                       exports=[], job_name="x", pack=25)
    assert "--array=0-8" in a  # the last array task runs the one shard left
    throttled = st.SlurmOptions.from_profile("hpc", {"array_throttle": 4})
    assert "--array=0-199%4" in argv(spec(tasks=200), throttled)  # the profile's `%` throttle


def test_export_is_an_explicit_list_never_the_whole_environment() -> None:
    env = {"PATH": "/bin", "RELION_QSUB_EXTRA1": "x", "HOME": "/root", "BASH_FUNC_x%%": "() {}", "LANG": "C"}
    assert st.export_names(env) == ["HOME", "LANG", "PATH", "RELION_QSUB_EXTRA1"]
    a = argv(spec(), exports=[])
    assert "--export=NONE" in a
    assert not any(x in ("--export=ALL", "--export") for x in a)


@pytest.mark.parametrize("text, seconds", [
    ("30", 1800), ("30:15", 1815), ("01:30:00", 5400), ("2-00", 172800), ("1-02:03", 93780),
    ("1-00:00:01", 86401),
])
def test_slurm_time_formats(text: str, seconds: int) -> None:
    assert st.time_seconds(text) == seconds


def test_time_limit_from_wall_time_and_max_time() -> None:
    assert st.time_limit(spec(), st.SlurmOptions(max_time="1-00:00:00")) == "1-00:00:00"
    assert st.time_limit(spec(resources=Resources(wall_time="02:00:00")), st.SlurmOptions(max_time="12:00:00")) \
        == "0-02:00:00"
    assert st.time_limit(spec(), st.SlurmOptions()) == ""
    with pytest.raises(SubmissionError, match="at most 12:00:00") as e:
        st.time_limit(spec(resources=Resources(wall_time="48:00:00")), st.SlurmOptions(max_time="12:00:00"))
    assert e.value.hint
    with pytest.raises(SubmissionError, match="not a time") as e:
        st.time_limit(spec(resources=Resources(wall_time="two hours")), st.SlurmOptions())
    assert "HH:MM:SS" in e.value.hint


def test_profile_options_are_checked() -> None:
    opts = st.SlurmOptions.from_profile("hpc", {"partition": "cpu", "sbatch_args": ["--exclusive"],
                                                "usd_per_hour": 0.05})
    assert opts.partition == "cpu" and opts.sbatch_args == ("--exclusive",)
    assert not st.SlurmOptions.from_profile("hpc", {"pack_tasks": False}).pack_tasks
    for bad, needle in [({"pack_tasks": "yes"}, "true or false"), ({"partition": 3}, "must be a string"), ({"sbatch_args": "--exclusive"}, "list of strings"),
                        ({"usd_per_hour": -1}, ">= 0"), ({"gpu_flag": "cuda"}, "gpu_flag"),
                        ({"staging": "tape"}, "not a staging mode"), ({"max_time": "forever"}, "not a time"),
                        ({"max_requeues": -1}, "whole number")]:
        with pytest.raises(CryocloudError, match=needle) as e:
            st.SlurmOptions.from_profile("hpc", bad)
        assert e.value.hint


def test_batch_script_is_python_without_a_shell() -> None:
    text = st.batch_script_text("/venv/bin/python")
    assert text.startswith("#!/venv/bin/python\n")
    compile(text, "slurm_batch.py", "exec")
    assert "SLURM_ARRAY_TASK_ID" in text
    with pytest.raises(ConfigError):
        st.batch_script_text("python3")


# -- parsing -----------------------------------------------------------------------------------------------
def test_parse_sbatch() -> None:
    assert st.parse_sbatch(fixture("sbatch_parsable.txt")) == fixture("sbatch_parsable.txt").strip()
    assert st.parse_sbatch("123;cluster2\n") == "123"
    with pytest.raises(CryocloudError):
        st.parse_sbatch("Submitted batch job\n")


def test_parse_squeue_captured() -> None:
    rows = st.parse_squeue(fixture("squeue_all.txt"))
    by_id = {r.id: r for r in rows}
    assert by_id["3"].state == "FAILED" and by_id["3"].reason == "NonZeroExitCode" and by_id["3"].task is None
    assert by_id["6_1"].array_job_id == "6" and by_id["6_1"].task == 1 and by_id["6_1"].job_id == "9"
    assert by_id["10"].reason == "PartitionConfig"


@pytest.mark.parametrize("job, state, needle", [
    ("21", "failed", "TIMEOUT"), ("22", "failed", "NODE_FAIL"), ("23", "failed", "PREEMPTED"),
    ("24", "failed", "OUT_OF_MEMORY"), ("27", "failed", "BOOT_FAIL"), ("28", "failed", "DEADLINE"),
    ("26", "queued", ""), ("30", "running", ""),
])
def test_states_from_squeue(job: str, state: str, needle: str) -> None:
    rows = [r for r in st.parse_squeue(fixture("squeue_handwritten.txt")) if r.array_job_id == job]
    s = st.summarize([(r.task, r.state, r.reason, None) for r in rows])
    assert s.state == state and needle in s.message


def test_pending_forever_is_recognised() -> None:
    rows = [r for r in st.parse_squeue(fixture("squeue_handwritten.txt")) if r.job_id == "25"]
    s = st.summarize([(r.task, r.state, r.reason, None) for r in rows])
    assert s.state == "queued" and "partition" in s.never_starts


def test_scontrol_records_and_exit_codes() -> None:
    rows = st.rows_from_records(st.parse_records(fixture("scontrol_failed.txt")), "3")
    assert rows == [st.FinalRow("3", None, "FAILED", 3, "NonZeroExitCode")]
    arr = st.rows_from_records(st.parse_records(fixture("scontrol_array.txt")), "6")
    assert sorted((r.task, r.state, r.exit_code) for r in arr) == [(0, "COMPLETED", 0), (1, "FAILED", 1),
                                                                   (2, "FAILED", 2)]
    s = st.summarize([(r.task, r.state, r.reason, r.exit_code) for r in arr])
    assert s.state == "failed" and "array task" in s.message
    rec = st.parse_records(fixture("scontrol_failed.txt"))[0]
    assert rec["WorkDir"] == "/tmp/cc-cap" and rec["AllocNode:Sid"] == "localhost:6828"


def test_jobcomp_file_gives_final_states() -> None:
    records = st.parse_records(fixture("jobcomp.txt"))
    assert st.rows_from_records(records, "4")[0].state == "CANCELLED"
    assert {r.task for r in st.rows_from_records(records, "6")} == {0, 1, 2}
    assert st.rows_from_records(records, "99999") == []
    assert st.summarize([(None, "CANCELLED", "", 0)]).state == "aborted"
    assert st.summarize([(None, "COMPLETED", "", 0)]).state == "succeeded"


def test_sacct_skips_steps_and_reads_signals() -> None:
    text = fixture("sacct.txt")
    assert st.parse_sacct(text, "41") == [st.FinalRow("41", None, "FAILED", 3)]
    assert st.parse_sacct(text, "42")[0].state == "CANCELLED" and st.parse_sacct(text, "42")[0].exit_code == 143
    arr = st.parse_sacct(text, "44")
    assert [(r.task, r.state) for r in arr] == [(0, "COMPLETED"), (1, "OUT_OF_MEMORY"), (2, "NODE_FAIL")]
    s = st.summarize([(r.task, r.state, "", r.exit_code) for r in arr])
    assert s.state == "failed" and "OUT_OF_MEMORY" in s.message


def test_unknown_state_never_ends_a_job() -> None:
    assert st.summarize([(None, "SOMETHING_NEW", "", None)]).state == "running"


@pytest.mark.parametrize("name, needle, hint", [
    ("sbatch_err_partition.txt", "no such partition", "sinfo"),
    ("sbatch_err_memory.txt", "larger than any node", "fewer"),
    ("sbatch_err_gres.txt", "GPUs", "gpu_partition"),
    ("sbatch_err_down.txt", "controller does not answer", "scontrol ping"),
])
def test_sbatch_errors_get_a_message_and_hint(name: str, needle: str, hint: str) -> None:
    known = st.sbatch_error(fixture(name))
    assert known is not None
    assert needle in known[0] and hint in known[1]


def test_sinfo_and_fit_checks() -> None:
    nodes = st.parse_sinfo(fixture("sinfo.txt"))
    assert len(nodes) == 1 and nodes[0].partitions == ("debug",) and nodes[0].default_partition
    cpus = nodes[0].cpus
    st.check_fits(spec(resources=Resources(mpi=1, threads=cpus)), "", nodes)
    with pytest.raises(SubmissionError, match="no partition 'gpu'") as e:
        st.check_fits(spec(), "gpu", nodes)
    assert "debug" in e.value.hint
    with pytest.raises(SubmissionError, match="larger than any node") as e:
        st.check_fits(spec(resources=Resources(mpi=1, threads=cpus + 1)), "debug", nodes)
    assert "fewer" in e.value.hint
    with pytest.raises(SubmissionError, match="GPUs"):
        st.check_fits(spec(resources=Resources(gpus=1)), "", nodes)
    two = st.parse_sinfo("a|8|1000|gpu:a100:4(S:0-1)|gpu|1-00:00:00\nb|8|1000|(null)|cpu*|infinite\n"
                         "b|8|1000|(null)|gpu|1-00:00:00\n")
    assert [(n.name, n.gpus, n.partitions) for n in two] == [("a", 4, ("gpu",)), ("b", 0, ("cpu", "gpu"))]
    st.check_fits(spec(resources=Resources(gpus=4, mpi=2)), "gpu", two)
