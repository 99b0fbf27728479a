"""Submit: a script RELION filled (cold, or handed to the running monitor) or a JobSpec a client built.
Records the job, starts it where it fits, and refuses with a reason RELION shows when it cannot."""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from cryocloud.backends.base import Backend, get_backend
from cryocloud.backends.registry import BACKENDS, Feature
from cryocloud.errors import CryocloudError, JobFolderBusy, LaunchRefused, SubmissionError, close_matches
from cryocloud.jobs import control, environment, runlog, split
from cryocloud.jobs.environment import job_environment
from cryocloud.jobs.markers import FAMILIES
from cryocloud.jobs.relion import job_dir_of, job_spec_from_script, read_script
from cryocloud.jobs.spec import JobSpec
from cryocloud.jobs.states import State
from cryocloud.ledger import LOCK_WAIT, JobRow, Ledger
from cryocloud.monitor import staging
from cryocloud.monitor.handoff import hand_off
from cryocloud.monitor.loop import ensure_monitor
from cryocloud.monitor.passes import dispatch
from cryocloud.settings import Profile, Settings, load_settings

COLD_LEDGER_WAIT = 2.0  # s the queue command waits: RELION and the Pipeliner expect it back within seconds


@dataclass(frozen=True)
class Submitted:
    job: JobRow
    profile: Profile


def choose_profile(spec: JobSpec, settings: Settings) -> Profile:
    """RELION's Queue name when it names a profile, else CRYOCLOUD_BACKEND / the config default, else local.
    A Queue name that is no profile keeps its meaning where the backend has queues (a Slurm partition); where it
    has none (local) it is a typo that would move the job, and is refused with "did you mean"."""
    names = set(settings.profiles) | set(BACKENDS)
    if spec.queue and spec.queue in names:
        return settings.profile(spec.queue)
    profile = settings.profile(settings.general.default_profile)
    if spec.queue and Feature.QUEUES not in BACKENDS[profile.backend].features:
        raise SubmissionError(
            f"RELION's Queue name {spec.queue!r} is no profile, and the {profile.name} profile "
            f"({profile.backend} backend) has no queues",
            close_matches(spec.queue, names) + "; or leave the Queue name at RELION's default")
    return profile


def _without_profile_queue(spec: JobSpec, profile: Profile) -> JobSpec:
    """A Queue name that chose the profile has done its work; it is not also a partition."""
    return replace(spec, queue="") if spec.queue == profile.name else spec


