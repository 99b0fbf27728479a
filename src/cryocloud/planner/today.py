"""The same workflow on today's catalog: each step's work moved to the cheapest machine that is no slower.

A step's work is what its machines did: running hours x count x speed units (GPUs x RELION speed for GPU steps,
vCPUs x CPU speed otherwise), as in the runtime model. Today's hours on n machines = work / (units x n). Its data
(founding data-moving hours x count x FOUNDING_GB_PER_HOUR) is pulled by each machine at today's network rate
(model.staging_hours), billed. Data that came from the lab (the first step) reaches the object store before any
machine starts (unbilled, counted in elapsed time as it was). Each step must finish within its founding elapsed
hours, so the whole is no slower. Storage: the same GB-months as recorded, tiered (S3 Standard while the workflow
runs, Glacier Instant Retrieval after). Every assumption is listed in `assumptions`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from cryocloud.errors import CryocloudError
from cryocloud.planner import model
from cryocloud.planner.catalog import Catalog, InstanceType
from cryocloud.planner.plan import FAN_OUT_COUNTS
from cryocloud.planner.workflow import Step, Workflow, storage_prices

FOUNDING_GB_PER_HOUR = 360.0  # 100 MB/s per VM: what one 2017 `aws s3 cp` stream moved (assumption)
AT_REST_FACTOR = 2.0  # data kept = the raw upload + derived data of about the same size (assumption)
ACTIVE_MONTHS = 0.25  # data on S3 Standard while the workflow runs (a week), then Glacier Instant Retrieval
MAX_COUNT = 16


@dataclass(frozen=True)
class TodayStep:
    step: Step
    job_type: str
    device: str
    machine: str
    count: int
    market: str
    zone: str
    usd_per_hour: float
    staging_hours: float  # billed, per machine
    compute_hours: float
    lab_upload_hours: float  # unbilled, before machines start
    data_gb: float

    @property
    def billed_hours(self) -> float:
        return self.staging_hours + self.compute_hours

    @property
    def elapsed_hours(self) -> float:
        return self.lab_upload_hours + self.billed_hours

    @property
    def usd(self) -> float:
        return self.count * self.usd_per_hour * self.billed_hours


@dataclass
class TodayPlan:
    market: str  # "spot" or "on-demand"
    region: str
    steps: list[TodayStep] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    storage_usd: float = 0.0
    storage_text: str = ""

    @property
    def compute_usd(self) -> float:
        return sum(s.usd for s in self.steps)

    @property
    def total_usd(self) -> float:
        return self.compute_usd + self.storage_usd

    @property
    def elapsed_hours(self) -> float:
        return sum(s.elapsed_hours for s in self.steps)

    @property
    def staging_share(self) -> float:
        """Machine-hours spent moving data / all billed machine-hours."""
        billed = sum(s.count * s.billed_hours for s in self.steps)
        return sum(s.count * s.staging_hours for s in self.steps) / billed if billed else 0.0


def _units(machine: InstanceType, device: str) -> float:
    return model.speed_units(machine, device)


def reprice(wf: Workflow, catalog: Catalog, region: str, market: str) -> TodayPlan:
    out = TodayPlan(market, region)
    for step in wf.steps:
        try:
            kind = model.job_kind(step.name)
        except CryocloudError:
            out.skipped.append(f"{step.name}: no job type matches its name (kept out of today's price)")
            continue
        old = catalog.get(step.machine)
        device = "gpu" if old.gpus and "gpu" in kind.devices else "cpu"
        work = float(step.running_hours) * step.count * _units(old, device)
        upload = float(step.staging_hours) if step.billed == "running" else 0.0
        streams = 1 if upload else step.count  # the lab's one uplink, or each VM pulling its share
        data_gb = float(step.staging_hours) * streams * FOUNDING_GB_PER_HOUR
        budget = float(step.total_hours)
        best: TodayStep | None = None
        counts = sorted({*FAN_OUT_COUNTS, step.count}) if kind.splittable else (1,)
        for itype in catalog.in_region(region):
            units = _units(itype, device)
            if units <= 0 or (device == "gpu" and itype.gpu_memory_gib < old.gpu_memory_gib):
                continue
            if device == "cpu" and itype.gpus:
                continue  # do not pay for idle GPUs on a CPU step
            if itype.memory_gib * max(counts) < old.memory_gib * step.count * 0.25:
                continue  # far less memory than the step had: not the same work (assumption: a quarter suffices)
            price, zone = _price(catalog, itype, region, market)
            if price is None:
                continue
            for n in counts:
                if n > MAX_COUNT:
                    continue
                cand = TodayStep(step, kind.name, device, itype.name, n, market, zone, price,
                                 model.staging_hours(data_gb, itype, n), work / (units * n), upload, data_gb)
                if cand.elapsed_hours <= budget and (best is None or cand.usd < best.usd):
                    best = cand
        if best is None:
            out.skipped.append(f"{step.name}: no {market} machine in {region} is as fast as {step.count}x {step.machine}")
        else:
            out.steps.append(best)
    _storage(wf, out)
    return out


def _price(catalog: Catalog, itype: InstanceType, region: str, market: str) -> tuple[float | None, str]:
    if market == "on-demand":
        return itype.prices[region], ""
    quotes = catalog.spot(itype.name, region)
    return (quotes[0].usd_per_hour, quotes[0].zone) if quotes else (None, "")


def _storage(wf: Workflow, out: TodayPlan) -> None:
    prices = storage_prices()
    recorded = wf.items_usd
    if not recorded:
        return
    gb_months = recorded / prices["STANDARD"]
    lab = sum(s.data_gb for s in out.steps if s.lab_upload_hours)
    data_gb = Decimal(str(round(lab * AT_REST_FACTOR)))
    active = min(gb_months, data_gb * Decimal(str(ACTIVE_MONTHS)))
    usd = active * prices["STANDARD"] + (gb_months - active) * prices["GLACIER_IR"]
    out.storage_usd = float(usd)
    out.storage_text = (
        f"{gb_months:,.0f} GB-months as recorded ({recorded} USD / {prices['STANDARD']} USD per GB-month): "
        f"{active:,.0f} on S3 Standard while the workflow runs ({ACTIVE_MONTHS} month of {data_gb:,.0f} GB: "
        f"{AT_REST_FACTOR:g}x the lab upload), "
        f"the rest on Glacier Instant Retrieval at {prices['GLACIER_IR']} = {usd:,.2f} USD")


def assumptions() -> list[str]:
    return [
        "work of a step = running hours x VMs x speed units of its machine (GPU: RELION speed per GPU x GPUs^p, "
        "data/gpu_speeds.csv; CPU: vCPUs x per-vCPU speed, data/aws_families.csv); GPU speeds are measured on "
        "published runs of RELION's canonical Class3D (K80, V100, A10G, GTX 1080) or derived from memory bandwidth "
        "(T4, L4, L40S, A100, H100): scripts/fit_runtime_model.py",
        f"data a step moved = its data-moving hours x VMs x {FOUNDING_GB_PER_HOUR:g} GB/h (100 MB/s per 2017 VM; "
        "the lab upload: one stream, ~4 TB, the size of EMPIAR-10061's raw movies)",
        f"today a machine pulls its share from S3 at {model.STAGING_EFFICIENCY:.0%} of its NIC's peak, plus "
        f"{model.STAGING_FIXED_HOURS * 60:.0f} min to boot and check; billed",
        "the first step's data moving is the upload from the lab: unbilled, counted in elapsed time, unchanged",
        "per-micrograph steps (data/job_types.csv 'splittable') may fan out over up to 16 machines",
        "each step must end within its founding elapsed hours; CPU steps never run on GPU machines",
        "spot: the snapshot's cheapest zone, no preemption; prices: data/aws_instances.csv snapshot",
        f"storage: the recorded GB-months; the data at rest ({AT_REST_FACTOR:g}x the lab upload) on S3 Standard for "
        f"{ACTIVE_MONTHS} month, the rest of the GB-months on Glacier Instant Retrieval",
        "Rosetta and other rows without hours are not priced",
    ]
