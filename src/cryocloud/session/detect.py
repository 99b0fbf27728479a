"""Which movies in a session folder are complete: polling (inotify misses writes over NFS/SMB), a movie is
settled once its size and mtime have not changed for `settle` seconds, and rsync's `.name.XXXXXX` temporaries
(any hidden file) and names that are not movies (`x.tiff.part`) are never looked at. A settled movie's header is
then checked (truncated, corrupt, pixel size) before anything reads it."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from cryocloud.session.settings import MOVIE_SUFFIXES


@dataclass(frozen=True)
class Seen:
    rel: str  # path relative to the session folder
    size: int
    mtime: float
    closed_at: float  # when it was last changed: the file closed


@dataclass
class _Track:
    size: int
    mtime_ns: int
    changed_at: float  # our clock, when we last saw it change
    first_at: float


@dataclass
class Poll:
    settled: list[Seen] = field(default_factory=list)
    growing: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)  # still being written after `stuck` seconds
    missing_folder: bool = False


def is_movie_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(MOVIE_SUFFIXES)


class Detector:
    """Call `poll(now)` every few seconds; each movie is returned as settled once (pass `known` to skip)."""

    def __init__(self, root: Path, settle: float, stuck: float, known: set[str] | None = None) -> None:
        self.root = root
        self.settle = settle
        self.stuck = stuck
        self.known: set[str] = set(known or ())
        self.tracks: dict[str, _Track] = {}

    def _walk(self) -> list[tuple[str, os.stat_result]]:
        out: list[tuple[str, os.stat_result]] = []
        stack = [""]
        while stack:
            rel = stack.pop()
            with os.scandir(self.root / rel if rel else self.root) as it:
                for e in it:
                    if e.name.startswith("."):
                        continue  # rsync's .name.XXXXXX temporaries, and anything hidden
                    r = f"{rel}/{e.name}" if rel else e.name
                    if e.is_dir(follow_symlinks=False):
                        stack.append(r)
                    elif r not in self.known and is_movie_name(e.name) and e.is_file():
                        try:
                            out.append((r, e.stat()))
                        except FileNotFoundError:
                            continue  # renamed away between listing and stat
        return out

    def poll(self, now: float) -> Poll:
        result = Poll()
        try:
            found = self._walk()
        except (FileNotFoundError, NotADirectoryError):
            result.missing_folder = True
            return result
        except OSError:  # an unmounted share answers ENOTCONN, EIO, ESTALE...
            result.missing_folder = True
            return result
        present = set()
        for rel, st in found:
            present.add(rel)
            t = self.tracks.get(rel)
            if t is None or (t.size, t.mtime_ns) != (st.st_size, st.st_mtime_ns):
                # stable means stable as we saw it: the share's clock (mtime) may differ from ours
                self.tracks[rel] = t = _Track(st.st_size, st.st_mtime_ns, now, t.first_at if t else now)
            if now - t.changed_at >= self.settle and st.st_size > 0:
                result.settled.append(Seen(rel, st.st_size, st.st_mtime, st.st_mtime))
                self.known.add(rel)
                del self.tracks[rel]
            else:
                result.growing.append(rel)
                if now - t.first_at >= self.stuck:
                    result.stuck.append(rel)
        for rel in set(self.tracks) - present:  # renamed or deleted before it settled
            del self.tracks[rel]
        result.settled.sort(key=lambda s: (s.closed_at, s.rel))
        return result


# ---- header checks --------------------------------------------------------------------------------------------

MRC_MODE_BYTES = {0: 1, 1: 2, 2: 4, 6: 2, 12: 2, 101: 0.5}


@dataclass(frozen=True)
class Check:
    ok: bool
    problem: str = ""
    hint: str = ""
    frames: int = 0
    pixel_size: float = 0.0  # from the header, 0 when it says nothing


def check_movie(path: Path, pixel_size: float) -> Check:
    """Is the file a whole movie of the kind its name says, with the session's pixel size?"""
    suffix = path.suffix.lower()
    try:
        with open(path, "rb") as f:
            if suffix in (".mrc", ".mrcs"):
                return _check_mrc(f.read(1024), os.fstat(f.fileno()).st_size, pixel_size)
            return _check_tiff(f, os.fstat(f.fileno()).st_size, eer=suffix == ".eer")
    except OSError as e:
        return Check(False, f"cannot read it: {e.strerror}", "check the share and its permissions")


