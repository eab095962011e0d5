"""Used-block maps on real filesystems made by mkfs.ext4, mkfs.vfat, mkfs.ntfs and
mkswap, in real GPT and MBR tables: copying only the mapped ranges onto a target full
of 0xff must give filesystems that fsck finds clean and files that are byte-equal;
hostile inputs are copied whole or refused, with the reason, never mapped wrong."""

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from thepusher.image import fsmap
from thepusher.image.fsmap import ntfs

TOOLS = ("mkfs.ext4", "debugfs", "e2fsck", "mkfs.vfat", "fsck.vfat", "mcopy", "mdel",
         "mkfs.ntfs", "ntfscp", "ntfscat", "ntfsfix", "mkswap", "sgdisk", "sfdisk")
pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in TOOLS),
                                reason="needs e2fsprogs, dosfstools, mtools, ntfs-3g, gdisk, fdisk")
MiB = 1 << 20
FILES = {f"f{i}.bin": os.urandom(i * 37_000 + 5) for i in range(12)}
DELETED = ("f3.bin", "f7.bin")


def run(*cmd: str) -> str:
    r = subprocess.run(cmd, capture_output=True)
    assert r.returncode == 0, f"{cmd}: {r.stdout!r} {r.stderr!r}"
    return r.stdout.decode(errors="replace")


def make_ext4(path: Path, size: int, files: dict) -> None:
    src = path.parent / (path.name + ".d")
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    with open(path, "wb") as f:
        f.write(os.urandom(size))  # old data in the free space
    run("mkfs.ext4", "-q", "-F", "-E", "nodiscard", "-d", str(src), str(path))
    for name in DELETED:
        run("debugfs", "-w", "-R", f"rm /{name}", str(path))


def make_fat(path: Path, size: int, files: dict) -> None:
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    run("mkfs.vfat", "-F", "32", "-s", "1", str(path))
    for name, data in files.items():
        (path.parent / name).write_bytes(data)
        run("mcopy", "-i", str(path), str(path.parent / name), f"::{name}")
    for name in DELETED:
        run("mdel", "-i", str(path), f"::{name}")


def make_ntfs(path: Path, size: int, files: dict) -> None:
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    run("mkfs.ntfs", "-q", "-f", "-F", str(path))
    for name, data in files.items():
        (path.parent / name).write_bytes(data)
        run("ntfscp", "-f", str(path), str(path.parent / name), name)


