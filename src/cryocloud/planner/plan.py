"""`cryocloud plan`: the options for one job (machine, count, spot or on-demand, hours, USD), the cheapest one
meeting a deadline, and this workstation for comparison. `plan_for_spec` is what `submit` calls.

Billing is per second while a machine exists: staging onto it, the job, and nothing rounded up to an hour.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace

from cryocloud.errors import CryocloudError
from cryocloud.jobs import cmdline
from cryocloud.jobs.spec import JobSpec
from cryocloud.planner import learn, model
from cryocloud.planner.calibrate import LOCAL_CPU_SPEED
from cryocloud.planner.catalog import Catalog, InstanceType, default_catalog
from cryocloud.settings import Settings

LOCAL_GPU_SPEED = 2.0  # a workstation GPU (GTX 1080 / RTX class) relative to one K80 die (assumption)
LOCAL_GPU_MEMORY_GIB = 11.0
FAN_OUT_COUNTS = (1, 2, 4, 8, 16)
# RELION command-line flags -> JobSize fields, read from a submitted job's commands.
FLAG_SIZES = {"--K": "classes", "--iter": "iterations", "--healpix_order": "healpix_order", "--box_size": "box",
              "--extract_size": "box"}
MOVIE_SUFFIXES = (".tif", ".tiff", ".eer", ".mrc", ".mrcs", ".bz2")


@dataclass(frozen=True)
class LocalMachine:
    """This workstation, as the model sees it."""

    name: str
    vcpus: int
    memory_gib: float
    gpus: int
    gpu_memory_gib: float = LOCAL_GPU_MEMORY_GIB
    network_gbps: float = 0.0

    @property
    def cpu_units(self) -> float:
        return self.vcpus * LOCAL_CPU_SPEED

    @property
    def gpu_units(self) -> float:
        return self.gpus * LOCAL_GPU_SPEED


@dataclass(frozen=True)
class Option:
    backend: str  # "aws" or "local"
    machine: str
    count: int
    market: str  # "spot", "on-demand", "owned"
    zone: str
    usd_per_hour: float  # per machine
    price_source: str
    estimate: model.Estimate
    describe: str = ""

    @property
    def hours(self) -> float:
        return self.estimate.hours

    @property
    def usd(self) -> float:
        return self.count * self.usd_per_hour * self.hours

    def as_dict(self) -> dict[str, object]:
        return {"backend": self.backend, "machine": self.machine, "count": self.count, "market": self.market,
                "zone": self.zone, "usd_per_hour": self.usd_per_hour, "price_source": self.price_source,
                "device": self.estimate.device, "staging_hours": round(self.estimate.staging_hours, 4),
                "hours": round(self.hours, 4), "usd": round(self.usd, 2), "hardware": self.describe}


@dataclass(frozen=True)
class Plan:
    job_type: str
    size: model.JobSize
    region: str
    deadline_hours: float | None
    options: list[Option]  # cloud options, cheapest first
    local: Option | None
    best: Option | None  # cheapest cloud option meeting the deadline
    notes: list[str] = field(default_factory=list)

    @property
    def predicted_usd(self) -> float | None:
        return self.best.usd if self.best else None


def local_machine(settings: Settings) -> LocalMachine:
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = 16.0
    return LocalMachine("local", settings.local_cpus, round(mem, 1), settings.local.gpus)


def _fit(kind: model.JobKind, size: model.JobSize, machine: model.Hardware, count: int,
         gpus: int) -> model.Estimate | CryocloudError:
    try:
        return model.predict(kind, size, machine, count=count, asked_gpus=gpus)
    except CryocloudError as e:
        return e


def _cloud_options(kind: model.JobKind, size: model.JobSize, itype: InstanceType, region: str, gpus: int,
                   catalog: Catalog, live: bool) -> list[Option] | CryocloudError:
    counts = FAN_OUT_COUNTS if kind.splittable else (1,)
    out: list[Option] = []
    price = catalog.on_demand(itype.name, region)
    spots = catalog.spot(itype.name, region, live=live)
    for count in counts:
        est = _fit(kind, size, itype, count, gpus)
        if isinstance(est, CryocloudError):
            return est
        out.append(Option("aws", itype.name, count, "on-demand", "", price,
                          itype.price_sources.get(region, ""), est, itype.describe()))
        if spots:
            q = spots[0]
            out.append(Option("aws", itype.name, count, "spot", q.zone, q.usd_per_hour, q.source, est,
                              itype.describe()))
    return out


def plan_job(job_type: str, size: model.JobSize, settings: Settings, *, region: str | None = None,
             deadline_hours: float | None = None, instance: str | None = None, gpus: int = 0,
             live_spot: bool = False, catalog: Catalog | None = None, spot: bool = True) -> Plan:
    """Every machine that can run the job, priced; the cheapest meeting the deadline; and this workstation."""
    catalog = catalog or default_catalog()
    region = region or settings.aws.region
    kind = model.job_kind(job_type)
    size = size.validated()
    if deadline_hours is not None and deadline_hours <= 0:
        raise CryocloudError(f"deadline {deadline_hours:g} h is not in the future", "give --deadline in hours, > 0")
    if instance:
        catalog.on_demand(instance, region)  # unknown type / not in region: errors with hints
        types = [catalog.get(instance)]
    else:
        types = catalog.in_region(region)
    options: list[Option] = []
    errors: list[CryocloudError] = []
    for itype in types:
        got = _cloud_options(kind, size, itype, region, gpus, catalog, live_spot)
        if isinstance(got, CryocloudError):
            errors.append(got)
        else:
            options.extend(o for o in got if spot or o.market != "spot")
    if not options:
        if instance:
            raise errors[0]
        full = size.with_defaults(kind.defaults)
        need = model.needs(kind, full, "gpu" if gpus else kind.devices[0], gpus)
        raise CryocloudError(
            f"no machine in {region} can run this {kind.name} job (needs ~{need.ram_gib:.0f} GiB RAM"
            + (f", ~{need.gpu_gib:.0f} GiB per GPU)" if need.gpu_gib else ")"),
            "reduce the box size or number of classes, or split the job; "
            + (errors[0].message if errors else "no type is offered there"),
        )
    options.sort(key=lambda o: (o.usd, o.hours))
    notes = [f"sizes used: {_sizes_text(size.with_defaults(kind.defaults))} (defaults fill what was not given)"]
    local = _local_option(kind, size, settings, gpus, notes)
    meeting = [o for o in options if deadline_hours is None or o.hours <= deadline_hours]
    chosen = meeting[0] if meeting else options[0]
    if chosen.estimate.device == "gpu":
        notes.append(gpu_speed_note(catalog, catalog.get(chosen.machine).gpu_model))
    notes += [f"{chosen.machine}: {n}" for n in model.placement(kind, size, catalog.get(chosen.machine),
                                                                chosen.estimate.device)]
    if not meeting:
        fastest = min(options, key=lambda o: o.hours)
        notes.append(f"no option meets the {deadline_hours:g} h deadline; the fastest is {fastest.count}x "
                     f"{fastest.machine} at {fastest.hours:.2f} h")
    return Plan(kind.name, size, region, deadline_hours, options, local, meeting[0] if meeting else None, notes)


def _learned_here(job_type: str, settings: Settings) -> learn.Learned | None:
    """What the lab's own runs on this workstation say (None without a ledger yet)."""
    if not settings.ledger_path.exists():
        return None
    from cryocloud.ledger import Ledger

    ledger = Ledger(settings.ledger_path)
    try:
        return learn.learned(ledger, job_type, "local", settings.local_machine)
    finally:
        ledger.close()


