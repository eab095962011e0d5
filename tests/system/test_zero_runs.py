"""Zero runs travel as a length and land as holes or device-zeroed ranges, and the disk
reads back exactly like the image: on files and on real loop devices, both filled with
garbage beforehand so a skipped range would show."""

import hashlib
import json
import os
import random
import subprocess

import pytest

from tests.conftest import sha256_file, write_config
from thepusher.image import freemap, sparse
from thepusher.config.model import Image
from thepusher.image.facts import read_sidecar, write_sidecar
from thepusher.master.images import compute_facts
from thepusher.disk.target import Target

MiB = 1 << 20
B = sparse.ZERO_BLOCK


def hosts(n):
    return [f"127.0.0.{11 + i}" for i in range(n)]


def zero_run_image(path, size=24 * MiB, seed=6):
    """Random data between zero runs of every kind: aligned and not, shorter than a
    zero block, a hole made by truncate, and a trailing run whose length is odd."""
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        pos = 0
        while pos < size - 3 * MiB:
            data = rnd.randrange(1, 2 * MiB)
            f.write(rnd.randbytes(data) if hasattr(rnd, "randbytes") else os.urandom(data))
            zeros = rnd.choice([100, B - 1, B + 1, 3 * B, MiB + 12345, 2 * MiB])
            f.write(bytes(zeros))
            pos += data + zeros
        f.write(os.urandom(4096))
        f.seek(size - 777 - MiB)  # a real hole, then an unaligned trailing zero run
        f.write(os.urandom(4096))
        f.truncate(size)
    return path


def image_of(path, compression="NONE"):
    return Image(name="img", filename=os.path.basename(path), path=str(path), type="IMG",
                 compression=compression, destination="/dev/null", line=1)


def read_io():
    with open("/proc/self/io") as f:
        return {k: int(v) for k, v in (line.split(": ") for line in f)}


def test_zero_map_keeps_only_aligned_zero_blocks_and_merges_neighbours():
    buf = bytearray(os.urandom(8 * B))
    buf[B : 3 * B] = bytes(2 * B)  # two aligned zero blocks: one run
    buf[4 * B + 10 : 5 * B + 10] = bytes(B)  # zero, but not aligned: data
    buf[7 * B :] = bytes(B)
    zeros = sparse.ZeroMap()
    zeros.scan(buf, len(buf), 0)
    zeros.scan(bytearray(2 * B), 2 * B, 8 * B)  # the next read continues the last run
    assert zeros.runs == [[B, 2 * B], [7 * B, 3 * B]]
    shifted = sparse.ZeroMap()
    shifted.scan(buf, len(buf), 10)  # blocks align to the file, not to the buffer
    assert shifted.runs == [[2 * B, B]]  # the only whole file block inside buf[B:3B]


def segments(runs, start, end, max_data, max_zero):
    """The master's pieces of an image without free ranges, as (is_zero, offset, length)."""
    return [(kind == freemap.ZERO, offset, length)
            for kind, offset, length in freemap.pieces(runs, None, start, end, max_data, max_zero)]


def test_segments_cover_a_range_exactly_even_when_resuming_inside_a_run():
    runs = [(100, 50), (1000, 5000), (9000, 10)]
    pieces = segments(runs, 0, 10000, max_data=400, max_zero=3000)
    assert pieces[0] == (False, 0, 100) and pieces[1] == (True, 100, 50)
    pos = 0
    for zero, offset, length in pieces:
        assert offset == pos and 0 < length <= (3000 if zero else 400)
        pos += length
    assert pos == 10000
    assert [p for p in pieces if p[0]] == [(True, 100, 50), (True, 1000, 3000),
                                           (True, 4000, 2000), (True, 9000, 10)]
    assert segments(runs, 2500, 6100, 400, 3000) == [
        (True, 2500, 3000), (True, 5500, 500), (False, 6000, 100)]


