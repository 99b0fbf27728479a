"""Fit the runtime model's coefficients from measured runs (data/calibration.csv -> data/runtime_model.csv).

For each (job type, device): hours = overhead + k * x with x = work / speed units, fitted by least squares on the
relative error (a 10-second job counts as much as a 10-hour one), overhead >= 0. The leave-one-out error says how
well a run the fit has not seen is predicted. scripts/fit_runtime_model.py is the command-line face.

GPU speed units = speed per card x cards^p (`fit_gpus` -> data/gpu_speeds.csv):
- p, sub-linear scaling with the card count (RELION's leader plus one rank per GPU, and the CPU-side M-step), is
  the pooled slope of log hours on log cards over every series of runs that differ only in their card count;
- a card's speed is measured where runs of the canonical job (Class3D) were published on it: each wall-time run's
  speed against the K80 founding Class3D row (the unit), their geometric mean; the same speeds serve every job type
  (each job type's own k absorbs its constant); two models of one chip (V100, V100-32GB) share it;
- what a row measured is kept (`measured`: wall, or estep = the E-step's GPU time only, a lower bound of the wall
  time, as the Scripps table reports it). Hours are fitted on wall rows only. E-step rows give speed RATIOS within
  their own source (same job, same machine, same software), placed on the wall scale by the cards of that source
  that wall rows also measured; a source with no such card is reported, not used;
- a card without runs is derived from its memory bandwidth (RELION's GPU kernels are bandwidth-bound), at the
  geometric mean speed-per-GB/s of the cards measured on the canonical job, and marked derived;
- leave-one-card-out: each measured card's runs predicted with that card derived from the others and p fitted
  without it: the spread a derived card carries.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

from cryocloud.errors import CryocloudError
from cryocloud.planner import learn
from cryocloud.planner.catalog import Catalog, read_data_csv
from cryocloud.planner.model import JobSize, job_kind

# This machine's vCPU relative to a 2015 Haswell vCPU (an AMD EPYC with AVX-512; assumption).
LOCAL_CPU_SPEED = 1.3
SIZE_FIELDS = ("particles", "box", "classes", "iterations", "healpix_order", "movies", "frames", "pixels")


@dataclass(frozen=True)
class Run:
    source: str
    job_type: str
    device: str
    size: JobSize
    units: float  # speed units used (all machines together); GPU runs: set by `with_gpu_units`
    hours: float
    machine: str
    gpus: int = 0
    gpu_model: str = ""
    measured: str = "wall"  # or "estep": E-step GPU time only (a lower bound of the job's hours)
    url: str = ""  # where it was published (one source = one url)

    @property
    def x(self) -> float:
        kind = job_kind(self.job_type)
        return kind.work(self.size.with_defaults(kind.defaults)) / self.units


@dataclass(frozen=True)
class Fit:
    job_type: str
    device: str
    overhead_hours: float
    hours_per_work: float
    runs: tuple[Run, ...]
    loo_predictions: tuple[float, ...]

    def predict(self, run: Run) -> float:
        return self.overhead_hours + self.hours_per_work * run.x

    @property
    def loo_error_pct(self) -> float:
        errs = [abs(p / r.hours - 1) * 100 for p, r in zip(self.loo_predictions, self.runs, strict=True)
                if not math.isnan(p)]
        return statistics.median(errs) if errs else math.nan


def load_runs(path: Path | None = None, catalog: Catalog | None = None) -> list[Run]:
    catalog = catalog or Catalog()
    rows = read_data_csv(path.name, path.parent) if path else read_data_csv("calibration.csv")
    runs = []
    for r in rows:
        if (r.get("fit") or "yes") == "no":
            continue
        measured = r.get("measured") or "wall"
        if measured not in MEASURES:
            raise CryocloudError(f"calibration row {r['source']} {r['job_type']}: measured = {measured!r}",
                                 f"write one of {', '.join(MEASURES)}")
        size = JobSize(**{f: float(r[f] or 0) for f in SIZE_FIELDS})
        gpus = int(float(r["gpus"] or 0))
        units = math.nan
        if not gpus:
            machine = catalog.types.get(r["machine"])
            units = float(r["cpus"]) * (machine.cpu_speed if machine else LOCAL_CPU_SPEED)
        runs.append(Run(r["source"], job_kind(r["job_type"]).name, "gpu" if gpus else "cpu", size, units,
                        float(r["hours"]), r["machine"], gpus, r["gpu_model"] or "", measured, r.get("url") or ""))
    return runs


MEASURES = ("wall", "estep")


UNIT_CARD = "K80"
SPEED_JOB = "Class3D"  # the canonical benchmark job: card speeds are measured on it, and apply to every job type


@dataclass(frozen=True)
class CardSpeed:
    model: str
    speed: float  # per card, relative to one K80 die
    basis: str  # "measured" or "derived"
    runs: int
    loo_ratio: float = math.nan  # measured cards: derived-from-the-others / measured speed


@dataclass(frozen=True)
class GpuFit:
    exponent: float
    speeds: dict[str, CardSpeed]
    loo: tuple[tuple[Run, float], ...]  # each measured card's runs, predicted with that card left out (hours)


def _gmean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _count_exponent(runs: list[Run]) -> float:
    """Pooled slope of log hours on log cards within series that differ only in the card count."""
    series: dict[tuple[object, ...], list[Run]] = {}
    for r in runs:
        series.setdefault((r.source, r.url, r.measured, r.job_type, r.gpu_model, r.size), []).append(r)
    sxy = sxx = 0.0
    for group in series.values():
        if len({r.gpus for r in group}) < 2:
            continue
        mx = statistics.fmean(math.log(r.gpus) for r in group)
        my = statistics.fmean(math.log(r.hours) for r in group)
        sxy += sum((math.log(r.gpus) - mx) * (math.log(r.hours) - my) for r in group)
        sxx += sum((math.log(r.gpus) - mx) ** 2 for r in group)
    return min(1.0, max(0.3, -sxy / sxx)) if sxx else 1.0


def _speeds(runs: list[Run], p: float) -> dict[str, list[tuple[Run, float]]]:
    """Each run's card speed: wall rows against the unit card's rows (k from the K80, s = k * work / (hours * n^p));
    E-step rows as ratios within their source, scaled by that source's cards that wall rows measured."""
    def work(r: Run) -> float:
        kind = job_kind(r.job_type)
        return kind.work(r.size.with_defaults(kind.defaults))

    runs = [r for r in runs if r.job_type == SPEED_JOB]
    wall = [r for r in runs if r.measured == "wall"]
    k = {jt: _gmean([r.hours * r.gpus ** p / work(r) for r in wall if r.job_type == jt and r.gpu_model == UNIT_CARD])
         for jt in {r.job_type for r in wall if r.gpu_model == UNIT_CARD}}
    out: dict[str, list[tuple[Run, float]]] = {}
    for r in wall:
        if r.gpu_model == UNIT_CARD:
            out.setdefault(r.gpu_model, []).append((r, 1.0))
        elif r.job_type in k:
            out.setdefault(r.gpu_model, []).append((r, k[r.job_type] * work(r) / (r.hours * r.gpus ** p)))
    on_wall = {m: _gmean([v for _, v in pairs]) for m, pairs in out.items()}
    groups: dict[tuple[str, str, str], list[Run]] = {}
    for r in runs:
        if r.measured != "wall":
            groups.setdefault((r.source, r.url, r.measured), []).append(r)
    for group in groups.values():
        raw = [(r, work(r) / (r.hours * r.gpus ** p)) for r in group]
        anchors = [on_wall[r.gpu_model] / v for r, v in raw if r.gpu_model in on_wall]
        if not anchors:
            continue  # no card of this source is on the wall scale: its ratios cannot be placed
        scale = _gmean(anchors)
        for r, v in raw:
            out.setdefault(r.gpu_model, []).append((r, v * scale))
    return out


