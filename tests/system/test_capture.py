"""Used-block capture (issue 20): put-image and compress read only the blocks that
ext4, FAT32 and NTFS use, the master keeps the rest as holes listed in NAME.bmap, and a
chain of clients writes only the used blocks onto disks full of old bytes (0xff).

The source disk is a real GPT disk on a loop device whose free space holds random old
data; its filesystems are made by mkfs.ext4, mkfs.vfat and mkfs.ntfs and checked after
the restore by e2fsck, fsck.vfat and ntfsfix, file by file. That unused blocks are never
read is counted by the kernel (rchar of /proc/self/io): device-mapper, which could make
them I/O errors, is not in every kernel CI runs on."""

import gzip
import os
import shutil
import sys
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ENV, thepusher, write_config
from tests.support.hosts import hosts
from tests.system.test_fsmap import (
    DELETED, FILES, TOOLS, assemble, check_copy, edited, make_ext4, make_fat, make_ntfs, run,
)
from tests.system.test_put_image import answer, chunked, leftovers, raw_put
from thepusher.image import bmap, fsmap

pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in TOOLS + ("bmaptool",)),
                                reason="needs e2fsprogs, dosfstools, mtools, ntfs-3g, gdisk, bmap-tools")
MiB = 1 << 20
SIZE = 160 * MiB
KINDS = ("ext4", "fat", "ntfs")


@pytest.fixture(scope="module")
def disk(tmp_path_factory):
    """A GPT disk image: ext4, a FAT32 ESP and NTFS, free space full of random bytes."""
    tmp = tmp_path_factory.mktemp("disk")
    parts = {"ext4": tmp / "ext4.img", "fat": tmp / "fat.img", "ntfs": tmp / "ntfs.img"}
    make_ext4(parts["ext4"], 64 * MiB, FILES)
    make_fat(parts["fat"], 40 * MiB, FILES)
    make_ntfs(parts["ntfs"], 40 * MiB, FILES)
    path = tmp / "disk.img"
    assemble(path, SIZE, [(parts["ext4"], "8300"), (parts["fat"], "ef00"), (parts["ntfs"], "0700")])
    return path


def on_loop(loop_devices, image: Path) -> str:
    dev, _ = loop_devices(image.stat().st_size)
    with open(dev, "r+b") as f:
        f.write(image.read_bytes())
    return dev


