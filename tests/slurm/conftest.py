"""A real single-node Slurm for this test session, started by scripts/slurm/start.sh and stopped at the end.

Every test that takes `slurm` gets SLURM_CONF for that cluster and a cryocloud config with a `slurm` profile.
Under CI=true a cluster that cannot start fails the tests; elsewhere they are skipped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cryocloud.errors import CryocloudError
from cryocloud.proc import run_command
from relion_support import demo_base, demo_project  # noqa: F401  (fixtures)
from testtools import require_tool, unavailable

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts" / "slurm"


@dataclass(frozen=True)
class Cluster:
    dir: Path
    conf: Path


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[Cluster]:
    for tool in ("sbatch", "squeue", "scontrol", "sinfo"):
        require_tool(tool)
    if os.geteuid() != 0:
        unavailable("the test Slurm needs root (slurmd runs as root)")
    # munged wants every parent folder of its socket searchable by all: pytest's tmp folders are 0700
    cdir = Path(tempfile.mkdtemp(prefix="cryocloud-slurm-", dir="/tmp"))
    cdir.chmod(0o755)
    env = {**os.environ, "SLURM_NCPUS": "8", "SLURM_SKIP_INSTALL": os.environ.get("SLURM_SKIP_INSTALL", "0"),
           "PATH": f"/usr/sbin:/sbin:{os.environ.get('PATH', '')}"}
    try:
        run_command(["bash", str(SCRIPTS / "start.sh"), str(cdir)], env=env, timeout=300)
    except CryocloudError as e:
        run_command(["bash", str(SCRIPTS / "stop.sh"), str(cdir), "--purge"], env=env, timeout=120, check=False)
        unavailable(f"could not start the test Slurm: {e}")
    try:
        yield Cluster(cdir, cdir / "slurm.conf")
    finally:
        run_command(["bash", str(SCRIPTS / "stop.sh"), str(cdir), "--purge"], env=env, timeout=120, check=False)


def write_config(home: Path, **profile: object) -> None:
    """A config whose `slurm` profile has `profile`'s keys (TOML written by hand: strings and lists)."""
    home.mkdir(parents=True, exist_ok=True)
    lines = ["[profiles.slurm]", 'backend = "slurm"']
    for key, value in profile.items():
        if isinstance(value, list):
            lines.append(f"{key} = [" + ", ".join(f'"{v}"' for v in value) + "]")
        elif isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        else:
            lines.append(f"{key} = {value}")
    (home / "config.toml").write_text("\n".join(lines) + "\n")


@pytest.fixture()
def slurm(slurm_cluster: Cluster, cryocloud_home: Path, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    """The session's cluster for one test: SLURM_CONF set, default profile `slurm`."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    monkeypatch.setenv("CRYOCLOUD_BACKEND", "slurm")
    mpirun = ["mpirun", "--oversubscribe", "-n", "{ranks}"]
    write_config(cryocloud_home, mpi_launcher=mpirun, usd_per_hour=0.1)
    assert shutil.which("sbatch")
    return slurm_cluster
