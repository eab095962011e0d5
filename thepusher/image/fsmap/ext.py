"""ext2/3/4: the blocks in use, from each block group's bitmap.

The superblock (byte 1024) gives the geometry; the group descriptors (32 bytes, or
s_desc_size with the 64bit feature) give where each group's bitmap is (anywhere, with
flex_bg). A group marked BLOCK_UNINIT has no bitmap on disk yet: its used blocks are
its superblock backup, its descriptor copies and reserved descriptor blocks (if
sparse_super says it has them) and any group's bitmaps or inode table placed in it.

Doubt means whole: bigalloc, meta_bg, an incompat feature we do not know, or free
counts that disagree (a group's descriptor with its bitmap, the superblock with the
sum) make the filesystem copied whole. A journal that needs recovery, or a state
that is not "cleanly unmounted", is a safety refusal: the bitmaps on disk may be
older than the ones in the journal, and a map from them could leave out live data.
"""

import struct
from typing import List, Tuple

from thepusher.image.fsmap.common import Ranges, Unsafe, Whole, bit_runs, count_bits, merge, read

MAGIC_AT = 1080
MAGIC = b"\x53\xef"

COMPAT_HAS_JOURNAL = 0x4
COMPAT_RESIZE_INODE = 0x10
COMPAT_SPARSE_SUPER2 = 0x200
INCOMPAT_RECOVER = 0x4
INCOMPAT_JOURNAL_DEV = 0x8
INCOMPAT_META_BG = 0x10
INCOMPAT_EXTENTS = 0x40
INCOMPAT_64BIT = 0x80
INCOMPAT_FLEX_BG = 0x200
# Those that change nothing about where the block bitmaps are or what they mean:
# filetype, extents, 64bit (handled), mmp, flex_bg, ea_inode, csum_seed, largedir,
# inline_data, encrypt, casefold. recover is a safety refusal, the rest is unknown.
INCOMPAT_KNOWN = (0x2 | INCOMPAT_RECOVER | INCOMPAT_EXTENTS | INCOMPAT_64BIT | 0x100
                  | INCOMPAT_FLEX_BG | 0x400 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000)
RO_SPARSE_SUPER = 0x1
RO_GDT_CSUM = 0x10
RO_BIGALLOC = 0x200
RO_METADATA_CSUM = 0x400
STATE_VALID = 0x1
STATE_ERRORS = 0x2
BLOCK_UNINIT = 0x2


def probe(head: bytes) -> bool:
    return head[MAGIC_AT:MAGIC_AT + 2] == MAGIC


def _field(sb: bytes, offset: int, fmt: str) -> int:
    return struct.unpack_from("<" + fmt, sb, offset)[0]