def submit(script: Path, cwd: Path, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """What `cryocloud submit` / `cryocloud-qsub` do: hand the job to the running monitor (warm, fast),
    else submit it here. Returns (job id, name, profile)."""
    env = os.environ if env is None else env
    try:
        settings = load_settings(dict(env))
    except CryocloudError as e:
        refuse_into_job(script, cwd, e)
        raise
    if settings.server.url:  # facility mode: the server is the ledger's one writer
        return _to_server(settings, script, cwd, env)
    warm = hand_off(settings, script, cwd, env)
    if warm is not None:
        return int(warm["job_id"]), str(warm["name"]), str(warm["profile"])
    done = submit_script(script, cwd, settings, env, ledger_wait=COLD_LEDGER_WAIT)
    return done.job.id, done.job.name, done.profile.name


def _to_server(settings: Settings, script: Path, cwd: Path, env: Mapping[str, str]) -> tuple[int, str, str]:
    from cryocloud.app.remote import ServerRefused, submit_to_server

    try:
        got = submit_to_server(settings, script, cwd, env)
    except (JobFolderBusy, LaunchRefused):
        raise
    except CryocloudError as e:
        if not (isinstance(e, ServerRefused) and e.in_job):
            refuse_into_job(script, cwd, e)
        raise
    return int(got["id"]), str(got["name"]), str(got["profile"])


def submit_script(script: Path, cwd: Path, settings: Settings | None = None,
                  env: Mapping[str, str] | None = None, ledger_wait: float = LOCK_WAIT,
                  check: Callable[[JobSpec], None] | None = None) -> Submitted:
    """Record and start a job from a script RELION filled, for a submitter whose environment is `env`.
    Every refusal, expected or not, ends in RELION's view as failed (run.err line + marker): RELION never sees
    our exit code, and a job nothing runs must not show Running."""
    env = os.environ if env is None else env
    try:
        settings = settings or load_settings(dict(env))
        spec = job_spec_from_script(script, cwd)
        if check is not None:  # e.g. the server's project roots
            check(spec)
        spec = split.split_spec(spec, split.workers_asked(spec))  # RELION's 'Split over N workers'
        profile = choose_profile(spec, settings)
        return submit_spec(_without_profile_queue(spec, profile), profile, settings, env, ledger_wait)
    except (JobFolderBusy, LaunchRefused):
        raise
    except CryocloudError as e:
        refuse_into_job(script, cwd, e)
        raise
    except Exception as e:  # the last resort (a locked or broken ledger, a full disk, a bug)
        err = _unexpected(e, settings)
        refuse_into_job(script, cwd, err)
        raise err from e


def _unexpected(e: Exception, settings: Settings | None) -> CryocloudError:
    where = settings.ledger_path if settings else "the ledger"
    if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
        return CryocloudError(f"the ledger {where} is locked by another process, so the job was not recorded",
                              "submit it again in a moment; if it stays locked, look for a hung cryocloud process")
    if isinstance(e, sqlite3.Error):
        return CryocloudError(f"the ledger {where} cannot be written: {e}",
                              "check that CRYOCLOUD_HOME is on a local disk with free space and is writable")
    if isinstance(e, OSError):
        return CryocloudError(f"submitting failed: {e}", "check free space and permissions of the project folder")
    return CryocloudError(f"internal error while submitting: {e!r}", "run with CRYOCLOUD_DEBUG=1 and report it")


def refuse_into_job(script: Path, cwd: Path, e: CryocloudError) -> None:
    """RELION never sees our exit code: put the refusal in run.err and mark the job failed."""
    job_dir = job_dir_of(script, cwd)
    if job_dir is None:
        return
    try:
        client = read_script(script).client
    except SubmissionError:
        client = "relion"
    runlog.fail_in_client_view(job_dir, client, f"submission refused: {e.message}", e.hint)


def submit_spec(spec: JobSpec, profile: Profile, settings: Settings, env: Mapping[str, str],
                ledger_wait: float = LOCK_WAIT) -> Submitted:
    """Record a JobSpec (from RELION's script, or built by a client, e.g. a fan-out) and start it on `profile`."""
    BACKENDS[profile.backend].require(features_asked(spec, profile, settings))  # before any backend call
    backend = get_backend(profile, settings)  # an unusable backend is refused now, not later in the monitor
    job_env = job_environment(env, profile.pass_env())  # what the job needs, never the whole environment
    if profile.backend == "aws" and spec.client != "command" and not spec.relion_version:
        from cryocloud.jobs.relion import installed_version  # a cloud node must run the lab's RELION

        spec = replace(spec, relion_version=installed_version(dict(env)))
    ledger = Ledger(settings.ledger_path, wait=ledger_wait)
    try:
        with ledger.transaction():
            busy = [j for j in ledger.jobs_in_dir(spec.project_dir, spec.job_dir) if j.active]
            if busy:
                raise JobFolderBusy(
                    f"{spec.job_dir} already has an active job (cryocloud job {busy[0].id}, {busy[0].state})",
                    f"wait for it, or stop it with `cryocloud cancel {busy[0].id}`",
                )
            predicted = check_cost(spec, profile, backend, settings, ledger)
            job_dir = spec.folder
            FAMILIES[spec.client].clear(job_dir)  # stale markers of an earlier run of this folder
            job_id = ledger.add_job(
                name=spec.name, client=spec.client, job_type=spec.job_type, project_dir=spec.project_dir,
                job_dir=spec.job_dir, profile=profile.name, backend=profile.backend, user=settings.user,
                project=Path(spec.project_dir).name, state=State.QUEUED, submitted_at=time.time(),
                spec=spec.to_json(), predicted_usd=predicted.usd if predicted else None,
            )
            cdir = control.control_dir_for(Path(spec.project_dir), spec.job_dir, job_id)
            cdir.mkdir(parents=True, exist_ok=True)
            ledger.update_job(job_id, control_dir=str(cdir))
            environment.keep(settings.run_dir, job_id, job_env)  # private, outside the project tree
            control.write_json(cdir / control.LAUNCH, {
                "spec": asdict(spec), "mpi_launcher": _launcher(profile, settings),
            })
            ledger.event(job_id, f"submitted to {profile.name} ({spec.job_type}, {spec.data_bytes} bytes of input)")
        runlog.note(job_dir, f"cryocloud job {job_id}: {spec.job_type} queued on {profile.name}"
                    + (f"; {predicted.line()}" if predicted else ""))
        try:
            dispatch(settings, ledger)
        except Exception as e:  # recorded but not started: it must not wait in the queue while RELION says failed
            with ledger.transaction():
                ledger.update_job(job_id, state=State.FAILED, ended_at=time.time(), message=f"not started: {e!r}")
            raise
        row = ledger.job(job_id)
        assert row is not None
        if row.state == State.FAILED:  # the backend refused it at launch; run.err and the marker say so already
            raise LaunchRefused(f"job {job_id} could not start on {profile.name}: {row.message}",
                                f"see {spec.job_dir}run.err; `cryocloud status {job_id}`")
        ensure_monitor(settings)
        return Submitted(row, profile)
    finally:
        ledger.close()


def features_asked(spec: JobSpec, profile: Profile, settings: Settings) -> set[Feature]:
    """What the job asks of its backend beyond one command on one machine."""
    fanout, staged = spec.tasks > 1, staging.store_url(settings, profile) is not None
    wanted: set[Feature] = set()
    if fanout:
        wanted.add(Feature.FANOUT)
    if staged:
        wanted.add(Feature.STAGING)
    if fanout and staged:
        wanted.add(Feature.STAGED_FANOUT)
    return wanted


@dataclass(frozen=True)
class Prediction:
    usd: float
    hours: float | None  # None: a free backend needs no runtime to price a job
    usd_per_hour: float
    where: str  # what the price is of, e.g. "the workstation" or "slurm profile hpc"

    def line(self) -> str:
        if self.usd_per_hour == 0:
            return f"predicted at 0 USD ({self.where} sets no rate)"
        hours = hours_text(self.hours) if self.hours is not None else "its wall time"
        return f"predicted at {usd_text(self.usd)} USD ({hours} at {usd_text(self.usd_per_hour)} USD/h on {self.where})"


def usd_text(usd: float) -> str:
    """USD with the digits that mean something: 0.0042, 0.37, 12.50."""
    if usd <= 0:
        return "0"
    if usd >= 1:
        return f"{usd:.2f}".removesuffix(".00")
    return f"{usd:.{max(2, 1 - math.floor(math.log10(usd)))}f}".rstrip("0")


def hours_text(hours: float) -> str:
    if hours < 1 / 60:
        return f"~{max(1, round(hours * 3600))} s"
    return f"~{hours * 60:.0f} min" if hours < 1 else f"~{hours:.1f} h"


def check_cost(spec: JobSpec, profile: Profile, backend: Backend, settings: Settings,
               ledger: Ledger) -> Prediction | None:
    """Predict the job's cost where it will run and refuse it over a budget or its own 'Max cost' field.

    Local jobs are planned only when a limit applies (planning must never block a job the model cannot size).
    """
    from cryocloud.planner.budget import budget_states, check_budget

    project, max_usd = Path(spec.project_dir).name, spec.extras.get("max_usd", "")
    cap = None
    if max_usd:
        try:
            cap = float(max_usd)
        except ValueError:
            raise SubmissionError(f"Max cost {max_usd!r} is not a number of USD",
                                  "leave RELION's 'Max cost' field empty or give e.g. 25") from None
    limited = cap is not None or bool(budget_states(settings, ledger, settings.user, project))
    if profile.backend == "local" and not limited:
        return None
    predicted = predict(spec, profile, backend, settings, ledger)
    if cap is not None and predicted is not None and predicted.usd > cap:
        raise SubmissionError(
            f"this job is {predicted.line()}, over its Max cost of {usd_text(cap)} USD",
            "raise 'Max cost' in RELION's Running tab, or see `cryocloud plan` for cheaper options")
    check_budget(settings, ledger, settings.user, project, predicted.usd if predicted else None)
    return predicted


def predict(spec: JobSpec, profile: Profile, backend: Backend, settings: Settings,
            ledger: Ledger | None = None) -> Prediction | None:
    """The job's cost where its profile runs it, priced by that backend (None: no way to tell). With the ledger,
    the runtime model is scaled by what the lab's own runs of this job type on this machine took (planner/learn.py)."""
    from cryocloud.backends.slurm_text import time_seconds
    from cryocloud.planner.learn import learned
    from cryocloud.planner.plan import hours_on_allocation, plan_for_spec

    if profile.backend == "local":  # (the plan's workstation option has learned from the lab already)
        try:
            plan = plan_for_spec(spec, settings, instance=spec.extras.get("machine") or None)
        except CryocloudError:
            return None  # a job type without a runtime model (External, a command), or one it cannot size
        if plan.local is None:
            return None
        return Prediction(plan.local.usd, plan.local.hours, plan.local.usd_per_hour, "the workstation")
    rate = backend.usd_per_hour(spec)
    where = f"{profile.backend} profile {profile.name}"
    if rate == 0:
        return Prediction(0.0, None, 0.0, where)
    if profile.backend == "aws":  # the cloud bills the machine the plan chose, at least a minute of it
        from cryocloud.backends.aws.backend import AwsBackend

        if isinstance(backend, AwsBackend):
            choice = backend.choose(spec)[0]
            where = f"{choice.instance_type} {choice.market} ({where})"
            if choice.hours is not None:
                billed = max(choice.hours, 1 / 60)
                return Prediction(billed * rate, billed, rate, where)
    hours = hours_on_allocation(spec, settings)
    factor = learned(ledger, spec.job_type, profile.backend, backend.machine).factor if ledger else 1.0
    if hours is not None and factor != 1.0:
        hours, where = hours * factor, where + " (learned from the lab's runs)"
    wall = spec.resources.wall_time or spec.extras.get("wall_time", "")
    if hours is None and wall:
        try:
            return Prediction(time_seconds(wall) / 3600 * rate, None, rate, where)  # at most its wall time
        except SubmissionError:
            return None  # the backend refuses the wall time itself, with its hint, when it launches the job
    return None if hours is None else Prediction(hours * rate, hours, rate, where)


def _launcher(profile: Profile, settings: Settings) -> list[str]:
    value = profile.options.get("mpi_launcher", settings.local.mpi_launcher)
    return list(value)


def answer_submission(request: dict[str, Any]) -> dict[str, Any]:
    """The monitor's handler for a submission handed over its socket: the same submit_script, answered as data."""
    env = {str(k): str(v) for k, v in (request.get("env") or {}).items()}
    try:
        done = submit_script(Path(request["script"]), Path(request["cwd"]), load_settings(env), env)
    except CryocloudError as e:
        return {"ok": False, "kind": type(e).__name__, "message": e.message, "hint": e.hint}
    return {"ok": True, "job_id": done.job.id, "name": done.job.name, "profile": done.profile.name}