def test_holes_of_a_sparse_image_are_mapped_without_reading_them(tmp_path):
    path = tmp_path / "sparse.img"
    with open(path, "wb") as f:
        f.seek(300 * MiB)
        f.write(os.urandom(MiB))
        f.truncate(600 * MiB)
    before = read_io()["rchar"]
    facts = compute_facts(image_of(path))
    read = read_io()["rchar"] - before
    assert read < 8 * MiB, f"read {read} bytes of a 600 MiB image that holds 1 MiB of data"
    assert facts.sha256 == sha256_file(path)
    assert facts.content_size == 600 * MiB
    assert sum(length for _, length in facts.zero_runs) == 599 * MiB
    assert facts.zero_runs[0] == (0, 300 * MiB)


def test_zero_runs_are_kept_in_the_sidecar_and_a_sidecar_without_them_is_not_trusted(tmp_path):
    path = zero_run_image(tmp_path / "z.img", 8 * MiB)
    facts = compute_facts(image_of(path))
    assert facts.zero_runs and facts.sha256 == sha256_file(path)
    write_sidecar(str(path), facts)
    assert read_sidecar(str(path), zero_runs=True) == facts
    sidecar = tmp_path / "z.img.digest.json"
    data = json.loads(sidecar.read_text())
    del data["zero_runs"]  # as written by a version that did not map zeros
    sidecar.write_text(json.dumps(data))
    assert read_sidecar(str(path), zero_runs=True) is None
    assert read_sidecar(str(path)).sha256 == facts.sha256


def test_zero_run_image_through_three_clients_reads_back_identical_with_holes(lab):
    """Destinations hold 0xff garbage longer than the image: every zero run must read
    back as zeros, nothing may be left past the end, and the runs stay holes."""
    image = zero_run_image(lab.images / "disk.img")
    facts = compute_facts(image_of(image))
    zeros = sum(length for _, length in facts.zero_runs)
    assert zeros > 8 * MiB
    for h in hosts(3):
        (lab.disks / f"{h}.img").write_bytes(b"\xff" * (32 * MiB))
    write_config(lab.images, hosts(3))
    lab.start_master()
    clients = [lab.start_client(h) for h in hosts(3)]
    for c in clients:
        assert c.wait(120) == 0, lab.dump()
    want = sha256_file(image)
    for h in hosts(3):
        disk = lab.disks / f"{h}.img"
        assert sha256_file(disk) == want
        assert disk.stat().st_size == image.stat().st_size
        allocated = disk.stat().st_blocks * 512
        assert allocated <= image.stat().st_size - zeros + MiB, f"{h}: zero runs were written"
        assert lab.clients()[h]["state"] == "DONE"


def read_prefix(path, n):
    with open(path, "rb") as f:
        return f.read(n)


def test_unaligned_zero_runs_on_a_block_device_are_zeroed_exactly(loop_devices):
    device, _ = loop_devices(4 * MiB)
    target = Target(device)
    target.open(3 * MiB)
    target.write(b"\x01" * 1000)
    target.write_zeros(MiB + 3)  # unaligned start and end: written head and tail
    target.write(b"\x02" * 5)
    target.write_zeros(2 * MiB - 1008)
    target.finish()
    target.close()
    assert target.zeroed >= MiB  # the device zeroed the aligned middle itself
    want = b"\x01" * 1000 + bytes(MiB + 3) + b"\x02" * 5 + bytes(2 * MiB - 1008)
    assert read_prefix(device, 4 * MiB) == want + b"\xff" * MiB  # its tail stays


def allocated(path):
    return os.stat(path).st_blocks * 512


def write_pattern(target):
    """Data, an unaligned zero run over old bytes, data, a run reaching past the old end."""
    target.write(b"\x01" * 1000)
    target.write_zeros(MiB + 3)
    target.write(b"\x02" * 5)
    target.write_zeros(3 * MiB)
    return b"\x01" * 1000 + bytes(MiB + 3) + b"\x02" * 5 + bytes(3 * MiB)


