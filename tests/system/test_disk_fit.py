"""An image on a larger disk: the disk's end is made right after the verified copy.

Real parts: GPT and MBR images made by sgdisk and sfdisk, loop devices larger than
the image whose old life left an old GPT and an md RAID superblock at their end, a
real round, and the verdicts of `sgdisk -v` and `wipefs` (libblkid) on the result.
"""

import os
import re
import shutil
import struct
import subprocess

import pytest

from tests.conftest import write_config
from thepusher.disk import gpt

MiB = 1 << 20
A = "127.0.0.11"
IMAGE = 64 * MiB
DISK = 128 * MiB


@pytest.fixture(autouse=True)
def partitioning_tools():
    if not (shutil.which("sgdisk") and shutil.which("sfdisk") and shutil.which("wipefs")):
        pytest.skip("needs sgdisk (gdisk), sfdisk (fdisk) and wipefs (make test installs them)")


def run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def partition_data(path, size):
    """Random bytes where the partitions are: what must survive every fix-up."""
    with open(path, "r+b") as f:
        f.seek(MiB)
        f.write(os.urandom(size - 2 * MiB))


def gpt_image(path, size=IMAGE):
    with open(path, "wb") as f:
        f.truncate(size)
    partition_data(path, size)
    first = f"1:2048:+{size // 8 >> 10}K"  # an EFI system partition of an eighth
    run("sgdisk", "-o", "-n", first, "-t", "1:ef00", "-n", "2:0:0", "-t", "2:8300", str(path))
    return path


def mbr_image(path, size=IMAGE):
    with open(path, "wb") as f:
        f.truncate(size)
    partition_data(path, size)
    subprocess.run(["sfdisk", "-q", str(path)], input="label: dos\n,8M,83\n,,83\n", text=True,
                   check=True, capture_output=True)
    return path


def used_disk(loop_devices, size=DISK):
    """A loop device with an old life: its own GPT over the whole disk, and an md RAID
    (0.90) superblock 64 KiB before its end, both found by libblkid before imaging."""
    device, _ = loop_devices(size)
    run("sgdisk", "-o", "-n", "1:2048:0", device)
    superblock = bytearray(4096)
    struct.pack_into("<IIII", superblock, 0, 0xA92B4EFC, 0, 90, 0)
    fd = os.open(device, os.O_WRONLY)
    try:
        os.pwrite(fd, superblock, (size & ~0xFFFF) - 0x10000)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert "linux_raid_member" in run("wipefs", "-n", device)
    return device


def signatures(device):
    """wipefs's (offset, type) of every signature it finds on the whole device."""
    lines = run("wipefs", "-n", "--noheadings", "-O", "OFFSET,TYPE", device).split("\n")
    return sorted((int(o, 16), t) for o, t in (line.split() for line in lines if line.strip()))


def partitions(device):
    """sgdisk's partition lines: number, start, end, size, code, name."""
    return re.findall(r"^\s+\d+\s+\d+\s+\d+.*$", run("sgdisk", "-p", device), re.M)


def mbr_table(path):
    """`sfdisk -d` without the names of the device and its partitions."""
    return [re.sub(r"^\S+ :", ":", line) for line in run("sfdisk", "-d", path).splitlines()
            if not line.startswith("device:")]


def image_disk(lab, loop_devices, image, extra=""):
    device = used_disk(loop_devices)
    write_config(lab.images, [A], filename=image.name, extra=extra)
    lab.start_master()
    assert lab.start_client(A, device).wait(120) == 0, lab.dump()
    return device, lab.clients()[A]


def test_gpt_image_on_a_larger_disk_has_its_backup_at_the_end_and_no_old_signatures(
        lab, loop_devices):
    image = gpt_image(lab.images / "gpt.img")
    device, client = image_disk(lab, loop_devices, image)
    assert client["state"] == "DONE", client
    end = DISK // 512 - 1
    assert client["after_write"][0] == f"GPT backup moved from sector {IMAGE // 512 - 1} to the disk's end ({end})"
    assert "No problems found" in run("sgdisk", "-v", device)
    assert partitions(device) == partitions(str(image))
    assert signatures(device) == [(0x1FE, "PMBR"), (0x200, "gpt"), (DISK - 512, "gpt")]
    with open(device, "rb") as disk, open(image, "rb") as img:
        disk.seek(MiB)
        img.seek(MiB)
        assert disk.read(IMAGE - 2 * MiB) == img.read(IMAGE - 2 * MiB)  # the partitions
        disk.seek(IMAGE - 512)
        assert disk.read(512) == bytes(512)  # the image's old backup header is gone
        disk.seek(0)
        mbr = disk.read(512)
    assert mbr[450] == 0xEE and struct.unpack_from("<I", mbr, 458)[0] == DISK // 512 - 1


