"""The hop on real sockets and real files: what reaches the disk, what is refused.

The sender side here is test code speaking the wire format (so it can misbehave on
purpose); the Hop under test is the real one, in real threads.
"""

import dataclasses
import hashlib
import os
import queue
import socket

import pytest

from tests.support.hops import RECORD, SECRET, RunningHop, make_header, send_stream
from thepusher.chain import wire
from thepusher.chain.hop.buffers import BufferPool


@pytest.fixture
def image():
    return os.urandom(3 * RECORD + 12345)


def test_buffer_pool_makes_buffers_as_needed_but_never_more_than_its_count():
    pool = BufferPool(3, 100)
    assert pool.in_use() == 0
    first, second, third = (pool.get(timeout=1) for _ in range(3))
    assert len({id(first), id(second), id(third)}) == 3 and len(first) == wire.HEAD_SIZE + 100
    assert pool.in_use() == 3
    with pytest.raises(queue.Empty):
        pool.get(timeout=0.1)
    pool.put(second)
    assert pool.get(timeout=1) is second  # a freed buffer is reused, none made
    assert pool.in_use() == 3


def test_hop_writes_exact_copy_and_verifies_digest(tmp_path, image):
    h = RunningHop(tmp_path / "disk", image)
    send_stream(h.address, image)
    hop = h.wait()
    assert hop.error is None and hop.verified
    assert (tmp_path / "disk").read_bytes() == image
    assert hop.digest == hashlib.sha256(image).hexdigest()


def test_hop_forwards_same_bytes_to_next_hop(tmp_path, image):
    last = RunningHop(tmp_path / "d2", image, position=2)
    first = RunningHop(tmp_path / "d1", image, downstream=[last.address])
    send_stream(first.address, image)
    assert first.wait().verified and last.wait().verified
    assert (tmp_path / "d1").read_bytes() == image == (tmp_path / "d2").read_bytes()


def test_upstream_closing_mid_stream_is_error_with_byte_offset_never_verified(tmp_path, image):
    last = RunningHop(tmp_path / "d2", image, position=2, accept_timeout=1.0)
    first = RunningHop(tmp_path / "d1", image, downstream=[last.address], accept_timeout=1.0)
    send_stream(first.address, image, cut_at=2 * RECORD)
    for hop in (first.wait(), last.wait()):
        assert not hop.verified
        assert f"stream ended at byte {2 * RECORD} of {len(image)}" in hop.error


def test_wrong_content_with_matching_framing_is_digest_error(tmp_path, image):
    h = RunningHop(tmp_path / "disk", image)
    tampered = image[:100] + bytes([image[100] ^ 1]) + image[101:]
    send_stream(h.address, tampered, content=image)
    hop = h.wait()
    assert not hop.verified and "digest mismatch" in hop.error


def test_record_at_wrong_offset_is_refused(tmp_path, image):
    h = RunningHop(tmp_path / "disk", image, accept_timeout=1.0)
    header = make_header(image)
    sock, _ = wire.connect(h.address, header, SECRET, timeout=5)
    sock.sendall(wire.pack_head(wire.DATA, 10, 0) + b"x" * 10)
    sock.sendall(wire.pack_head(wire.DATA, 10, 50) + b"y" * 10)
    hop = h.wait()
    sock.close()
    assert not hop.verified and "record at stream byte 50, expected byte 10" in hop.error


def test_stalled_upstream_times_out_instead_of_hanging(tmp_path, image):
    h = RunningHop(tmp_path / "disk", image, io_timeout=1.0, accept_timeout=1.0)
    sock, _ = wire.connect(h.address, make_header(image), SECRET, timeout=5)
    sock.sendall(wire.pack_head(wire.DATA, 10, 0) + b"x" * 10)
    hop = h.wait()
    sock.close()
    assert not hop.verified and "stream stalled at byte 10" in hop.error


