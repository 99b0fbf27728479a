"""A simulated microscope: synthetic movies written at a given rate the way acquisition software writes them, in
pieces (header, then frame by frame), some in place, some under a temporary name renamed at the end, some
through rsync's `.name.XXXXXX` temporaries. The frames are Poisson counts of a textured field drifting a few
pixels over the exposure, so RELION's MotionCorr has something to correct."""

from __future__ import annotations

import os
import re
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryocloud.errors import CryocloudError

if TYPE_CHECKING:
    import numpy as np

MODES = ("inplace", "rename", "rsync")
_UNITS = {"h": 3600.0, "hour": 3600.0, "min": 60.0, "m": 60.0, "s": 1.0, "sec": 1.0}


def parse_rate(text: str) -> float:
    """'1000/h', '20/min', '2/s' -> movies per hour."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*/\s*([a-z]+)\s*", text.lower())
    if not m or m.group(2) not in _UNITS or float(m.group(1)) <= 0:
        raise CryocloudError(f"rate {text!r} is not a rate", "write it as movies per unit: 1000/h, 20/min or 2/s")
    return float(m.group(1)) * 3600.0 / _UNITS[m.group(2)]


@dataclass(frozen=True)
class Plan:
    out: Path
    movies: int
    per_hour: float
    size: int = 256
    frames: int = 8
    pixel_size: float = 3.0
    dose: float = 0.5  # e/A^2 per frame
    seed: int = 1
    modes: tuple[str, ...] = MODES
    prefix: str = "FoilHole"
    start: int = 1  # number of the first movie (a second run continues a session)


def mrc_header(nx: int, ny: int, nz: int, apix: float) -> bytes:
    """An MRC2014 header for a float32 stack (mode 2) with its pixel size."""
    h = bytearray(1024)
    struct.pack_into("<10i", h, 0, nx, ny, nz, 2, 0, 0, 0, nx, ny, nz)
    struct.pack_into("<6f", h, 40, nx * apix, ny * apix, nz * apix, 90.0, 90.0, 90.0)
    struct.pack_into("<3i", h, 64, 1, 2, 3)
    h[208:212] = b"MAP "
    h[212:216] = b"DA\x00\x00"  # little-endian
    struct.pack_into("<i", h, 104, 20140)  # nversion
    return bytes(h)


def frames(rng: np.random.Generator, size: int, n: int, apix: float, dose: float) -> np.ndarray:
    import numpy as np

    ky = np.fft.fftfreq(size)[:, None]
    kx = np.fft.rfftfreq(size)[None, :]
    texture = np.fft.rfft2(rng.standard_normal((size, size))) * np.exp(-(kx**2 + ky**2) / (2 * 0.04**2))
    texture /= np.abs(np.fft.irfft2(texture, s=(size, size))).std() + 1e-12
    angle = rng.uniform(0, 2 * np.pi)
    t = np.arange(n)
    mag = 6.0 * (1 - np.exp(-t / 3.0)) / (1 - np.exp(-max(n - 1, 1) / 3.0))
    sx, sy = mag * np.cos(angle), mag * np.sin(angle)
    out = np.empty((n, size, size), np.float32)
    base = dose * apix**2
    for f in range(n):
        img = np.fft.irfft2(texture * np.exp(-2j * np.pi * (kx * sx[f] + ky * sy[f])), s=(size, size))
        out[f] = rng.poisson(np.clip(base * (1 + 0.3 * img), 0, None))
    return out


def write_movie(path: Path, stack: np.ndarray, apix: float, mode: str, pause: float,
                rng: np.random.Generator) -> None:
    """Write one movie as `mode` says, a piece at a time (`pause` s between pieces)."""
    if mode == "inplace":
        tmp = path
    elif mode == "rename":
        tmp = path.with_name(path.name + ".part")
    else:
        tmp = path.with_name(f".{path.name}.{''.join(rng.choice(list('abcdefghijklmnopqrstuvwxyz'), 6))}")
    with open(tmp, "wb") as f:
        f.write(mrc_header(stack.shape[2], stack.shape[1], stack.shape[0], apix))
        for frame in stack:
            f.flush()
            if pause:
                time.sleep(pause)
            f.write(frame.tobytes())
    if tmp != path:
        os.replace(tmp, path)


def simulate(plan: Plan, on_movie: Callable[[Path, float], None] | None = None,
             stop: Callable[[], bool] | None = None) -> list[Path]:
    """Write `plan.movies` movies at `plan.per_hour`; returns their paths. `on_movie(path, closed_at)` after each."""
    try:
        import numpy as np
    except ImportError:
        raise CryocloudError("the session simulator needs numpy", "pip install 'cryocloud[demo]'") from None
    for m in plan.modes:
        if m not in MODES:
            raise CryocloudError(f"unknown writing mode {m!r}", f"choose from {', '.join(MODES)}")
    try:
        plan.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CryocloudError(f"cannot make {plan.out}: {e.strerror}", "choose a writable folder") from None
    rng = np.random.default_rng(plan.seed)
    interval = 3600.0 / plan.per_hour
    pause = min(0.2, interval / (plan.frames + 2) / 2)
    start = time.monotonic()
    written = []
    for i in range(plan.movies):
        if stop and stop():
            break
        due = start + i * interval
        if due > time.monotonic():
            time.sleep(due - time.monotonic())
        path = plan.out / f"{plan.prefix}_{plan.start + i:05d}_fractions.mrc"
        stack = frames(rng, plan.size, plan.frames, plan.pixel_size, plan.dose)
        write_movie(path, stack, plan.pixel_size, plan.modes[i % len(plan.modes)], pause, rng)
        written.append(path)
        if on_movie:
            on_movie(path, time.time())
    return written
