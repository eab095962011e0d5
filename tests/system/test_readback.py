"""verify = "readback": DONE only if what the disk gives back is the image.

The write-side hash vouches for the bytes handed to write(); a disk that keeps other
bytes than it was given, or a destination changed after it was written, passes it. The
lying disks here are real: a file and a loop device's backing file that another
process keeps overwriting with other bytes while the client writes and reads back.
"""

import os
import subprocess
import threading

import pytest

from tests.conftest import ENV, sha256_file, thepusher, write_config, write_image

MiB = 1 << 20
A = "127.0.0.11"
READBACK = '  verify = "readback"\n'


class Tamper:
    """Overwrites the first 64 KiB of `path` with other bytes, over and over, until
    stopped: whatever the client writes there does not stay."""

    def __init__(self, path) -> None:
        self.path = path
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        junk = b"\xa5" * (64 << 10)
        while not self.stopped.wait(0.005):
            try:
                fd = os.open(self.path, os.O_WRONLY)
            except OSError:
                continue
            try:
                if os.fstat(fd).st_size >= len(junk):
                    os.pwrite(fd, junk, 0)
            finally:
                os.close(fd)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)


@pytest.fixture
def loop_device(loop_devices):
    """A real block device (loop) over a sparse file: (device, backing file)."""
    return loop_devices(32 * MiB, sparse=True)


def run_client(lab, destination: str) -> int:
    return lab.start_client(A, destination).wait(60)


def test_readback_of_an_honest_disk_is_done_and_status_says_it_was_read_back(lab):
    write_image(lab.images / "disk.img", 16 * MiB)
    write_config(lab.images, [A], extra=READBACK)
    lab.start_master()
    assert run_client(lab, str(lab.disks / "a.img")) == 0, lab.dump()
    client = lab.clients()[A]
    assert client["state"] == "DONE" and client["verified_by"] == "readback"
    assert lab.status()["history"][-1]["verified_by"] == {A: "readback"}
    table = subprocess.run(thepusher("status", "-p", f"127.0.0.1:{lab.port}"), env=ENV,
                           capture_output=True, text=True, timeout=30).stdout
    assert "DONE (read back)" in table
    assert "read back from" in lab.procs[1].output()


def test_without_readback_status_says_done_was_checked_on_the_write_side(lab):
    write_image(lab.images / "disk.img", MiB)
    write_config(lab.images, [A])
    lab.start_master()
    assert run_client(lab, str(lab.disks / "a.img")) == 0, lab.dump()
    assert lab.clients()[A]["verified_by"] == "write"


def test_readback_finds_a_file_changed_after_it_was_written(lab):
    write_image(lab.images / "disk.img", 16 * MiB)
    write_config(lab.images, [A], extra=READBACK)
    lab.start_master()
    disk = lab.disks / "a.img"
    tamper = Tamper(disk)
    try:
        assert run_client(lab, str(disk)) == 1, lab.dump()
    finally:
        tamper.stop()
    client = lab.clients()[A]
    assert client["state"] == "ERROR"
    assert f"read back from {disk}" in client["error"] and "differs from the image" in client["error"]


def test_readback_reads_a_block_device_past_its_page_cache(lab, loop_device):
    """The loop device's page cache still holds what the client wrote; the backing file
    (what a disk would return) holds other bytes. Reading back must see the latter."""
    device, backing = loop_device
    write_image(lab.images / "disk.img", 16 * MiB)
    write_config(lab.images, [A], extra=READBACK)
    lab.start_master()
    tamper = Tamper(backing)
    try:
        assert run_client(lab, device) == 1, lab.dump()
    finally:
        tamper.stop()
    assert "differs from the image" in lab.clients()[A]["error"]


def test_readback_of_an_honest_block_device_is_done(lab, loop_device):
    device, _ = loop_device
    write_image(lab.images / "disk.img", 16 * MiB)
    write_config(lab.images, [A], extra=READBACK)
    lab.start_master()
    assert run_client(lab, device) == 0, lab.dump()
    with open(device, "rb") as f:
        head = f.read(16 * MiB)
    import hashlib

    assert hashlib.sha256(head).hexdigest() == sha256_file(lab.images / "disk.img")
    assert lab.clients()[A]["verified_by"] == "readback"


def test_readback_of_a_tar_image_is_refused_by_the_config_with_its_line(lab):
    write_image(lab.images / "disk.img", MiB)
    config = write_config(lab.images, [A], extra='  type = "TAR"\n' + READBACK)
    r = subprocess.run(thepusher("check-config", str(config)), env=ENV, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1
    assert f"{config}:6:" in r.stderr and "readback" in r.stderr and "TAR" in r.stderr