def fit_gpus(runs: list[Run], bandwidth: dict[str, float], chips: dict[str, str] | None = None) -> GpuFit:
    """Card speeds and the card-count exponent from the GPU runs; `bandwidth`: GB/s per model, `chips`: model ->
    its chip where two models share one (gpu_models.csv)."""
    chips = chips or {}
    gpu = [r for r in runs if r.device == "gpu"]
    p = _count_exponent(gpu)
    measured = {m: _gmean([v for _, v in pairs]) for m, pairs in _speeds(gpu, p).items()}
    for m, chip in chips.items():  # a model with no runs of its own takes its chip sibling's measured speed
        sibling = next((o for o, c in chips.items() if c == chip and o in measured and o != m), None)
        if m not in measured and sibling:
            measured[m] = measured[sibling]

    def per_gbs(cards: dict[str, float]) -> float:
        return _gmean([s / bandwidth[m] for m, s in cards.items() if m != UNIT_CARD and m in bandwidth])

    ratio = per_gbs(measured)
    speeds = {m: CardSpeed(m, measured[m] if m in measured else bw * ratio, "measured" if m in measured else "derived",
                           sum(1 for r in gpu if r.gpu_model == m)) for m, bw in bandwidth.items()}
    loo: list[tuple[Run, float]] = []
    for m in measured:
        mine = [r for r in gpu if r.gpu_model == m and r.job_type == SPEED_JOB]
        if m == UNIT_CARD or not mine or m not in bandwidth:
            continue
        rest = [r for r in gpu if r.gpu_model != m]
        p2 = _count_exponent(rest)
        others = {mm: _gmean([v for _, v in pairs]) for mm, pairs in _speeds(rest, p2).items()}
        if len(others) < 2:  # the unit card alone: nothing to derive from
            continue
        derived = bandwidth[m] * per_gbs(others)
        speeds[m] = replace(speeds[m], loo_ratio=derived / measured[m])
        for r, s_run in _speeds([*rest, *(replace(r, gpu_model="?") for r in mine)], p2).get("?", []):
            loo.append((replace(r, gpu_model=m), r.hours * s_run / derived))  # hours scale inversely with speed
    return GpuFit(p, speeds, tuple(loo))


