"""The used-block maps' pure parts on crafted bytes: bitmaps to ranges, NTFS runlists
and fixups, and tables that do not fit their disk."""

import os
import struct

import pytest

from thepusher.image import fsmap
from thepusher.image.fsmap import common, ntfs


def test_bit_runs_cover_every_set_bit_and_stop_at_nbits():
    bitmap = bytes([0b00000110, 0, 0, 0b10000000, 0xFF, 0b00000001])
    assert common.bit_runs(bitmap, 41) == [(1, 2), (31, 10)]
    assert common.count_bits(bitmap, 41) == 2 + 1 + 8 + 1
    assert common.bit_runs(bytes(8), 64) == []


def test_merge_and_align_round_outward():
    assert common.merge([(10, 5), (0, 3), (3, 2), (12, 10)]) == [(0, 5), (10, 12)]
    assert common.align([(1, 1), (4097, 10)], 4096, 6000) == [(0, 6000)]


def test_runlist_with_negative_offsets_and_a_broken_one():
    attr = bytearray(0x40)
    struct.pack_into("<H", attr, 0x20, 0x40)
    attr += bytes([0x21, 0x10, 0x00, 0x01, 0x11, 0x05, 0xF0, 0x00])  # 16 at 256, 5 at 240
    assert ntfs.runlist(bytes(attr), "x") == [(256, 16), (240, 5)]
    with pytest.raises(common.Whole, match="no terminator"):
        ntfs.runlist(bytes(attr[:-1]), "x")


def test_a_torn_record_fails_its_fixup():
    rec = bytearray(1024)
    rec[:4] = b"FILE"
    struct.pack_into("<HH", rec, 4, 0x30, 3)
    rec[0x30:0x36] = b"\x07\x00AABB"
    rec[510:512] = rec[1022:1024] = b"\x07\x00"
    fixed = ntfs.fixup(bytes(rec), b"FILE", "record")
    assert fixed[510:512] == b"AA" and fixed[1022:1024] == b"BB"
    rec[1022:1024] = b"\x08\x00"
    with pytest.raises(common.Whole, match="torn write"):
        ntfs.fixup(bytes(rec), b"FILE", "record")


def mbr(entries):
    sector = bytearray(512)
    for i, (kind, first, count) in enumerate(entries):
        struct.pack_into("<B3sB3sII", sector, 446 + 16 * i, 0, b"", kind, b"", first, count)
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def map_of(tmp_path, data: bytes, size: int) -> fsmap.UsedMap:
    path = tmp_path / "disk"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        return fsmap.used_map(fd, size)
    finally:
        os.close(fd)


def test_unknown_overlapping_and_too_long_partitions_are_copied_whole(tmp_path):
    size = 1 << 20
    m = map_of(tmp_path, mbr([(0x83, 1, 100), (0x83, 50, 100), (0x83, 1000, 5000)]), size)
    assert m.ranges == [(0, size)]
    assert [n.split(":")[1].strip() for n in m.notes[1:]] == [
        "overlaps another partition, copied whole", "overlaps another partition, copied whole",
        "ends past the disk's end (1048576 bytes)"]


def test_a_gpt_whose_entries_crc_is_wrong_is_copied_whole(tmp_path):
    header = fsmap.table.Header(0x10000, 92, 1, 2047, 34, 2000, bytes(16), 2, 128, 128, 1234)
    data = mbr([(0xEE, 1, 2047)]) + header.pack(512) + bytes(128 * 128)
    m = map_of(tmp_path, data, 1 << 20)
    assert m.ranges == [(0, 1 << 20)] and "CRC of its GPT partition entries" in m.notes[0]
