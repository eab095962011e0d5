"""Free ranges (issue 20): an image with a bmaptool `.bmap` next to it streams its
unmapped ranges as FREE records, which no client writes. The image file holds garbage
there and every target starts full of 0xff, so a free range that was written, zeroed
or punched would show; and every client still ends DONE, verified."""

import dataclasses
import hashlib
import json
import os
import random

import pytest

from tests.conftest import write_config
from tests.support.hops import SECRET, RunningHop, make_header
from tests.support.hosts import hosts
from tests.system.test_chain import kill_mid_stream
from thepusher.chain import wire
from thepusher.image import bmap, freemap

MiB = 1 << 20
BLOCK = 4096
READBACK = '  verify = "readback"\n'


def free_image(path, size=24 * MiB, seed=20):
    """Random mapped ranges (some holding a zero run, which travels as ZERO) between
    unmapped ranges of non-zero garbage; returns the mapped byte runs."""
    rnd = random.Random(seed)
    mapped, pos = [], 0
    with open(path, "wb") as f:
        while pos < size:
            used = min(rnd.randrange(1, 300) * BLOCK, size - pos)
            data = bytearray(os.urandom(used))
            if used >= 40 * BLOCK:
                data[16 * BLOCK : 32 * BLOCK] = bytes(16 * BLOCK)
            f.write(data)
            mapped.append((pos, used))
            pos += used
            unused = min(rnd.randrange(1, 300) * BLOCK, size - pos)
            f.write(b"\xa5" * unused)  # garbage the image does not define
            pos += unused
    bmap.write(str(path) + ".bmap", str(path), mapped)
    return mapped, freemap.complement(mapped, size)


def prefill(lab, n, size):
    for h in hosts(n):
        (lab.disks / f"{h}.img").write_bytes(b"\xff" * size)


def check_disks(image, disks, mapped, free):
    data = image.read_bytes()
    for disk in disks:
        got = disk.read_bytes()
        assert len(got) == len(data), disk
        for offset, length in mapped:
            assert got[offset : offset + length] == data[offset : offset + length], (disk, offset)
        for offset, length in free:
            assert got[offset : offset + length] == b"\xff" * length, (disk, "free", offset)


def defined_sha(image, free):
    """The image's digest: its bytes with the free ranges read as zeros."""
    data = bytearray(image.read_bytes())
    for offset, length in free:
        data[offset : offset + length] = bytes(length)
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("verify", ["write", "readback"])
def test_bmap_image_through_three_clients_leaves_free_ranges_untouched(lab, verify):
    image = lab.images / "disk.img"
    size = 24 * MiB
    mapped, free = free_image(image, size)
    prefill(lab, 3, size)
    write_config(lab.images, hosts(3), extra=READBACK if verify == "readback" else "")
    lab.start_master()
    clients = [lab.start_client(h) for h in hosts(3)]
    for c in clients:
        assert c.wait(120) == 0, lab.dump()
    check_disks(image, [lab.disks / f"{h}.img" for h in hosts(3)], mapped, free)
    check_done(lab, hosts(3), verify, defined_sha(image, free), free, "disk.img")


def old_client_in_the_middle(lab, old_client, size):
    """A chain of 3 whose middle client predates FREE records: it refuses the version 2
    stream at its header and writes not a byte; the others finish."""
    lab.start_master()
    c1 = lab.start_client(hosts(3)[0])
    old = lab.start_client(hosts(3)[1], launcher=old_client)
    c3 = lab.start_client(hosts(3)[2])
    assert c1.wait(60) == 0 and c3.wait(60) == 0, lab.dump()
    assert old.wait(60) != 0, lab.dump()
    assert "header has protocol version 2, expected 1" in old.output(), old.output()
    assert (lab.disks / f"{hosts(3)[1]}.img").read_bytes() == b"\xff" * size  # not one byte


