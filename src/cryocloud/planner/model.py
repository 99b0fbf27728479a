"""Runtime model: job type + data size -> resource needs and predicted hours on a machine, staging included.

hours = staging + overhead + k * work / (speed units * count)
- work is the job type's product of sizes (data/job_types.csv), in units of 1e9;
- speed units are vCPUs x per-vCPU speed (CPU device) or GPUs x per-GPU RELION speed (GPU device);
- overhead and k come from data/runtime_model.csv, fitted from data/calibration.csv by scripts/fit_runtime_model.py;
- staging is the machine pulling its share of the inputs at STAGING_EFFICIENCY of its network's peak (it is
  billed meanwhile). The data reach the object store before the machine starts, so that upload is not billed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from functools import cache
from typing import Protocol

from cryocloud.errors import CryocloudError, close_matches
from cryocloud.planner.catalog import read_data_csv

WORK_SCALE = 1e9
STAGING_EFFICIENCY = 0.5  # share of the NIC's peak a parallel S3 client reaches (assumption; see docs/planner.md)
STAGING_FIXED_HOURS = 2 / 60  # boot, agent install, manifest check (assumption)
SCRATCH_FACTOR = 1.2
DEVICES = ("gpu", "cpu")

# Sizes a user can give, with the largest value we believe (beyond it the input is a typo, not a dataset).
LIMITS: dict[str, float] = {
    "particles": 5e7, "box": 2048, "classes": 1000, "iterations": 2000, "healpix_order": 8,
    "movies": 1e7, "micrographs": 1e7, "frames": 5000, "pixels": 1.2e9, "data_gb": 5e6,
}


@dataclass(frozen=True)
class JobSize:
    particles: float = 0
    box: float = 0
    classes: float = 0
    iterations: float = 0
    healpix_order: float = 0
    movies: float = 0
    micrographs: float = 0
    frames: float = 0
    pixels: float = 0  # per frame
    data_gb: float = 0  # inputs to stage onto the machine

    def validated(self) -> JobSize:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or math.isnan(value) or value < 0:
                raise CryocloudError(f"{f.name} = {value!r} must be a number >= 0", f"fix --{f.name.replace('_', '-')}")
            if value > LIMITS[f.name]:
                raise CryocloudError(
                    f"{f.name} = {value:g} is beyond anything a cryo-EM job has (limit {LIMITS[f.name]:g})",
                    f"check --{f.name.replace('_', '-')} for a typo or a wrong unit",
                )
        return self

    def get(self, name: str) -> float:
        if name == "orientations":
            return float(8.0 ** (self.healpix_order - 2))
        if name == "micrographs":
            return self.micrographs or self.movies
        return float(getattr(self, name))

    def with_defaults(self, defaults: dict[str, float]) -> JobSize:
        missing = {k: v for k, v in defaults.items() if not getattr(self, k)}
        return replace(self, **missing) if missing else self


# Data products a job reads or writes (data/job_types.csv input/output), GB from the sizes.
PRODUCTS: dict[str, Callable[[JobSize], float]] = {
    "movies": lambda s: s.get("micrographs") * s.get("frames") * s.get("pixels") / 1e9,  # ~1 byte/pixel-frame (LZW TIFF)
    "sums": lambda s: s.get("micrographs") * s.get("pixels") * 4 / 1e9,  # float32 micrographs
    "stack": lambda s: s.get("particles") * s.get("box") ** 2 * 4 / 1e9,  # float32 particles
    "movie_stack": lambda s: s.get("particles") * s.get("frames") * s.get("box") ** 2 * 4 / 1e9,
    "none": lambda s: 0.0,  # STAR files and maps
}


def product_gb(name: str, size: JobSize) -> float:
    return PRODUCTS[name](size)


@dataclass(frozen=True)
class JobKind:
    name: str
    aliases: tuple[str, ...]
    devices: tuple[str, ...]
    work_terms: tuple[tuple[str, float], ...]
    defaults: dict[str, float]
    splittable: bool
    ram_base_gib: float
    dims: int
    bytes_per_voxel: float
    frame_bytes: float
    gpu_base_gib: float
    volume_share: float  # of the padded references, what a rank holds (data/job_types.csv)
    inputs: tuple[str, ...] = ("stack",)  # data products read, the first whose sizes are known (job_types.csv)
    output: str = "none"  # data product written

    def input_gb(self, size: JobSize) -> float:
        """GB the job reads when not given: the first of its input products whose sizes are known."""
        return next((gb for gb in (product_gb(p, size) for p in self.inputs) if gb > 0), 0.0)

    def output_gb(self, size: JobSize) -> float:
        """GB the job writes back (its output product; STAR files and maps count as nothing)."""
        return product_gb(self.output, size)

    def work(self, size: JobSize) -> float:
        return float(math.prod(size.get(name) ** exp for name, exp in self.work_terms)) / WORK_SCALE


@dataclass(frozen=True)
class Needs:
    device: str
    ram_gib: float  # all ranks together
    gpu_gib: float  # per GPU
    scratch_gb: float
    ranks: int = 1


@dataclass(frozen=True)
class Coefficient:
    job_type: str
    device: str
    overhead_hours: float
    hours_per_work: float  # per speed unit
    points: int
    loo_error_pct: float


class Hardware(Protocol):
    """What the model needs of a machine (a catalog InstanceType, or the local workstation)."""

    @property
    def name(self) -> str: ...
    @property
    def vcpus(self) -> int: ...
    @property
    def memory_gib(self) -> float: ...
    @property
    def gpus(self) -> int: ...
    @property
    def gpu_memory_gib(self) -> float: ...
    @property
    def network_gbps(self) -> float: ...
    @property
    def cpu_units(self) -> float: ...
    @property
    def gpu_units(self) -> float: ...


@dataclass(frozen=True)
class Estimate:
    device: str
    count: int
    staging_hours: float
    compute_hours: float

    @property
    def hours(self) -> float:
        return self.staging_hours + self.compute_hours


def _parse_terms(text: str) -> tuple[tuple[str, float], ...]:
    terms = []
    for part in text.split("*"):
        name, _, exp = part.strip().partition("^")
        terms.append((name, float(exp or 1)))
    return tuple(terms)


@cache
def job_kinds() -> dict[str, JobKind]:
    out = {}
    for r in read_data_csv("job_types.csv"):
        out[r["job_type"]] = JobKind(
            name=r["job_type"], aliases=tuple(a for a in r["aliases"].split("|") if a),
            devices=tuple(r["devices"].split("|")), work_terms=_parse_terms(r["work"]),
            defaults={k: float(v) for k, _, v in (d.partition("=") for d in r["defaults"].split(";") if d)},
            splittable=r["splittable"] == "yes", ram_base_gib=float(r["ram_base_gib"]), dims=int(r["dims"]),
            bytes_per_voxel=float(r["bytes_per_voxel"]), frame_bytes=float(r["frame_bytes"]),
            gpu_base_gib=float(r["gpu_base_gib"]), volume_share=float(r["volume_share"]),
            inputs=tuple(r["input"].split("|")), output=r["output"],
        )
    return out


def job_kind(name: str) -> JobKind:
    """A job type by name or alias ('Class2D', '2D classification', 'relion.class2d'), case-insensitive."""
    kinds = job_kinds()
    lookup = {n.lower(): k for k in kinds.values() for n in (k.name, *k.aliases)}
    if name.lower() not in lookup:
        raise CryocloudError(f"no runtime model for job type {name!r}", close_matches(name, set(kinds)))
    return lookup[name.lower()]


@cache
def coefficients() -> dict[tuple[str, str], Coefficient]:
    return {(r["job_type"], r["device"]): Coefficient(
        r["job_type"], r["device"], float(r["overhead_hours"]), float(r["hours_per_work"]), int(r["points"]),
        float(r["loo_error_pct"] or "nan")) for r in read_data_csv("runtime_model.csv")}


def needs(kind: JobKind, size: JobSize, device: str, gpus: int = 1) -> Needs:
    """Memory and disk a job needs (rules and their sources: data/job_types.csv). On GPUs RELION runs a leader plus
    one rank per GPU, and each rank holds its share of the references in RAM."""
    volumes = size.get("classes") * (2 * size.get("box")) ** kind.dims * kind.bytes_per_voxel if kind.dims else 0.0
    held = volumes * kind.volume_share
    frames = size.get("frames") * size.get("pixels") * kind.frame_bytes
    ranks = 1 + max(1, gpus) if device == "gpu" and kind.dims else 1
    ram = ranks * (kind.ram_base_gib + (held + frames) / 2**30)
    gpu = kind.gpu_base_gib + held / 2**30 if device == "gpu" else 0.0
    return Needs(device, ram, gpu, size.data_gb * SCRATCH_FACTOR, ranks)


def speed_units(machine: Hardware, device: str) -> float:
    return machine.gpu_units if device == "gpu" else machine.cpu_units


def transfer_hours(data_gb: float, machine: Hardware, count: int = 1) -> float:
    """Hours one of `count` machines spends moving its share of `data_gb` to or from the object store."""
    if data_gb <= 0 or machine.network_gbps <= 0:  # nothing to move, or the data are local
        return 0.0
    return data_gb / count / (machine.network_gbps * STAGING_EFFICIENCY / 8 * 3600)


def staging_hours(data_gb: float, machine: Hardware, count: int = 1) -> float:
    """Boot and check, then the pull of the inputs (a single job's plan; nothing when there is nothing to move)."""
    moving = transfer_hours(data_gb, machine, count)
    return STAGING_FIXED_HOURS + moving if moving else 0.0


def device_for(kind: JobKind, machine: Hardware, asked_gpus: int = 0) -> str:
    """The device the job uses on `machine`: GPU when both can and the model knows it there, else CPU."""
    if asked_gpus and "gpu" not in kind.devices:
        raise CryocloudError(f"{kind.name} does not use GPUs", "drop the GPU request or choose another job type")
    for device in DEVICES:
        if device in kind.devices and speed_units(machine, device) > 0 and (kind.name, device) in coefficients():
            if asked_gpus and device == "cpu":
                break
            return device
    if asked_gpus:
        raise CryocloudError(
            f"{machine.name} has no GPU, and this {kind.name} job asks for {asked_gpus}",
            "choose a GPU type (g4dn, g5, g6, g6e, p3, p4d, p5) or drop --gpus",
        )
    raise CryocloudError(f"no calibration for {kind.name} on {machine.name}",
                         "add a measured run to data/calibration.csv and rerun scripts/fit_runtime_model.py")


def check_fits(kind: JobKind, size: JobSize, machine: Hardware, device: str) -> Needs:
    need = needs(kind, size, device, machine.gpus)
    if need.ram_gib > machine.memory_gib:
        per = f" ({need.ranks} MPI ranks: a leader and one per GPU)" if need.ranks > 1 else ""
        raise CryocloudError(
            f"{kind.name} needs ~{need.ram_gib:.0f} GiB RAM{per}; {machine.name} has {machine.memory_gib:g} "
            f"(short by ~{need.ram_gib - machine.memory_gib:.0f} GiB)",
            "choose a type with more memory, or fewer classes / a smaller box")
    if device == "gpu" and need.gpu_gib > machine.gpu_memory_gib:
        raise CryocloudError(
            f"{kind.name} needs ~{need.gpu_gib:.1f} GiB per GPU; {machine.name} has {machine.gpu_memory_gib:g} "
            f"(short by ~{need.gpu_gib - machine.gpu_memory_gib:.1f} GiB)",
            "choose a GPU with more memory (g6e L40S 48 GiB, p4de/p5 80 GiB) or a smaller box")
    return need


def nvme_holds(data_gb: float, local_gb: float) -> bool:
    """Whether an instance store of `local_gb` holds `data_gb` of particles with RELION's scratch room (the
    plan says so, and the AWS backend then mounts it as --scratch_dir)."""
    return 0 < data_gb * SCRATCH_FACTOR <= local_gb


def placement(kind: JobKind, size: JobSize, machine: Hardware, device: str) -> list[str]:
    """Where a particle job's inputs can live on `machine`: in RAM (--preread_images), on its NVMe (--scratch_dir),
    or on an EBS volume; what fits is said, never assumed."""
    if not any(n == "particles" for n, _ in kind.work_terms):
        return []
    size = size.validated().with_defaults(kind.defaults)
    data_gb = size.data_gb or kind.input_gb(size)
    need = needs(kind, size, device, machine.gpus)
    free = machine.memory_gib - need.ram_gib
    stack = data_gb * 1e9 / 2**30
    out = [f"the particles ({data_gb:.0f} GB) fit in RAM beside the job: --preread_images is possible" if stack <= free
           else f"the particles ({data_gb:.0f} GB) do not fit in {machine.name}'s RAM beside the job "
                f"({machine.memory_gib:g} GiB, the job ~{need.ram_gib:.0f}): no --preread_images"]
    local = getattr(machine, "local_disk_gb", None)
    if local is not None:
        scratch = data_gb * SCRATCH_FACTOR
        out.append(f"its NVMe ({local:g} GB) holds them: --scratch_dir there" if nvme_holds(data_gb, local) else
                   f"its NVMe ({local:g} GB) is too small for them (~{scratch:.0f} GB): they go on an EBS volume"
                   if local else f"no instance store: they go on an EBS volume of ~{scratch:.0f} GB")
    return out


def predict(kind: JobKind, size: JobSize, machine: Hardware, *, count: int = 1, device: str | None = None,
            asked_gpus: int = 0) -> Estimate:
    """Hours on `count` machines of one type (staging + compute). Raises when it does not fit or is not modelled."""
    size = size.validated().with_defaults(kind.defaults)
    if not size.data_gb:
        size = replace(size, data_gb=kind.input_gb(size))
    device = device or device_for(kind, machine, asked_gpus)
    check_fits(kind, size, machine, device)
    coef = coefficients()[(kind.name, device)]
    count = count if kind.splittable else 1
    compute = coef.overhead_hours + coef.hours_per_work * kind.work(size) / (speed_units(machine, device) * count)
    return Estimate(device, count, staging_hours(size.data_gb, machine, count), compute)


WHOLE = ("particles", "box", "classes", "iterations", "healpix_order", "movies", "micrographs", "frames", "pixels")


def check_request(job_type: str, size: JobSize, asked: dict[str, float]) -> None:
    """A planning request a user typed: counts are whole and more than 0, and every size the job type's work
    depends on is known (given, read from the job, or a default). Raises with the flag to give."""
    kind = job_kind(job_type)
    for name, value in asked.items():
        flag = "--" + name.replace("_", "-")
        if name in WHOLE and (value <= 0 or value != int(value)):
            raise CryocloudError(f"{flag} {value:g}: must be a whole number above 0", f"e.g. {flag} 4")
        if value <= 0:
            raise CryocloudError(f"{flag} {value:g}: must be above 0", f"give a positive {flag}, or leave it out")
    full = size.validated().with_defaults(kind.defaults)
    missing = [n for n, _ in kind.work_terms if not full.get(n)]
    if missing:
        flags = ", ".join("--" + n.replace("_", "-") for n in missing)
        raise CryocloudError(f"{kind.name} cannot be planned without {flags} (its run time grows with them)",
                             f"give {flags}, or plan from the job's run_submit.script")
