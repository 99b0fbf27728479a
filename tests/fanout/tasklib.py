"""A small real fan-out task for the tests: `python3 TASK SEED [FAIL_SEED]` writes model.pdb and score.sc with a
score that depends on the seed only (so every backend gives the same best set); it exits 3 when SEED is
FAIL_SEED, as a task that always fails does."""

from __future__ import annotations

import sys
from pathlib import Path

TASK = Path(__file__).resolve().parent / "tasklib.py"


def score(seed: int) -> float:
    return round(((seed * 7919) % 101) / 10.0 - 5.0, 3)


def jobfile(tasks: int, keep: int, retries: int = 0, fail_seed: int = 0, extra: str = "") -> str:
    return (f'command = ["python3", "{TASK}", "{{seed}}", "{fail_seed}"]\n'
            f'outputs = ["model.pdb"]\ntasks = {tasks}\nretries = {retries}\n{extra}'
            f'[select]\nfile = "score.sc"\ncolumn = "total_score"\nkeep = {keep}\n')


if __name__ == "__main__":
    seed = int(sys.argv[1])
    if len(sys.argv) > 2 and int(sys.argv[2]) == seed:
        print(f"seed {seed}: failing on purpose", file=sys.stderr)
        raise SystemExit(3)
    Path("model.pdb").write_text(f"REMARK seed {seed}\nEND\n")
    Path("score.sc").write_text(f"SEQUENCE: AAAA\nSCORE: total_score description\nSCORE: {score(seed)} model\n")
