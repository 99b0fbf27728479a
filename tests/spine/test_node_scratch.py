"""A cloud node's instance store as RELION's --scratch_dir: which jobs get it (the lab's backend), how the node
finds, formats and mounts the device, and how relion_refine lines are given it. The mount is tested on a real loop
device standing in for the NVMe (as root; the sandbox's simulated nodes have no block device of their own)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryocloud.agent import scratch
from cryocloud.backends.aws.backend import instance_store_for
from cryocloud.jobs.spec import InputFile, JobSpec
from cryocloud.proc import run_command
from testtools import require_tool, unavailable

REFINE = "`which relion_refine_mpi` --o Class3D/job004/run --i Extract/job003/particles.star --K 6 --gpu \"0:1\""


def _spec(commands: list[str], gb: float) -> JobSpec:
    return JobSpec("Class3D/job004/", "relion", "Class3D", "/lab/p", "Class3D/job004/", commands,
                   inputs=[InputFile("Extract/job003/particles.mrcs", int(gb * 1e9))])


def test_a_refine_job_gets_the_nvme_only_where_its_particles_fit_and_it_names_no_scratch_of_its_own() -> None:
    assert instance_store_for(_spec([REFINE], 50), "g5.xlarge")  # 250 GB of NVMe
    assert not instance_store_for(_spec([REFINE], 50), "c7i.large")  # EBS only
    assert not instance_store_for(_spec([REFINE], 240), "g5.xlarge")  # 240 GB x 1.2 does not fit in 250
    assert not instance_store_for(_spec([f"{REFINE} --scratch_dir /data"], 5), "g5.xlarge")  # the user's choice
    assert not instance_store_for(_spec(["relion_run_motioncorr --i movies.star"], 5), "g5.xlarge")
    assert not instance_store_for(_spec([REFINE], 5), "no-such.type")


def test_relion_refine_lines_get_the_scratch_folder_and_nothing_else_changes() -> None:
    assert scratch.with_scratch(REFINE, "/mnt/nvme") == f"{REFINE} --scratch_dir /mnt/nvme"
    assert scratch.with_scratch("relion_refine --o a --i b.star  ", "/x") == "relion_refine --o a --i b.star --scratch_dir /x"
    mine = f"{REFINE} --scratch_dir /data"
    assert scratch.with_scratch(mine, "/mnt/nvme") == mine
    assert scratch.with_scratch("relion_postprocess --i x", "/mnt/nvme") == "relion_postprocess --i x"
    assert scratch.with_scratch("echo relion_refine", "/mnt/nvme") == "echo relion_refine"


def test_no_device_means_the_job_runs_as_written_and_says_why(tmp_path: Path) -> None:
    mounted, said = scratch.prepare(tmp_path / "m", pattern=str(tmp_path / "none-*"))
    assert mounted is None
    assert "no instance-store device" in said


def test_devices_are_found_by_their_ec2_names_each_once(tmp_path: Path) -> None:
    real = tmp_path / "nvme1n1"
    real.touch()
    for serial in ("AWS1", "AWS1-ns-1"):  # two by-id links to one device
        (tmp_path / f"nvme-Amazon_EC2_NVMe_Instance_Storage_{serial}").symlink_to(real)
    assert scratch.instance_store(str(tmp_path / "nvme-Amazon_EC2_NVMe_Instance_Storage_*")) == [real]
    assert scratch.mount_commands(real, tmp_path / "m")[-1] == ["mount", "-o", "noatime", str(real), str(tmp_path / "m")]


@pytest.fixture()
def loop_device(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB loop device, named as EC2 names an instance store, detached afterwards."""
    if os.geteuid() != 0 or not Path("/dev/loop-control").exists():
        unavailable("a loop device standing in for the NVMe needs root and /dev/loop-control")
    for tool in ("losetup", "mkfs.ext4"):
        require_tool(tool)
    backing = tmp_path / "nvme.img"
    with backing.open("wb") as f:
        f.truncate(64 * 2**20)
    device = Path(run_command(["losetup", "--find", "--show", str(backing)]).stdout.strip())
    try:
        yield device
    finally:
        run_command(["losetup", "-d", str(device)], check=False)


def test_the_node_formats_and_mounts_its_instance_store(tmp_path: Path, loop_device: Path) -> None:
    links = tmp_path / "by-id"
    links.mkdir()
    (links / "nvme-Amazon_EC2_NVMe_Instance_Storage_AWS0").symlink_to(loop_device)
    mount = tmp_path / "scratch"
    mounted, said = scratch.prepare(mount, pattern=str(links / "nvme-Amazon_EC2_NVMe_Instance_Storage_*"))
    try:
        assert mounted == mount, said
        assert f"instance store {loop_device}" in said
        assert os.path.ismount(mount)
        (mount / "particles.mrcs").write_bytes(b"x" * 1024)  # writable, as RELION's copy needs
    finally:
        run_command(["umount", str(mount)], check=False)