def with_gpu_units(runs: list[Run], g: GpuFit) -> list[Run]:
    return [replace(r, units=g.speeds[r.gpu_model].speed * r.gpus ** g.exponent) if r.device == "gpu" else r
            for r in runs]


def gpu_csv(g: GpuFit) -> str:
    lines = ["# Written by scripts/fit_runtime_model.py from data/calibration.csv and gpu_models.csv; do not edit by hand.",
             "# relion_speed: per card, relative to one K80 die. measured: published or lab runs (runs); derived: from",
             "# memory bandwidth at the measured cards' speed per GB/s. Hours are fitted on wall-time rows; E-step rows",
             "# (calibration.csv measured=estep) give speed ratios within their source. loo_ratio: a measured card derived from the",
             f"# others / its measured speed (the spread a derived card carries). count_exponent: speed grows as cards^{g.exponent:.3f}.",
             "model,relion_speed,basis,runs,loo_ratio,count_exponent"]
    for m, c in sorted(g.speeds.items()):
        loo = "" if math.isnan(c.loo_ratio) else f"{c.loo_ratio:.3f}"
        lines.append(f"{m},{c.speed:.4g},{c.basis},{c.runs},{loo},{g.exponent:.4f}")
    return "\n".join(lines) + "\n"


def _solve(runs: list[Run]) -> tuple[float, float]:
    if len(runs) == 1:
        return 0.0, runs[0].hours / runs[0].x
    u = [1 / r.hours for r in runs]
    v = [r.x / r.hours for r in runs]
    suu, suv, svv = sum(a * a for a in u), sum(a * b for a, b in zip(u, v, strict=True)), sum(b * b for b in v)
    det = suu * svv - suv * suv
    if det > 0:
        a = (svv * sum(u) - suv * sum(v)) / det
        k = (suu * sum(v) - suv * sum(u)) / det
        if a >= 0 and k > 0:
            return a, k
    return 0.0, sum(v) / svv


def fit(runs: list[Run]) -> list[Fit]:
    groups: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.job_type, r.device), []).append(r)
    out = []
    for (job_type, device), group in sorted(groups.items()):
        a, k = _solve(group)
        loo = []
        for i in range(len(group)):
            rest = group[:i] + group[i + 1:]
            if rest:
                a2, k2 = _solve(rest)
                loo.append(a2 + k2 * group[i].x)
            else:
                loo.append(math.nan)
        out.append(Fit(job_type, device, a, k, tuple(group), tuple(loo)))
    return out


def model_csv(fits: list[Fit]) -> str:
    lines = ["# Fitted by scripts/fit_runtime_model.py from data/calibration.csv; do not edit by hand.",
             "job_type,device,overhead_hours,hours_per_work,points,loo_error_pct"]
    for f in fits:
        loo = "" if math.isnan(f.loo_error_pct) else f"{f.loo_error_pct:.1f}"
        lines.append(f"{f.job_type},{f.device},{f.overhead_hours:.6g},{f.hours_per_work:.6g},{len(f.runs)},{loo}")
    return "\n".join(lines) + "\n"


