"""Rebuild src/cryocloud/data/aws_instances.csv and aws_spot_prices.csv from a SkyPilot-format price snapshot.

usage: .venv/bin/python scripts/build_catalog.py [SNAPSHOT.csv]   (default: ../shared/reference/aws-vms-skypilot-v7.csv)

Inputs besides the snapshot (all under src/cryocloud/data/): aws_instance_specs.csv (local disk, network),
aws_retired_types.csv (p2/g3 at the founding talk's prices). The GPU model and memory come from the snapshot.
Offline and deterministic; scripts/refresh_catalog.py does the same from the AWS APIs when credentials exist.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "cryocloud" / "data"
DEFAULT_SNAPSHOT = ROOT.parent / "shared" / "reference" / "aws-vms-skypilot-v7.csv"
SNAPSHOT_NOTE = ("skypilot-org/skypilot-catalog catalogs/v7/aws/vms.csv @ 001367d22a0033fac286a8c71aeac7109e431bcb, "
                 "extracted 2026-11-24")  # `spot-prices` shows the date after "extracted" as the data's date
COLUMNS = ["instance_type", "family", "vcpus", "memory_gib", "gpus", "gpu_model", "gpu_memory_gib",
           "local_disk_gb", "local_disk_kind", "network_gbps", "region", "usd_per_hour", "price_source"]


def read_data(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(line for line in fh if not line.startswith("#")))


def gpu_memory(model: str, models: dict[str, dict[str, str]]) -> str:
    return models[model]["memory_gib"] if model in models else ""


def num(text: str) -> str:
    return f"{float(text):g}" if text else ""


def build(snapshot: Path, source_note: str) -> tuple[list[dict[str, str]], list[list[str]]]:
    specs = {r["instance_type"]: r for r in read_data(DATA / "aws_instance_specs.csv")}
    models = {r["model"]: r for r in read_data(DATA / "gpu_models.csv")}
    rows: dict[tuple[str, str], dict[str, str]] = {}
    spot: dict[tuple[str, str, str], str] = {}
    for r in read_data(snapshot):
        itype, region = r["InstanceType"], r["Region"]
        spec = specs.get(itype, {})
        model = r["AcceleratorName"]
        rows.setdefault((itype, region), {
            "instance_type": itype, "family": itype.split(".")[0], "vcpus": num(r["vCPUs"]),
            "memory_gib": num(r["MemoryGiB"]), "gpus": num(r["AcceleratorCount"]) or "0", "gpu_model": model,
            "gpu_memory_gib": gpu_memory(model, models), "local_disk_gb": spec.get("local_disk_gb", "0"),
            "local_disk_kind": spec.get("local_disk_kind", ""), "network_gbps": spec.get("network_gbps", ""),
            "region": region, "usd_per_hour": num(r["Price"]), "price_source": "snapshot",
        })
        if r["SpotPrice"]:  # p4de has two rows per AZ (A100 / A100-80GB); the one with a price wins
            spot[(itype, region, r["AvailabilityZone"])] = f"{float(r['SpotPrice']):g}"
    for r in read_data(DATA / "aws_retired_types.csv"):
        spec = specs.get(r["instance_type"], {})
        rows[(r["instance_type"], r["region"])] = {
            "instance_type": r["instance_type"], "family": r["instance_type"].split(".")[0], "vcpus": r["vcpus"],
            "memory_gib": r["memory_gib"], "gpus": r["gpus"], "gpu_model": r["gpu_model"],
            "gpu_memory_gib": gpu_memory(r["gpu_model"], models), "local_disk_gb": spec.get("local_disk_gb", "0"),
            "local_disk_kind": spec.get("local_disk_kind", ""), "network_gbps": spec.get("network_gbps", ""),
            "region": r["region"], "usd_per_hour": r["usd_per_hour"], "price_source": "founding-talk-2017",
        }
    missing = sorted({k[0] for k, v in rows.items() if not v["network_gbps"]})
    if missing:
        print(f"warning: no network/disk facts for {', '.join(missing)}; add them to aws_instance_specs.csv")
    out = sorted(rows.values(), key=lambda v: (v["instance_type"], v["region"]))
    spot_rows = [[t, reg, az, p] for (t, reg, az), p in sorted(spot.items())]
    return out, spot_rows


def write(out: list[dict[str, str]], spot_rows: list[list[str]], source_note: str) -> None:
    with (DATA / "aws_instances.csv").open("w", newline="") as fh:
        fh.write(f"# Built by scripts/build_catalog.py from {source_note}\n")
        w = csv.DictWriter(fh, COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(out)
    with (DATA / "aws_spot_prices.csv").open("w", newline="") as fh:
        fh.write(f"# Spot prices per AZ id, a dated snapshot: {source_note}\n")
        w2 = csv.writer(fh, lineterminator="\n")
        w2.writerow(["instance_type", "region", "zone", "usd_per_hour"])
        w2.writerows(spot_rows)
    print(f"{len(out)} instance/region rows, {len(spot_rows)} spot rows -> {DATA}")


def main(argv: list[str]) -> int:
    snapshot = Path(argv[0]) if argv else DEFAULT_SNAPSHOT
    out, spot_rows = build(snapshot, SNAPSHOT_NOTE)
    import time

    made = time.strftime("%Y-%m-%d", time.gmtime(snapshot.stat().st_mtime))
    write(out, spot_rows, SNAPSHOT_NOTE if snapshot == DEFAULT_SNAPSHOT else f"{snapshot.name}, extracted {made}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
