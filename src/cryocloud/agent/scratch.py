"""A cloud node's instance store (local NVMe) as RELION's `--scratch_dir`.

EC2 types with an instance store (g5, g6, p3dn, p4d, c6id, m6id, ...) attach it as raw NVMe devices that nothing
formats or mounts (on Nitro, /dev/disk/by-id/nvme-Amazon_EC2_NVMe_Instance_Storage_<serial>). When the lab's
backend marks a particle job for it (the planner found the particles fit there: backends/aws), the agent formats
the largest such device, mounts it, and adds `--scratch_dir <mount>` to the job's relion_refine lines that have
none, so RELION copies the particles there once and reads them at NVMe speed instead of from the EBS volume. A node
without such a device (or a failed mount) says so in run.out and runs the job as written: never a failed job for
want of a faster disk.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from cryocloud.errors import CryocloudError
from cryocloud.jobs import cmdline
from cryocloud.proc import run_command

DEVICES = "/dev/disk/by-id/nvme-Amazon_EC2_NVMe_Instance_Storage_*"


def instance_store(pattern: str = DEVICES) -> list[Path]:
    """The instance-store devices, largest first (by-id links resolved, each device once)."""
    found = {Path(os.path.realpath(p)) for p in glob.glob(pattern)}
    return sorted(found, key=lambda d: (-_size(d), str(d)))


def _size(device: Path) -> int:
    try:
        return int((Path("/sys/class/block") / device.name / "size").read_text()) * 512
    except (OSError, ValueError):
        return 0


def mount_commands(device: Path, mount: Path) -> list[list[str]]:
    """What makes `device` a fresh scratch file system at `mount` (its contents are thrown away, as an instance
    store's are at every stop anyway)."""
    return [["mkfs.ext4", "-F", "-q", "-E", "nodiscard", "-m", "0", str(device)],
            ["mount", "-o", "noatime", str(device), str(mount)]]


def with_scratch(line: str, folder: str) -> str:
    """A relion_refine line with `--scratch_dir folder` added; other lines, and lines that name one, unchanged."""
    if not cmdline.program(line).startswith("relion_refine") or cmdline.option(line, "--scratch_dir") is not None:
        return line
    return f"{line.rstrip()} --scratch_dir {folder}"


def prepare(mount: Path, pattern: str = DEVICES) -> tuple[Path | None, str]:
    """Mount the largest instance-store device at `mount`: (the folder, or None, and a line for run.out)."""
    devices = instance_store(pattern)
    if not devices:
        return None, "no instance-store device on this node: RELION reads the particles from the EBS volume"
    mount.mkdir(parents=True, exist_ok=True)
    try:
        for argv in mount_commands(devices[0], mount):
            run_command(argv, timeout=600)
    except CryocloudError as e:
        return None, f"could not mount the instance store {devices[0]} ({e.message}): RELION reads from EBS"
    gb = _size(devices[0]) / 1e9
    return mount, f"instance store {devices[0]} ({gb:.0f} GB) mounted at {mount}: RELION's --scratch_dir"
