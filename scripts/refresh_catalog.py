"""Rebuild src/cryocloud/data/aws_instances.csv and aws_spot_prices.csv from the AWS APIs (needs credentials).

usage: .venv/bin/python scripts/refresh_catalog.py [--regions us-east-1,us-west-2] [--families g5,g6,c7i,...]
Reads DescribeInstanceTypes (vCPU, RAM, GPUs, instance store, network), the Pricing API (on-demand, Linux,
shared tenancy) and DescribeSpotPriceHistory (latest per zone). Credentials come only from boto3's own chain.
Writes a SkyPilot-format snapshot, then runs scripts/build_catalog.py on it so both paths give one format.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import boto3

HERE = Path(__file__).resolve().parent
FAMILIES = "t2,m4,c4,r4,x1,d2,p3,p3dn,g4dn,g5,g6,g6e,p4d,p4de,p5,c6i,c7i,m6i,m7i,r6i,r7i,i4i,x2idn"
REGIONS = "us-east-1,us-east-2,us-west-2,eu-west-1,eu-central-1,ap-northeast-1"


def on_demand(pricing: object, itype: str, region: str) -> float | None:
    resp = pricing.get_products(ServiceCode="AmazonEC2", Filters=[  # type: ignore[attr-defined]
        {"Type": "TERM_MATCH", "Field": f, "Value": v} for f, v in (
            ("instanceType", itype), ("regionCode", region), ("operatingSystem", "Linux"), ("tenancy", "Shared"),
            ("preInstalledSw", "NA"), ("capacitystatus", "Used"))])
    for item in resp.get("PriceList", []):
        terms = json.loads(item)["terms"]["OnDemand"]
        for term in terms.values():
            for dim in term["priceDimensions"].values():
                return float(dim["pricePerUnit"]["USD"])
    return None


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regions", default=REGIONS)
    ap.add_argument("--families", default=FAMILIES)
    ap.add_argument("--out", type=Path, default=HERE / "aws-vms-refreshed.csv")
    args = ap.parse_args(argv)
    families = set(args.families.split(","))
    pricing = boto3.client("pricing", region_name="us-east-1")
    rows = []
    for region in args.regions.split(","):
        ec2 = boto3.client("ec2", region_name=region)
        zones = {z["ZoneName"]: z["ZoneId"] for z in ec2.describe_availability_zones()["AvailabilityZones"]}
        for page in ec2.get_paginator("describe_instance_types").paginate():
            for it in page["InstanceTypes"]:
                name = it["InstanceType"]
                if name.split(".")[0] not in families:
                    continue
                price = on_demand(pricing, name, region)
                if price is None:
                    continue
                gpus = it.get("GpuInfo", {}).get("Gpus", [])
                spot = ec2.describe_spot_price_history(InstanceTypes=[name], ProductDescriptions=["Linux/UNIX"],
                                                       MaxResults=50)["SpotPriceHistory"]
                latest: dict[str, str] = {}
                for s in sorted(spot, key=lambda s: s["Timestamp"]):
                    latest[s["AvailabilityZone"]] = s["SpotPrice"]
                for zone_name, zone_id in sorted(zones.items()):
                    rows.append({"InstanceType": name, "AcceleratorName": gpus[0]["Name"] if gpus else "",
                                 "AcceleratorCount": gpus[0]["Count"] if gpus else "",
                                 "vCPUs": it["VCpuInfo"]["DefaultVCpus"],
                                 "MemoryGiB": it["MemoryInfo"]["SizeInMiB"] / 1024,
                                 "GpuInfo": str(it.get("GpuInfo", "")), "Price": price,
                                 "SpotPrice": latest.get(zone_name, ""), "Region": region,
                                 "AvailabilityZone": zone_id})
    with args.out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]) if rows else ["InstanceType"])
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} rows -> {args.out}; now: .venv/bin/python scripts/build_catalog.py {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
