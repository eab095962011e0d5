"""A block device is written past the page cache (O_DIRECT from page-aligned buffers,
disk/sectors.py), byte-exact whatever the stream's alignment: zero runs and pieces at
any byte, an image that ends inside a sector, a 4096-byte-sector disk, compressed
streams. Real loop devices full of old bytes (0xff); the copy is compared byte by byte,
and what lies past the image's end must be left as it was."""

import ctypes
import gzip
import mmap
import os
import signal

import pytest

from tests.conftest import write_config
from tests.support.hosts import hosts

MiB = 1 << 20
O_DIRECT = getattr(os, "O_DIRECT", 0)


def resident_bytes(path: str, length: int) -> int:
    """How much of a block device's first `length` bytes is in the page cache now
    (mincore over a mapping of it; the cache lives while anyone holds it open)."""
    fd = os.open(path, os.O_RDWR)
    try:
        with mmap.mmap(fd, length) as mapped:
            vec = (ctypes.c_ubyte * (length // mmap.PAGESIZE))()
            anchor = ctypes.c_char.from_buffer(mapped)
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.mincore(ctypes.c_void_p(ctypes.addressof(anchor)),
                                ctypes.c_size_t(length), vec) != 0:
                    raise OSError(ctypes.get_errno(), "mincore")
            finally:
                del anchor
            return sum(v & 1 for v in vec) * mmap.PAGESIZE
    finally:
        os.close(fd)


def open_flags(pid: int, path: str) -> list:
    """The open flags of every descriptor `pid` holds on `path` (/proc/PID/fdinfo)."""
    flags = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != path:
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                flags += [int(line.split()[1], 8) for line in f if line.startswith("flags:")]
        except OSError:
            continue
    return flags


def awkward_image(size: int) -> bytes:
    """Random bytes with zero runs that start and end inside sectors, a long aligned
    one, and an end that is no whole number of sectors."""
    data = bytearray(os.urandom(size))
    for start, length in ((4096 * 3 + 100, 5000), (MiB + 511, 3 * MiB + 7), (9 * MiB, 4 * MiB),
                          (size - 700, 300)):
        data[start : start + length] = bytes(length)
    return bytes(data)


def test_client_writes_a_block_device_past_the_page_cache(lab, loop_devices):
    """Midway through, the client's disk is opened O_DIRECT and what it wrote is not
    held in the page cache (buffered writes keep every page they wrote cached); the
    copy is still exact. The next client is stopped as soon as data reaches it, so the
    first one stalls, its disk open, once its buffers and replay window are full."""
    dev, _ = loop_devices(160 * MiB)
    image = lab.images / "disk.img"
    image.write_bytes(os.urandom(128 * MiB))
    first, second = hosts(2)
    write_config(lab.images, [first, second])
    lab.start_master()
    client = lab.start_client(first, dev)
    frozen = lab.start_client(second)
    lab.wait_for(lambda: "receiving img" in frozen.output(), 60, "data reaching the last client")
    frozen.kill(signal.SIGSTOP)
    try:
        written = lab.wait_for(lambda: (lab.clients()[first].get("bytes_done") or 0) >= 32 * MiB
                               and lab.clients()[first]["bytes_done"], 60, "32 MiB written")
        flags = open_flags(client.popen.pid, dev)
        cached = resident_bytes(dev, 32 * MiB)
    finally:
        frozen.kill(signal.SIGCONT)
    assert client.wait(60) == 0 and frozen.wait(60) == 0, lab.dump()
    assert written < 128 * MiB, "the first client was not stalled: nothing was observed midway"
    assert any(f & O_DIRECT for f in flags), [oct(f) for f in flags]
    assert cached <= 4 * MiB, f"{cached} bytes of the first 32 MiB written are cached"
    with open(dev, "rb") as f:
        assert f.read(128 * MiB) == image.read_bytes()


@pytest.mark.parametrize("compression, sector", [("NONE", 512), ("NONE", 4096), ("GZIP", 4096)])
def test_direct_writes_are_exact_at_any_alignment_and_keep_what_follows_the_image(
        lab, loop_devices, compression, sector):
    size = 24 * MiB + 1234  # ends inside a sector
    content = awkward_image(size)
    dev, _ = loop_devices(32 * MiB, "--sector-size", str(sector))
    name = "disk.img.gz" if compression == "GZIP" else "disk.img"
    (lab.images / name).write_bytes(gzip.compress(content, 1) if compression == "GZIP" else content)
    write_config(lab.images, hosts(1), filename=name, compression=compression)
    lab.start_master()
    client = lab.start_client(hosts(1)[0], dev)
    assert client.wait(60) == 0, lab.dump()
    state = lab.clients()[hosts(1)[0]]
    assert state["state"] == "DONE", state
    with open(dev, "rb") as f:
        got = f.read()
    assert got[:size] == content
    # The disk's last MiB is wiped on purpose (disk/gpt.py); up to there, nothing changes.
    assert got[size : 31 * MiB] == b"\xff" * (31 * MiB - size), "bytes past the image's end changed"
