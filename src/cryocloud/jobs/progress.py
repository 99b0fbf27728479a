"""What an iterative RELION job (Class2D, Class3D, Refine3D, InitialModel) has written so far, for a face to show:
per iteration the resolution and the class distribution (its `run_itNNN_model.star`), and the class averages of
the last iteration (`run_itNNN_classes.mrcs`) as grey PNG images. Reads only what RELION wrote; writes nothing."""

from __future__ import annotations

import math
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from cryocloud.errors import CryocloudError
from cryocloud.jobs.inputs import Loop, read_star

MODEL = re.compile(r"^(?P<root>.*)_it(?P<it>\d{3})_model\.star$")  # run_it025_model.star, run_ct3_it025_...
MRC_MODES = {0: ("b", 1), 1: ("h", 2), 2: ("f", 4), 6: ("H", 2), 12: ("e", 2)}  # MRC mode -> struct code, bytes


@dataclass(frozen=True)
class Iteration:
    number: int
    resolution: float | None  # Å (RELION's _rlnCurrentResolution)
    distribution: list[float]  # each class's share of the particles


def model_files(folder: Path) -> list[tuple[int, Path]]:
    """(iteration, model.star) of the job's main output, by iteration (a continue's `_ct` files included)."""
    found: dict[int, Path] = {}
    for path in sorted(folder.glob("*_it[0-9][0-9][0-9]_model.star")):
        m = MODEL.match(path.name)
        if m and not path.name.startswith(("run_half", "_")):
            found[int(m.group("it"))] = path
    return sorted(found.items())


def _float(text: str | None) -> float | None:
    """A STAR value as a finite number, or None (RELION writes `inf` for iteration 0's resolution)."""
    try:
        value = float(text) if text not in (None, "", ".", "?") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def iterations(folder: Path) -> list[Iteration]:
    """Per iteration: resolution and class distribution. A file being written (unreadable) is left out."""
    out = []
    for number, path in model_files(folder):
        try:
            blocks = read_star(path)
        except CryocloudError:
            continue  # RELION is writing it right now: it shows on the next look
        general = blocks.get("model_general")
        classes = blocks.get("model_classes")
        resolution = _float(general.get("rlnCurrentResolution")) if isinstance(general, dict) else None
        shares = classes.columns.get("rlnClassDistribution", []) if isinstance(classes, Loop) else []
        out.append(Iteration(number, resolution, [_float(s) or 0.0 for s in shares]))
    return out


def classes_file(folder: Path) -> Path | None:
    """The last iteration's class averages (a 2D job's stack), or None."""
    stacks = sorted(folder.glob("*_it[0-9][0-9][0-9]_classes.mrcs"))
    return stacks[-1] if stacks else None


def mrc_sections(path: Path) -> tuple[int, int, int, list[bytes]]:
    """(nx, ny, mode, raw bytes of each section) of an MRC stack, read by its header (MRC2014, little-endian)."""
    with open(path, "rb") as f:
        header = f.read(1024)
        if len(header) < 1024:
            raise CryocloudError(f"{path}: not an MRC file (short header)", "is RELION still writing it?")
        nx, ny, nz, mode = struct.unpack("<4i", header[:16])
        extended = struct.unpack("<i", header[92:96])[0]
        if mode not in MRC_MODES or not (0 < nx <= 4096 and 0 < ny <= 4096 and 0 < nz <= 10000):
            raise CryocloudError(f"{path}: MRC mode {mode} or size {nx}x{ny}x{nz} not understood",
                                 "class averages are float32 (mode 2) as RELION writes them")
        size = nx * ny * MRC_MODES[mode][1]
        f.seek(1024 + max(0, extended))
        sections = [f.read(size) for _ in range(nz)]
    if any(len(s) < size for s in sections):
        raise CryocloudError(f"{path}: shorter than its header says", "is RELION still writing it?")
    return nx, ny, mode, sections


def grey_png(nx: int, ny: int, mode: int, raw: bytes) -> bytes:
    """One section as an 8-bit grey PNG, scaled from its own minimum (black) to maximum (white)."""
    code, _ = MRC_MODES[mode]
    values = struct.unpack(f"<{nx * ny}{code}", raw)
    low, high = min(values), max(values)
    scale = 255.0 / (high - low) if high > low else 0.0
    rows = []
    for y in range(ny - 1, -1, -1):  # MRC's first row is the bottom one
        row = values[y * nx:(y + 1) * nx]
        rows.append(b"\0" + bytes(int((v - low) * scale) for v in row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", nx, ny, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))
