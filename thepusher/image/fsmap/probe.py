"""What a volume holds, from its first bytes: which reader maps it, or why it is
copied whole (or refused) without one.

Linux swap keeps only its header page (its contents mean nothing on another boot);
swap holding a Linux hibernation image has another signature, so it is not "swap"
here and is copied whole. BitLocker is a safety refusal: its clusters are encrypted,
there is no bitmap to read, and an admin capturing one almost always meant to
suspend it first. The other signatures only make the capture log's reason precise.
"""

import struct
from typing import Optional, Tuple

from thepusher.image.fsmap import ext, fat, ntfs
from thepusher.image.fsmap.common import Ranges, Unsafe, Whole, read

HEAD = 0x10100  # enough for every signature below (btrfs's is at 0x10040)
SWAP_PAGES = (4096, 8192, 16384, 65536)
SWAP_SIGNATURES = (b"SWAPSPACE2", b"SWAP-SPACE")
HIBERNATED_SWAP = (b"S1SUSPEND", b"S2SUSPEND", b"ULSUSPEND", b"LINHIB0001")
OTHERS = (  # (offset, signature, what it is): copied whole, for now
    (0, b"LUKS\xba\xbe", "a LUKS encrypted volume"),
    (512, b"LABELONE", "an LVM physical volume"),
    (24, b"LVM2 001", "an LVM physical volume"),
    (4096, struct.pack("<I", 0xA92B4EFC), "a Linux RAID (md 1.2) member"),
    (0, struct.pack("<I", 0xA92B4EFC), "a Linux RAID (md 1.1) member"),
    (0x10040, b"_BHRfS_M", "btrfs"),
    (0, b"XFSB", "XFS"),
    (3, b"EXFAT   ", "exFAT"),
    (0x8001, b"CD001", "an ISO 9660 filesystem"),
)


def identify(fd: int, start: int, size: int) -> Tuple[str, Optional[object]]:
    """(name, reader module or None). Unsafe for BitLocker; Whole with the reason when
    no reader knows the volume."""
    # a volume shorter than HEAD reads as zeros past its end: no signature is zeros
    head = read(fd, start, min(HEAD, size), f"the volume at byte {start}").ljust(HEAD, b"\0")
    if head[3:11] == b"-FVE-FS-":
        raise Unsafe(f"BitLocker volume at byte {start}: its contents are encrypted; "
                     "suspend or turn off BitLocker in Windows, then capture")
    for name, module in (("NTFS", ntfs), ("FAT", fat), ("ext", ext)):
        if module.probe(head):
            return name, module
    for page in SWAP_PAGES:
        tail = head[page - 10:page]
        if tail in SWAP_SIGNATURES:
            return "swap", None
        if any(tail.endswith(s) for s in HIBERNATED_SWAP):
            raise Whole(f"swap at byte {start} holds a Linux hibernation image")
    for offset, signature, what in OTHERS:
        if head[offset:offset + len(signature)] == signature:
            raise Whole(f"{what} at byte {start}: no map is read for it")
    raise Whole(f"no filesystem this reader knows at byte {start} (ext2/3/4, FAT, NTFS, swap)")


def swap_used(fd: int, start: int, size: int) -> Tuple[str, Ranges, int]:
    """Linux swap: its header page (with the signature in its last 10 bytes); the rest,
    the swapped-out pages of a system that is not running, is free."""
    head = read(fd, start, max(SWAP_PAGES), f"the swap header at byte {start}")
    page = next(p for p in SWAP_PAGES if head[p - 10:p] in SWAP_SIGNATURES)
    return f"Linux swap, {page}-byte pages: the header page only", [(start, page)], size
