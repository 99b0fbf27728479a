"""Refit the planner's runtime model: data/calibration.csv -> data/runtime_model.csv, and print the fit report.

usage: .venv/bin/python scripts/fit_runtime_model.py [--add MEASURED.csv] [--dry-run]
  --add: append the rows of a measured.csv written by scripts/measure_relion_runs.sh to calibration.csv first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cryocloud.planner import calibrate
from cryocloud.planner.catalog import DATA_DIR


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--add", type=Path, help="measured.csv to append to calibration.csv")
    ap.add_argument("--dry-run", action="store_true", help="print the fit, write nothing")
    args = ap.parse_args(argv)
    cal = DATA_DIR / "calibration.csv"
    if args.add and not args.dry_run:
        new = [line for line in args.add.read_text().splitlines()[1:] if line.strip()]
        with cal.open("a") as fh:
            fh.write("\n".join(new) + "\n")
        print(f"appended {len(new)} runs to {cal}")
    fits, gpus = calibrate.fit_all(cal)
    print(calibrate.report(fits))
    print()
    print(calibrate.gpu_report(gpus))
    print()
    print(calibrate.lab_report(fits))
    if not args.dry_run:
        (DATA_DIR / "runtime_model.csv").write_text(calibrate.model_csv(fits))
        (DATA_DIR / "gpu_speeds.csv").write_text(calibrate.gpu_csv(gpus))
        print(f"wrote {DATA_DIR / 'runtime_model.csv'} and {DATA_DIR / 'gpu_speeds.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
