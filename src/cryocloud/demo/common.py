"""What the demo's particles and movies share: the box and pixel size, the optics table, MRC writing."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np

BOX, APIX = 64, 3.0
RELION_HINT = "install RELION (Debian: apt-get install relion openmpi-bin; or scripts/install-deps.sh)"


def optics_table() -> dict[str, list[object]]:
    return {
        "rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1],
        "rlnMicrographOriginalPixelSize": [APIX], "rlnVoltage": [300.0], "rlnSphericalAberration": [2.7],
        "rlnAmplitudeContrast": [0.1], "rlnImagePixelSize": [APIX], "rlnImageSize": [BOX],
        "rlnImageDimensionality": [2],
    }


def write_mrc(path: Path, data: np.ndarray) -> None:
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(data.astype(np.float32))
        m.voxel_size = APIX
