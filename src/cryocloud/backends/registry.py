"""The only list of backends: data (module path, profile keys, install hint), so that reading the config or
printing an error never imports a backend or its SDK. A leaf: it imports nothing of cryocloud but errors, so
settings (which checks a profile's keys against it) and every layer above may import it."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryocloud.errors import ConfigError, SubmissionError, close_matches


class Feature(StrEnum):
    """What a job may ask of a backend beyond running one command on one machine."""

    FANOUT = "a fan-out (a job of several tasks)"
    STAGING = "staging (nodes that do not see the lab's disk)"
    STAGED_FANOUT = "a staged fan-out"
    REQUEUE = "requeue after preemption"
    QUEUES = "a Queue name of its own (a partition)"


@dataclass(frozen=True)
class BackendInfo:
    name: str
    target: str  # "module:Class"
    options: str = ""  # "module:Class": a dataclass whose fields are the keys a [profiles.X] table may hold
    features: frozenset[Feature] = frozenset()
    install_hint: str = ""
    default_staging: str = "none"  # a profile without a `staging` key: "none" (nodes see the lab's disk) or "s3"

    def profile_keys(self) -> tuple[str, ...]:
        """The keys a [profiles.X] table of this backend may hold (the options class is imported only now)."""
        if not self.options:
            return COMMON_KEYS
        keys: tuple[str, ...] = _load(self, self.options).keys()
        return (*keys, *COMMON_KEYS)

    def require(self, wanted: set[Feature]) -> None:
        """Refuse, at submission, a job that asks for what this backend cannot do."""
        missing = sorted(wanted - self.features)
        if missing:
            raise SubmissionError(f"the {self.name} backend cannot run {missing[0].value}", HINTS[missing[0]])


HINTS = {
    Feature.FANOUT: "a fan-out over cloud instances is not built yet: run it on a local or Slurm profile",
    Feature.STAGING: "use a profile whose nodes see the project folder (staging = \"none\")",
    Feature.STAGED_FANOUT: "use a profile whose nodes see the project folder (staging = \"none\")",
    Feature.REQUEUE: "resubmit it when it is interrupted",
    Feature.QUEUES: "leave RELION's Queue name at its default, or name a profile",
}
COMMON_KEYS = ("mpi_launcher", "pass_env")  # read by the submit path for every backend
BACKENDS: dict[str, BackendInfo] = {
    "local": BackendInfo("local", "cryocloud.backends.local:LocalBackend", features=frozenset({Feature.FANOUT})),
    "slurm": BackendInfo(
        "slurm", "cryocloud.backends.slurm:SlurmBackend", "cryocloud.backends.slurm_text:SlurmOptions",
        frozenset({Feature.FANOUT, Feature.STAGING, Feature.REQUEUE, Feature.QUEUES}),
        "run cryocloud where Slurm's client commands (sbatch, squeue) are installed",
    ),
    "aws": BackendInfo(
        "aws", "cryocloud.backends.aws.backend:AwsBackend", "cryocloud.backends.aws.options:AwsOptions",
        frozenset({Feature.STAGING}), "pip install 'cryocloud[aws]'", default_staging="s3",
    ),
}


def _load(info: BackendInfo, target: str) -> Any:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"the {info.name} backend cannot load: {e}", info.install_hint) from None
    return getattr(module, attr)


def backend_class(name: str) -> Any:
    """The class that implements backend `name` (imported only now)."""
    info = BACKENDS.get(name)
    if info is None:
        raise ConfigError(f"unknown backend {name!r}", close_matches(name, BACKENDS))
    return _load(info, info.target)
