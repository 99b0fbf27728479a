"""What a job is given of its submitter's environment: what programs and MPI read, and nothing else.

DESIGN: secrets never travel. A list of secret names to drop would always miss one (DB_PASS, MY_API_KEY), so a
job gets the names below, plus what its profile's `pass_env` adds, and no other variable. The lab's
environment for a job that waits in the queue is kept in cryocloud's private run folder (0700; the file 0600),
never in the project tree, so no snapshot of a project carries it; it goes when the job ends.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryocloud.jobs import control
from cryocloud.settings import private_dir

# Names (or shell-style patterns) a job needs: the search paths, the user and locale, RELION and the CCP-EM
# Pipeliner, MPI, threads and math libraries, GPUs, environment modules and conda, containers, cryocloud's own
# settings, the Slurm client's configuration (sbatch runs with this environment), and the object store's address.
PASS = (
    "PATH", "LD_LIBRARY_PATH", "LIBRARY_PATH", "CPATH", "MANPATH", "PKG_CONFIG_PATH",
    "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_*", "TZ", "TERM", "TMPDIR", "DISPLAY",
    "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "CONDA_*", "_CE_*",
    "RELION_*", "PIPELINER_*", "CCPEM*", "CTFFIND*", "MOTIONCOR*", "GCTF*", "TOPAZ*", "CRYOLO*",
    "OMP_*", "MKL_*", "OPENBLAS_*", "FFTW_*", "OMPI_*", "PMIX_*", "PRTE_*", "HWLOC_*", "I_MPI_*", "MPI_*",
    "UCX_*", "CUDA_*", "NVIDIA_*", "CUDNN_*", "NCCL_*",
    "MODULEPATH", "MODULESHOME", "MODULES_*", "LOADEDMODULES", "_LMFILES_", "LMOD_*",
    "APPTAINER_*", "SINGULARITY_*", "XDG_*", "CRYOCLOUD_*", "SLURM_CONF",
    # where the object store is (a staged job's node reads it); keys come from boto3's own chain, never from here
    "AWS_ENDPOINT_URL*", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_CA_BUNDLE", "AWS_PROFILE", "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


def _passes(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


NEVER = ("CRYOCLOUD_TOKEN",)  # a secret inside a passed pattern: the API token of facility mode (app/remote.py)


def job_environment(env: Mapping[str, str], extra: Iterable[str] = ()) -> dict[str, str]:
    """The variables of `env` a job gets: PASS and the profile's `pass_env` names or patterns, never NEVER."""
    patterns = (*PASS, *extra)
    return {k: v for k, v in env.items() if _passes(k, patterns) and k not in NEVER}


def with_mpi_rights(env: Mapping[str, str]) -> dict[str, str]:
    """`env` plus what Open MPI needs to run as root (containers and CI do)."""
    out = dict(env)
    if os.geteuid() == 0:
        out.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        out.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return out


def env_path(run_dir: Path, job_id: int) -> Path:
    return run_dir / "env" / f"job{job_id}.json"


def keep(run_dir: Path, job_id: int, env: Mapping[str, str]) -> None:
    """Keep a job's environment until it starts (and for a relaunch): private, outside the project tree."""
    path = env_path(run_dir, job_id)
    private_dir(run_dir)
    private_dir(path.parent)
    control.write_json(path, dict(env))  # atomic, and 0600 (mkstemp's mode)


def kept(run_dir: Path, job_id: int) -> dict[str, str] | None:
    data = control.read_json(env_path(run_dir, job_id))
    return {str(k): str(v) for k, v in data.items()} if data is not None else None


def forget_ended(run_dir: Path, active: set[int]) -> None:
    """Remove what was kept for jobs no longer active (call it inside a ledger transaction: a submission
    keeps its job's environment inside the transaction that records the job)."""
    try:
        paths = list((run_dir / "env").glob("job*.json"))
    except OSError:
        return
    for path in paths:
        number = path.stem.removeprefix("job")
        if number.isdigit() and int(number) not in active:
            with contextlib.suppress(OSError):
                path.unlink()
