"""Where a job's agent runs. One module per backend; this registry is the only list of them.

Entries are data (module path, profile keys, features) so that reading config or printing an error
never imports a backend's SDK.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from cryocloud.backends.base import Backend
from cryocloud.config import Profile, Settings
from cryocloud.errors import ConfigError, close_matches


@dataclass(frozen=True)
class BackendInfo:
    name: str
    target: str  # "module:Class"
    profile_keys: tuple[str, ...]  # settings a [profiles.X] table of this backend may hold
    install_hint: str = ""


BACKENDS: dict[str, BackendInfo] = {
    "local": BackendInfo("local", "cryocloud.backends.local:LocalBackend", ()),
    "slurm": BackendInfo(
        "slurm", "cryocloud.backends.slurm:SlurmBackend",
        ("partition", "gpu_partition", "account", "qos", "max_time", "mpi_launcher", "sbatch_args", "export",
         "gpu_flag", "python", "staging", "usd_per_hour", "jobcomp", "pack_tasks", "max_requeues"),
        "run cryocloud where Slurm's client commands (sbatch, squeue) are installed",
    ),
}


def get_backend(profile: Profile, settings: Settings) -> Backend:
    info = BACKENDS.get(profile.backend)
    if info is None:
        raise ConfigError(f"unknown backend {profile.backend!r}", close_matches(profile.backend, BACKENDS))
    module_name, _, cls_name = info.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"the {info.name} backend cannot load: {e}", info.install_hint) from None
    backend: Backend = getattr(module, cls_name)(profile, settings)
    return backend
