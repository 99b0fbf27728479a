"""What a fan-out costs where it could run: N tasks of a given length, packed onto one machine (as many at once as
its CPUs, GPUs and memory hold), in waves. A fan-out runs on one machine per job here (this workstation, one
instance; a Slurm cluster prices itself), so wall time = ceil(N / at once) x task hours, and cost = wall time x
the machine's rate (a cloud machine billed at least a minute). The task hours are taken as the same on every
machine: the lab measured them on its own (a prediction of a program cryocloud does not know would be a guess)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from cryocloud.planner.catalog import Catalog, InstanceType


@dataclass(frozen=True)
class FanoutNeeds:
    tasks: int
    task_hours: float
    cores: int = 1
    gpus: int = 0
    memory_gb: float | None = None


@dataclass(frozen=True)
class FanoutOption:
    machine: str  # "this workstation" or an instance type
    market: str  # "" (the workstation), "on-demand" or "spot"
    at_once: int
    hours: float
    usd_per_hour: float

    @property
    def usd(self) -> float:
        billed = self.hours if self.market == "" else max(self.hours, 1 / 60)
        return billed * self.usd_per_hour


def at_once(needs: FanoutNeeds, cpus: int, gpus: int, memory_gib: float) -> int:
    """Tasks the machine runs at the same time (0: not even one fits)."""
    fit = cpus // max(1, needs.cores)
    if needs.gpus:
        fit = min(fit, gpus // needs.gpus)
    if needs.memory_gb:
        fit = min(fit, int(memory_gib // needs.memory_gb))
    return max(0, min(fit, needs.tasks))


def _option(needs: FanoutNeeds, machine: str, market: str, n: int, rate: float) -> FanoutOption:
    return FanoutOption(machine, market, n, math.ceil(needs.tasks / n) * needs.task_hours, rate)


def plan_fanout(needs: FanoutNeeds, catalog: Catalog, region: str, *, local_cpus: int, local_gpus: int,
                local_memory_gib: float, workstation_rate: float, spot: bool = True) -> list[FanoutOption]:
    """Every machine that fits one task, cheapest first (then soonest); this workstation among them."""
    out: list[FanoutOption] = []
    here = at_once(needs, local_cpus, local_gpus, local_memory_gib)
    if here:
        out.append(_option(needs, "this workstation", "", here, workstation_rate))
    itype: InstanceType
    for itype in catalog.in_region(region):
        n = at_once(needs, itype.vcpus, itype.gpus, itype.memory_gib)
        if not n:
            continue
        out.append(_option(needs, itype.name, "on-demand", n, catalog.on_demand(itype.name, region)))
        quotes = catalog.spot(itype.name, region) if spot else []
        if quotes:
            out.append(_option(needs, itype.name, "spot", n, min(q.usd_per_hour for q in quotes)))
    return sorted(out, key=lambda o: (o.usd, o.hours, o.machine))
