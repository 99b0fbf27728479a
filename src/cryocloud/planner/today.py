"""The same workflow on today's catalog: each step's work moved to the cheapest machine that is no slower.

A step's work is what its machines did: running hours x count x speed units (GPUs x RELION speed for GPU steps,
vCPUs x CPU speed otherwise), as in the runtime model. Today's hours on n machines = work / (units x n).
Data: the lab's upload (the first step's data moving) reaches the object store before any machine starts (unbilled,
counted in elapsed time as it was). Billed data moving is only what a machine pulls (its share of the step's inputs)
and pushes back (its share of the outputs), at today's network rate (model.transfer_hours). When the workflow names
a dataset the planner knows (data/datasets.csv), those are sized from its sizes and the job type's input/output
products (data/job_types.csv; the movies are what the lab uploaded); otherwise from the founding data-moving hours x
count x FOUNDING_GB_PER_HOUR. Booting and checking a machine (model.STAGING_FIXED_HOURS) is billed but is not data
moving. Each step must finish within its founding elapsed hours, so the whole is no slower. Storage: the same
GB-months as recorded, tiered (S3 Standard while the workflow runs, Glacier Instant Retrieval after). Every
assumption is listed in `assumptions`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from cryocloud.errors import CryocloudError
from cryocloud.planner import model
from cryocloud.planner.catalog import Catalog, InstanceType, read_data_csv
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
    staging_hours: float  # data moving, billed, per machine: its pull of the inputs and its push of the results
    compute_hours: float
    lab_upload_hours: float  # unbilled, before machines start
    data_gb: float  # read + written by the step (all its machines)
    lab_upload_gb: float = 0.0
    boot_hours: float = model.STAGING_FIXED_HOURS  # billed, not data moving

    @property
    def billed_hours(self) -> float:
        return self.boot_hours + self.staging_hours + self.compute_hours

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


def dataset_sizes(name: str) -> model.JobSize | None:
    """A known dataset's sizes (data/datasets.csv), or None."""
    for r in read_data_csv("datasets.csv"):
        if r["dataset"] == name:
            return model.JobSize(**{f: float(r[f] or 0) for f in ("movies", "frames", "pixels", "particles", "box")})
    return None


def moved_gb(kind: model.JobKind, sizes: model.JobSize, lab_gb: float) -> float:
    """GB a step reads and writes: its input and output products at the dataset's sizes (movies: the lab upload)."""
    known = {"movies": lab_gb} if lab_gb else {}

    def gb(product: str) -> float:
        return known.get(product) or model.product_gb(product, sizes)

    return next((g for g in map(gb, kind.inputs) if g > 0), 0.0) + gb(kind.output)


def reprice(wf: Workflow, catalog: Catalog, region: str, market: str) -> TodayPlan:
    out = TodayPlan(market, region)
    sizes = dataset_sizes(wf.dataset)
    first = wf.steps[0] if wf.steps else None
    lab_gb = float(first.staging_hours) * FOUNDING_GB_PER_HOUR if first and first.billed == "running" else 0.0
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
        data_gb = (moved_gb(kind, sizes, lab_gb) if sizes
                   else float(step.staging_hours) * streams * FOUNDING_GB_PER_HOUR)
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
                                 model.transfer_hours(data_gb, itype, n), work / (units * n), upload, data_gb,
                                 lab_gb if upload else 0.0)
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
    lab = sum(s.lab_upload_gb for s in out.steps)
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
        f"the lab upload = the first step's data-moving hours x {FOUNDING_GB_PER_HOUR:g} GB/h (100 MB/s, one "
        "stream; ~4 TB for EMPIAR-10061's raw movies)",
        "data a step moves = what it reads + what it writes: for a dataset in data/datasets.csv (named in the "
        "workflow's comments), its sizes x the job type's input/output products (data/job_types.csv; the movies "
        f"= the lab upload); otherwise its founding data-moving hours x VMs x {FOUNDING_GB_PER_HOUR:g} GB/h",
        f"today a machine pulls its share from S3 and pushes its results back at {model.STAGING_EFFICIENCY:.0%} "
        f"of its NIC's peak (billed data moving), and takes {model.STAGING_FIXED_HOURS * 60:.0f} min to boot and "
        "check (billed, not data moving)",
        "the first step's data moving is the upload from the lab: unbilled, counted in elapsed time, unchanged",
        "per-micrograph steps (data/job_types.csv 'splittable') may fan out over up to 16 machines",
        "each step must end within its founding elapsed hours; CPU steps never run on GPU machines",
        "spot: the snapshot's cheapest zone, no preemption; prices: data/aws_instances.csv snapshot",
        f"storage: the recorded GB-months; the data at rest ({AT_REST_FACTOR:g}x the lab upload) on S3 Standard for "
        f"{ACTIVE_MONTHS} month, the rest of the GB-months on Glacier Instant Retrieval",
        "Rosetta and other rows without hours are not priced",
    ]