def test_zero_run_records_are_written_as_zeros(tmp_path):
    content = b"a" * 1000 + bytes(5 << 20) + b"b" * 7
    h = RunningHop(tmp_path / "disk", content)
    header = make_header(content)
    sock, _ = wire.connect(h.address, header, SECRET, timeout=5)
    sock.sendall(wire.pack_head(wire.DATA, 1000, 0) + content[:1000])
    sock.sendall(wire.pack_head(wire.ZERO, 5 << 20, 1000))
    sock.sendall(wire.pack_head(wire.DATA, 7, 1000 + (5 << 20)) + b"b" * 7)
    sock.sendall(wire.end_record(len(content), header.content_sha256, len(content)))
    hop = h.wait()
    sock.close()
    assert hop.verified and (tmp_path / "disk").read_bytes() == content


def test_bz2_stream_is_decompressed_for_the_disk_and_forwarded_compressed(tmp_path):
    import bz2

    content = os.urandom(200_000) * 3
    packed = bz2.compress(content[:300_000]) + bz2.compress(content[300_000:])  # two streams
    header = make_header(packed, compression="BZ2", content=content)
    last = RunningHop(tmp_path / "d2", header=header, position=2)
    first = RunningHop(tmp_path / "d1", header=header, downstream=[last.address])
    send_stream(first.address, packed, header=header)
    assert first.wait().verified and last.wait().verified
    assert (tmp_path / "d1").read_bytes() == content == (tmp_path / "d2").read_bytes()


def test_a_compressed_stream_cut_short_ends_the_hop_at_its_end_not_an_io_timeout_later(tmp_path):
    """The decoder fails only at END (the gzip trailer is missing): the writer has taken
    the stream's last record, so nothing is left to wait for."""
    import gzip

    content = os.urandom(300_000)
    packed = gzip.compress(content)[:-20]
    header = make_header(packed, compression="GZIP", content=content)
    h = RunningHop(tmp_path / "disk", header=header, io_timeout=60)
    send_stream(h.address, packed, header=header)
    hop = h.wait()  # allows 30 s, half the io_timeout
    assert not hop.verified and "GZIP data ends in the middle of a stream" in hop.error


def test_disk_error_keeps_forwarding_to_next_hop(tmp_path, image):
    last = RunningHop(tmp_path / "d2", image, position=2)
    first = RunningHop(tmp_path / "no-such-dir" / "d1", image, downstream=[last.address])
    send_stream(first.address, image)
    bad, good = first.wait(), last.wait()
    assert not bad.verified and "cannot open destination" in bad.error
    assert good.verified and (tmp_path / "d2").read_bytes() == image


# -- doors: nothing is written for a connection without this round's secret ----------


def attack(address, payload: bytes):
    """Connect, read the HELLO, send `payload`, return what the hop answered."""
    with socket.create_connection(address, timeout=5) as s:
        nonce = wire.recv_hello(s)
        s.sendall(payload(nonce) if callable(payload) else payload)
        try:
            return s.recv(4096)
        except OSError:
            return b""


def header_bytes(header: wire.StreamHeader, secret: bytes, nonce: bytes) -> bytes:
    raw = header.encode()
    return wire.HEADER_MAGIC + len(raw).to_bytes(4, "big") + raw + wire.header_mac(secret, nonce, raw)


@pytest.mark.parametrize(
    "name, payload",
    [
        ("garbage", lambda n: os.urandom(5000)),
        ("wrong secret", lambda n: header_bytes(make_header(b"x" * 100), b"w" * 32, n)),
        ("replayed header", lambda n: header_bytes(make_header(b"x" * 100), SECRET, b"\0" * 16)),
        ("other session", lambda n: header_bytes(make_header(b"x" * 100, session="old"), SECRET, n)),
        ("huge header length", lambda n: wire.HEADER_MAGIC + (1 << 31).to_bytes(4, "big")),
        # the round's secret, but from a place after ours in the chain: not an upstream
        ("sender downstream of us", lambda n: header_bytes(
            dataclasses.replace(make_header(b"x" * 100), sender=2), SECRET, n)),
    ],
)
def test_connection_without_valid_secret_writes_zero_bytes(tmp_path, name, payload):
    dest = tmp_path / "disk"
    h = RunningHop(dest, b"x" * 100, accept_timeout=2.0)
    answer = attack(h.address, payload)
    hop = h.wait()
    assert not answer.startswith(wire.ACCEPT_MAGIC), name
    assert not dest.exists(), f"{name}: destination was touched"
    assert "no upstream connected" in hop.error