def gpu_speed_note(catalog: Catalog, gpu_model: str) -> str:
    """Where a card's RELION speed comes from: measured (published or lab runs) or derived, with the spread."""
    card = catalog.gpu_models[gpu_model]
    scaling = f"; speed grows as GPUs^{catalog.gpu_count_exponent:.2f} on one machine (fitted)"
    if card.basis == "measured":
        return (f"{gpu_model} speed: measured (published runs of RELION's canonical Class3D, data/calibration.csv)"
                + scaling)
    spread = [c.loo_ratio for c in catalog.gpu_models.values() if not math.isnan(c.loo_ratio)]
    text = f" (on the measured cards this derivation gives {min(spread):.2f}x-{max(spread):.2f}x)" if spread else ""
    return f"{gpu_model} speed: DERIVED from its memory bandwidth, no published run{text}" + scaling


def _local_option(kind: model.JobKind, size: model.JobSize, settings: Settings, gpus: int,
                  notes: list[str]) -> Option | None:
    machine = local_machine(settings)
    est = _fit(kind, size, machine, 1, gpus if machine.gpus else 0)
    if isinstance(est, CryocloudError):
        return None
    est = replace(est, staging_hours=0.0)  # the data are already here
    lab = _learned_here(kind.name, settings)
    if lab is not None and lab.runs:
        est = replace(est, compute_hours=est.compute_hours * lab.factor)
        notes.append(lab.text(kind.name, "this workstation"))
    desc = f"{machine.vcpus} CPUs" + (f", {machine.gpus} GPUs" if machine.gpus else "")
    return Option("local", "workstation", 1, "owned", "", settings.general.workstation_usd_per_hour,
                  "config general.workstation_usd_per_hour", est, desc)


