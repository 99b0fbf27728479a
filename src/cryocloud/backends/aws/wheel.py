"""The exact cryocloud that submitted a job, as a wheel the node installs with `pip install --no-deps`.

Built from the lab's install (editable or not: the files Python imports cryocloud from, plus the installed
METADATA), byte for byte reproducible (fixed times, sorted names), so the same code makes the same wheel and the
bucket keeps it once: `wheels/<sha256 of the files, 16 hex>/cryocloud-<version>-py3-none-any.whl`. A node thus
runs what the lab runs, never what an index serves that day, and needs no Internet to start.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cryocloud

DIST = "cryocloud"
SKIP_DIRS = ("__pycache__",)
SKIP_SUFFIXES = (".pyc", ".pyo")
STAMP = (1980, 1, 1, 0, 0, 0)  # zip's earliest date: the same files give the same bytes


@dataclass(frozen=True)
class Wheel:
    name: str  # cryocloud-0.1.0-py3-none-any.whl
    data: bytes
    digest: str  # of the package's files: what makes two builds the same

    @property
    def key(self) -> str:
        return f"wheels/{self.digest[:16]}/{self.name}"


def _files(package: Path) -> list[Path]:
    return sorted(p for p in package.rglob("*") if p.is_file() and not any(d in p.parts for d in SKIP_DIRS)
                  and p.suffix not in SKIP_SUFFIXES)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build() -> Wheel:
    """The running cryocloud as a wheel (in memory: the package is well under a megabyte)."""
    package = Path(cryocloud.__file__).parent
    dist = importlib.metadata.distribution(DIST)
    version = dist.version
    info = f"{DIST}-{version}.dist-info"
    members: list[tuple[str, bytes]] = []
    files = hashlib.sha256()
    for path in _files(package):
        name = f"{DIST}/{path.relative_to(package).as_posix()}"
        data = path.read_bytes()
        files.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        members.append((name, data))
    metadata = (dist.read_text("METADATA") or f"Metadata-Version: 2.1\nName: {DIST}\nVersion: {version}\n").encode()
    members.append((f"{info}/METADATA", metadata))
    members.append((f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: cryocloud\nRoot-Is-Purelib: true\n"
                                     b"Tag: py3-none-any\n"))
    entry_points = dist.read_text("entry_points.txt")
    if entry_points:
        members.append((f"{info}/entry_points.txt", entry_points.encode()))
    record = "\n".join([*(_record_line(n, d) for n, d in members), f"{info}/RECORD,,"]) + "\n"
    members.append((f"{info}/RECORD", record.encode()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            entry = zipfile.ZipInfo(name, STAMP)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(entry, data)
    return Wheel(f"{DIST}-{version}-py3-none-any.whl", buf.getvalue(), files.hexdigest())