def report(fits: list[Fit]) -> str:
    """Markdown table: every calibration run, measured vs fitted vs leave-one-out prediction."""
    lines = ["| job type | device | source | sizes | measured s | fitted s | err | leave-one-out s | err |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for f in fits:
        for run, loo in zip(f.runs, f.loo_predictions, strict=True):
            sizes = " ".join(f"{n}={run.size.get(n):g}" for n in SIZE_FIELDS if getattr(run.size, n))
            fitted = f.predict(run)
            loo_txt = "n/a" if math.isnan(loo) else f"{loo * 3600:.1f} | {(loo / run.hours - 1) * 100:+.0f}%"
            lines.append(f"| {f.job_type} | {f.device} | {run.source} | {sizes} | {run.hours * 3600:.1f} | "
                         f"{fitted * 3600:.1f} | {(fitted / run.hours - 1) * 100:+.0f}% | {loo_txt} |")
    return "\n".join(lines)


def lab_rows(fits: list[Fit], source: str = "measured-here") -> list[tuple[Fit, Run, float, float, int]]:
    """P9, the lab's side: each run of `source` predicted by the model fitted without it, then times what the other
    runs of its job type on its machine took over that model (planner/learn.py's rule, from MIN_RUNS of them).
    Rows: (fit, run, model hours, learned hours, runs learned from)."""
    out = []
    for f in fits:
        for i, run in enumerate(f.runs):
            if run.source != source:
                continue
            rest = [*f.runs[:i], *f.runs[i + 1:]]
            if not rest:
                continue
            a, k = _solve(rest)
            others = [r for r in rest if r.source == source and r.machine == run.machine][-learn.RECENT:]
            factor = learn.Learned(len(others), tuple(r.hours / (a + k * r.x) for r in others)).factor
            out.append((f, run, a + k * run.x, (a + k * run.x) * factor, len(others)))
    return out


def lab_report(fits: list[Fit]) -> str:
    lines = [f"Runs measured here, each predicted with it left out: the model alone, then x what the other runs of "
             f"its type on its machine took over the model (from {learn.MIN_RUNS} runs on; planner/learn.py).", "",
             "| job type | device | machine | sizes | took s | model s | ratio | learned from | learned s | ratio |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for f, run, model_h, learned_h, n in lab_rows(fits):
        sizes = " ".join(f"{name}={run.size.get(name):g}" for name in SIZE_FIELDS if getattr(run.size, name))
        learned_txt = f"{learned_h * 3600:.1f} | {learned_h / run.hours:.2f}x" if n >= learn.MIN_RUNS else "n/a | n/a"
        lines.append(f"| {f.job_type} | {f.device} | {run.machine} | {sizes} | {run.hours * 3600:.1f} | "
                     f"{model_h * 3600:.1f} | {model_h / run.hours:.2f}x | {n} | {learned_txt} |")
    return "\n".join(lines)


def gpu_report(g: GpuFit) -> str:
    """Markdown: the card speeds (measured or derived) and each measured card's runs predicted with it left out."""
    lines = [f"GPU speed grows as cards^{g.exponent:.2f} on one machine.", "",
             "| card | speed (K80 = 1) | basis | runs | derived from the others / measured |", "|---|---:|---|---:|---:|"]
    for m, c in sorted(g.speeds.items(), key=lambda kv: -kv[1].speed):
        loo = "" if math.isnan(c.loo_ratio) else f"{c.loo_ratio:.2f}x"
        lines.append(f"| {m} | {c.speed:.2f} | {c.basis} | {c.runs} | {loo} |")
    lines += ["", "| card left out | job type | cards | measured (wall or E-step) | source | published h | "
              "predicted h (same kind) | ratio |", "|---|---|---:|---|---|---:|---:|---:|"]
    for r, hours in g.loo:
        lines.append(f"| {r.gpu_model} | {r.job_type} | {r.gpus} | {r.measured} | {r.url or r.source} | "
                     f"{r.hours:.2f} | {hours:.2f} | {hours / r.hours:.2f}x |")
    return "\n".join(lines)


def fit_all(path: Path | None = None) -> tuple[list[Fit], GpuFit]:
    """The whole fit from the shipped data (or calibration rows at `path`): runtime coefficients and GPU speeds."""
    runs = load_runs(path)
    models = read_data_csv("gpu_models.csv")
    gpus = fit_gpus(runs, {r["model"]: float(r["memory_gbps"]) for r in models},
                    {r["model"]: r["chip"] for r in models if r["chip"]})
    return fit(with_gpu_units([r for r in runs if r.measured == "wall"], gpus)), gpus
