"""What `instances ls|kill` and `cleanup` do for every face: cryocloud's EC2 instances and volumes joined with the
ledger (job, RELION folder, cost so far), strays judged as the monitor's sweep judges them (monitor/sweep.py), and
ending them. Returns data; prints nothing.

Nothing is half done: every id given to `kill` is checked (exists, carries cryocloud's tags, is this user's)
before the first is ended. An instance that runs a job is ended through the job: the job ends as aborted, in
RELION's view and in the ledger, with its bill.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryocloud.backends.aws.resources import LIVE, Ec2Resources, Instance, Volume
from cryocloud.errors import CryocloudError
from cryocloud.jobs import control
from cryocloud.jobs.states import ACTIVE
from cryocloud.ledger import JobRow, Ledger
from cryocloud.monitor import sweep
from cryocloud.monitor.passes import open_ledger, reconcile
from cryocloud.settings import Settings, ec2_endpoint
from cryocloud.storage import tags as tagging

INSTANCE_ID = re.compile(r"i-[0-9a-f]{8}([0-9a-f]{9})?")


def _regions(settings: Settings, region: str) -> list[str]:
    if region:
        from cryocloud.backends.aws.resources import check_region

        check_region(region)
        return [region]
    return sweep.regions(settings)


def _resources(settings: Settings, region: str) -> list[Ec2Resources]:
    return [Ec2Resources(r, ec2_endpoint(settings)) for r in _regions(settings, region)]


def _job_of(ledger: Ledger, settings: Settings, inst: Instance) -> tuple[JobRow | None, float]:
    """The ledger's job for an instance of this ledger, and the USD/h it was launched at (else the catalog's)."""
    if not sweep.ours(inst, settings) or inst.job_id is None:
        return None, inst.usd_per_hour
    job = ledger.job(inst.job_id)
    if job is None:
        return None, inst.usd_per_hour
    rate = next((a.usd_per_hour for a in ledger.attempts(job.id) if a.handle_data.get("instance_id") == inst.id),
                inst.usd_per_hour)
    return job, rate


def instance_record(inst: Instance, job: JobRow | None, rate: float, now: float) -> dict[str, Any]:
    return {"id": inst.id, "region": inst.region, "owner": inst.owner, "project": inst.project,
            "job_id": job.id if job else inst.job_id, "job": job.name if job else inst.job,
            "relion_folder": str(Path(job.project_dir) / job.job_dir) if job else "", "job_dir": job.job_dir if job else "",
            "job_state": job.state if job else "", "type": inst.instance_type, "zone": inst.zone,
            "market": inst.market, "state": inst.state, "launched_at": inst.launched_at,
            "age_seconds": round(now - inst.launched_at), "usd_per_hour": rate,
            "cost_so_far_usd": round(rate * max(60.0, now - inst.launched_at) / 3600, 4),
            "expires_at": inst.expires_at}


def list_instances(settings: Settings, all_users: bool = False, region: str = "",
                   now: float | None = None) -> list[dict[str, Any]]:
    """cryocloud's live instances: this user's (all owners' with `all_users`), oldest first."""
    now = time.time() if now is None else now
    me = tagging.clean(settings.user)
    ledger = open_ledger(settings)
    try:
        rows = []
        for ec2 in _resources(settings, region):
            for inst in ec2.instances():
                if inst.tagged and (all_users or inst.owner == me):
                    job, rate = _job_of(ledger, settings, inst)
                    rows.append(instance_record(inst, job, rate, now))
        return rows
    finally:
        ledger.close()


@dataclass(frozen=True)
class Killed:
    id: str
    job_id: int | None
    job_state: str  # the job's state afterwards ("" when the instance ran no job of this ledger)
    cost_usd: float | None  # the job's recorded cost (None: no job, or not ended yet)


def _find(settings: Settings, ids: list[str], region: str) -> dict[str, Instance]:
    """Every id, checked before anything is ended."""
    bad = [i for i in ids if not INSTANCE_ID.fullmatch(i)]
    if bad:
        raise CryocloudError(f"{bad[0]!r} is not an EC2 instance id",
                             "ids look like i-0123456789abcdef0; `cryocloud instances ls` lists yours")
    found: dict[str, Instance] = {}
    places = _resources(settings, region)
    for ec2 in places:
        found |= {i.id: i for i in ec2.instances((*LIVE, "shutting-down", "terminated")) if i.id in ids}
    me = tagging.clean(settings.user)
    for i in ids:
        inst = found.get(i)
        if inst is None:
            where = ", ".join(e.region for e in places)
            raise CryocloudError(f"no instance {i} in {where}", "`cryocloud instances ls` lists yours; "
                                 "--region names another region")
        if not inst.tagged:
            raise CryocloudError(f"instance {i} was not launched by cryocloud (it has no cryocloud tags)",
                                 "cryocloud ends only what it launched; end it in the EC2 console if you must")
        if inst.owner != me:
            raise CryocloudError(f"instance {i} belongs to {inst.owner}, not to {me}",
                                 f"ask {inst.owner} to end it (`cryocloud instances kill {i}` as that user)")
    return found


def kill_instances(settings: Settings, ids: list[str], region: str = "", wait: float = 60.0) -> list[Killed]:
    """End instances; a job one runs ends as aborted (RELION's marker, the ledger, its bill). Waits up to `wait`
    seconds for such jobs to be recorded as ended."""
    found = _find(settings, ids, region)
    ledger = open_ledger(settings)
    try:
        jobs: dict[str, JobRow] = {}
        for inst in found.values():
            job, _ = _job_of(ledger, settings, inst)
            if job is not None and job.active:
                jobs[inst.id] = job
                (Path(job.control_dir) / control.CANCEL).write_text(
                    f"aborted: its instance {inst.id} was ended by {settings.user} (cryocloud instances kill)")
        live = [i for i in found.values() if i.state not in ("shutting-down", "terminated")]
        ended: set[str] = set()
        try:
            for ec2 in _resources(settings, region):
                ec2.terminate([i for i in live if i.region == ec2.region])
                ended.add(ec2.region)
        except CryocloudError:  # the jobs whose instance was not ended go on as they were
            for iid, job in jobs.items():
                if found[iid].region not in ended:
                    (Path(job.control_dir) / control.CANCEL).unlink(missing_ok=True)
            raise
        deadline = time.monotonic() + wait
        while jobs and time.monotonic() < deadline:
            reconcile(settings, ledger)
            if all(not (j := ledger.job(job.id)) or not j.active for job in jobs.values()):
                break
            time.sleep(0.5)
        out = []
        for i in ids:
            job = ledger.job(jobs[i].id) if i in jobs else None
            cost = sum(a.total_usd for a in ledger.attempts(job.id)) if job and not job.active else None
            out.append(Killed(i, job.id if job else None, job.state if job else "", cost))
        return out
    finally:
        ledger.close()


# --- cleanup ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Item:
    kind: str  # "instance", "volume", "storage"
    id: str
    region: str
    why: str
    usd_per_day: float
    done: str = ""  # "ended", "deleted", "removed"; "" in a dry run or for what is only listed


@dataclass
class CleanupReport:
    dry_run: bool
    strays: list[Item] = field(default_factory=list)
    untagged: list[Item] = field(default_factory=list)  # listed with --untagged, never touched
    storage: Any = None  # storage.catalog.Sweep of --storage

    @property
    def usd_per_day(self) -> float:
        return sum(i.usd_per_day for i in self.strays)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dry_run": self.dry_run, "strays": [asdict(i) for i in self.strays],
                               "untagged": [asdict(i) for i in self.untagged],
                               "saves_usd_per_day": round(self.usd_per_day, 4)}
        if self.storage is not None:
            out["storage"] = {"manifests": self.storage.manifests, "objects": len(self.storage.objects),
                              "bytes": self.storage.bytes, "saves_usd_per_month": round(self.storage.monthly_usd, 6)}
        return out