def test_valid_sender_after_refused_attacker_still_gets_through(tmp_path, image):
    h = RunningHop(tmp_path / "disk", image)
    attack(h.address, os.urandom(100))
    send_stream(h.address, image)
    assert h.wait().verified
    assert (tmp_path / "disk").read_bytes() == image


@pytest.fixture
def loop_device(tmp_path):
    """A real 1 MiB loop device filled with 0xaa (needs root, as CI has)."""
    import shutil
    import subprocess

    if os.geteuid() != 0 or not shutil.which("losetup"):
        pytest.skip("needs root and losetup for a loop device")
    backing = tmp_path / "loop.img"
    backing.write_bytes(b"\xaa" * (1 << 20))
    dev = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True)
    if dev.returncode != 0:
        pytest.skip(f"no loop device available: {dev.stderr.strip()}")
    yield dev.stdout.strip()
    subprocess.run(["losetup", "-d", dev.stdout.strip()], check=False)


def read_device(device: str) -> bytes:
    with open(device, "rb") as f:
        return f.read()


def test_block_device_smaller_than_image_is_refused_before_writing(loop_device):
    """A 1 MiB device must not receive a 2 MiB image, not even its start."""
    image = os.urandom(2 << 20)
    h = RunningHop(loop_device, image)
    send_stream(h.address, image)
    hop = h.wait()
    assert not hop.verified and "holds 1048576 bytes, the image needs 2097152" in hop.error
    assert read_device(loop_device) == b"\xaa" * (1 << 20)


def test_block_device_receives_image_and_keeps_its_tail(loop_device):
    """A block device is written in place, never truncated: bytes past the image stay."""
    image = os.urandom((1 << 20) - 4096)
    h = RunningHop(loop_device, image)
    send_stream(h.address, image)
    assert h.wait().verified
    assert read_device(loop_device) == image + b"\xaa" * 4096


# -- what a hop believes: only the master's start ---------------------------------------


def test_header_whose_facts_differ_from_the_masters_start_is_refused_and_nothing_written(tmp_path, image):
    """Anyone holding the round's secret can sign a header; the facts in it count only if
    they are the ones the master signed for this hop."""
    dest = tmp_path / "disk"
    h = RunningHop(dest, image, accept_timeout=2.0)
    forged = os.urandom(len(image))
    with pytest.raises(wire.ProtocolError, match="stream facts differ from the master's start: "
                                                 "content_sha256"):
        send_stream(h.address, forged)
    hop = h.wait()
    assert not dest.exists()
    assert "no upstream connected" in hop.error and "differ from the master's start" in hop.error


def test_abort_from_upstream_ends_the_hop_and_its_downstream_at_once(tmp_path, image):
    """ABORT: the upstream gave up, nobody above it can complete the stream. Both hops end
    with its reason long before their accept timeout."""
    last = RunningHop(tmp_path / "d2", image, position=2, accept_timeout=60)
    first = RunningHop(tmp_path / "d1", image, downstream=[last.address], accept_timeout=60)
    sock, _ = wire.connect(first.address, make_header(image), SECRET, timeout=5)
    with sock:
        sock.sendall(wire.pack_head(wire.DATA, RECORD, 0) + image[:RECORD])
        sock.sendall(wire.abort_record(RECORD, "the master is gone", RECORD))
        for hop in (first.wait(), last.wait()):  # wait() allows 30 s, not the 60 s timeout
            assert not hop.verified
            assert "gave up at byte" in hop.error and "the master is gone" in hop.error


def test_lost_upstream_is_waited_for_one_io_timeout_once_the_master_is_gone(tmp_path, image):
    h = RunningHop(tmp_path / "disk", image, accept_timeout=60, io_timeout=1.0,
                   master_gone=lambda: "the master has not answered for 9 s")
    send_stream(h.address, image, cut_at=RECORD)
    hop = h.wait()  # within 30 s: the accept timeout (60 s) did not apply
    assert f"stream ended at byte {RECORD}" in hop.error
    assert "the master has not answered for 9 s: giving up" in hop.error
