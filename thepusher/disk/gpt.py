"""An image on a disk larger than the one it was taken from: make the disk's end right.

A GPT keeps a backup of its header and partition entries in the disk's last sectors.
Written to a larger disk, an image leaves that backup in the middle of the disk, and
the disk's real end holds whatever was there before, perhaps an older GPT's backup or
RAID and ZFS labels. Tools then see a damaged table, or a second, older one (Windows
has rewritten such a table and destroyed a bootloader). So, after the image is
written and verified, as a separate step:

- the disk's last MiB is zeroed (old backup GPTs, md/DDF RAID superblocks and ZFS
  labels all live there), whatever table the image has;
- a GPT's backup entries and header are written at the disk's real end, the primary
  header points to them, its last usable sector moves to just before them, and every
  CRC is computed again (zlib.crc32, as the UEFI spec defines them);
- the image's old backup header, now in the middle of the disk, is zeroed;
- the protective MBR's partition covers the whole disk (up to its 32-bit limit);
- with `grow`, the partition that ends last is made to end at the last usable sector
  (the table only: its filesystem is grown by resize2fs or ntfsresize at first boot).

An MBR disk has nothing at its end to move. An image whose GPT is damaged is left as
it is (the report says so): its bytes are what the admin uploaded, verified.
"""

import dataclasses
import os
import struct
import zlib
from typing import List

from thepusher import syscalls
from thepusher.image.fsmap.table import HEADER, SIGNATURE, Header, gpt_sector_size  # noqa: F401

ENTRY_RANGE = struct.Struct("<QQ")  # first and last LBA, at byte 32 of an entry
WIPE_TAIL = 1 << 20
MBR_SIZE_FIELD = 446 + 12  # the first MBR partition's sector count
MBR_TYPE_FIELD = 446 + 4


class FitError(Exception):
    """The disk could not be made right; the message names disk and byte offset."""


def fit_to_disk(path: str, image_size: int, grow: bool) -> List[str]:
    """Make the end of a disk larger than the image right (see above); what was done,
    as lines for the report: none for a file, or a disk the image fills. FitError when
    a read or write fails. Every read and write is of whole sectors at sector offsets,
    as a raw disk wants."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise FitError(f"cannot open {path} to fit the image to it: {e.strerror or e}") from None
    try:
        disk_size = syscalls.device_size(fd)
        if disk_size is None or disk_size <= image_size:
            return []
        return _fit(fd, image_size, disk_size, grow)
    except OSError as e:
        raise FitError(f"fitting {path} to its size failed: {e.strerror or e}") from None
    finally:
        os.close(fd)


def _fit(fd: int, image_size: int, disk_size: int, grow: bool) -> List[str]:
    gpt_sector = gpt_sector_size(_read(fd, 0, 8192))
    sector = gpt_sector or 512
    disk_sectors = disk_size // sector
    primary = Header.parse(_read(fd, sector, sector)) if gpt_sector else None
    entries = b""
    if primary is not None:
        length = primary.entries * primary.entry_size
        entries = _read(fd, primary.entries_lba * sector, -(-length // sector) * sector)[:length]
        if zlib.crc32(entries) != primary.entries_crc:
            primary = None
    tail = min(WIPE_TAIL, disk_size - image_size) // sector * sector
    _write(fd, bytes(tail), disk_sectors * sector - tail)
    done = [f"old data in the disk's last {tail >> 10} KiB wiped"]
    if gpt_sector and primary is None:
        done.append("the image's GPT is damaged (a CRC is wrong): its backup was not moved")
    elif primary is not None:
        done[:0] = _move_gpt(fd, primary, entries, sector, disk_sectors, grow)
        _fix_protective_mbr(fd, sector, disk_sectors)
    syscalls.flush(fd)
    return done


def _move_gpt(fd: int, primary: Header, entries: bytes, sector: int, disk_sectors: int,
              grow: bool) -> List[str]:
    done = []
    last = disk_sectors - 1
    entry_sectors = -(-len(entries) // sector)
    backup_entries_lba = last - entry_sectors
    old_backup = primary.alternate_lba
    primary.last_usable = backup_entries_lba - 1
    primary.alternate_lba = last
    if grow:
        table = bytearray(entries)
        end_of = [(ENTRY_RANGE.unpack_from(table, i + 32)[1], i)
                  for i in range(0, len(table), primary.entry_size)
                  if any(table[i : i + 16])]  # a used entry has a type GUID
        if end_of:
            _, i = max(end_of)
            first = ENTRY_RANGE.unpack_from(table, i + 32)[0]
            ENTRY_RANGE.pack_into(table, i + 32, first, primary.last_usable)
            entries = bytes(table)
            primary.entries_crc = zlib.crc32(entries)
            size = (primary.last_usable - first + 1) * sector
            done.append(f"partition {i // primary.entry_size + 1} grown to {size / (1 << 30):.1f} GiB "
                        "(the table only: its filesystem is grown by resize2fs or ntfsresize)")
    backup = dataclasses.replace(primary, my_lba=last, alternate_lba=1,
                                 entries_lba=backup_entries_lba)
    table = entries.ljust(entry_sectors * sector, b"\0")
    # The new backup first, then the old one is cleared, then the primary points to it:
    # a step cut short leaves a table that tools still read.
    _write(fd, table, backup_entries_lba * sector)
    _write(fd, backup.pack(sector), last * sector)
    if 1 < old_backup < backup_entries_lba:
        _write(fd, bytes(sector), old_backup * sector)
    if done:  # grown: the primary entries change too
        _write(fd, table, primary.entries_lba * sector)
    _write(fd, primary.pack(sector), primary.my_lba * sector)
    done.insert(0, f"GPT backup moved from sector {old_backup} to the disk's end ({last})")
    return done


def _fix_protective_mbr(fd: int, sector: int, disk_sectors: int) -> None:
    """The protective MBR's 0xEE partition covers the disk, as far as 32 bits reach."""
    mbr = bytearray(_read(fd, 0, sector))
    if mbr[510:512] != b"\x55\xaa" or mbr[MBR_TYPE_FIELD] != 0xEE:
        return
    struct.pack_into("<I", mbr, MBR_SIZE_FIELD, min(disk_sectors - 1, 0xFFFFFFFF))
    _write(fd, bytes(mbr), 0)


def _read(fd: int, offset: int, length: int) -> bytes:
    try:
        return os.pread(fd, length, offset)
    except OSError as e:
        raise OSError(e.errno, f"{e.strerror} reading byte {offset}") from None


def _write(fd: int, data: bytes, offset: int) -> None:
    try:
        syscalls.write_at(fd, data, offset)
    except OSError as e:
        raise OSError(e.errno, f"{e.strerror} writing byte {offset}") from None
