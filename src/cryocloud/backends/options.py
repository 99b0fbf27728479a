"""Profile options checked against the dataclass that lists a backend's keys (SlurmOptions, AwsOptions): one
value checker for every backend, so `[profiles.X]` errors read the same wherever they come from."""

from __future__ import annotations

from typing import Any

from cryocloud.errors import ConfigError


def option_value(where: str, key: str, kind: str, v: Any) -> Any:
    """One profile value checked against its field's type (as its options dataclass writes it)."""
    if kind == "str":
        if not isinstance(v, str):
            raise ConfigError(f"{where} {key} = {v!r} must be a string", f'write {key} = "..."')
        return v
    if kind.startswith("tuple[str"):
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ConfigError(f"{where} {key} must be a list of strings", f'write {key} = ["...", "..."]')
        return tuple(v)
    if kind.startswith("dict[str, str]"):
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in [*v, *v.values()]):
            raise ConfigError(f"{where} {key} must be a table of strings", f'write {key} = {{ "key" = "value" }}')
        return dict(v)
    if kind == "bool":
        if not isinstance(v, bool):
            raise ConfigError(f"{where} {key} = {v!r} must be true or false", f"write {key} = true (or false)")
        return v
    if kind == "int":
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError(f"{where} {key} = {v!r} must be a whole number >= 0", f"e.g. {key} = 3")
        return v
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:  # float
        raise ConfigError(f"{where} {key} = {v!r} must be a number >= 0", f"e.g. {key} = 0.05")
    return float(v)


def check_staging(where: str, staging: str) -> None:
    if staging not in ("none", "shared", "s3", "store") and "://" not in staging and not staging.startswith("/"):
        raise ConfigError(
            f"{where} staging = {staging!r} is not a staging mode",
            "use \"none\" (the nodes see the project folder), \"store\" or \"s3\" (the [storage] url), or a "
            "store URL (s3://bucket/prefix or an absolute folder both sides see)",
        )