def test_grow_makes_the_last_partition_end_at_the_larger_disks_last_usable_sector(lab, loop_devices):
    image = gpt_image(lab.images / "gpt.img")
    device, client = image_disk(lab, loop_devices, image, extra="  grow = true\n")
    last_usable = DISK // 512 - 34
    assert client["after_write"][1].startswith("partition 2 grown to 0.1 GiB"), client["after_write"]
    assert "No problems found" in run("sgdisk", "-v", device)
    info = run("sgdisk", "-i", "2", device)
    assert re.search(rf"^Last sector: {last_usable} ", info, re.M), info
    assert partitions(device)[0] == partitions(str(image))[0]  # the first one is untouched


def test_mbr_image_on_a_larger_disk_keeps_its_table_and_loses_the_old_tail(lab, loop_devices):
    image = mbr_image(lab.images / "mbr.img")
    device, client = image_disk(lab, loop_devices, image)
    assert client["state"] == "DONE", client
    assert client["after_write"] == ["old data in the disk's last 1024 KiB wiped"]
    assert mbr_table(device) == mbr_table(str(image))
    assert signatures(device) == [(0x1FE, "dos")]


def test_a_damaged_gpt_is_left_as_it_is_and_said_so(loop_devices, tmp_path):
    image = gpt_image(tmp_path / "gpt.img")
    with open(image, "r+b") as f:  # one bit of the primary header's disk GUID
        f.seek(512 + 56)
        b = f.read(1)
        f.seek(512 + 56)
        f.write(bytes([b[0] ^ 1]))
    device = used_disk(loop_devices)
    run("dd", f"if={image}", f"of={device}", "bs=1M", "conv=fsync,notrunc", "status=none")
    assert gpt.fit_to_disk(device, IMAGE, grow=True) == [
        "old data in the disk's last 1024 KiB wiped",
        "the image's GPT is damaged (a CRC is wrong): its backup was not moved"]
    with open(device, "rb") as disk, open(image, "rb") as img:
        assert disk.read(IMAGE) == img.read()


def test_a_disk_the_image_fills_and_a_file_are_left_alone(loop_devices, tmp_path):
    image = gpt_image(tmp_path / "gpt.img", 8 * MiB)
    device, _ = loop_devices(8 * MiB)
    run("dd", f"if={image}", f"of={device}", "bs=1M", "conv=fsync", "status=none")
    assert gpt.fit_to_disk(device, 8 * MiB, grow=True) == []
    assert gpt.fit_to_disk(str(image), 4 * MiB, grow=True) == []
    with open(device, "rb") as disk:
        assert disk.read() == image.read_bytes()


def test_a_disk_whose_end_cannot_be_written_is_error_though_the_image_verified(
        lab, loop_devices, small_tmpfs):
    """The device claims 64 MiB, its backing filesystem holds 9.5: the image (9 MiB) is
    written and verified, wiping the disk's end fails (EIO)."""
    device, _ = loop_devices(64 * MiB, under=small_tmpfs("9728k"), sparse=True)
    (lab.images / "disk.img").write_bytes(os.urandom(9 * MiB))
    write_config(lab.images, [A])
    lab.start_master()
    proc = lab.start_client(A, device)
    assert proc.wait(120) == 1, lab.dump()
    client = lab.clients()[A]
    said = " ".join(proc.output().split())  # the banner wraps its lines
    assert f"image img was written to {device} and verified, but its disk's end is not right" in said
    assert client["state"] == "ERROR"
    assert client["error"].startswith(f"fitting {device} to its size failed: Input/output error")
    assert client["error"].endswith("(the image itself was written and verified)")


def test_a_disk_too_small_is_error_with_both_sizes_before_the_round_and_the_rest_goes_on(
        lab, loop_devices):
    small, backing = loop_devices(8 * MiB)
    (lab.images / "disk.img").write_bytes(os.urandom(16 * MiB))
    write_config(lab.images, [A, "127.0.0.12"])
    lab.start_master()
    lab.wait_for(lambda: lab.status()["images"][0]["state"] == "ready", 30, "the image hashed")
    refused = lab.start_client(A, small)
    imaged = lab.start_client("127.0.0.12")
    assert refused.wait(60) == 1, lab.dump()
    assert imaged.wait(60) == 0, lab.dump()
    clients = lab.clients()
    assert clients[A]["state"] == "ERROR"
    assert clients[A]["error"] == (f"disk {small} holds 8.0 MiB (8388608 bytes), image img needs "
                                   f"16.0 MiB (16777216 bytes)")
    assert clients["127.0.0.12"]["state"] == "DONE"
    assert [r["chain"] for r in lab.status()["history"]] == [["127.0.0.12"]]
    assert backing.read_bytes() == b"\xff" * (8 * MiB)  # not a byte written