def _check_mrc(head: bytes, size: int, pixel_size: float) -> Check:
    if len(head) < 1024 or head[208:212] not in (b"MAP ", b"MAP\x00"):
        return Check(False, "not an MRC file (no MAP stamp in its header)", "the file is corrupt: copy it again")
    nx, ny, nz, mode = struct.unpack("<4i", head[:16])
    mx = struct.unpack("<i", head[28:32])[0]
    cella_x = struct.unpack("<f", head[40:44])[0]
    nsymbt = struct.unpack("<i", head[92:96])[0]
    per = MRC_MODE_BYTES.get(mode)
    if per is None or min(nx, ny, nz) <= 0:
        return Check(False, f"MRC header is corrupt (size {nx}x{ny}x{nz}, mode {mode})", "copy the movie again")
    expected = 1024 + max(0, nsymbt) + int(nx * ny * nz * per)
    if size < expected:
        return Check(False, f"truncated: {size} bytes, its header says {expected}",
                     "the transfer stopped part way: copy the movie again (it is then picked up)", nz)
    apix = cella_x / mx if mx > 0 and cella_x > 0 else 0.0
    if apix and pixel_size and abs(apix - pixel_size) > 0.01 * pixel_size:
        return Check(False, f"pixel size {apix:.4g} A in its header, {pixel_size:.4g} A in the session settings",
                     "fix pixel_size in the session settings and restart the watcher (rejected movies are re-checked)",
                     nz, apix)
    return Check(True, frames=nz, pixel_size=apix)


def _check_tiff(f: object, size: int, eer: bool) -> Check:
    """Walk the TIFF's IFD chain: every frame's strips must lie inside the file (a truncated copy does not)."""
    from typing import BinaryIO, cast

    fh = cast(BinaryIO, f)
    head = fh.read(8)
    if head[:4] not in (b"II*\x00", b"MM\x00*"):
        return Check(False, "not a TIFF/EER file (bad magic bytes)", "the file is corrupt: copy it again")
    end = "<" if head[:2] == b"II" else ">"
    (ifd,) = struct.unpack(end + "I", head[4:8])
    frames, last = 0, 0
    seen: set[int] = set()
    while ifd:
        if ifd in seen or ifd + 2 > size:
            return Check(False, "truncated or corrupt: its frame directory points past the end",
                         "copy the movie again", frames)
        seen.add(ifd)
        fh.seek(ifd)
        (n,) = struct.unpack(end + "H", fh.read(2))
        entries = fh.read(12 * n + 4)
        if len(entries) < 12 * n + 4:
            return Check(False, "truncated: a frame directory is cut off", "copy the movie again", frames)
        offsets: list[int] = []
        counts: list[int] = []
        for i in range(n):
            tag, typ, count = struct.unpack(end + "HHI", entries[12 * i: 12 * i + 8])
            if tag in (273, 279):
                values = _tiff_values(fh, end, typ, count, entries[12 * i + 8: 12 * i + 12])
                (offsets if tag == 273 else counts).extend(values)
        last = max([last, *(o + c for o, c in zip(offsets, counts, strict=False))])
        frames += 1
        (ifd,) = struct.unpack(end + "I", entries[12 * n: 12 * n + 4])
    if last > size:
        return Check(False, f"truncated: frame data runs to byte {last}, the file has {size}",
                     "the transfer stopped part way: copy the movie again", frames)
    return Check(True, frames=frames)


def _tiff_values(fh: object, end: str, typ: int, count: int, inline: bytes) -> list[int]:
    from typing import BinaryIO, cast

    width = {3: 2, 4: 4, 16: 8}.get(typ, 4)
    fmt = {2: "H", 4: "I", 8: "Q"}[width]
    if width * count <= 4:
        return list(struct.unpack(end + fmt * count, inline[: width * count]))
    (at,) = struct.unpack(end + "I", inline)
    b = cast(BinaryIO, fh)
    b.seek(at)
    raw = b.read(width * count)
    if len(raw) < width * count:
        return [1 << 62]  # points past the end: truncated
    return list(struct.unpack(end + fmt * count, raw))
