"""`cryocloud plan --workflow FILE`: a whole workflow priced end to end, as recorded and on today's catalog.

A workflow file is a CSV (lines starting with '#' are comments), one row per step: machine, count, USD/h, hours of
data moving and of job running, and the recorded cost. The founding table (seed-empiar10061-costs.csv) is one, read
as it is. Billing: VMs x USD/h x billed hours, in exact decimals, rounded half-up to the cent. Billed hours are the
step's total (the machine is billed while data moves onto it) except for data that moved before the machines
started: by default the first step's data moving, which is the upload from the lab. A `billed` column
(`total`/`running`) overrides it. Computed and recorded costs are shown side by side, never forced equal.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from cryocloud.errors import CryocloudError
from cryocloud.planner.catalog import Catalog, read_data_csv

CENT = Decimal("0.01")
# Column names of other formats -> ours. The founding table's names are the `aws_*` ones.
COLUMN_ALIASES = {
    "aws_num_vms": "count", "aws_vm_type": "machine", "aws_vm_usd_per_h": "usd_per_hour",
    "aws_data_moving_h": "staging_hours", "aws_job_running_h": "running_hours", "aws_total_h": "total_hours",
    "aws_ec2_cost_usd": "recorded_usd", "aws_elapsed_days": "elapsed_days", "ws_total_h": "workstation_hours",
}
TOTAL_LABELS = ("total", "totals")


@dataclass(frozen=True)
class Step:
    name: str
    machine: str
    count: int
    usd_per_hour: Decimal
    staging_hours: Decimal
    running_hours: Decimal
    total_hours: Decimal
    billed: str  # "total" or "running"
    recorded_usd: Decimal | None
    workstation_hours: Decimal | None

    @property
    def billed_hours(self) -> Decimal:
        return self.total_hours if self.billed == "total" else self.running_hours

    @property
    def computed_usd(self) -> Decimal:
        return (self.count * self.usd_per_hour * self.billed_hours).quantize(CENT, ROUND_HALF_UP)

    @property
    def difference(self) -> Decimal | None:
        return None if self.recorded_usd is None else self.computed_usd - self.recorded_usd


@dataclass(frozen=True)
class LineItem:
    """A cost that is not a machine (storage): carried over as recorded."""

    name: str
    recorded_usd: Decimal


@dataclass
class Workflow:
    path: str
    steps: list[Step] = field(default_factory=list)
    unpriced: list[str] = field(default_factory=list)  # steps with a machine but no hours
    items: list[LineItem] = field(default_factory=list)
    table_total_usd: Decimal | None = None  # the file's own Totals row, when it has one
    table_total_hours: Decimal | None = None
    dataset: str = ""  # the EMPIAR entry its comments name ("EMPIAR-10061"), when they name one

    @property
    def computed_ec2(self) -> Decimal:
        return sum((s.computed_usd for s in self.steps), Decimal(0))

    @property
    def recorded_ec2(self) -> Decimal:
        return sum((s.recorded_usd or Decimal(0) for s in self.steps), Decimal(0))

    @property
    def items_usd(self) -> Decimal:
        return sum((i.recorded_usd for i in self.items), Decimal(0))

    @property
    def elapsed_hours(self) -> Decimal:
        return sum((s.total_hours for s in self.steps), Decimal(0))


def _dec(text: str | None, what: str, row: int) -> Decimal | None:
    text = (text or "").strip().lstrip("$").replace(",", "")
    if not text:
        return None
    try:
        value = Decimal(text)
    except ArithmeticError:
        raise CryocloudError(f"row {row}: {what} = {text!r} is not a number", "fix that cell of the workflow file") from None
    if value < 0:
        raise CryocloudError(f"row {row}: {what} = {value} is negative", "fix that cell of the workflow file")
    return value


def parse_workflow(text: str, path: str = "<workflow>", catalog: Catalog | None = None) -> Workflow:
    rows = list(csv.DictReader(io.StringIO("\n".join(ln for ln in text.splitlines() if not ln.startswith("#")))))
    if not rows:
        raise CryocloudError(f"{path}: no rows", "a workflow CSV has a header and one row per step")
    wf = Workflow(path)
    named = next((m.group(0) for ln in text.splitlines() if ln.startswith("#")
                  for m in [re.search(r"EMPIAR-\d+", ln)] if m), "")
    wf.dataset = named
    first_with_machine = True
    for n, raw in enumerate(rows, start=2):
        r = {COLUMN_ALIASES.get(k.strip(), k.strip()): (v or "").strip() for k, v in raw.items() if k}
        name = r.get("step", "") or f"row {n}"
        recorded = _dec(r.get("recorded_usd"), "recorded_usd", n)
        if name.lower() in TOTAL_LABELS:
            wf.table_total_usd, wf.table_total_hours = recorded, _dec(r.get("total_hours"), "total_hours", n)
            continue
        machine = r.get("machine", "")
        if not machine:
            if recorded is not None:
                wf.items.append(LineItem(name, recorded))
            continue
        if catalog is not None:
            catalog.get(machine)  # unknown type -> error with close names
        staging = _dec(r.get("staging_hours"), "staging_hours", n)
        running = _dec(r.get("running_hours"), "running_hours", n)
        if running is None:
            wf.unpriced.append(f"{name} ({r.get('count') or 1}x {machine}): no hours given")
            continue
        staging = staging or Decimal(0)
        total = _dec(r.get("total_hours"), "total_hours", n) or staging + running
        usd = _dec(r.get("usd_per_hour"), "usd_per_hour", n)
        if usd is None:
            raise CryocloudError(f"{path} row {n} ({name}): no usd_per_hour", "give the price the step paid")
        billed = r.get("billed") or ("running" if first_with_machine and staging > 0 else "total")
        if billed not in ("total", "running"):
            raise CryocloudError(f"row {n}: billed = {billed!r}", "write billed as 'total' or 'running'")
        first_with_machine = False
        wf.steps.append(Step(name, machine, int(_dec(r.get("count"), "count", n) or 1), usd, staging, running,
                             total, billed, recorded, _dec(r.get("workstation_hours"), "workstation_hours", n)))
    return wf


def load_workflow(path: Path, catalog: Catalog | None = None) -> Workflow:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise CryocloudError(f"cannot read workflow {path}: {e.strerror}", "give the path of a workflow CSV") from None
    return parse_workflow(text, str(path), catalog)


def storage_prices() -> dict[str, Decimal]:
    return {r["tier"]: Decimal(r["usd_per_gb_month"]) for r in read_data_csv("storage_prices.csv")}
