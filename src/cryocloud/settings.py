"""Settings, resolved once: CRYOCLOUD_* environment > config file > defaults.

The config file is TOML, at `$CRYOCLOUD_CONFIG`, else `$CRYOCLOUD_HOME/config.toml` when CRYOCLOUD_HOME is
set, else `~/.config/cryocloud/config.toml`. Every key of every section can be overridden by an environment
variable named `CRYOCLOUD_<SECTION>_<KEY>` (top-level keys: `CRYOCLOUD_<KEY>`). Unknown keys are errors
with a "did you mean" hint, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryocloud.errors import ConfigError, close_matches


def private_dir(path: Path) -> None:
    """cryocloud's home and its folders are the user's own (0700), whatever the umask, when cryocloud makes them."""
    if not path.exists():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)


@dataclass(frozen=True)
class General:
    default_profile: str = "local"
    workstation_usd_per_hour: float = 0.63
    user: str = ""


@dataclass(frozen=True)
class LocalSection:
    cpus: int = 0  # 0: all cores of this machine
    gpus: int = 0
    mpi_launcher: list[str] = field(default_factory=lambda: ["mpirun", "--oversubscribe", "-n", "{ranks}"])
    poll_seconds: float = 1.0  # monitor passes (job ends it records, queued jobs it starts)
    monitor_linger: float = 0.0  # s the monitor stays after the last job (DESIGN: it exits when none is active)


@dataclass(frozen=True)
class StorageSection:
    url: str = ""  # s3://bucket/prefix or a local folder; empty: $CRYOCLOUD_HOME/store
    endpoint_url: str = ""  # also AWS_ENDPOINT_URL_S3
    region: str = ""
    ca_bundle: str = ""  # PEM file of the CA(s) an HTTPS endpoint's certificate is checked against; also AWS_CA_BUNDLE


@dataclass(frozen=True)
class AwsSection:
    region: str = "us-east-1"
    endpoint_url_ec2: str = ""  # also AWS_ENDPOINT_URL_EC2


@dataclass(frozen=True)
class ServerSection:
    url: str = ""  # facility mode: this `cryocloud serve` takes every submission (the queue command never opens the ledger)
    project_roots: list[str] = field(default_factory=list)  # folders API jobs may name files under; none: API submit refused
    smtp_host: str = ""  # notifications by email go through this SMTP server (none: webhooks only)
    smtp_port: int = 25
    smtp_from: str = "cryocloud@localhost"


SECTIONS: dict[str, type] = {"": General, "local": LocalSection, "storage": StorageSection, "aws": AwsSection,
                             "server": ServerSection}
# Free-form tables: profiles are checked against their backend's keys; budgets are "project:NAME" / "user:NAME".
FREE_TABLES = ("profiles", "budgets")


@dataclass(frozen=True)
class Profile:
    """A named place to run jobs: a backend plus its settings (partition, instance type, ...)."""

    name: str
    backend: str
    options: dict[str, Any] = field(default_factory=dict)

    def pass_env(self) -> tuple[str, ...]:
        """Names (or patterns) this profile's jobs get beyond what every job gets (jobs/environment.PASS)."""
        value = self.options.get("pass_env", [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"profile {self.name!r}: pass_env must be a list of variable names or patterns",
                              'e.g. pass_env = ["MY_LAB_*", "SCRATCH"]')
        return tuple(value)


@dataclass(frozen=True)
class Settings:
    home: Path
    config_path: Path
    general: General = field(default_factory=General)
    local: LocalSection = field(default_factory=LocalSection)
    storage: StorageSection = field(default_factory=StorageSection)
    aws: AwsSection = field(default_factory=AwsSection)
    server: ServerSection = field(default_factory=ServerSection)
    profiles: dict[str, Profile] = field(default_factory=dict)
    budgets: dict[str, float] = field(default_factory=dict)

    @property
    def ledger_path(self) -> Path:
        return self.home / "ledger.sqlite"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def user(self) -> str:
        return self.general.user or _login()

    @property
    def local_cpus(self) -> int:
        return self.local.cpus or (os.cpu_count() or 1)

    @property
    def local_machine(self) -> str:
        """This workstation as the ledger names it (jobs.machine of local jobs)."""
        return f"workstation ({self.local_cpus} CPUs)"

    def pass_env(self) -> list[str]:
        """What any profile passes its jobs beyond the standard set (before the profile is known)."""
        return [n for p in self.profiles.values() for n in p.pass_env()]

    def profile(self, name: str) -> Profile:
        from cryocloud.backends.registry import BACKENDS

        if name in self.profiles:
            return self.profiles[name]
        if name in BACKENDS:
            return Profile(name=name, backend=name)
        valid = sorted(set(self.profiles) | set(BACKENDS))
        raise ConfigError(
            f"unknown backend or profile {name!r}",
            close_matches(name, valid) + f"; profiles are defined under [profiles.NAME] in {self.config_path}",
        )


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def default_home() -> Path:
    if os.environ.get("CRYOCLOUD_HOME"):
        return Path(os.environ["CRYOCLOUD_HOME"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "cryocloud"


def default_config_path() -> Path:
    if os.environ.get("CRYOCLOUD_CONFIG"):
        return Path(os.environ["CRYOCLOUD_CONFIG"]).expanduser()
    if os.environ.get("CRYOCLOUD_HOME"):
        return Path(os.environ["CRYOCLOUD_HOME"]).expanduser() / "config.toml"
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "cryocloud" / "config.toml"


def _coerce(section: str, key: str, value: Any, typ: Any, source: str) -> Any:
    label = f"{section}.{key}" if section else key
    out = coerce(label, value, typ, source)
    if isinstance(out, float | int) and out < 0:
        raise ConfigError(f"{source}: {label} = {value!r} must not be negative", f"fix the value of {label}")
    return out


def coerce(label: str, value: Any, typ: Any, source: str) -> Any:
    """A config value as the field's type (float, int, str, or "list[str]" from a shell-like string or a list);
    a wrong type is one ConfigError naming `source` and `label`. Every reader of a TOML settings file uses it."""
    try:
        if typ in ("float", float):
            if isinstance(value, bool):
                raise ValueError
            out: Any = float(value)
        elif typ in ("int", int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            out = int(value)
        elif typ in ("list[str]",):
            out = shlex.split(value) if isinstance(value, str) else [str(v) for v in value]
        else:
            if not isinstance(value, str):
                raise ValueError
            out = value
    except (TypeError, ValueError):
        raise ConfigError(
            f"{source}: {label} = {value!r} is not a valid {typ if isinstance(typ, str) else typ.__name__}",
            f"fix the value of {label}",
        ) from None
    return out


def _section(name: str, cls: type, table: dict[str, Any], source: str, env: dict[str, str]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in table:
        if key not in fields:
            where = f"[{name}]" if name else "the top level"
            raise ConfigError(
                f"{source}: unknown key {key!r} in {where}", close_matches(key, list(fields))
            )
    values = {k: _coerce(name, k, v, fields[k].type, source) for k, v in table.items()}
    for key, f in fields.items():
        var = "CRYOCLOUD_" + (f"{name}_{key}" if name else key).upper()
        if var in env:
            values[key] = _coerce(name, key, env[var], f.type, f"environment variable {var}")
    return cls(**values)


def load_settings(env: dict[str, str] | None = None, path: Path | None = None) -> Settings:
    """Read the config file (if any) and the environment into one frozen Settings."""
    env = dict(os.environ if env is None else env)
    path = path or default_config_path()
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}", "check quotes and brackets on that line") from None
        except OSError as e:
            raise ConfigError(f"cannot read {path}: {e.strerror}", "check the file's permissions") from None
    source = str(path)
    allowed = set(SECTIONS) - {""} | set(FREE_TABLES) | {f.name for f in dataclasses.fields(General)}
    for key, val in raw.items():
        if key not in allowed:
            raise ConfigError(f"{source}: unknown key or section {key!r}", close_matches(key, allowed))
        if key in set(SECTIONS) | set(FREE_TABLES) and not isinstance(val, dict):
            raise ConfigError(f"{source}: {key!r} must be a [{key}] table", f"write it as [{key}] with keys below")
    _check_env_names(env)
    top = {k: v for k, v in raw.items() if k not in SECTIONS and k not in FREE_TABLES}
    if "CRYOCLOUD_BACKEND" in env:  # the documented short name for the default profile
        env.setdefault("CRYOCLOUD_DEFAULT_PROFILE", env["CRYOCLOUD_BACKEND"])
    parts = {
        "general": _section("", General, top, source, env),
        **{name: _section(name, cls, raw.get(name, {}), source, env) for name, cls in SECTIONS.items() if name},
    }
    settings = Settings(
        home=default_home(),
        config_path=path,
        profiles=_profiles(raw.get("profiles", {}), source),
        budgets=_budgets(raw.get("budgets", {}), source),
        **parts,
    )
    settings.profile(settings.general.default_profile)  # fail early on an unknown default
    return settings


# CRYOCLOUD_* variables that are not CRYOCLOUD_<SECTION>_<KEY>: where state lives, the short name for the default
# profile, tracebacks, the node's settings (NodeSettings) and a fan-out shard's place (set by the agent)
OTHER_VARS = ("CRYOCLOUD_HOME", "CRYOCLOUD_CONFIG", "CRYOCLOUD_BACKEND", "CRYOCLOUD_DEBUG", "CRYOCLOUD_SCRATCH",
              "CRYOCLOUD_STREAM_SECONDS", "CRYOCLOUD_TASK_INDEX", "CRYOCLOUD_TASK_COUNT",
              "CRYOCLOUD_TOKEN")  # the API token of facility mode (app/remote.py): never passed to a job


def known_env_names() -> set[str]:
    names = set(OTHER_VARS)
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            names.add("CRYOCLOUD_" + (f"{section}_{f.name}" if section else f.name).upper())
    return names


def _check_env_names(env: dict[str, str]) -> None:
    """A mistyped CRYOCLOUD_* variable is refused as a mistyped config key is, never silently ignored."""
    known = known_env_names()
    for var in sorted(env):
        if var.startswith("CRYOCLOUD_") and var not in known:
            raise ConfigError(f"unknown environment variable {var}", close_matches(var, known))


def _profiles(table: dict[str, Any], source: str) -> dict[str, Profile]:
    from cryocloud.backends.registry import BACKENDS

    out = {}
    for name, body in table.items():
        if not isinstance(body, dict) or "backend" not in body:
            raise ConfigError(
                f"{source}: [profiles.{name}] needs a backend key", "add e.g. backend = \"slurm\" to that table"
            )
        backend = body["backend"]
        if backend not in BACKENDS:
            raise ConfigError(
                f"{source}: [profiles.{name}] names unknown backend {backend!r}", close_matches(backend, BACKENDS)
            )
        keys = BACKENDS[backend].profile_keys()
        for key in body:
            if key != "backend" and key not in keys:
                raise ConfigError(
                    f"{source}: unknown key {key!r} in [profiles.{name}] (backend {backend})",
                    close_matches(key, keys) if keys else f"the {backend} backend takes no settings",
                )
        out[name] = Profile(name=name, backend=backend, options={k: v for k, v in body.items() if k != "backend"})
    return out


def _budgets(table: dict[str, Any], source: str) -> dict[str, float]:
    out = {}
    for key, val in table.items():
        kind, _, name = key.partition(":")
        if kind not in ("project", "user") or not name:
            raise ConfigError(
                f"{source}: budget key {key!r} is not 'project:NAME' or 'user:NAME'",
                'write e.g. "project:betagal" = 200.0 under [budgets]',
            )
        out[key] = _coerce("budgets", key, val, float, source)
    return out


@dataclass(frozen=True)
class NodeSettings:
    """What the agent on a node reads of its environment, read once (a node has no cryocloud config)."""

    scratch: Path  # node-local scratch for a staged job (CRYOCLOUD_SCRATCH, else TMPDIR, else /tmp)
    stream_seconds: float = 15.0  # how often a staged job pushes its folder back (CRYOCLOUD_STREAM_SECONDS)
    slurm_job_id: str = ""  # SLURM_JOB_ID when Slurm runs the agent

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> NodeSettings:
        env = dict(os.environ if env is None else env)
        seconds = _coerce("", "stream_seconds", env.get("CRYOCLOUD_STREAM_SECONDS", "15"), float,
                          "environment variable CRYOCLOUD_STREAM_SECONDS")
        base = env.get("CRYOCLOUD_SCRATCH") or env.get("TMPDIR") or "/tmp"
        return cls(Path(base), seconds, env.get("SLURM_JOB_ID", ""))


def ec2_endpoint(settings: Settings | None = None, env: dict[str, str] | None = None) -> str | None:
    """The EC2 API endpoint: AWS_ENDPOINT_URL_EC2 (as boto3 reads it), else [aws] endpoint_url_ec2 (or
    CRYOCLOUD_AWS_ENDPOINT_URL_EC2), else AWS's own."""
    env = dict(os.environ if env is None else env)
    configured = settings.aws.endpoint_url_ec2 if settings else env.get("CRYOCLOUD_AWS_ENDPOINT_URL_EC2", "")
    return env.get("AWS_ENDPOINT_URL_EC2") or configured or None
