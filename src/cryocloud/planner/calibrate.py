"""Fit the runtime model's coefficients from measured runs (data/calibration.csv -> data/runtime_model.csv).

For each (job type, device): hours = overhead + k * x with x = work / speed units, fitted by least squares on the
relative error (a 10-second job counts as much as a 10-hour one), overhead >= 0. The leave-one-out error says how
well a run the fit has not seen is predicted. scripts/fit_runtime_model.py is the command-line face.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

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
    units: float  # speed units used (all machines together)
    hours: float
    machine: str

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
        size = JobSize(**{f: float(r[f] or 0) for f in SIZE_FIELDS})
        gpus = float(r["gpus"] or 0)
        if gpus:
            units = gpus * catalog.gpu_models[r["gpu_model"]].relion_speed
        else:
            machine = catalog.types.get(r["machine"])
            units = float(r["cpus"]) * (machine.cpu_speed if machine else LOCAL_CPU_SPEED)
        runs.append(Run(r["source"], job_kind(r["job_type"]).name, "gpu" if gpus else "cpu", size, units,
                        float(r["hours"]), r["machine"]))
    return runs


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
