"""Where the backend finds a job's final state once squeue forgot it, with stub Slurm commands that print
captured text (fixtures/): scontrol, then sacct, then the jobcomp file; and 'gone' only when none knows it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryocloud.backends.base import Handle
from cryocloud.backends.slurm import SlurmBackend
from cryocloud.errors import CryocloudError
from cryocloud.settings import Profile, load_settings

FIX = Path(__file__).parent / "fixtures"


def stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(0o755)


@pytest.fixture()
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """sbatch/squeue/scontrol/sacct stubs: squeue knows nothing, scontrol says the job id is invalid."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub(bin_dir, "sbatch", "exit 99")
    stub(bin_dir, "squeue", "exit 0")
    stub(bin_dir, "scontrol", f'if [ "$1" = show ] && [ "$2" = config ]; then\n'
                              f'  printf "JobCompLoc = {FIX}/jobcomp.txt\\nJobCompType = jobcomp/filetxt\\n"; exit 0\nfi\n'
                              f'cat {FIX}/scontrol_invalid.txt >&2; exit 1')
    stub(bin_dir, "sacct", 'echo "Slurm accounting storage is disabled" >&2; exit 1')
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return bin_dir


def backend(**options: object) -> SlurmBackend:
    return SlurmBackend(Profile("hpc", "slurm", dict(options)), load_settings())


@pytest.mark.parametrize("job, state, needle", [
    ("3", "failed", "failed"), ("4", "aborted", "cancelled"), ("2", "succeeded", ""), ("6", "failed", "array task"),
])
def test_final_state_from_the_jobcomp_file(fake_slurm: Path, tmp_path: Path, job: str, state: str,
                                           needle: str) -> None:
    status = backend().status(Handle("slurm", {"job_id": job, "control_dir": str(tmp_path)}))
    assert status.state == state and needle in status.message


def test_sacct_wins_over_the_jobcomp_file(fake_slurm: Path, tmp_path: Path) -> None:
    stub(fake_slurm, "sacct", f"cat {FIX}/sacct.txt")
    status = backend().status(Handle("slurm", {"job_id": "43", "control_dir": str(tmp_path)}))
    assert status.state == "failed" and "TIMEOUT" in status.message


def test_unknown_everywhere_is_gone(fake_slurm: Path, tmp_path: Path) -> None:
    status = backend(jobcomp=str(tmp_path / "none.txt")).status(
        Handle("slurm", {"job_id": "12345", "control_dir": str(tmp_path)}))
    assert status.state == "gone"


def test_controller_down_is_an_error_not_an_end(fake_slurm: Path, tmp_path: Path) -> None:
    stub(fake_slurm, "squeue", f"cat {FIX}/sbatch_err_down.txt >&2; exit 1")
    b = backend()
    for _ in range(2):  # asked once: the second job of the same pass gets the same answer without waiting
        with pytest.raises(CryocloudError):
            b.status(Handle("slurm", {"job_id": "3", "control_dir": str(tmp_path)}))
    stub(fake_slurm, "squeue", "exit 0")
    stub(fake_slurm, "scontrol", f"cat {FIX}/sbatch_err_down.txt >&2; exit 1")
    with pytest.raises(CryocloudError, match="controller does not answer"):
        backend().status(Handle("slurm", {"job_id": "3", "control_dir": str(tmp_path)}))


def test_pending_job_that_can_never_start_is_cancelled(fake_slurm: Path, tmp_path: Path) -> None:
    log = tmp_path / "scancel.log"
    stub(fake_slurm, "squeue", "echo '25|25|25|N/A|PENDING|PartitionConfig'")
    stub(fake_slurm, "scancel", f'echo "$@" >> {log}')
    status = backend().status(Handle("slurm", {"job_id": "25", "control_dir": str(tmp_path)}))
    assert status.state == "failed" and "can never start" in status.message
    assert log.read_text().split() == ["25"]


def test_sbatch_missing_is_refused_with_a_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CryocloudError, match="sbatch is not on PATH") as e:
        backend()
    assert "login node" in e.value.hint
