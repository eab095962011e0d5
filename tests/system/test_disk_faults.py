"""Disk trouble is local: a hop whose target fails reports why and keeps forwarding.

Real failures, no stand-ins: a tmpfs too small for the image (ENOSPC), and a loop
device whose backing file sits on such a tmpfs, so the block layer refuses the writes
past its first MiB (ENOSPC too: the client's writes reach the device as they are made,
O_DIRECT; through the page cache they came back as EIO from the final flush).
"""

import os

import pytest

from tests.support.hops import RunningHop, send_stream

MiB = 1 << 20


@pytest.fixture
def tiny_fs(small_tmpfs):
    """A real 1 MiB filesystem (tmpfs), mounted for this test only."""
    return small_tmpfs("1m")


def test_full_filesystem_is_error_with_cause_and_next_hop_still_verifies(tmp_path, tiny_fs):
    image = os.urandom(3 * MiB)
    last = RunningHop(tmp_path / "ok.img", image, position=2)
    first = RunningHop(tiny_fs / "disk.img", image, downstream=[last.address])
    send_stream(first.address, image)
    bad, good = first.wait(), last.wait()
    assert not bad.verified
    assert "No space left on device" in bad.error and str(tiny_fs / "disk.img") in bad.error
    assert "failed at byte" in bad.error
    assert good.verified and (tmp_path / "ok.img").read_bytes() == image


def test_block_device_refusing_writes_is_error_with_the_bytes_and_next_hop_still_verifies(tmp_path, tiny_fs,
                                                                       loop_devices):
    # sparse: the device claims 8 MiB, the filesystem holds 1
    device, _ = loop_devices(8 * MiB, under=tiny_fs, sparse=True)
    image = os.urandom(4 * MiB)
    last = RunningHop(tmp_path / "ok.img", image, position=2)
    first = RunningHop(device, image, downstream=[last.address])
    send_stream(first.address, image)
    bad, good = first.wait(), last.wait()
    assert not bad.verified and "No space left on device" in bad.error and device in bad.error
    assert f"writing {device} failed in bytes " in bad.error, bad.error
    assert good.verified and (tmp_path / "ok.img").read_bytes() == image


def test_mistyped_device_is_error_and_no_file_appears_in_dev(tmp_path):
    """On a netboot client /dev is RAM: a new file there would swallow the image and pass."""
    missing = f"/dev/thepusher-no-such-disk-{os.getpid()}"
    image = os.urandom(2 * MiB)
    last = RunningHop(tmp_path / "ok.img", image, position=2)
    first = RunningHop(missing, image, downstream=[last.address])
    send_stream(first.address, image)
    bad, good = first.wait(), last.wait()
    assert not bad.verified
    assert f"destination {missing} does not exist: no such disk" in bad.error
    assert not os.path.exists(missing)
    assert good.verified and (tmp_path / "ok.img").read_bytes() == image