def hours_on_allocation(spec: JobSpec, settings: Settings) -> float | None:
    """Predicted hours of a job on what it asked of a cluster (its CPUs and GPUs; memory is the cluster's
    business), its data already there (a shared filesystem). None when the job type has no runtime model or
    the model cannot size it."""
    try:
        kind = model.job_kind(spec.job_type)
        r = spec.resources
        machine = LocalMachine("allocation", max(1, r.cpus), 1.0e6, r.gpus, gpu_memory_gib=1.0e3)
        est = model.predict(kind, size_from_spec(spec), machine, asked_gpus=r.gpus)
    except CryocloudError:
        return None
    return est.compute_hours


def _sizes_text(size: model.JobSize) -> str:
    return ", ".join(f"{k}={getattr(size, k):g}" for k in model.LIMITS if getattr(size, k))


def size_from_spec(spec: JobSpec) -> model.JobSize:
    """Sizes a submitted job reveals: inputs' bytes, movie count, and RELION flags (--K, --iter, ...)."""
    values: dict[str, float] = {"data_gb": spec.data_bytes / 1e9}
    movies = sum(1 for f in spec.inputs if f.path.lower().endswith(MOVIE_SUFFIXES) and "movie" in f.path.lower())
    if movies:
        values["movies"] = movies
    for line in spec.commands:
        for flag, name in FLAG_SIZES.items():
            n = cmdline.int_option(line, flag)
            if n is not None:
                values[name] = float(n)
    kind = model.job_kind(spec.job_type)
    if any(n == "particles" for n, _ in kind.work_terms) and "particles" not in values and spec.data_bytes:
        box = values.get("box") or kind.defaults.get("box", 256)
        values["particles"] = max(1.0, spec.data_bytes / (box * box * 4))  # float32 particle stacks
    return model.JobSize(**values)


def plan_for_spec(spec: JobSpec, settings: Settings, *, instance: str | None = None,
                  region: str | None = None, spot: bool = True) -> Plan:
    """The plan `submit` uses for a job: sizes from the spec, GPUs from its resources, a pinned machine if any."""
    return plan_job(spec.job_type, size_from_spec(spec), settings, region=region, instance=instance or None,
                    gpus=spec.resources.gpus, spot=spot)


def predicted_usd_for_spec(spec: JobSpec, settings: Settings, *, instance: str | None = None) -> float | None:
    """Predicted USD of the plan's best option, or None when the job type has no runtime model (e.g. a command)."""
    try:
        model.job_kind(spec.job_type)
    except CryocloudError:
        return None
    return plan_for_spec(spec, settings, instance=instance).predicted_usd


def model_hours(spec: JobSpec, backend: str, settings: Settings) -> float | None:
    """The runtime model's compute hours for `spec` where it ran (this workstation, or its Slurm allocation)."""
    try:
        if backend == "local":
            kind = model.job_kind(spec.job_type)
            return model.predict(kind, size_from_spec(spec), local_machine(settings),
                                 asked_gpus=spec.resources.gpus if settings.local.gpus else 0).compute_hours
        return hours_on_allocation(spec, settings)
    except (CryocloudError, OSError, ValueError):
        return None  # no model for it (a command), or it cannot be sized
