"""Build a small RELION project from a phantom map, with RELION's own relion_project for the physics.

Deterministic for a given seed: orientations, CTF parameters, noise and movies all come from numpy's
seeded generator (relion_project's own noise is clock-seeded, so we add noise ourselves).
"""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile

from cryocloud.demo.common import APIX, BOX, RELION_HINT, optics_table, write_mrc
from cryocloud.demo.movies import make_movies
from cryocloud.errors import CryocloudError
from cryocloud.proc import run_command

BLOBS = [  # (centre in A, sigma in A, weight): deliberately asymmetric
    ((0, 0, 0), 14, 1.0), ((30, 0, 0), 9, 0.8), ((-18, 26, 0), 10, 0.9), ((-10, -22, 18), 8, 0.7),
    ((8, 10, -30), 11, 0.85), ((22, -20, -12), 7, 0.6), ((-28, -4, -18), 6, 0.5), ((5, 32, 22), 7, 0.65),
]


def phantom() -> np.ndarray:
    c = BOX // 2
    z, y, x = np.mgrid[0:BOX, 0:BOX, 0:BOX].astype(np.float32) - c
    vol = np.zeros((BOX, BOX, BOX), np.float32)
    for (bx, by, bz), sigma, w in BLOBS:
        cx, cy, cz, s = bx / APIX, by / APIX, bz / APIX, sigma / APIX
        vol += w * np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * s * s))
    return vol


def make_particles(out: Path, n: int, noise: float, rng: np.random.Generator) -> None:
    nmics = 20
    mic = rng.integers(0, nmics, n)
    def_u = rng.uniform(8000, 25000, nmics)
    astig = rng.uniform(100, 800, nmics)
    ang = rng.uniform(0, 180, nmics)
    parts = pd.DataFrame({
        "rlnCoordinateX": rng.uniform(100, 3900, n).round(1),
        "rlnCoordinateY": rng.uniform(100, 3900, n).round(1),
        "rlnMicrographName": [f"Micrographs/mic_{m + 1:03d}.mrc" for m in mic],
        "rlnOpticsGroup": 1,
        "rlnDefocusU": def_u[mic].round(1),
        "rlnDefocusV": (def_u[mic] - astig[mic]).round(1),
        "rlnDefocusAngle": ang[mic].round(2),
        "rlnCtfBfactor": 0.0, "rlnCtfScalefactor": 1.0, "rlnPhaseShift": 0.0,
        "rlnAngleRot": rng.uniform(0, 360, n).round(3),
        "rlnAngleTilt": np.degrees(np.arccos(rng.uniform(-1, 1, n))).round(3),
        "rlnAnglePsi": rng.uniform(0, 360, n).round(3),
        "rlnOriginXAngst": rng.normal(0, 3.0, n).round(3),
        "rlnOriginYAngst": rng.normal(0, 3.0, n).round(3),
    })
    optics = pd.DataFrame(optics_table())
    starfile.write({"optics": optics, "particles": parts}, out / "angles.star", overwrite=True)
    run_command(["relion_project", "--i", "phantom.mrc", "--ang", "angles.star", "--ctf", "--o", "clean"],
                cwd=out, hint=RELION_HINT)
    clean = mrcfile.read(out / "clean.mrcs").astype(np.float64)
    signal = clean / (clean.std() + 1e-12)
    noisy = signal + rng.normal(0, noise, signal.shape)
    yy, xx = np.mgrid[0:BOX, 0:BOX] - BOX // 2
    bg = (yy**2 + xx**2) > 25**2  # normalise like Extract: background mean 0, sd 1
    mean = noisy[:, bg].mean(axis=1)[:, None, None]
    sd = noisy[:, bg].std(axis=1)[:, None, None]
    write_mrc(out / "particles.mrcs", (noisy - mean) / sd)
    for name in ("clean.mrcs", "clean.star"):
        (out / name).unlink(missing_ok=True)
    images = [f"{i + 1:06d}@Synthetic/particles.mrcs" for i in range(n)]
    truth = parts.assign(rlnImageName=images)
    starfile.write({"optics": optics, "particles": truth}, out / "particles_truth.star", overwrite=True)
    picked = truth.drop(columns=["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst",
                                 "rlnOriginYAngst"])
    starfile.write({"optics": optics, "particles": picked}, out / "particles.star", overwrite=True)
    (out / "angles.star").unlink()


def make_project(project: Path, n_particles: int = 500, n_movies: int = 3, noise: float = 2.0,
                 seed: int = 1) -> str:
    if n_particles < 10 or n_particles > 200_000:
        raise CryocloudError(f"--particles {n_particles} is out of range", "use 10 to 200000")
    if n_movies < 0 or n_movies > 100:
        raise CryocloudError(f"--movies {n_movies} is out of range", "use 0 to 100")
    if noise < 0:
        raise CryocloudError(f"--noise {noise} must not be negative", "use e.g. 2")
    rng = np.random.default_rng(seed)
    syn = project / "Synthetic"
    syn.mkdir(parents=True, exist_ok=True)
    write_mrc(syn / "phantom.mrc", phantom())
    make_particles(syn, n_particles, noise, rng)
    run_command(["relion_image_handler", "--i", "phantom.mrc", "--lowpass", "40", "--o", "ref_lp40.mrc"],
                cwd=syn, hint=RELION_HINT)
    pipeline = project / "default_pipeline.star"
    if not pipeline.exists():  # relion_pipeliner refuses to start without one (the GUI makes it)
        pipeline.write_text("\n# version 30001\n\ndata_pipeline_general\n\n_rlnPipeLineJobCounter 1\n\n")
    # RELION's GUI marks its projects with this file; without it `relion` asks whether to start a new project here
    (project / ".gui_projectdir").touch()
    summary = f"{n_particles} particles in {syn / 'particles.star'}, reference {syn / 'ref_lp40.mrc'}"
    if n_movies:
        make_movies(project, n_movies, rng)
        summary += f", {n_movies} movies in {project / 'Movies'}"
    return f"demo project ready in {project}: {summary}"
