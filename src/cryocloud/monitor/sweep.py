"""Strays: cryocloud's EC2 instances and volumes that no active job of this ledger accounts for, and the sweep
that ends them.

A resource is judged only when it carries cryocloud's tags, names this user as its owner and this ledger as its
launcher (`cryocloud:ledger`; resources from before that tag count as this ledger's). It is a stray when it is
past its `cryocloud:expires` (the node should have ended itself), when its job is unknown to the ledger or has
ended, or when its job is active but no attempt recorded it: a monitor stopped between RunInstances and its
ledger record. The monitor runs the sweep on start and every few minutes while AWS jobs are active
(loop.py); `cryocloud cleanup` shows the same judgement, with costs, and acts only with --yes.

A launch and its record commit together: dispatch calls RunInstances and records the attempt inside one write
transaction of the ledger. The sweep (and `cleanup`) lists and judges inside a write transaction of its own, so a
launch by a live process (the monitor, or a `status` that dispatched) is either recorded already or not made yet;
only a process that died between the two leaves an instance no attempt names. No grace period is needed.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryocloud.backends.aws.resources import Ec2Resources, Instance, Volume
from cryocloud.errors import CryocloudError
from cryocloud.jobs import runlog
from cryocloud.jobs.spec import JobSpec
from cryocloud.jobs.states import ACTIVE, State
from cryocloud.ledger import Ledger
from cryocloud.monitor.staging import STAGED_FOR
from cryocloud.settings import Settings, ec2_endpoint
from cryocloud.storage import tags as tagging

SWEEP_SECONDS = 300.0  # how often the monitor sweeps while AWS jobs are active
EXPIRY_GRACE_SECONDS = 900.0  # past `expires` by this much: the node failed to end itself
FINDINGS = "sweep.json"  # in the run folder: the sweeps' findings, for `cryocloud status`
KEEP_FINDINGS = 50


@dataclass(frozen=True)
class Finding:
    """One stray: what it is, why it is one, what it costs a day, and what was done."""

    kind: str  # "instance" or "volume"
    id: str
    region: str
    why: str
    usd_per_day: float
    job_id: int | None
    at: float
    done: str = ""  # "ended", "deleted", or "" (a dry run)

    def line(self) -> str:
        did = f"{self.done} " if self.done else "stray "
        return f"{did}{self.kind} {self.id} ({self.region}): {self.why}; {self.usd_per_day:.2f} USD/day"


def regions(settings: Settings, jobs_only: bool = False, ledger: Ledger | None = None) -> list[str]:
    """The regions cryocloud launches in: [aws] region and every AWS profile's (or only those of active jobs)."""
    names = set() if jobs_only else {settings.aws.region}
    profiles = [p for p in settings.profiles.values() if p.backend == "aws"]
    if jobs_only and ledger is not None:
        wanted = {j.profile for j in ledger.jobs(states=ACTIVE) if j.backend == "aws"}
        profiles = [p for p in profiles if p.name in wanted]
        if any(name not in settings.profiles for name in wanted):
            names.add(settings.aws.region)  # a job on the bare `aws` backend
    names |= {str(p.options.get("region") or settings.aws.region) for p in profiles}
    return sorted(names)


def ours(item: Instance | Volume, settings: Settings) -> bool:
    """Tagged by cryocloud for this user and (when the tag is there) launched from this ledger."""
    return item.tagged and item.owner == tagging.clean(settings.user) and \
        item.ledger in ("", tagging.ledger_id(settings.ledger_path))


def _job_reason(ledger: Ledger, job_id: int | None, what: str) -> str | None:
    if job_id is None:
        return f"its job tag names no job ({what})"
    job = ledger.job(job_id)
    if job is None:
        return f"its job {job_id} is unknown to this ledger"
    if not job.active:
        return f"its job {job_id} ({job.job_dir}) ended {job.state}"
    return None


