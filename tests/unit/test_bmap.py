"""bmaptool's .bmap files: what we write reads back the same and `bmaptool copy` takes
it; what `bmaptool create` writes we read; and a damaged or hostile bmap is refused
with a message naming the file and the range at fault."""

import hashlib
import os
import shutil
import subprocess

import pytest

from thepusher.image import bmap, freemap

BLOCK = 4096
needs_bmaptool = pytest.mark.skipif(shutil.which("bmaptool") is None,
                                    reason="bmaptool (Debian bmap-tools) not installed")


def sparse_image(path, size=64 * BLOCK + 100):
    """Data in blocks 0-2, 10, 20-29 and the last (partial) block; holes elsewhere."""
    with open(path, "wb") as f:
        f.truncate(size)
        for first, last in ((0, 2), (10, 10), (20, 29)):
            f.seek(first * BLOCK)
            f.write(os.urandom((last - first + 1) * BLOCK))
        f.seek(64 * BLOCK)
        f.write(os.urandom(100))
    return [(0, 3 * BLOCK), (10 * BLOCK, BLOCK), (20 * BLOCK, 10 * BLOCK), (64 * BLOCK, 100)]


def test_written_bmap_reads_back_with_its_ranges_and_free_map(tmp_path):
    image = tmp_path / "disk.img"
    mapped = sparse_image(image)
    written = bmap.write(str(image) + ".bmap", str(image), mapped)
    read = bmap.load(str(image) + ".bmap")
    assert read.ranges == written.ranges
    assert [(o, n) for o, n, _ in read.mapped()] == mapped
    data = image.read_bytes()
    for offset, length, chksum in read.mapped():
        assert hashlib.sha256(data[offset : offset + length]).hexdigest() == chksum
    assert read.free_runs() == freemap.complement(mapped, len(data))
    assert read.free_runs()[0] == (3 * BLOCK, 7 * BLOCK)


def bad(raw: bytes, match: str):
    with pytest.raises(bmap.BmapError, match=match):
        bmap.parse(raw, "/srv/disk.img.bmap")


def resign(text: str) -> bytes:
    """`text` with a valid file checksum: each test breaks one thing at a time."""
    field = text.split("<BmapFileChecksum>")[1].split("</BmapFileChecksum>")[0].strip()
    zeroed = text.replace(field, "0" * 64)
    return zeroed.replace("0" * 64, hashlib.sha256(zeroed.encode()).hexdigest(), 1).encode()


@pytest.fixture
def good(tmp_path):
    image = tmp_path / "disk.img"
    bmap.write(str(image) + ".bmap", str(image), sparse_image(image))
    return (tmp_path / "disk.img.bmap").read_text()


def test_a_damaged_file_checksum_is_refused(good):
    bad(good.replace("<BlockSize> 4096", "<BlockSize>  4096").encode(),
        r"disk.img.bmap: file checksum mismatch")


def test_a_range_past_the_image_is_refused_naming_it(good):
    text = good.replace("> 20-29 <", "> 20-70 <")
    bad(resign(text), r"range 3 \('20-70'\): past the image's last block 64")


def test_ranges_out_of_order_and_counts_that_disagree_are_refused(good):
    bad(resign(good.replace("> 10 <", "> 1 <")), r"range 2 \('1'\): out of order")
    bad(resign(good.replace("> 20-29 <", "> 20-28 <")), "MappedBlocksCount is 15, the ranges map 14")
    bad(resign(good.replace("<BlocksCount> 65", "<BlocksCount> 66")), "BlocksCount is 66")


def test_a_doctype_or_entity_is_refused_before_parsing(good):
    evil = good.replace('<?xml version="1.0" ?>', '<?xml version="1.0" ?>\n<!DOCTYPE bmap '
                        '[<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>')
    bad(evil.encode(), "DOCTYPE or ENTITY declaration")


def test_version_1_and_other_checksums_are_refused_clearly(good):
    bad(resign(good.replace('version="2.0"', 'version="1.4"')), r"version '1.4' is not supported")
    bad(resign(good.replace("> sha256 <", "> md5 <")), "ChecksumType 'md5'")
    bad(b"<bmap", "not valid XML")


@needs_bmaptool
def test_bmaptool_create_makes_a_bmap_we_read(tmp_path):
    image = tmp_path / "disk.img"
    mapped = sparse_image(image)
    subprocess.run(["bmaptool", "create", "-o", str(tmp_path / "made.bmap"), str(image)],
                   check=True, capture_output=True)
    read = bmap.load(str(tmp_path / "made.bmap"))
    assert [(o, n) for o, n, _ in read.mapped()] == mapped
    data = image.read_bytes()
    for offset, length, chksum in read.mapped():
        assert hashlib.sha256(data[offset : offset + length]).hexdigest() == chksum


@needs_bmaptool
def test_bmaptool_copy_takes_the_bmap_we_write(tmp_path):
    image = tmp_path / "disk.img"
    mapped = sparse_image(image)
    bmap.write(str(tmp_path / "ours.bmap"), str(image), mapped)
    out = tmp_path / "copy.img"
    done = subprocess.run(["bmaptool", "copy", "--bmap", str(tmp_path / "ours.bmap"), str(image),
                           str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == image.read_bytes()
    # and it checks our range checksums: a changed mapped byte fails the copy
    with open(image, "r+b") as f:
        f.seek(10 * BLOCK)
        f.write(b"\x00changed")
    done = subprocess.run(["bmaptool", "copy", "--bmap", str(tmp_path / "ours.bmap"), str(image),
                           str(tmp_path / "copy2.img")], capture_output=True, text=True)
    assert done.returncode != 0