def test_a_file_is_written_over_in_place_its_old_bytes_under_zero_runs_punched_out(tmp_path):
    """Re-imaging a file destination keeps its blocks (it is not emptied at open): old
    bytes are overwritten, zero runs over them become holes, the tail is cut at the end."""
    path = tmp_path / "disk.img"
    path.write_bytes(b"\xff" * (3 * MiB))
    target = Target(str(path))
    target.open(4 * MiB)
    target.write(b"\x01" * MiB)
    assert read_prefix(path, 3 * MiB)[MiB:] == b"\xff" * (2 * MiB)  # not emptied
    target.write_zeros(MiB)
    target.write(b"\x02" * 100)
    target.write_zeros(2 * MiB - 100)
    target.finish()
    target.close()
    assert path.read_bytes() == b"\x01" * MiB + bytes(MiB) + b"\x02" * 100 + bytes(2 * MiB - 100)
    assert target.zeroed >= 3 * MiB - 8192  # freed or skipped, not written
    assert allocated(path) <= MiB + 3 * 4096


def test_zero_runs_over_old_bytes_are_written_where_the_filesystem_cannot_punch_holes(tmp_path):
    """ramfs has no hole punching: the zeros are written, and the file still reads back
    exactly (needs root to mount it, as CI has)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a ramfs")
    mount = tmp_path / "ramfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "ramfs", str(mount)], check=True)
    try:
        path = mount / "disk.img"
        path.write_bytes(b"\xff" * (3 * MiB))
        target = Target(str(path))
        target.open(4 * MiB)
        want = write_pattern(target)
        target.finish()
        target.close()
        assert path.read_bytes() == want
        assert target.zeroed == MiB + 1008  # only what lies past the old end: a seek
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_zero_run_image_on_loop_devices_reads_back_identical(lab, loop_devices):
    image = zero_run_image(lab.images / "disk.img")
    size = image.stat().st_size
    devices = [loop_devices(size + 3 * MiB)[0] for _ in range(2)]
    write_config(lab.images, hosts(2))
    lab.start_master()
    clients = [lab.start_client(h, dev) for h, dev in zip(hosts(2), devices)]
    for c in clients:
        assert c.wait(120) == 0, lab.dump()
    want = image.read_bytes()
    for dev in devices:
        got = read_prefix(dev, size + 3 * MiB)
        assert hashlib.sha256(got[:size]).hexdigest() == hashlib.sha256(want).hexdigest()
        assert got[size : size + 2 * MiB] == b"\xff" * (2 * MiB)  # no zero run spills over
        assert got[size + 2 * MiB :] == bytes(MiB)  # the disk's last MiB: wiped (docs/disks.md)


def test_free_space_of_a_compressed_image_lands_as_holes_and_reads_back_identical(lab, tmp_path):
    """Decompressed pieces (up to 4 MiB) that are all zeros are zero runs too: the large
    empty stretches of a gzip'd or bzip2'd disk cost the client no writes."""
    import bz2
    import gzip

    raw = tmp_path / "raw.img"
    with open(raw, "wb") as f:
        for i in range(6):  # 1 MiB of data, then 15 MiB free, six times; odd tail
            f.write(os.urandom(MiB))
            f.write(bytes(15 * MiB - (777 if i == 5 else 0)))
    data = raw.read_bytes()
    (lab.images / "disk.img.gz").write_bytes(gzip.compress(data, 1))
    (lab.images / "disk.img.bz2").write_bytes(bz2.compress(data, 9))
    for name, compression in (("disk.img.gz", "GZIP"), ("disk.img.bz2", "BZ2")):
        lab.close()
        lab.procs.clear()
        disk = lab.disks / f"{hosts(1)[0]}.img"
        disk.write_bytes(b"\xff" * (100 * MiB))
        write_config(lab.images, hosts(1), filename=name, compression=compression)
        lab.start_master()
        assert lab.start_client(hosts(1)[0]).wait(120) == 0, lab.dump()
        assert sha256_file(disk) == sha256_file(raw), name
        allocated = disk.stat().st_blocks * 512
        assert allocated <= 48 * MiB, f"{name}: {allocated} bytes of a 96 MiB disk allocated"
