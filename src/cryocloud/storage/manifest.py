"""Manifests: what a push stored, as relative paths -> content hashes; and the store's key layout.

Layout under a store's root (an S3 prefix or a folder):

    cas/b/<h[:2]>/<sha256>      one large file's bytes (a "blob"), named by their SHA-256
    cas/p/<sha256>              a pack: small files' bytes back to back, named by the SHA-256 of its index
                                entries (file hashes, offsets, sizes: they fix every byte); older packs were
                                named by the SHA-256 of their bytes. Readers never rely on which.
    cas/i/<sha256>.json         the pack's index: [[file sha256, offset, size], ...] (for dedup by later pushes),
                                and the SHA-256 of the pack's bytes (what a store's stored checksum is compared to)
    manifests/<name>.json       one manifest per push (a job's inputs, outputs, a project snapshot)

A manifest is written last, after every object it names is known to exist, so a manifest never points at a
missing object; every byte read back is checked against its SHA-256. Its `checksum` says what the store keeps of
each object: {"algorithm": "sha256", "whole_up_to": N} when every object of at most N bytes (put in one request)
carries its whole SHA-256 on the store (S3); absent when the store keeps none (a folder). Larger objects carry a
composite one (S3 multipart) that only a download and hash (`storage verify --full`) can stand in for.

A large file's entry also carries the XXH3-128 of its bytes (`xxh128`, format 2), computed at push in the same
read as its SHA-256. A pull checks a large file's bytes against it: it is ~10x cheaper than SHA-256 (18 vs 1.8
GB/s here), and on a 2-core machine that shares its cores with TLS the SHA-256 was the difference between the
slowest and the fastest large-file download (BENCHMARKS.md, issue 16). It is not a cryptographic hash, and
needs not be: it guards against damage, 128 bits wide, as rsync's transfer checksum does; the manifest holding
it is what a pull trusts, as it trusts the SHA-256 beside it. The SHA-256 stays the file's name (its key) and
what `storage verify --full` checks; entries without an xxh128 (format 1, small files) are checked by SHA-256.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field

from cryocloud.errors import CryocloudError

FORMAT = 2
READS = (1, 2)  # format 1: no xxh128
FIELDS = ["path", "size", "sha256", "mtime_ns", "mode", "pack", "offset", "xxh128"]  # a row may stop short
_NAME = re.compile(r"^[A-Za-z0-9._@+=-]+(/[A-Za-z0-9._@+=-]+)*$")


def blob_key(sha: str) -> str:
    return f"cas/b/{sha[:2]}/{sha}"


def pack_key(sha: str) -> str:
    return f"cas/p/{sha}"


def packidx_key(sha: str) -> str:
    return f"cas/i/{sha}.json"


def manifest_key(name: str) -> str:
    check_name(name)
    return f"manifests/{name}.json"


def check_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name.split("/"):
        raise CryocloudError(
            f"invalid manifest name {name!r}",
            "use letters, digits and ._-@+= separated by '/', e.g. jobs/Class3D-job012-in",
        )
    return name


@dataclass(frozen=True, slots=True)  # one per file: a million of them in a big project
class FileEntry:
    path: str  # relative to the pushed root, '/'-separated
    size: int
    sha256: str
    mtime_ns: int = 0
    mode: int = 0o644
    pack: str = ""  # SHA-256 of the pack holding the bytes; empty: a blob of its own
    offset: int = 0
    xxh128: str = ""  # XXH3-128 of the bytes (large files; see the module's doc); empty: check the SHA-256

    @property
    def key(self) -> str:
        return pack_key(self.pack) if self.pack else blob_key(self.sha256)


@dataclass(frozen=True, slots=True)  # one per file: a million of them in a big project
class LinkEntry:
    path: str
    target: str  # as the link says, relative or absolute


@dataclass
class Manifest:
    name: str
    files: list[FileEntry] = field(default_factory=list)
    links: list[LinkEntry] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)  # empty folders, so the layout comes back exactly
    created: float = field(default_factory=time.time)
    meta: dict[str, str] = field(default_factory=dict)
    checksum: dict[str, object] = field(default_factory=dict)  # see the module's doc

    def whole_checksum(self, size: int) -> bool:
        """Does an object of `size` bytes named by this manifest carry its whole SHA-256 on the store?"""
        return self.checksum.get("algorithm") == "sha256" and size <= int(str(self.checksum.get("whole_up_to", 0)))

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def objects(self) -> set[str]:
        """Every store key this manifest depends on."""
        return {f.key for f in self.files}

    def content(self) -> tuple[object, ...]:
        """What the manifest says, without when it was made: equal content means nothing changed."""
        return (sorted(self.files, key=lambda f: f.path), sorted(self.links, key=lambda x: x.path),
                sorted(self.dirs), sorted(self.meta.items()), sorted(self.checksum.items()))

    def to_json(self) -> bytearray:
        """The manifest as compact JSON, written row by row (a million files: no list of lists in memory), and
        returned as the buffer it was built in (a copy into `bytes` was ~190 MB at a million files, at the push's
        peak)."""
        def dumps(value: object) -> bytes:
            return json.dumps(value, separators=(",", ":")).encode()

        head: dict[str, object] = {"format": FORMAT, "name": self.name, "created": self.created, "meta": self.meta,
                                   "fields": FIELDS}
        if self.checksum:
            head["checksum"] = self.checksum
        out = bytearray(dumps(head)[:-1] + b',"files":[')
        for i, f in enumerate(sorted(self.files, key=_path)):
            if i:
                out += b","
            row = [getattr(f, k) for k in FIELDS]
            out += dumps(row if row[-1] else row[:-1])  # small files: no empty xxh128 (a million rows)
        out += b'],"links":' + dumps([asdict(x) for x in sorted(self.links, key=_path)])
        out += b',"dirs":' + dumps(sorted(self.dirs)) + b"}"
        return out

    @classmethod
    def from_json(cls, data: bytes, where: str = "manifest") -> Manifest:
        try:
            body = json.loads(data)
            if body.get("format") not in READS:
                raise CryocloudError(
                    f"{where} has format {body.get('format')!r}; this cryocloud reads formats "
                    f"{', '.join(map(str, READS))}",
                    "upgrade cryocloud on this machine",
                )
            del data  # (the caller passes it without keeping it: ~190 MB at a million files, freed here)
            fields = body["fields"]
            rows = body["files"]
            files: list[FileEntry] = []
            packs: dict[str, str] = {}
            for i, row in enumerate(rows):  # each row freed as its entry is made; one string per pack, shared
                if len(row) > len(fields):
                    raise ValueError(f"a row has {len(row)} fields, the header names {len(fields)}")
                entry = dict(zip(fields, row, strict=False))
                pack = entry.get("pack", "")
                entry["pack"] = packs.setdefault(pack, pack)
                files.append(FileEntry(**entry))
                rows[i] = None
            links = [LinkEntry(**x) for x in body["links"]]
            return cls(body["name"], files, links, list(body.get("dirs", [])), float(body["created"]),
                       dict(body.get("meta", {})), dict(body.get("checksum", {})))
        except (ValueError, KeyError, TypeError) as e:
            raise CryocloudError(f"{where} is not a valid manifest ({e})", "push again to rewrite it") from None


def _path(x: FileEntry | LinkEntry) -> str:
    return x.path
