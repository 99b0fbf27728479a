"""The only list of backends: data (module path, profile keys, install hint), so that reading the config or
printing an error never imports a backend or its SDK. A leaf: it imports nothing of cryocloud but errors, so
settings (which checks a profile's keys against it) and every layer above may import it."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

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


def backend_class(name: str) -> Any:
    """The class that implements backend `name` (imported only now)."""
    info = BACKENDS.get(name)
    if info is None:
        raise ConfigError(f"unknown backend {name!r}", close_matches(name, BACKENDS))
    module_name, _, cls_name = info.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"the {info.name} backend cannot load: {e}", info.install_hint) from None
    return getattr(module, cls_name)