def put(lab, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(thepusher("-v", "put-image", *args, "-p", f"127.0.0.1:{lab.port}"),
                          env=ENV, capture_output=True, text=True, timeout=300)


def partitions(image: Path):
    with open(image, "rb") as f:
        return fsmap.read_table(f.fileno())[1]


def check_target(target: bytes, source: bytes, the_bmap: bmap.Bmap, tmp: Path) -> None:
    """Mapped ranges equal the source, free ranges still 0xff, every filesystem clean
    with its files byte-equal."""
    assert len(target) == len(source)
    for offset, length, _ in the_bmap.mapped():
        assert target[offset:offset + length] == source[offset:offset + length], offset
    for offset, length in the_bmap.free_runs():
        assert target[offset:offset + length] == b"\xff" * length, ("free", offset)
    out = tmp / "part.img"
    for kind, p in zip(KINDS, partitions(tmp / "source.img")):
        out.write_bytes(target[p.start:p.start + p.size])
        check_copy(kind, out, tmp)
        if mountable(kind):
            compare_mounted(kind, out, tmp / "mnt")


MOUNT = {"ext4": ["mount", "-t", "ext4", "-o", "ro,loop,noload"],
         "fat": ["mount", "-t", "vfat", "-o", "ro,loop"], "ntfs": ["ntfs-3g", "-o", "ro"]}


def mountable(kind: str) -> bool:
    """Whether this kernel mounts it (a container's may lack vfat): where it does not,
    check_copy's fsck and file-by-file reads by the filesystem's own tools still ran."""
    with open("/proc/filesystems") as f:
        have = f.read().split()
    return {"ext4": "ext4", "fat": "vfat", "ntfs": "fuseblk"}[kind] in have and (
        kind != "ntfs" or os.path.exists("/dev/fuse"))


def compare_mounted(kind: str, image: Path, mnt: Path) -> None:
    """The filesystem mounted read-only holds exactly the files left, byte-equal."""
    mnt.mkdir(exist_ok=True)
    run(*MOUNT[kind], str(image), str(mnt))
    try:
        kept = {n: d for n, d in FILES.items() if kind == "ntfs" or n not in DELETED}
        found = {p.name for p in mnt.iterdir() if p.is_file()}
        assert found == set(kept), (kind, sorted(found ^ set(kept)))
        for name, data in kept.items():
            assert (mnt / name).read_bytes() == data, (kind, name)
    finally:
        run("umount", str(mnt))


@pytest.mark.parametrize("compress", [None, "gz"])
def test_put_image_captures_used_blocks_and_three_clients_restore_clean_disks_over_old_bytes(
        lab, disk, loop_devices, tmp_path, compress):
    source_dev = on_loop(loop_devices, disk)
    shutil.copy(disk, tmp_path / "source.img")
    name = "disk.img.gz" if compress else "disk.img"
    # the image is not there yet: put-image brings it
    write_config(lab.images, hosts(3), filename=name, compression="GZIP" if compress else "NONE")
    lab.start_master()
    result = put(lab, "-i", source_dev, "-n", name, *(["--compress", compress] if compress else []))
    assert result.returncode == 0, result.stderr
    for n, what in ((1, "ext4"), (2, "FAT32"), (3, "NTFS")):
        assert f"partition {n} (bytes " in result.stderr and what in result.stderr, result.stderr
    assert "GPT partition table, 3 partitions" in result.stderr
    assert "free, never read" in result.stderr

    stored = lab.images / name
    the_bmap = bmap.load(str(stored) + ".bmap")
    free = the_bmap.free_runs()
    free_bytes = sum(n for _, n in free)
    assert free_bytes > SIZE // 2  # most of the disk is free space
    assert f"of it free, in {name}.bmap" in result.stdout, result.stdout
    if compress:  # the compressed dd image, free ranges as zeros
        plain = gzip.decompress(stored.read_bytes())
        assert len(plain) == SIZE and stored.stat().st_size < SIZE // 3
    else:  # holes, not zeros
        assert stored.stat().st_blocks * 512 < SIZE - free_bytes + 4 * MiB
        plain = stored.read_bytes()
    for offset, length in free:
        assert plain[offset:offset + length] == bytes(length), offset

    targets = [loop_devices(SIZE)[0] for _ in range(3)]
    clients = [lab.start_client(h, dev) for h, dev in zip(hosts(3), targets)]
    for c in clients:
        assert c.wait(180) == 0, lab.dump()
    states = lab.clients()
    source = disk.read_bytes()
    for h, dev in zip(hosts(3), targets):
        assert states[h]["state"] == "DONE", states[h]
        assert states[h]["free_bytes"] == free_bytes
        with open(dev, "rb") as f:
            check_target(f.read(), source, the_bmap, tmp_path)


def read_by_put_image(lab, *args: str):
    """put-image in a Python that prints, as it ends, how many bytes it read (rchar of
    /proc/self/io: every read and pread, its own modules and the master's answers too)."""
    code = ("import atexit, sys\n"
            "from thepusher.cli import main\n"
            "atexit.register(lambda: print(open('/proc/self/io').read().split()[1], file=sys.stderr))\n"
            "sys.exit(main(sys.argv[1:]))\n")
    r = subprocess.run([sys.executable, "-c", code, "-v", "put-image", *args,
                        "-p", f"127.0.0.1:{lab.port}"], env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return int(r.stderr.split()[-1])


def test_unused_blocks_are_never_read(lab, disk, loop_devices):
    """What put-image reads is the used blocks and little more; --whole reads it all."""
    dev = on_loop(loop_devices, disk)
    with open(disk, "rb") as f:
        used = fsmap.used_map(f.fileno(), SIZE).total_used
    assert used < SIZE // 3
    write_config(lab.images, hosts(1))
    lab.start_master()
    mapped = read_by_put_image(lab, "-i", dev, "-n", "mapped.img")
    whole = read_by_put_image(lab, "-i", dev, "-n", "whole.img", "--whole")
    assert used <= mapped < used + 16 * MiB, (used, mapped)
    assert whole >= SIZE, whole
    assert (lab.images / "mapped.img").stat().st_blocks * 512 < used + 4 * MiB


def test_compress_writes_a_bmap_that_bmaptool_copies_onto_old_bytes_clean(disk, loop_devices,
                                                                           tmp_path):
    shutil.copy(disk, tmp_path / "source.img")
    out = tmp_path / "disk.img.gz"
    r = subprocess.run(thepusher("compress", str(disk), "--format", "gz", "-o", str(out)),
                       env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    the_bmap = bmap.load(str(out) + ".bmap")
    assert sum(n for _, n in the_bmap.free_runs()) > SIZE // 2
    assert f"free, never read, listed in {out}.bmap" in r.stdout, r.stdout
    plain = gzip.decompress(out.read_bytes())  # a dd image: free ranges are zeros
    source = disk.read_bytes()
    for offset, length in the_bmap.free_runs():
        assert plain[offset:offset + length] == bytes(length)
    target, _ = loop_devices(SIZE)  # a file would be cut to zero length first
    run("bmaptool", "copy", "--bmap", str(out) + ".bmap", str(out), target)
    with open(target, "rb") as f:
        check_target(f.read(), source, the_bmap, tmp_path)
    again = subprocess.run(thepusher("compress", str(disk), "--format", "gz", "-o", str(out)),
                           env=ENV, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "exists and is never overwritten" in again.stderr


def test_a_mounted_source_and_a_dirty_ext4_are_refused_unless_forced(lab, disk, loop_devices,
                                                                    tmp_path):
    write_config(lab.images, hosts(1))
    lab.start_master()
    ext4 = tmp_path / "ext4.img"
    p = partitions(disk)[0]
    with open(disk, "rb") as f:
        f.seek(p.start)
        ext4.write_bytes(f.read(p.size))
    dev = on_loop(loop_devices, ext4)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run("mount", dev, str(mnt))
    try:
        refused = put(lab, "-i", dev, "-n", "mounted.img")
        assert refused.returncode == 1, refused.stderr
        assert f"is mounted read-write on {mnt}" in refused.stderr and "--force" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert not (lab.images / "mounted.img").exists() and not leftovers(lab)
    finally:
        run("umount", str(mnt))

    incompat = int.from_bytes(ext4.read_bytes()[1024 + 0x60:1024 + 0x64], "little")
    dirty = edited(ext4, tmp_path / "dirty.img", 1024 + 0x60, (incompat | 0x4).to_bytes(4, "little"))
    refused = put(lab, "-i", str(dirty), "-n", "dirty.img")
    assert refused.returncode == 1 and "journal needs recovery" in refused.stderr, refused.stderr
    assert not (lab.images / "dirty.img").exists()
    forced = put(lab, "-i", str(dirty), "-n", "dirty.img", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "copied whole" in forced.stderr
    assert (lab.images / "dirty.img").read_bytes() == dirty.read_bytes()
    assert not (lab.images / "dirty.img.bmap").exists()  # nothing free: no map

    bare = put(lab, "-i", str(ext4), "-n", "bare.img")  # a filesystem without a table
    assert bare.returncode == 0, bare.stderr
    assert "no partition table" in bare.stderr and "ext4" in bare.stderr
    assert bmap.load(str(lab.images / "bare.img.bmap")).free_runs()


@pytest.mark.parametrize("free,body,error", [
    (b"[[1000,4096]]", b"x", "not on 4096-byte blocks"),
    (b"[[4096,4096],[8192,4096]]", b"x" * 4096, "send them merged"),
    (b"[[4096,4096]]", b"x" * 12288, "goes on past the 8192 used bytes"),
    (b"[[4096,4096]]", b"x" * 100, "ended at image byte 100"),
    (b"[[8192,8192]]", b"x", "past the image"),
])
def test_the_master_refuses_a_free_map_that_does_not_fit_and_keeps_nothing(lab, free, body, error):
    write_config(lab.images, hosts(1))
    lab.start_master()
    head = b'{"size":12288,"free":' + free + b"}"
    sock = raw_put(lab, "/api/images/bad.img", {
        "Transfer-Encoding": "chunked", "X-Content-Size": "12288",
        "X-Free-Map-Length": str(len(head)), "Connection": "close"}, chunked(head, body))
    status, reply = answer(sock)
    assert status == 400 and error in reply["error"], reply
    assert not (lab.images / "bad.img").exists() and not (lab.images / "bad.img.bmap").exists()
    lab.wait_for(lambda: not leftovers(lab), 20, "no temp files")


def test_a_compressed_upload_that_decompresses_to_another_size_than_its_map_is_refused(lab):
    write_config(lab.images, hosts(1))
    lab.start_master()
    head = b'{"size":12288,"free":[[4096,4096]]}'
    sock = raw_put(lab, "/api/images/bad.img.gz", {
        "Transfer-Encoding": "chunked", "X-Content-Size": "12288",
        "X-Free-Map-Length": str(len(head)), "Connection": "close"},
        chunked(head, gzip.compress(b"x" * 8192)))
    status, reply = answer(sock)
    assert status == 400 and "decompresses to 8192 bytes, its free map is for 12288" in reply["error"]
    assert not (lab.images / "bad.img.gz").exists()
    lab.wait_for(lambda: not leftovers(lab), 20, "no temp files")