def _judge(settings: Settings, ledger: Ledger, ec2: Ec2Resources, report: CleanupReport, instances: bool,
           volumes: bool, untagged: bool, now: float) -> tuple[list[Instance], list[Volume]]:
    ends: list[Instance] = []
    drops: list[Volume] = []
    if instances or untagged:
        for inst in ec2.instances():
            if not inst.tagged:
                if untagged:
                    report.untagged.append(Item("instance", inst.id, ec2.region, f"{inst.instance_type} {inst.state}, "
                                                "no cryocloud tags", inst.usd_per_day))
                continue
            if not instances:
                continue
            why = sweep.judge_instance(inst, settings, ledger, now)
            if why is not None:
                ends.append(inst)
                report.strays.append(Item("instance", inst.id, ec2.region, why, inst.usd_per_day))
    if volumes or untagged:
        for vol in ec2.volumes():
            if not vol.tagged:
                if untagged:
                    report.untagged.append(Item("volume", vol.id, ec2.region, f"{vol.size_gb} GB {vol.kind} {vol.state}"
                                                f"{' on ' + vol.attached_to if vol.attached_to else ''}, no cryocloud "
                                                "tags", vol.usd_per_day))
                continue
            why = sweep.judge_volume(vol, settings, ledger, now) if volumes else None
            if why is not None:
                drops.append(vol)
                report.strays.append(Item("volume", vol.id, ec2.region, f"{vol.size_gb} GB {vol.kind}; {why}",
                                          vol.usd_per_day))
    return ends, drops


def cleanup(settings: Settings, *, instances: bool = False, volumes: bool = False, storage: bool = False,
            untagged: bool = False, yes: bool = False, days: float = 7.0, store: Any = None, region: str = "",
            now: float | None = None) -> CleanupReport:
    """Find cryocloud's strays (and, with `untagged`, list what else runs); with `yes`, remove the strays."""
    now = time.time() if now is None else now
    report = CleanupReport(dry_run=not yes)
    ledger = open_ledger(settings)
    try:
        if instances or volumes or untagged:
            for ec2 in _resources(settings, region):
                with ledger.transaction():  # as the sweep: no live launch is between RunInstances and its record
                    ends, drops = _judge(settings, ledger, ec2, report, instances, volumes, untagged, now)
                    if yes:
                        ec2.terminate(ends)
                        ec2.delete_volumes(drops)
                        for inst in ends:
                            sweep.tell_job(ledger, inst)
            if yes:
                report.strays = [Item(i.kind, i.id, i.region, i.why, i.usd_per_day,
                                      "ended" if i.kind == "instance" else "deleted") for i in report.strays]
        if storage:
            report.storage = _storage(settings, ledger, store, days, yes, now)
        return report
    finally:
        ledger.close()


def _storage(settings: Settings, ledger: Ledger, store: Any, days: float, yes: bool, now: float) -> Any:
    """Job staging data older than `days`, except what an active job still uses."""
    from cryocloud.storage.project import cleanup_jobs

    keep = set()
    for job in ledger.jobs(states=ACTIVE):
        record = (control.read_json(Path(job.control_dir) / control.LAUNCH) or {}).get("staging") or {}
        keep |= {str(record[k]) for k in ("inputs", "outputs") if k in record}
    return cleanup_jobs(store, days, dry_run=not yes, now=now, keep=keep)
