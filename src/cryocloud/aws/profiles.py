"""The three AWS profiles `cryocloud sandbox up` and `cryocloud aws bootstrap` leave ready in the config:
`aws` (the plan's cheapest of spot and on-demand), `aws-spot` and `aws-ondemand`.

A profile already there is left as it is (the lab may have edited it) and reported as found. New ones are appended
as TOML text after a dated comment, so the rest of a hand-written config is never rewritten. Each profile names its
own store (`staging`) and region, so no other table of the config is touched.
"""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path
from typing import Any

MARKETS = {"aws": "any", "aws-spot": "spot", "aws-ondemand": "on-demand"}


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's


def ensure(config: Path, common: dict[str, Any], why: str) -> list[tuple[str, str]]:
    """Append the profiles the config lacks; [(name, "made" | "found")]."""
    text = config.read_text(encoding="utf-8") if config.exists() else ""
    have = tomllib.loads(text).get("profiles", {}) if text else {}
    out, blocks = [], []
    for name, market in MARKETS.items():
        if name in have:
            out.append((name, "found"))
            continue
        lines = [f"[profiles.{name}]", 'backend = "aws"', f"market = {_toml(market)}"]
        lines += [f"{k} = {_toml(v)}" for k, v in common.items()]
        blocks.append("\n".join(lines))
        out.append((name, "made"))
    if blocks:
        config.parent.mkdir(parents=True, exist_ok=True)
        head = f"# {why}, {time.strftime('%Y-%m-%d %H:%M')}: the AWS backend's profiles (docs/sandbox.md)"
        sep = "\n" if text and not text.endswith("\n") else ""
        config.write_text(text + sep + ("\n" if text else "") + head + "\n" + "\n\n".join(blocks) + "\n",
                          encoding="utf-8")
    return out
