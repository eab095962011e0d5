"""discard = true (issue 20): a client writing to a block device discards the image's
free ranges (BLKDISCARD) instead of just skipping them. The disks are real loop
devices over files full of 0xff: a loop device's discard punches a hole in its backing
file, so a discarded range reads as zeros and shows as a hole, and one left alone
still holds 0xff."""

import math
import os
import subprocess

import pytest

from tests.conftest import write_config
from tests.support.hosts import hosts
from tests.system.test_free_runs import free_image
from thepusher.disk.target import Skip, Target

MiB = 1 << 20
SIZE = 24 * MiB
REFUSES = "refuses to discard"


def unit(device):
    """What the client aligns a discard to: the device's granularity, whole pages."""
    name = os.path.basename(os.path.realpath(device))
    with open(f"/sys/block/{name}/queue/discard_granularity") as f:
        return math.lcm(int(f.read()) or 1, 4096)


def inner(runs, step):
    """The whole `step`s inside each run: what is discarded of it."""
    out = []
    for offset, length in runs:
        first, last = -(-offset // step) * step, (offset + length) // step * step
        if last > first:
            out.append((first, last - first))
    return out


def read(path, offset, length):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def is_hole(path, offset, length):
    fd = os.open(path, os.O_RDONLY)
    try:
        if os.lseek(fd, offset, os.SEEK_HOLE) != offset:
            return False
        try:
            return os.lseek(fd, offset, os.SEEK_DATA) >= offset + length
        except OSError:  # ENXIO: no data after offset
            return True
    finally:
        os.close(fd)


@pytest.fixture
def ramfs(tmp_path):
    """A directory on ramfs, which cannot punch holes: a loop device over a file there
    takes no discard (EOPNOTSUPP)."""
    mount = tmp_path / "ramfs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "ramfs", "ramfs", str(mount)]).returncode:
        pytest.skip("cannot mount ramfs")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def round_on_loop_devices(lab, loop_devices, discard, n=1, under=None):
    """A round of a bmap image to `n` clients, each writing to a loop device of the
    image's size full of 0xff (its backing file `under` a directory); all DONE."""
    image = lab.images / "disk.img"
    mapped, free = free_image(image, SIZE)
    devices = [loop_devices(SIZE, under=under) for _ in range(n)]
    write_config(lab.images, hosts(n), extra=f"  discard = {discard}\n")
    lab.start_master()
    clients = [lab.start_client(h, device) for h, (device, _) in zip(hosts(n), devices)]
    for c in clients:
        assert c.wait(120) == 0, lab.dump()
    states = lab.clients()
    assert [states[h]["state"] for h in hosts(n)] == ["DONE"] * n, states
    data = image.read_bytes()
    for device, _ in devices:
        for offset, length in mapped:
            assert read(device, offset, length) == data[offset : offset + length], (device, offset)
    return free, devices, clients


def test_discard_true_discards_the_free_ranges_of_each_block_device_and_keeps_the_data(
        lab, loop_devices):
    free, devices, clients = round_on_loop_devices(lab, loop_devices, "true", n=2)
    free_bytes = sum(n for _, n in free)
    for (device, backing), client in zip(devices, clients):
        gone = inner(free, unit(device))
        assert gone, "no free range holds a whole discard unit"
        for offset, length in gone:
            assert read(device, offset, length) == bytes(length), (device, offset)
            assert is_hole(backing, offset, length), (backing, offset)
        log = client.output()
        assert f"{sum(n for _, n in gone)} of the image's {free_bytes} free bytes discarded" in log, log
        assert REFUSES not in log


def test_discard_false_leaves_the_free_ranges_of_a_block_device_as_they_were(lab, loop_devices):
    free, devices, clients = round_on_loop_devices(lab, loop_devices, "false")
    (device, backing), = devices
    for offset, length in free:
        assert read(device, offset, length) == b"\xff" * length, (device, offset)
        assert not is_hole(backing, offset, length), (backing, offset)
    assert "discarded" not in clients[0].output()


def test_a_device_that_refuses_discard_is_named_once_and_the_copy_is_still_done(
        lab, ramfs, loop_devices):
    free, devices, clients = round_on_loop_devices(lab, loop_devices, "true", under=ramfs)
    (device, _), = devices
    for offset, length in free:
        assert read(device, offset, length) == b"\xff" * length, (device, offset)
    log = clients[0].output()
    assert log.count(REFUSES) == 1 and f"{device} {REFUSES}" in log, log
    assert "free ranges are just skipped from here on" in log
    assert f"0 of the image's {sum(n for _, n in free)} free bytes discarded" in log, log


def test_free_runs_are_discarded_in_whole_units_as_one_range_their_unaligned_edges_left(
        loop_devices):
    """Two FREE records in a row are one free range: the unit across their boundary
    goes too; the part units at the range's ends keep their old bytes, as do data and
    zero runs around it."""
    device, backing = loop_devices(8 * MiB)
    step = unit(device)
    target = Target(device, discard=True)
    target.open(8 * MiB)
    target.consume([b"\x01" * 1000, Skip(MiB + 3), Skip(2 * MiB + 5), b"\x02" * 7, MiB,
                    Skip(MiB)])
    target.finish()
    target.close()
    start, end = 1000, 1000 + 3 * MiB + 8
    (first, length), = inner([(start, end - start)], step)
    got = read(device, 0, 8 * MiB)
    assert got[:1000] == b"\x01" * 1000
    assert got[start:first] == b"\xff" * (first - start)  # the unaligned head: left
    assert got[first : first + length] == bytes(length)
    assert is_hole(backing, first, length)
    assert got[first + length : end] == b"\xff" * (end - first - length)  # the tail: left
    assert got[end : end + 7] == b"\x02" * 7
    assert got[end + 7 : end + 7 + MiB] == bytes(MiB)  # a zero run: zeroed, not discarded
    last = inner([(end + 7 + MiB, MiB)], step)[0]
    assert got[last[0] : last[0] + last[1]] == bytes(last[1])
    assert target.discarder.discarded == length + last[1]