def used(fd: int, start: int, size: int) -> Tuple[str, Ranges, int]:
    """(description, used byte ranges (absolute), the filesystem's size in bytes)."""
    sb = read(fd, start + 1024, 1024, "the ext superblock")
    compat, incompat, ro = (_field(sb, o, "I") for o in (0x5C, 0x60, 0x64))
    name = ("ext4" if incompat & (INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG)
            else "ext3" if compat & COMPAT_HAS_JOURNAL else "ext2")
    where = f"{name} at byte {start}"
    if incompat & INCOMPAT_RECOVER:
        raise Unsafe(f"{where}: its journal needs recovery (it is mounted, or was not "
                     "unmounted cleanly): unmount it, or run `e2fsck -f` on it, then capture")
    state = _field(sb, 0x3A, "H")
    if not state & STATE_VALID or state & STATE_ERRORS:
        raise Unsafe(f"{where}: it was not cleanly unmounted or has errors (s_state "
                     f"{state:#x}): run `e2fsck -f` on it, then capture")
    if incompat & INCOMPAT_JOURNAL_DEV:
        raise Whole(f"{where} is an external journal device, not a filesystem")
    if incompat & INCOMPAT_META_BG:
        raise Whole(f"{where} uses meta_bg (group descriptors spread over the disk)")
    if incompat & ~INCOMPAT_KNOWN:
        raise Whole(f"{where} has incompat features {incompat & ~INCOMPAT_KNOWN:#x} "
                    "this reader does not know")
    if ro & RO_BIGALLOC:
        raise Whole(f"{where} uses bigalloc (bitmaps count clusters, not blocks)")
    log_block = _field(sb, 0x18, "I")
    if log_block > 6:
        raise Whole(f"{where}: its block size (2^{10 + log_block}) is not plausible")
    bs = 1024 << log_block
    wide = bool(incompat & INCOMPAT_64BIT)
    blocks = _field(sb, 0x4, "I") | (_field(sb, 0x150, "I") << 32 if wide else 0)
    free = _field(sb, 0xC, "I") | (_field(sb, 0x158, "I") << 32 if wide else 0)
    first_data, bpg, ipg = _field(sb, 0x14, "I"), _field(sb, 0x20, "I"), _field(sb, 0x28, "I")
    inode_size = _field(sb, 0x58, "H") if _field(sb, 0x4C, "I") >= 1 else 128
    desc_size = _field(sb, 0xFE, "H") if wide else 32
    if not (0 < bpg <= 8 * bs and blocks > first_data and 32 <= desc_size <= bs
            and (not wide or desc_size >= 64) and inode_size >= 128):
        raise Whole(f"{where}: its superblock's geometry is not plausible (blocks per group "
                    f"{bpg}, {blocks} blocks, descriptors of {desc_size} bytes)")
    if blocks * bs > size:
        raise Whole(f"{where} says it is {blocks * bs} bytes, but its space is {size} bytes")
    groups = -(-(blocks - first_data) // bpg)
    table = read(fd, start + (first_data + 1) * bs, groups * desc_size,
                 f"the {name} group descriptors")
    descs = [_descriptor(table, g * desc_size, wide) for g in range(groups)]
    uninit_ok = bool(ro & (RO_GDT_CSUM | RO_METADATA_CSUM))
    geometry = _Geometry(sb, compat, ro, bs, groups, desc_size, ipg * inode_size, descs)
    runs: List[Tuple[int, int]] = [(0, 2048 // bs or 1)]  # boot block and superblock
    total_free = 0
    for g, (bitmap_at, _, _, desc_free, flags) in enumerate(descs):
        first = first_data + g * bpg
        count = min(bpg, blocks - first)
        if uninit_ok and flags & BLOCK_UNINIT:
            group_runs = geometry.uninit_used(g, first, count)
            in_use = sum(n for _, n in group_runs)
        else:
            if not first_data <= bitmap_at < blocks:
                raise Whole(f"{where}: group {g}'s block bitmap is at block {bitmap_at}, "
                            "outside the filesystem")
            bitmap = read(fd, start + bitmap_at * bs, bs, f"{where}: group {g}'s block bitmap")
            group_runs = bit_runs(bitmap, count, first)
            in_use = count_bits(bitmap, count)
        if count - in_use != desc_free:
            raise Whole(f"{where}: group {g}'s descriptor counts {desc_free} free blocks, its "
                        f"bitmap {count - in_use}: run `e2fsck -f` on it, then capture")
        total_free += count - in_use
        runs.extend(group_runs)
    if total_free != free:
        raise Whole(f"{where}: its superblock counts {free} free blocks, its bitmaps "
                    f"{total_free}: run `e2fsck -f` on it, then capture")
    percent = 100 * (blocks - free) // blocks
    return (f"{name}, {bs}-byte blocks, {percent}% used", [(start + b * bs, n * bs) for b, n in runs],
            blocks * bs)


def _descriptor(table: bytes, at: int, wide: bool) -> Tuple[int, int, int, int, int]:
    """(block bitmap, inode bitmap, inode table, free blocks, flags) of one group."""
    block_bitmap, inode_bitmap, inode_table, free = struct.unpack_from("<IIIH", table, at)
    flags, = struct.unpack_from("<H", table, at + 0x12)
    if wide:
        hi_block, hi_inode, hi_table = struct.unpack_from("<III", table, at + 0x20)
        block_bitmap |= hi_block << 32
        inode_bitmap |= hi_inode << 32
        inode_table |= hi_table << 32
        free |= struct.unpack_from("<H", table, at + 0x2C)[0] << 16
    return block_bitmap, inode_bitmap, inode_table, free, flags


class _Geometry:
    """What a BLOCK_UNINIT group holds, computed as the kernel and e2fsprogs do, with
    every group's bitmaps and inode table counted wherever flex_bg put them."""

    def __init__(self, sb: bytes, compat: int, ro: int, bs: int, groups: int,
                 desc_size: int, inode_table_bytes: int, descs) -> None:
        self.sb, self.compat, self.ro = sb, compat, ro
        self.gdt_blocks = -(-groups * desc_size // bs)
        self.reserved = _field(sb, 0xCE, "H") if compat & COMPAT_RESIZE_INODE else 0
        table_blocks = -(-inode_table_bytes // bs)
        self.metadata = sorted(m for bb, ib, it, _, _ in descs
                               for m in ((bb, 1), (ib, 1), (it, table_blocks)))

    def has_super(self, g: int) -> bool:
        if g == 0:
            return True
        if self.compat & COMPAT_SPARSE_SUPER2:
            return g in struct.unpack_from("<II", self.sb, 0x24C)
        if not self.ro & RO_SPARSE_SUPER or g == 1:
            return True
        for p in (3, 5, 7):
            n = p
            while n < g:
                n *= p
            if n == g:
                return True
        return False

    def uninit_used(self, g: int, first: int, count: int) -> List[Tuple[int, int]]:
        """(block, count) runs group `g` uses, merged: a block counted twice would
        skew the free count we check against its descriptor."""
        end = first + count
        found = [(first, 1 + self.gdt_blocks + self.reserved)] if self.has_super(g) else []
        found.extend((max(b, first), min(b + n, end) - max(b, first))
                     for b, n in self.metadata if b < end and b + n > first)
        return merge((b, min(n, end - b)) for b, n in found)