def judge_instance(inst: Instance, settings: Settings, ledger: Ledger, now: float) -> str | None:
    """Why `inst` is a stray, or None (not ours to judge, or accounted for). Call it inside a ledger transaction."""
    if not ours(inst, settings):
        return None
    expiry = inst.expires_at
    if expiry is not None and now > expiry + EXPIRY_GRACE_SECONDS:
        return f"past its expiry ({time.strftime('%Y-%m-%d %H:%M', time.localtime(expiry))})"
    why = _job_reason(ledger, inst.job_id, inst.job)
    if why is not None:
        return why
    assert inst.job_id is not None
    attempts = ledger.attempts(inst.job_id)
    recorded = [a for a in attempts if a.handle_data.get("instance_id") == inst.id]
    if recorded:
        if recorded[-1].id == attempts[-1].id:
            return None  # the job's current machine
        return f"left by an earlier attempt of job {inst.job_id}"
    job = ledger.job(inst.job_id)
    return (f"launched for job {inst.job_id} ({job.job_dir if job else '?'}) but never recorded "
            "(the monitor stopped between launch and record)")


def judge_volume(vol: Volume, settings: Settings, ledger: Ledger, now: float) -> str | None:
    """Why a volume is a stray: only a detached one (an attached volume ends with its instance)."""
    if not ours(vol, settings) or vol.attached_to or vol.state != "available":
        return None
    expiry = vol.expires_at
    if expiry is not None and now > expiry + EXPIRY_GRACE_SECONDS:
        return f"detached and past its expiry ({time.strftime('%Y-%m-%d %H:%M', time.localtime(expiry))})"
    why = _job_reason(ledger, vol.job_id, vol.job)
    return f"detached; {why}" if why else None


def record(settings: Settings, findings: list[Finding], at: float) -> None:
    """Keep the sweep's findings (and when it last ran) for `cryocloud status`."""
    path = settings.run_dir / FINDINGS
    old = read(settings)
    kept = [*old.get("findings", []), *(asdict(f) for f in findings)][-KEEP_FINDINGS:]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"last_sweep_at": at, "findings": kept}, indent=1))
    tmp.replace(path)


def read(settings: Settings) -> dict[str, Any]:
    try:
        return dict(json.loads((settings.run_dir / FINDINGS).read_text()))
    except (OSError, ValueError):
        return {}


def findings_since(settings: Settings, since: float) -> list[Finding]:
    return [Finding(**f) for f in read(settings).get("findings", []) if float(f.get("at", 0)) >= since]


def due_on_start(settings: Settings, ledger: Ledger) -> bool:
    """On start: when an AWS job is active, or one was submitted since the last sweep (its launch may be unrecorded)."""
    last = float(read(settings).get("last_sweep_at", 0))
    return any(j.backend == "aws" and (j.active or j.submitted_at >= last) for j in ledger.jobs(limit=200))


def sweep(settings: Settings, ledger: Ledger, now: float | None = None) -> list[Finding]:
    """End this ledger's stray instances in the regions of its AWS jobs; say each in the monitor's log (stdout),
    the job's run.out and the ledger. A region that cannot be asked now is a line too, and asked next time."""
    now = time.time() if now is None else now
    found: list[Finding] = []
    for region in regions(settings, jobs_only=True, ledger=ledger) or [settings.aws.region]:
        ec2 = Ec2Resources(region, ec2_endpoint(settings))
        try:
            with ledger.transaction():  # no launch can be between RunInstances and its record meanwhile
                strays = [(i, why) for i in ec2.instances(("pending", "running", "stopping", "stopped"))
                          if (why := judge_instance(i, settings, ledger, now)) is not None]
                ec2.terminate([i for i, _ in strays])
                for inst, _ in strays:
                    tell_job(ledger, inst)
        except CryocloudError as e:
            print(runlog.stamp(f"sweep of {region}: {e.message} (will retry)"), end="", flush=True)
            continue
        for inst, why in strays:
            finding = Finding("instance", inst.id, region, why, inst.usd_per_day, inst.job_id, now, "ended")
            found.append(finding)
            print(runlog.stamp(f"sweep: {finding.line()}"), end="", flush=True)
    record(settings, found, now)
    return found


def tell_job(ledger: Ledger, inst: Instance) -> None:
    """The job the stray was launched for hears of it; a queued one is staged afresh (a new launch token, so EC2
    does not hand back the instance just ended) and launched again by the next dispatch. Inside a transaction."""
    job = ledger.job(inst.job_id) if inst.job_id is not None else None
    if job is None or not job.active:
        return
    line = f"instance {inst.id} ({inst.instance_type}) launched for this job was never recorded: ended it"
    if job.state == State.QUEUED:
        (Path(job.control_dir) / STAGED_FOR).unlink(missing_ok=True)
        line += "; launching again"
    ledger.event(job.id, line)
    runlog.note(JobSpec.from_json(job.spec).folder, line)
