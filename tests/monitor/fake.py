"""An in-process fake backend and a fake clock for the monitor's logic (as dsub's stub provider and fake time).

The fake keeps its jobs in a dict and answers as a backend must (has_room, submit, status, cancel, cleanup); the
test plays the agent: `report` writes the agent's result into the job's control folder, `vanish` makes the
backend forget a job without one (a killed agent, a lost node), `interrupt` ends it as the platform would
(preempted). No process, no sleep: a monitor pass is a function call, time moves only when the test says.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryocloud.backends.base import BackendStatus, Handle, Launch
from cryocloud.errors import CryocloudError
from cryocloud.jobs import control, environment
from cryocloud.jobs.spec import InputFile, JobSpec, Resources
from cryocloud.ledger import Ledger
from cryocloud.monitor.passes import dispatch, reconcile
from cryocloud.monitor.stager import Stager
from cryocloud.settings import General, LocalSection, Profile, Settings


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeJob:
    launch: Launch
    state: str = "running"
    message: str = ""
    interrupted: str = ""


@dataclass
class FakeBackend:
    slots: int = 1
    refuse: str = ""  # submit raises this (e.g. an unknown partition)
    name: str = "fake"
    machine: str = "fake-1"
    rate: float = 3600.0  # one USD a second: budgets are crossed in a few fake seconds
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)

    def __call__(self, profile: Profile, settings: Settings) -> FakeBackend:  # the monitor's backend_for
        return self

    def usd_per_hour(self, spec: JobSpec) -> float:
        return self.rate

    def has_room(self, spec: JobSpec, running: list[JobSpec]) -> bool:
        return sum(r.resources.cpus for r in running) + spec.resources.cpus <= self.slots

    def submit(self, launch: Launch) -> Handle:
        if self.refuse:
            raise CryocloudError(self.refuse, "fix the profile")
        fid = f"f{len(self.jobs) + 1}"
        self.jobs[fid] = FakeJob(launch)
        return Handle(self.name, {"id": fid})

    def status(self, handle: Handle) -> BackendStatus:
        job = self.jobs.get(str(handle.data["id"]))
        if job is None:
            return BackendStatus("gone")
        return BackendStatus(job.state, job.message, interrupted=job.interrupted)

    def cancel(self, handle: Handle) -> None:
        self.cancelled.append(str(handle.data["id"]))

    def cleanup(self, handle: Handle) -> None:
        self.cleaned.append(str(handle.data["id"]))

    def logs(self, handle: Handle) -> tuple[Path, Path]:
        return Path("run.out"), Path("run.err")

    # the test's side: what the agent or the platform does
    def launched(self, job_id: int) -> str:
        return [fid for fid, j in self.jobs.items() if j.launch.job_id == job_id][-1]  # its latest attempt

    def report(self, job_id: int, state: str, clock: FakeClock, message: str = "") -> None:
        """The agent's result (it ran from the attempt's start until now) and the backend's end."""
        fid = self.launched(job_id)
        job = self.jobs[fid]
        control.write_json(job.launch.control_dir / control.RESULT,
                           {"state": state, "message": message, "exit_code": 0 if state == "succeeded" else 1,
                            "ended_at": clock()})
        job.state = state

    def vanish(self, job_id: int) -> None:
        del self.jobs[self.launched(job_id)]

    def interrupt(self, job_id: int, why: str = "preempted") -> None:
        job = self.jobs[self.launched(job_id)]
        job.state, job.interrupted, job.message = "failed", why, "PREEMPTED"


def settings_for(home: Path, *, budgets: dict[str, float] | None = None, **options: Any) -> Settings:
    """Two profiles on the fake backend: `fake` with `options`, `plain` without."""
    return Settings(home=home, config_path=home / "config.toml", general=General(user="lab"),
                    local=LocalSection(cpus=1), budgets=budgets or {},
                    profiles={"fake": Profile("fake", "fake", dict(options)), "plain": Profile("plain", "fake")})


def queue(settings: Settings, ledger: Ledger, project: Path, job_dir: str, commands: list[str] | None = None,
          clock: FakeClock | None = None, client: str = "relion", inputs: list[InputFile] | None = None,
          cpus: int = 1, profile: str = "fake", tasks: int = 1) -> int:
    """Record a job as `submit` does (ledger row, control folder, launch.json, the kept environment), without starting it."""
    spec = JobSpec(job_dir, client, "Class2D", str(project), job_dir, commands or ["true"], inputs=inputs or [],
                   resources=Resources(threads=cpus), tasks=tasks)
    (project / job_dir).mkdir(parents=True, exist_ok=True)
    with ledger.transaction():
        job = ledger.add_job(name=spec.name, client=client, job_type=spec.job_type, project_dir=str(project),
                             job_dir=job_dir, profile=profile, backend="fake", user=settings.user,
                             project=project.name, state="queued", submitted_at=(clock or time.time)(),
                             spec=spec.to_json())
        cdir = control.control_dir_for(project, job_dir, job)
        cdir.mkdir(parents=True)
        ledger.update_job(job, control_dir=str(cdir))
        control.write_json(cdir / control.LAUNCH, {"spec": asdict(spec), "mpi_launcher": ["mpirun"]})
        environment.keep(settings.run_dir, job, {"PATH": "/usr/bin:/bin"})
    return job


def one_pass(settings: Settings, ledger: Ledger, fake: FakeBackend, clock: FakeClock,
             stager: Stager | None = None) -> list[int]:
    """What the monitor's loop does once: reconcile, stage (when given a Stager), dispatch. Returns the ids it
    started."""
    reconcile(settings, ledger, clock, backend_for=fake)
    if stager is not None:
        stager.step(settings, ledger, clock)
    return dispatch(settings, ledger, clock, backend_for=fake)


def state(ledger: Ledger, job_id: int) -> str:
    row = ledger.job(job_id)
    assert row is not None
    return row.state