def check_done(lab, done_hosts, verify, want, free, filename):
    """Every host DONE, verified as `verify`, with the image's digest and free bytes,
    counted in its group and its image; the free map in the image's sidecar. The
    image's status entry and sidecar are returned for more checks."""
    free_bytes = sum(n for _, n in free)
    status = lab.status()
    states = lab.clients()
    for h in done_hosts:
        assert states[h]["state"] == "DONE", states[h]
        assert states[h]["verified_by"] == verify
        assert states[h]["sha256"] == want
        assert states[h]["free_bytes"] == free_bytes
    assert status["groups"][0]["totals"]["free_bytes"] == len(done_hosts) * free_bytes
    img = next(i for i in status["images"] if i["name"] == "img")
    assert img["free_bytes"] == free_bytes and img["sha256"] == want
    sidecar = json.loads((lab.images / f"{filename}.digest.json").read_text())
    assert [tuple(r) for r in sidecar["free_runs"]] == free and sidecar["bmap_stamp"]
    return img, sidecar


def test_killed_middle_client_heals_and_free_ranges_stay_free_also_in_gap_fills(lab):
    """A replay window of 1 MiB: the hop after the killed one gets most of what it
    lacks from the master's gap fill, which must keep FREE as FREE."""
    image = lab.images / "disk.img"
    size = 160 * MiB
    mapped, free = free_image(image, size, seed=7)
    prefill(lab, 3, size)
    write_config(lab.images, hosts(3), settings="report_timeout = 5\nreplay_window = 1\n")
    lab.start_master()
    c1, c2, c3 = [lab.start_client(h) for h in hosts(3)]
    kill_mid_stream(lab, victim=c2, frozen=c3)
    assert c3.wait(120) == 0, lab.dump()
    assert c1.wait(120) == 0, lab.dump()
    assert "fetching stream bytes" in c3.output()  # the gap fill ran, as records
    states = lab.wait_for(lambda: (s := lab.clients()) and s[hosts(3)[1]]["state"] == "ERROR"
                          and s, 60, "the killed client marked ERROR")
    for h in (hosts(3)[0], hosts(3)[2]):
        assert states[h]["state"] == "DONE", states[h]
        assert states[h]["free_bytes"] == sum(n for _, n in free)
    check_disks(image, [lab.disks / f"{h}.img" for h in (hosts(3)[0], hosts(3)[2])],
                mapped, free)


def test_a_bmap_of_another_size_is_an_error_on_the_image_never_streamed(lab):
    image = lab.images / "disk.img"
    free_image(image, 4 * MiB)
    with open(image, "ab") as f:
        f.write(b"\x01" * BLOCK)
    write_config(lab.images, hosts(1))
    lab.start_master()
    c = lab.start_client(hosts(1)[0])
    img = lab.wait_for(lambda: next((i for i in lab.status()["images"]
                                     if i["state"] == "error"), None), 30, "the image's error")
    assert "disk.img.bmap is for an image of 4194304 bytes" in img["error"], img
    assert "has 4198400" in img["error"]
    c.stop()


def test_a_range_checksum_mismatch_is_an_error_naming_the_range(lab):
    image = lab.images / "disk.img"
    mapped, _ = free_image(image, 4 * MiB)
    offset = mapped[1][0]
    with open(image, "r+b") as f:
        f.seek(offset)
        f.write(b"\x00\x01\x02")
    write_config(lab.images, hosts(1))
    lab.start_master()
    img = lab.wait_for(lambda: next((i for i in lab.status()["images"]
                                     if i["state"] == "error"), None), 30, "the image's error")
    first = offset // BLOCK
    assert f"range {first}-" in img["error"] and "hashes to" in img["error"], img


def test_a_bmap_next_to_a_tar_image_is_refused_with_the_reason(lab):
    """A bmap describes a disk; a tar stream is unpacked. Also found by the name without
    the compression's suffix (files.tar.bmap next to files.tar.gz), as bmaptool looks."""
    import gzip
    raw = lab.root / "raw.img"
    free_image(raw, 1 * MiB)
    (lab.images / "files.tar.gz").write_bytes(gzip.compress(bytes(10240)))
    os.rename(str(raw) + ".bmap", lab.images / "files.tar.bmap")
    write_config(lab.images, hosts(1), filename="files.tar.gz", compression="GZIP",
                 extra='  type = "TAR"\n')
    lab.start_master()
    img = lab.wait_for(lambda: next((i for i in lab.status()["images"]
                                     if i["state"] == "error"), None), 30, "the image's error")
    assert "files.tar.bmap is next to a TAR image" in img["error"], img
    assert "IMG images only" in img["error"], img


