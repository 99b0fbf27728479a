"""A session's settings: one TOML file the watcher reads (`cryocloud watch --init` writes a commented one).

What RELION needs to import and correct the movies (pixel size, dose, voltage, Cs, gain reference with its
rotation/flip, EER grouping), what the optional CTF estimation needs, and how the watcher detects and batches.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryocloud.errors import ConfigError, close_matches
from cryocloud.settings import coerce

FILE_NAME = "cryocloud-session.toml"
MOVIE_SUFFIXES = (".tif", ".tiff", ".mrc", ".mrcs", ".eer")
# RELION 3.1's own labels for the gain reference's rotation and flip (its MotionCorr job options)
GAIN_ROT = {0: "No rotation (0)", 1: "90 degrees (1)", 2: "180 degrees (2)", 3: "270 degrees (3)"}
GAIN_FLIP = {0: "No flipping (0)", 1: "Flip upside down (1)", 2: "Flip left to right (2)"}


@dataclass(frozen=True)
class SessionSettings:
    # the microscope
    pixel_size: float = 0.0  # A/pixel of the movies; required
    dose_per_frame: float = 0.0  # e/A^2 per frame; required
    voltage: float = 300.0  # kV
    cs: float = 2.7  # mm
    amplitude_contrast: float = 0.1
    optics_group: str = "opticsGroup1"
    # the detector
    gain_ref: str = ""  # the gain reference, absolute or relative to the project ("" when movies are gain-corrected)
    gain_rot: int = 0  # 0 none, 1 90 degrees, 2 180, 3 270 (as RELION's MotionCorr)
    gain_flip: int = 0  # 0 none, 1 upside down, 2 left to right
    eer_grouping: int = 32  # EER frames per fraction
    # motion correction (RELION's own implementation)
    patch_x: int = 1
    patch_y: int = 1
    bin_factor: int = 1
    bfactor: int = 150
    threads: int = 1
    # CTF estimation: only when an estimator (CTFFIND 4.1) is configured
    ctffind_exe: str = ""
    ctf_box: int = 512
    ctf_res_min: float = 30.0
    ctf_res_max: float = 5.0
    ctf_defocus_min: float = 5000.0
    ctf_defocus_max: float = 50000.0
    ctf_defocus_step: float = 500.0
    # detection and batching
    settle_seconds: float = 5.0  # a movie is complete once its size and mtime have not changed for this long
    poll_seconds: float = 1.0
    stuck_seconds: float = 600.0  # a movie still growing after this long is reported
    min_batch: int = 1  # a batch starts once this many movies wait...
    max_wait_seconds: float = 30.0  # ...or the oldest has waited this long
    max_batch: int = 500  # at most this many movies in one batch
    split_from: int = 64  # a backlog of at least this many movies splits MotionCorr over workers
    max_split: int = 4  # workers at most (RELION's 'Split over N workers')

    @property
    def ctf(self) -> bool:
        return bool(self.ctffind_exe)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


REQUIRED = ("pixel_size", "dose_per_frame")


def load(path: Path) -> SessionSettings:
    """Read and check a session file; every mistake is one ConfigError with a hint."""
    if not path.exists():
        raise ConfigError(f"no session settings at {path}",
                          f"write a commented one with `cryocloud watch SESSION_DIR --init --settings {path}` "
                          "and fill in the pixel size and dose")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}", "check quotes and brackets on that line") from None
    return from_dict(raw, str(path))


def from_dict(raw: dict[str, Any], source: str = "session settings") -> SessionSettings:
    fields = {f.name: f for f in dataclasses.fields(SessionSettings)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(f"{source}: unknown key {key!r}", close_matches(key, list(fields)))
        values[key] = coerce(key, value, fields[key].type, source)
    s = SessionSettings(**values)
    for key in REQUIRED:
        if getattr(s, key) <= 0:
            raise ConfigError(f"{source}: {key} is not set", f"set {key} (see the comments in the file)")
    if s.gain_rot not in GAIN_ROT:
        raise ConfigError(f"{source}: gain_rot = {s.gain_rot}", "use 0 (none), 1 (90), 2 (180) or 3 (270 degrees)")
    if s.gain_flip not in GAIN_FLIP:
        raise ConfigError(f"{source}: gain_flip = {s.gain_flip}", "use 0 (none), 1 (upside down), 2 (left to right)")
    if s.min_batch < 1 or s.max_batch < s.min_batch:
        raise ConfigError(f"{source}: min_batch {s.min_batch}, max_batch {s.max_batch}",
                          "min_batch >= 1 and max_batch >= min_batch")
    if s.settle_seconds <= 0 or s.poll_seconds <= 0:
        raise ConfigError(f"{source}: settle_seconds and poll_seconds must be above 0", "e.g. 5 and 1")
    return s


def init_text(pixel_size: float = 0.0, dose_per_frame: float = 0.0) -> str:
    """The commented file `watch --init` writes: every key with its default and what it means."""
    d = SessionSettings()
    return f"""# cryocloud session settings: what `cryocloud watch` needs to import and motion-correct this session.
# Units as in RELION. Keys you leave out take the default shown.

# --- the microscope (required: pixel_size and dose_per_frame) ---
pixel_size = {pixel_size or 0.0}        # A/pixel of the movies (checked against each MRC movie's header)
dose_per_frame = {dose_per_frame or 0.0}    # e/A^2 per frame
voltage = {d.voltage}            # kV
cs = {d.cs}                   # spherical aberration, mm
amplitude_contrast = {d.amplitude_contrast}
optics_group = "{d.optics_group}"

# --- the detector ---
gain_ref = ""              # gain reference (absolute, or relative to the project); "" when already corrected
gain_rot = {d.gain_rot}               # rotate the gain: 0 none, 1 90 degrees, 2 180, 3 270
gain_flip = {d.gain_flip}              # flip the gain: 0 none, 1 upside down, 2 left to right
eer_grouping = {d.eer_grouping}         # EER movies: raw frames per fraction

# --- motion correction (RELION's own implementation) ---
patch_x = {d.patch_x}
patch_y = {d.patch_y}
bin_factor = {d.bin_factor}
bfactor = {d.bfactor}
threads = {d.threads}                # threads per MotionCorr process

# --- CTF estimation: runs only when an estimator is given ---
ctffind_exe = ""           # CTFFIND 4.1 executable; "" skips CtfFind
ctf_box = {d.ctf_box}
ctf_res_min = {d.ctf_res_min}
ctf_res_max = {d.ctf_res_max}
ctf_defocus_min = {d.ctf_defocus_min}
ctf_defocus_max = {d.ctf_defocus_max}
ctf_defocus_step = {d.ctf_defocus_step}

# --- detection and batching ---
settle_seconds = {d.settle_seconds}     # complete = size and mtime unchanged this long (polling: NFS/SMB safe)
poll_seconds = {d.poll_seconds}
stuck_seconds = {d.stuck_seconds}    # a movie still being written after this long is reported
min_batch = {d.min_batch}              # start a batch once this many movies wait,
max_wait_seconds = {d.max_wait_seconds}   # or once the oldest has waited this long
max_batch = {d.max_batch}
split_from = {d.split_from}            # a batch this large splits MotionCorr over workers...
max_split = {d.max_split}              # ...at most this many
"""
