"""A client on macOS: everything Linux-only has a portable way round it.

The clients here run under tests/support/as_macos.py: sys.platform says "darwin", the
Linux-only parts of Python are gone (MADV_REMOVE, O_DIRECT, posix_fadvise, preadv,
epoll, ...) and /sys and /proc are covered by empty filesystems, so any call a Mac
could not make fails here as it would there. What no Linux machine can show, the
macOS kernel's own answers (its disk ioctls, /dev/rdiskN), is named in docs/macos.md;
the sector-gathering writer a raw disk needs is tested below on a device that refuses
unaligned writes just as strictly (a loop device with 4 KiB sectors, opened O_DIRECT).
"""

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ENV, sha256_file, write_config
from tests.support.as_macos import AS_MACOS
from tests.system.test_zero_runs import zero_run_image
from thepusher.disk.sectors import SectorWriter

MiB = 1 << 20
HOSTS = ["127.0.0.11", "127.0.0.12"]


def needs_unshare() -> None:
    if not shutil.which("unshare"):
        pytest.skip("needs unshare for a mount namespace")


def test_mac_clients_image_a_file_over_old_data_and_a_disk_and_read_both_back(lab, loop_devices):
    needs_unshare()
    image = zero_run_image(lab.images / "disk.img")
    device, _ = loop_devices(32 * MiB)
    old_file = lab.disks / "mac.img"
    old_file.write_bytes(b"\xff" * (32 * MiB))  # old bytes under the image's zero runs
    write_config(lab.images, HOSTS, extra='  verify = "readback"\n')
    lab.start_master()
    clients = [lab.start_client(HOSTS[0], str(old_file), launcher=AS_MACOS),
               lab.start_client(HOSTS[1], device, launcher=AS_MACOS)]
    for c in clients:
        assert c.wait(120) == 0, lab.dump()
    size = image.stat().st_size
    assert old_file.stat().st_size == size
    assert sha256_file(str(old_file)) == sha256_file(str(image))
    with open(device, "rb") as disk, open(image, "rb") as img:
        assert disk.read(size) == img.read()
    macs = {(p / "address").read_text().strip() for p in Path("/sys/class/net").iterdir()}
    for host, c in lab.clients().items():
        assert (c["state"], c["verified_by"]) == ("DONE", "readback"), (host, c)
        assert c["mac"] in macs | {""}, c["mac"]  # no /sys: the standard library's find
    for c in clients:
        assert "Traceback" not in c.output(), c.output()


def test_put_image_on_a_mac_uploads_a_whole_disk(lab, loop_devices):
    needs_unshare()
    write_config(lab.images, HOSTS[:1])
    lab.start_master()
    device, backing = loop_devices(8 * MiB)
    data = os.urandom(8 * MiB)
    backing.write_bytes(data)
    r = subprocess.run([*AS_MACOS, "put-image", "-i", device, "-n", "mac.img",
                        "-p", f"127.0.0.1:{lab.port}"], env=ENV, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert (lab.images / "mac.img").read_bytes() == data


def pieces(data: bytes):
    """`data` cut at odd places, as a stream's records cut it."""
    cuts = [0, 1, 511, 4095, 4097, 12289, MiB + 3, 3 * MiB - 7, len(data)]
    return [data[a:b] for a, b in zip(cuts, cuts[1:])]


@pytest.mark.parametrize("length", [3 * MiB + 4096, 3 * MiB + 1000])
def test_sector_writer_gives_a_raw_disk_only_whole_sectors_and_keeps_the_old_tail(
        loop_devices, length):
    device, _ = loop_devices(4 * MiB, "--sector-size", "4096")
    data = os.urandom(length)
    fd = os.open(device, os.O_RDWR | os.O_DIRECT)  # refuses any write not of whole sectors
    try:
        writer = SectorWriter(fd, 4096, chunk=64 << 10)
        for piece in pieces(data):
            writer.write(memoryview(piece))
        writer.finish()
        writer.close()
    finally:
        os.close(fd)
    with open(device, "rb") as disk:
        assert disk.read(4 * MiB) == data + b"\xff" * (4 * MiB - length)


def test_sector_writer_names_the_byte_offset_where_the_device_refused(loop_devices):
    device, _ = loop_devices(1 * MiB, "--sector-size", "4096")
    fd = os.open(device, os.O_RDWR | os.O_DIRECT)
    try:
        writer = SectorWriter(fd, 4096, chunk=64 << 10)
        with pytest.raises(OSError) as refused:
            for _ in range(20):
                writer.write(memoryview(bytes(64 << 10)))  # 1.25 MiB into a 1 MiB disk
            writer.finish()
        assert writer.offset == 1 * MiB  # where the refused write began
        writer.close()
    finally:
        os.close(fd)
    assert refused.value.errno == errno.ENOSPC