def test_a_client_that_predates_free_records_refuses_the_header_and_writes_nothing(lab, old_client):
    """The old client in the middle refuses the version 2 header with the reason, writes
    not a byte, and the chain heals around it; a v1 stream (no bmap) it still takes."""
    image = lab.images / "disk.img"
    size = 8 * MiB
    mapped, free = free_image(image, size)
    prefill(lab, 3, size)
    write_config(lab.images, hosts(3), settings="io_timeout = 3\naccept_timeout = 6\n")
    old_client_in_the_middle(lab, old_client, size)
    check_disks(image, [lab.disks / f"{h}.img" for h in (hosts(3)[0], hosts(3)[2])], mapped, free)
    states = lab.clients()
    assert states[hosts(3)[1]]["state"] == "ERROR"
    assert [states[h]["state"] for h in (hosts(3)[0], hosts(3)[2])] == ["DONE", "DONE"]


def test_without_a_bmap_the_stream_stays_version_1_for_old_clients(lab, old_client):
    image = lab.images / "disk.img"
    image.write_bytes(os.urandom(2 * MiB) + bytes(2 * MiB))
    write_config(lab.images, hosts(1))
    lab.start_master()
    old = lab.start_client(hosts(1)[0], launcher=old_client)
    assert old.wait(60) == 0, lab.dump()
    assert (lab.disks / f"{hosts(1)[0]}.img").read_bytes() == image.read_bytes()


def free_stream(h, header, kinds):
    """Send records of `kinds` ((kind, offset, length, payload)) and END to hop `h`."""
    sock, _ = wire.connect(h.address, header, SECRET, timeout=5)
    for kind, offset, length, payload in kinds:
        sock.sendall(wire.pack_head(kind, length, offset) + payload)
    sock.sendall(wire.end_record(header.stream_size, header.content_sha256, header.content_size))
    hop = h.wait()
    sock.close()
    return hop


def free_header(content, free):
    return dataclasses.replace(make_header(content), version=wire.FREE_VERSION,
                               free_bytes=sum(n for _, n in free),
                               free_map_sha256=freemap.digest(free))


def test_a_hop_skips_free_records_and_verifies_both_digests(tmp_path):
    content = b"a" * 1000 + bytes(3 << 20) + b"b" * 7  # the middle: free, as zeros
    free = [(1000, 3 << 20)]
    header = free_header(content, free)
    dest = tmp_path / "disk"
    dest.write_bytes(b"\xff" * len(content))
    hop = free_stream(RunningHop(dest, header=header), header, [
        (wire.DATA, 0, 1000, content[:1000]), (wire.FREE, 1000, 1 << 20, b""),
        (wire.FREE, 1000 + (1 << 20), 2 << 20, b""), (wire.DATA, 1000 + (3 << 20), 7, b"b" * 7)])
    assert hop.verified, hop.error
    assert hop.free_bytes == 3 << 20
    assert dest.read_bytes() == b"a" * 1000 + b"\xff" * (3 << 20) + b"b" * 7


def test_a_member_turning_a_zero_run_into_free_gets_no_verified_copy(tmp_path):
    """Same content digest (free counts as zeros), but old bytes would stay on the disk
    where the image has zeros: the free map the master signed does not say so."""
    content = b"a" * 1000 + bytes(1 << 20)
    signed = free_header(content, [(1000, 4096)])
    honest = [(wire.DATA, 0, 1000, content[:1000]), (wire.FREE, 1000, 4096, b""),
              (wire.ZERO, 5096, (1 << 20) - 4096, b"")]
    hop = free_stream(RunningHop(tmp_path / "disk", header=signed), signed, honest)
    assert hop.verified, hop.error
    forged = honest[:1] + [(wire.FREE, 1000, 1 << 20, b"")]
    hop = free_stream(RunningHop(tmp_path / "disk2", header=signed), signed, forged)
    assert not hop.verified and "free map mismatch" in hop.error, hop.error
