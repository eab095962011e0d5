"""The partitions of a freshly written disk image, read from its own partition table
(MBR with its logical partitions, or GPT), in pure Python.

The kernel does not re-read a disk's table when we write one over it, and a file or
a loop device in the tests has no partition nodes at all: so `personalize` finds its
partition here and mounts it by byte offset, the same way on a disk and on a file.
"""

import os
import struct
import zlib
from dataclasses import dataclass
from typing import List, Tuple

from thepusher.disk.gpt import Header, gpt_sector_size

MBR_ENTRY = struct.Struct("<B3sB3sII")  # status, CHS, type, CHS, first sector, sectors
MBR_ENTRIES = 446
EXTENDED = (0x05, 0x0F, 0x85)
PROTECTIVE = 0xEE
MAX_LOGICAL = 128  # an EBR chain longer than this is a loop in a damaged table
EXT_MAGIC_AT = 1080  # ext2/3/4: the superblock (at 1024) holds 0xEF53 at its byte 56
EXT_MAGIC = b"\x53\xef"


class TableError(Exception):
    """The disk has a partition table that cannot be read (a GPT whose CRCs are wrong)."""


@dataclass(frozen=True)
class Partition:
    number: int  # as Linux numbers it: MBR 1-4 primary, 5... logical; GPT its entry, from 1
    start: int  # bytes from the start of the disk
    size: int  # bytes


def read_table(fd: int) -> Tuple[str, List[Partition]]:
    """("GPT" | "MBR" | "", partitions). "" with none: no table (perhaps a filesystem
    that starts at byte 0, a partition image)."""
    mbr = os.pread(fd, 512, 0)
    if len(mbr) < 512 or mbr[510:512] != b"\x55\xaa":
        return "", []
    entries = [MBR_ENTRY.unpack_from(mbr, MBR_ENTRIES + 16 * i) for i in range(4)]
    if any(e[2] == PROTECTIVE for e in entries):
        return "GPT", _gpt(fd)
    if any(e[0] not in (0, 0x80) for e in entries):  # a boot sector's code, no table
        return "", []
    primary: List[Partition] = []
    logical: List[Partition] = []
    for number, (_, _, kind, _, first, sectors) in enumerate(entries, 1):
        if not (kind and first and sectors):
            continue
        if kind in EXTENDED:
            logical = _logical(fd, first)
        else:
            primary.append(Partition(number, first * 512, sectors * 512))
    return "MBR", primary + logical


def _logical(fd: int, extended: int) -> List[Partition]:
    """The logical partitions of an extended one: a chain of EBRs, each holding one
    partition (relative to itself) and the next EBR (relative to the extended one)."""
    found: List[Partition] = []
    ebr = extended
    while len(found) < MAX_LOGICAL:
        sector = os.pread(fd, 512, ebr * 512)
        if len(sector) < 512 or sector[510:512] != b"\x55\xaa":
            break
        _, _, kind, _, first, sectors = MBR_ENTRY.unpack_from(sector, MBR_ENTRIES)
        if kind and sectors:
            found.append(Partition(5 + len(found), (ebr + first) * 512, sectors * 512))
        _, _, kind, _, first, _ = MBR_ENTRY.unpack_from(sector, MBR_ENTRIES + 16)
        if kind not in EXTENDED or not first:
            break
        ebr = extended + first
    return found


def _gpt(fd: int) -> List[Partition]:
    sector = gpt_sector_size(os.pread(fd, 8192, 0)) or 512
    header = Header.parse(os.pread(fd, sector, sector))
    if header is None:
        raise TableError("its protective MBR announces a GPT, but the GPT header at sector 1 "
                         "is missing or its CRC is wrong")
    table = os.pread(fd, header.entries * header.entry_size, header.entries_lba * sector)
    if zlib.crc32(table) != header.entries_crc:
        raise TableError("the CRC of its GPT partition entries is wrong")
    found = []
    for i in range(header.entries):
        entry = table[i * header.entry_size:(i + 1) * header.entry_size]
        if any(entry[:16]):  # a used entry has a type GUID
            first, last = struct.unpack_from("<QQ", entry, 32)
            if last >= first:
                found.append(Partition(i + 1, first * sector, (last - first + 1) * sector))
    return found


def is_ext(fd: int, start: int) -> bool:
    """Whether an ext2/3/4 filesystem starts at byte `start` (its superblock's magic)."""
    return os.pread(fd, 2, start + EXT_MAGIC_AT) == EXT_MAGIC