def make_swap(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    run("mkswap", str(path))


def assemble(disk: Path, size: int, parts, mbr: bool = False) -> None:
    """A disk image of `size` with the partition images `parts` [(path, type)], in a
    GPT (or an MBR whose last two partitions are logical), starting at 1 MiB."""
    with open(disk, "wb") as f:
        f.write(os.urandom(size))
    if mbr:
        lines = ["label: dos"]
        for i, (path, kind) in enumerate(parts):
            if i == 2:
                lines.append("type=5")
            lines.append(f"size={path.stat().st_size // 512}, type={kind}")
        subprocess.run(["sfdisk", "-q", str(disk)], input="\n".join(lines) + "\n", text=True,
                       check=True, capture_output=True)
    else:
        args = ["sgdisk", "-Z"]
        for i, (path, kind) in enumerate(parts, 1):
            args += [f"-n{i}:0:+{path.stat().st_size // 1024}K", f"-t{i}:{kind}"]
        run(*args, str(disk))
    with open(disk, "r+b") as f:
        _, found = fsmap.read_table(f.fileno())
        for p, (path, _) in zip(found, parts):
            assert p.size == path.stat().st_size
            f.seek(p.start)
            f.write(path.read_bytes())


def copy_mapped(src: Path, dst: Path, m: fsmap.UsedMap) -> None:
    """Only the mapped ranges, onto a target full of 0xff."""
    with open(src, "rb") as s, open(dst, "wb") as d:
        for _ in range(0, m.size, 16 * MiB):
            d.write(b"\xff" * min(16 * MiB, m.size - d.tell()))
        for start, length in m.ranges:
            s.seek(start)
            d.seek(start)
            d.write(s.read(length))


def extract(disk: Path, start: int, size: int, out: Path) -> Path:
    with open(disk, "rb") as f:
        f.seek(start)
        out.write_bytes(f.read(size))
    return out


def check_copy(kind: str, image: Path, tmp: Path) -> None:
    """fsck finds the copy clean, and each file left is byte-equal."""
    kept = {n: d for n, d in FILES.items() if kind == "ntfs" or n not in DELETED}
    if kind == "ext4":
        run("e2fsck", "-fn", str(image))
        for name, data in kept.items():
            run("debugfs", "-R", f"dump /{name} {tmp / 'out'}", str(image))
            assert (tmp / "out").read_bytes() == data, name
    elif kind == "fat":
        run("fsck.vfat", "-n", str(image))
        for name, data in kept.items():
            run("mcopy", "-o", "-i", str(image), f"::{name}", str(tmp / "out"))
            assert (tmp / "out").read_bytes() == data, name
    elif kind == "ntfs":
        out = run("ntfsfix", "-n", str(image))
        assert "NTFS partition " in out and "was processed successfully" in out, out
        for name, data in kept.items():
            r = subprocess.run(["ntfscat", str(image), name], capture_output=True)
            assert r.returncode == 0 and r.stdout == data, name


def used_map(path: Path, force: bool = False) -> fsmap.UsedMap:
    with open(path, "rb") as f:
        return fsmap.used_map(f.fileno(), path.stat().st_size, force=force)


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("volumes")
    made = {"ext4": tmp / "ext4.img", "fat": tmp / "fat.img", "ntfs": tmp / "ntfs.img",
            "swap": tmp / "swap.img"}
    make_ext4(made["ext4"], 64 * MiB, FILES)
    make_fat(made["fat"], 40 * MiB, FILES)
    make_ntfs(made["ntfs"], 40 * MiB, FILES)
    make_swap(made["swap"], 8 * MiB)
    return made


@pytest.mark.parametrize("mbr", [False, True], ids=["gpt", "mbr-logical"])
def test_a_disk_copied_by_its_map_is_clean_and_whole(volumes, tmp_path, mbr):
    order = ["ext4", "fat", "ntfs", "swap"]
    types = ({"ext4": "83", "fat": "c", "ntfs": "7", "swap": "82"} if mbr else
             {"ext4": "8300", "fat": "ef00", "ntfs": "0700", "swap": "8200"})
    disk = tmp_path / "disk.img"
    assemble(disk, 160 * MiB, [(volumes[k], types[k]) for k in order], mbr=mbr)
    m = used_map(disk)
    print(f"{'MBR' if mbr else 'GPT'} disk: {m.total_used} of {m.size} bytes mapped", *m.notes,
          sep="\n")
    assert m.refusals == []
    assert sum("mapped" in n for n in m.notes) == 4, m.notes
    assert m.total_used < 0.2 * m.size
    copy = tmp_path / "copy.img"
    copy_mapped(disk, copy, m)
    with open(copy, "rb") as f:
        _, parts = fsmap.read_table(f.fileno())
    assert [p.number for p in parts] == ([1, 2, 5, 6] if mbr else [1, 2, 3, 4])
    for p, kind in zip(parts, order):
        image = extract(copy, p.start, p.size, tmp_path / f"{kind}.part")
        if kind == "swap":
            assert image.read_bytes()[4086:4096] == b"SWAPSPACE2"
        else:
            check_copy(kind, image, tmp_path)


@pytest.mark.parametrize("kind", ["ext4", "fat", "ntfs", "swap"])
def test_a_bare_filesystem_at_byte_0_is_mapped(volumes, tmp_path, kind):
    m = used_map(volumes[kind])
    print(f"bare {kind}: {m.total_used} of {m.size} bytes mapped", *m.notes, sep="\n")
    assert len(m.notes) == 1 and ": mapped," in m.notes[0], m.notes
    assert m.total_used < 0.5 * m.size
    copy = tmp_path / "copy.img"
    copy_mapped(volumes[kind], copy, m)
    if kind != "swap":
        check_copy(kind, copy, tmp_path)
    starts = [s for s, _ in m.ranges]
    assert starts == sorted(starts) and all(
        a + n < b for (a, n), (b, _) in zip(m.ranges, m.ranges[1:]))  # merged


def edited(src: Path, dst: Path, offset: int, data: bytes) -> Path:
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        f.seek(offset)
        f.write(data)
    return dst


def test_an_ext4_whose_free_count_disagrees_is_copied_whole(volumes, tmp_path):
    raw = volumes["ext4"].read_bytes()
    free, = struct.unpack_from("<I", raw, 1024 + 0xC)
    bad = edited(volumes["ext4"], tmp_path / "bad.img", 1024 + 0xC, struct.pack("<I", free - 1))
    m = used_map(bad)
    assert m.ranges == [(0, m.size)]
    assert "copied whole" in m.notes[0] and "superblock counts" in m.notes[0], m.notes


@pytest.mark.parametrize("field,value,reason", [
    (0x60, None, "journal needs recovery"), (0x3A, struct.pack("<H", 0), "not cleanly unmounted")])
def test_an_ext4_to_recover_is_refused_unless_forced(volumes, tmp_path, field, value, reason):
    if value is None:
        incompat, = struct.unpack_from("<I", volumes["ext4"].read_bytes(), 1024 + 0x60)
        value = struct.pack("<I", incompat | 0x4)
    bad = edited(volumes["ext4"], tmp_path / "bad.img", 1024 + field, value)
    with pytest.raises(fsmap.Refused) as refused:
        used_map(bad)
    assert reason in str(refused.value) and "at byte 0" in str(refused.value)
    m = used_map(bad, force=True)
    assert m.ranges == [(0, m.size)] and reason in m.notes[0] and m.refusals


def volume_flags_offset(image: Path) -> int:
    """Where $Volume's flags are, in the image's bytes (found with the reader's parts)."""
    with open(image, "rb") as f:
        boot = f.read(512)
        sector, per_cluster = struct.unpack_from("<HB", boot, 11)
        mft, = struct.unpack_from("<Q", boot, 0x30)
        at = mft * sector * per_cluster + 3 * 1024
        f.seek(at)
        rec = ntfs.fixup(f.read(1024), b"FILE", "$Volume")
    offset, = struct.unpack_from("<H", rec, 0x14)
    for kind, attr in ntfs.attributes(rec, "$Volume"):
        if kind == ntfs.VOLUME_INFORMATION:
            value, = struct.unpack_from("<H", attr, 0x14)
            return at + offset + value + 0x0A
        offset += len(attr)
    raise AssertionError("no $VOLUME_INFORMATION")


def test_a_dirty_ntfs_is_refused(volumes, tmp_path):
    bad = edited(volumes["ntfs"], tmp_path / "bad.img", volume_flags_offset(volumes["ntfs"]),
                 b"\x01")
    with pytest.raises(fsmap.Refused) as refused:
        used_map(bad)
    assert "marked dirty" in str(refused.value)
    m = used_map(bad, force=True)
    assert m.ranges == [(0, m.size)]


def test_a_hibernated_windows_is_refused(volumes, tmp_path):
    bad = tmp_path / "hib.img"
    shutil.copyfile(volumes["ntfs"], bad)
    (tmp_path / "hiberfil.sys").write_bytes(b"HIBR" + os.urandom(70000))
    run("ntfscp", "-f", str(bad), str(tmp_path / "hiberfil.sys"), "hiberfil.sys")
    with pytest.raises(fsmap.Refused) as refused:
        used_map(bad)
    assert "hibernated" in str(refused.value)


def test_a_broken_or_truncated_mft_is_copied_whole(volumes, tmp_path):
    raw = volumes["ntfs"].read_bytes()
    mft = struct.unpack_from("<Q", raw, 0x30)[0] * 4096
    torn = edited(volumes["ntfs"], tmp_path / "torn.img", mft + 6 * 1024 + 510, b"\0\0")
    m = used_map(torn)
    assert m.ranges == [(0, m.size)] and "fixup" in m.notes[0], m.notes
    short = tmp_path / "short.img"
    short.write_bytes(raw[:mft + 6 * 1024 + 100])
    with open(short, "rb") as f:  # as if the image file were cut short, its size as before
        m = fsmap.used_map(f.fileno(), len(raw))
    assert m.ranges == [(0, len(raw))] and "cut short" in m.notes[0], m.notes


def test_bitlocker_is_refused(volumes, tmp_path):
    bad = edited(volumes["ntfs"], tmp_path / "bl.img", 3, b"-FVE-FS-")
    with pytest.raises(fsmap.Refused) as refused:
        used_map(bad)
    assert "BitLocker" in str(refused.value)


def test_a_partition_past_the_disk_end_is_copied_whole(volumes, tmp_path):
    disk = tmp_path / "disk.img"
    assemble(disk, 120 * MiB, [(volumes["ext4"], "8300"), (volumes["fat"], "ef00")])
    with open(disk, "r+b") as f:
        f.truncate(90 * MiB)  # the FAT partition now ends past the end
    m = used_map(disk)
    assert any("partition 2" in n and "past the disk's end" in n for n in m.notes), m.notes
    _, parts = fsmap.read_table(os.open(disk, os.O_RDONLY))
    assert (parts[1].start, m.size - parts[1].start) in m.ranges  # copied whole
    assert m.total_used < 70 * MiB  # the ext4 is still mapped


def test_mounted_rw_sees_a_mounted_image(volumes, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    image = tmp_path / "m.img"
    shutil.copyfile(volumes["ext4"], image)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-o", "loop", str(image), str(mnt)]).returncode != 0:
        pytest.skip("cannot mount a loop device here")
    try:
        found = fsmap.mounted_rw(str(image))
        assert found and str(mnt) in found[0]
        run("mount", "-o", "remount,ro", str(mnt))
        assert fsmap.mounted_rw(str(image)) == []
    finally:
        subprocess.run(["umount", str(mnt)])


@pytest.mark.parametrize("options,expect", [
    (["-b", "4096", "-O", "64bit"], "mapped"),  # 64-byte descriptors, flex_bg, BLOCK_UNINIT
    (["-t", "ext2"], "mapped"),
    (["-t", "ext3", "-O", "^metadata_csum,^flex_bg,uninit_bg"], "mapped"),
    (["-O", "bigalloc", "-C", "16384"], "bigalloc"),
    (["-O", "meta_bg,^resize_inode"], "meta_bg"),
])
def test_ext_variants(tmp_path, options, expect):
    image = tmp_path / "e.img"
    with open(image, "wb") as f:
        f.truncate((640 if "64bit" in options else 300) * MiB)  # 640: groups left uninit
    src = tmp_path / "src"
    src.mkdir()
    for name, data in FILES.items():
        (src / name).write_bytes(data)
    run("mkfs.ext4", "-q", "-F", "-E", "nodiscard", *options, "-d", str(src), str(image))
    if expect == "mapped" and "4096" in options:
        assert "BLOCK_UNINIT" in run("dumpe2fs", str(image))
    m = used_map(image)
    print(options, f"{m.total_used} of {m.size}", m.notes)
    assert expect in m.notes[0], m.notes
    if expect == "mapped":
        assert m.total_used < 0.2 * m.size
        copy = tmp_path / "copy.img"
        copy_mapped(image, copy, m)
        run("e2fsck", "-fn", str(copy))
        for name, data in FILES.items():
            run("debugfs", "-R", f"dump /{name} {tmp_path / 'out'}", str(copy))
            assert (tmp_path / "out").read_bytes() == data, name
    else:
        assert m.ranges == [(0, m.size)]
