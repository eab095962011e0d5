"""Partition tables, read in pure Python: MBR (with the logical partitions of its EBR
chain) and GPT (protective MBR, header CRC, entries CRC, 512- or 4096-byte sectors).

Both the used-block maps (fsmap) and `personalize` (disk/partitions.py) need to know
where the partitions are, from the bytes alone: a file or a loop device has no
partition nodes, and the kernel does not re-read a table we have just written. The
GPT header lives here too (disk/gpt.py rewrites it at a larger disk's end) because
image/ may not import disk/, and the maps belong next to `compress` in image/.
"""

import os
import struct
import zlib
from dataclasses import dataclass
from typing import List, Optional, Tuple

HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")  # the 92 bytes of a GPT header
SIGNATURE = b"EFI PART"
MBR_ENTRY = struct.Struct("<B3sB3sII")  # status, CHS, type, CHS, first sector, sectors
MBR_ENTRIES = 446
EXTENDED = (0x05, 0x0F, 0x85)
PROTECTIVE = 0xEE
MAX_LOGICAL = 128  # an EBR chain longer than this is a loop in a damaged table


class TableError(Exception):
    """The disk has a partition table that cannot be read (a GPT whose CRCs are wrong)."""


@dataclass
class Header:
    revision: int
    size: int
    my_lba: int
    alternate_lba: int
    first_usable: int
    last_usable: int
    disk_guid: bytes
    entries_lba: int
    entries: int
    entry_size: int
    entries_crc: int

    @classmethod
    def parse(cls, sector: bytes) -> Optional["Header"]:
        """The header in `sector`, or None if there is none or its CRC is wrong."""
        if len(sector) < HEADER.size or sector[:8] != SIGNATURE:
            return None
        (_, revision, size, crc, _, my_lba, alternate, first, last, guid, entries_lba,
         entries, entry_size, entries_crc) = HEADER.unpack_from(sector)
        if not HEADER.size <= size <= len(sector) or entry_size < 128 or entries > 1 << 16:
            return None
        if zlib.crc32(sector[:16] + bytes(4) + sector[20:size]) != crc:
            return None
        return cls(revision, size, my_lba, alternate, first, last, guid, entries_lba,
                   entries, entry_size, entries_crc)

    def pack(self, sector_size: int) -> bytes:
        """The header's sector, with its CRC."""
        def fields(crc: int) -> bytes:
            raw = HEADER.pack(SIGNATURE, self.revision, self.size, crc, 0, self.my_lba,
                              self.alternate_lba, self.first_usable, self.last_usable,
                              self.disk_guid, self.entries_lba, self.entries, self.entry_size,
                              self.entries_crc)
            return raw.ljust(self.size, b"\0")
        return fields(zlib.crc32(fields(0))).ljust(sector_size, b"\0")


def gpt_sector_size(head: bytes) -> Optional[int]:
    """The sector size a GPT was made for, from a disk's first 8 KiB (its header is in
    sector 1); None without one."""
    for size in (512, 4096):
        if head[size : size + 8] == SIGNATURE:
            return size
    return None


@dataclass(frozen=True)
class Partition:
    number: int  # as Linux numbers it: MBR 1-4 primary, 5... logical; GPT its entry, from 1
    start: int  # bytes from the start of the disk
    size: int  # bytes
    kind: str = ""  # the MBR type ("0x83") or the GPT type GUID, for the notes


def read_table(fd: int) -> Tuple[str, List[Partition]]:
    """("GPT" | "MBR" | "", partitions). "" with none: no table (perhaps a filesystem
    that starts at byte 0, a partition image). TableError for a GPT that is announced
    but damaged. Partitions are as the table says, even past the disk's end: the
    caller compares them with the disk's size."""
    mbr = os.pread(fd, 512, 0)
    if len(mbr) < 512 or mbr[510:512] != b"\x55\xaa":
        return "", []
    entries = [MBR_ENTRY.unpack_from(mbr, MBR_ENTRIES + 16 * i) for i in range(4)]
    if any(e[2] == PROTECTIVE for e in entries):
        return "GPT", _gpt(fd)
    if any(e[0] not in (0, 0x80) for e in entries):  # a boot sector's code, no table
        return "", []
    if mbr[3:11] in (b"NTFS    ", b"EXFAT   ", b"-FVE-FS-") or mbr[82:87] == b"FAT32":
        return "", []  # a volume boot record whose code happens to look like empty entries
    primary: List[Partition] = []
    logical: List[Partition] = []
    for number, (_, _, kind, _, first, sectors) in enumerate(entries, 1):
        if not (kind and first and sectors):
            continue
        if kind in EXTENDED:
            logical = _logical(fd, first)
        else:
            primary.append(Partition(number, first * 512, sectors * 512, f"0x{kind:02x}"))
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
            found.append(Partition(5 + len(found), (ebr + first) * 512, sectors * 512,
                                   f"0x{kind:02x}"))
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
                         f"(byte {sector}) is missing or its CRC is wrong")
    table = os.pread(fd, header.entries * header.entry_size, header.entries_lba * sector)
    if len(table) < header.entries * header.entry_size or zlib.crc32(table) != header.entries_crc:
        raise TableError("the CRC of its GPT partition entries (at byte "
                         f"{header.entries_lba * sector}) is wrong")
    found = []
    for i in range(header.entries):
        entry = table[i * header.entry_size:(i + 1) * header.entry_size]
        if any(entry[:16]):  # a used entry has a type GUID
            first, last = struct.unpack_from("<QQ", entry, 32)
            if last >= first:
                found.append(Partition(i + 1, first * sector, (last - first + 1) * sector,
                                       _guid(entry[:16])))
    return found


def _guid(raw: bytes) -> str:
    a, b, c = struct.unpack_from("<IHH", raw)
    return f"{a:08X}-{b:04X}-{c:04X}-{raw[8:10].hex().upper()}-{raw[10:16].hex().upper()}"
