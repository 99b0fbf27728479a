"""The Backend protocol: the contract every place-to-run implements (see docs/backends.md).

A backend only decides *where* the agent runs. It answers stateless questions; the monitor owns polling,
retries and reconciliation with the ledger; the agent runs the job. Every backend guarantees the job:
- the working directory is the project folder; the environment is what a job needs of the submitter's
  (jobs/environment.py);
- stdout/stderr land in the job's run.out/run.err;
- exactly one exit marker exists when the job ends, whatever ended it (the agent writes it, or the
  monitor does when the agent could not);
- the ledger holds every attempt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryocloud.backends.registry import backend_class
from cryocloud.jobs.spec import JobSpec
from cryocloud.settings import Profile, Settings


@dataclass(frozen=True)
class Handle:
    """What a backend needs to find its job again (pid, Slurm job id, instance id), JSON-serialisable."""

    backend: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BackendStatus:
    """What the backend sees. `state` is one of queued, running, succeeded, failed, aborted, gone."""

    state: str
    message: str = ""
    exit_code: int | None = None
    # set when the platform, not the job, ended it (e.g. "preempted", "node failed"): the monitor may requeue it
    interrupted: str = ""


@dataclass(frozen=True)
class Bill:
    """What a job's machine cost, when the backend knows it better than its rate times the agent's hours (a cloud
    instance bills from launch to termination, at least a minute, plus its volumes and transfer)."""

    started_at: float
    ended_at: float
    usd: float
    detail: str = ""


@dataclass(frozen=True)
class Launch:
    """What a backend needs to start the agent for one job."""

    job_id: int
    spec: JobSpec
    control_dir: Path  # holds launch.json (spec, MPI launcher, log paths) for the agent
    env: dict[str, str]


class Backend(Protocol):
    name: str
    machine: str  # what `costs` shows for the machine column

    def usd_per_hour(self, spec: JobSpec) -> float:
        """What the job costs per hour here: each backend prices itself (the workstation rate, a cluster
        profile's own rates, the cloud's catalog), never at another backend's prices."""
        ...

    def has_room(self, spec: JobSpec, running: list[JobSpec]) -> bool:
        """True if the job can start now next to `running` (jobs of this backend already started)."""
        ...

    def submit(self, launch: Launch) -> Handle:
        """Start (or enqueue on the backend's own scheduler) the agent for this job. Returns at once."""
        ...

    def status(self, handle: Handle) -> BackendStatus:
        """What the backend knows of the job now. 'gone' means it ended without telling the backend how."""
        ...

    def cancel(self, handle: Handle) -> None:
        """Stop the job; the agent then writes the aborted marker. Safe to call on a finished job."""
        ...

    def cleanup(self, handle: Handle) -> Bill | None:
        """Release whatever the job left behind once it ended (processes, instances, volumes); safe to repeat.
        Returns the bill when the backend knows what the job's machine cost (None: its rate times the hours)."""
        ...

    def logs(self, handle: Handle) -> tuple[Path, Path]:
        """Where stdout and stderr of the job are."""
        ...


def get_backend(profile: Profile, settings: Settings) -> Backend:
    """The backend a profile names, ready to answer (an unknown name or a missing SDK is a ConfigError)."""
    backend: Backend = backend_class(profile.backend)(profile, settings)
    return backend
