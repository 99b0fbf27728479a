"""Small counting-mode movies with a known drift, for MotionCorr (RELION's own implementation)."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile

from cryocloud.demo.common import APIX, RELION_HINT, optics_table, write_mrc
from cryocloud.proc import run_command

SIZE, FRAMES, DOSE = 256, 8, 0.5  # pixels, frames, e/A^2 per frame


def make_movies(project: Path, n: int, rng: np.random.Generator) -> None:
    movies = project / "Movies"
    movies.mkdir(parents=True, exist_ok=True)
    run_command(["relion_project", "--i", "Synthetic/phantom.mrc", "--nr_uniform", "50", "--o", "Movies/projs"],
                cwd=project, hint=RELION_HINT)
    projs = mrcfile.read(movies / "projs.mrcs").astype(np.float64)
    for name in ("projs.mrcs", "projs.star"):
        (movies / name).unlink(missing_ok=True)
    box = projs.shape[-1]
    ky = np.fft.fftfreq(SIZE)[:, None]
    kx = np.fft.rfftfreq(SIZE)[None, :]
    rows = []
    for i in range(n):
        field = np.zeros((SIZE, SIZE))
        for _ in range(12):
            y0, x0 = rng.integers(0, SIZE - box, 2)
            field[y0:y0 + box, x0:x0 + box] += projs[rng.integers(len(projs))]
        field /= field.std() + 1e-12
        spectrum = np.fft.rfft2(field)
        t = np.arange(FRAMES)
        angle = rng.uniform(0, 2 * np.pi)
        mag = 6.0 * (1 - np.exp(-t / 3.0)) / (1 - np.exp(-(FRAMES - 1) / 3.0))
        sx, sy = mag * np.cos(angle), mag * np.sin(angle)
        base = DOSE * APIX**2
        frames = np.empty((FRAMES, SIZE, SIZE), np.float32)
        for f in range(FRAMES):
            img = np.fft.irfft2(spectrum * np.exp(-2j * np.pi * (kx * sx[f] + ky * sy[f])), s=(SIZE, SIZE))
            frames[f] = rng.poisson(np.clip(base * (1 + 0.2 * img), 0, None))
        name = f"Movies/mov_{i + 1:03d}.mrc"
        write_mrc(project / name, frames)
        rows.append(name)
    optics = pd.DataFrame({k: v for k, v in optics_table().items()
                           if k not in ("rlnImagePixelSize", "rlnImageSize", "rlnImageDimensionality")})
    optics["rlnMicrographPixelSize"] = APIX
    table = pd.DataFrame({"rlnMicrographMovieName": rows, "rlnOpticsGroup": 1})
    starfile.write({"optics": optics, "movies": table}, movies / "movies.star", overwrite=True)
