"""The cryocloud:* tags every object cryocloud stores carries (DESIGN: owner, project, job, expires).

S3 stores send them with each PUT (`x-amz-tagging`), so a cleanup or a cost report can find cryocloud's
objects by tag. Content-addressed objects are shared by every later push that needs the same bytes: their
tags name the push that first uploaded them. `cryocloud:tier` is not set at upload; `storage/tiers.py` sets
it from a reference count over all manifests (which project's lifecycle rule governs the object).
The local-folder store accepts tags and ignores them (a folder has no tiers and no tag-based cleanup).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

OWNER, PROJECT, JOB, EXPIRES, TIER = (
    "cryocloud:owner", "cryocloud:project", "cryocloud:job", "cryocloud:expires", "cryocloud:tier",
)
LEDGER = "cryocloud:ledger"  # on EC2 resources: which ledger launched them (ledger_id), so a sweep judges only its own
NEVER = "never"
NONE = "-"  # a tag that does not apply (no job for a project snapshot, no project for a plain push)
JOB_DAYS = 7  # job staging data expires when `cleanup --storage` would remove it by default
_BAD = re.compile(r"[^A-Za-z0-9 +\-=._:/@]")  # S3 allows only these in tag keys and values


def clean(value: str) -> str:
    """A value S3 accepts as a tag: disallowed characters become '_', at most 256 characters."""
    return _BAD.sub("_", value)[:256] or NONE


def owner() -> str:
    try:
        from cryocloud.settings import load_settings

        return load_settings().user
    except Exception:  # a broken config must not stop a transfer; the login name is the default anyway
        import getpass

        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return NONE


def ledger_id(ledger_path: Path) -> str:
    """A short name for one ledger (this host, this file): two ledgers of one user never judge each other's jobs."""
    import hashlib
    import socket

    return hashlib.sha256(f"{socket.gethostname()}:{ledger_path.resolve()}".encode()).hexdigest()[:12]


def expires_in(days: float, now: float | None = None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime((time.time() if now is None else now) + days * 86400))


def make(project: str = "", job: str = "", expires: str = NEVER, who: str = "") -> dict[str, str]:
    """The four cryocloud tags, every value S3-safe."""
    return {OWNER: clean(who or owner()), PROJECT: clean(project or NONE), JOB: clean(job or NONE),
            EXPIRES: clean(expires or NEVER)}


def for_job(name: str, project: str, now: float | None = None) -> dict[str, str]:
    """Tags for job staging data (`jobs/<job>-in`): expires when cleanup would take it."""
    return make(project, name.removeprefix("jobs/"), expires_in(JOB_DAYS, now))
