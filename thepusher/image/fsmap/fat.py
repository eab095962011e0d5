"""FAT12/16/32: the clusters in use, from the first FAT.

The BPB (the boot sector) gives the regions: reserved sectors, the FATs, FAT12/16's
fixed root directory, then the data clusters. All but the data clusters are used,
and so is whatever follows the last cluster; a data cluster is free when its FAT
entry is 0 (bad clusters, 0xFF7-style, hold nothing worth copying, and are left out).
The FAT type comes from the cluster count, as Microsoft's specification defines it.
"""

import struct
from array import array
from typing import List, Tuple

from thepusher.image.fsmap.common import Ranges, Whole, read

BAD = {12: 0xFF7, 16: 0xFFF7, 32: 0x0FFFFFF7}


def probe(head: bytes) -> bool:
    """A FAT boot sector: its jump, a plausible BPB and its type string."""
    if head[0] not in (0xEB, 0xE9) or head[510:512] != b"\x55\xaa":
        return False
    if head[3:11] in (b"NTFS    ", b"EXFAT   ", b"-FVE-FS-"):
        return False
    return head[54:57] == b"FAT" or head[82:87] == b"FAT32"


def used(fd: int, start: int, size: int) -> Tuple[str, Ranges, int]:
    """(description, used byte ranges (absolute), the filesystem's size in bytes)."""
    boot = read(fd, start, 512, "the FAT boot sector")
    sector, per_cluster, reserved, fats, root_entries, total16 = struct.unpack_from(
        "<HBHBHH", boot, 11)
    fat16, = struct.unpack_from("<H", boot, 22)
    total = total16 or struct.unpack_from("<I", boot, 32)[0]
    fat_sectors = fat16 or struct.unpack_from("<I", boot, 36)[0]
    where = f"FAT at byte {start}"
    if (sector not in (512, 1024, 2048, 4096) or per_cluster not in (1, 2, 4, 8, 16, 32, 64, 128)
            or not reserved or fats not in (1, 2, 3, 4) or not fat_sectors or not total):
        raise Whole(f"{where}: its boot sector's BPB is not plausible (sector {sector}, "
                    f"{per_cluster} sectors per cluster, {fats} FATs)")
    if total * sector > size:
        raise Whole(f"{where} says it is {total * sector} bytes, but its space is {size} bytes")
    root_sectors = -(-root_entries * 32 // sector)
    data = reserved + fats * fat_sectors + root_sectors
    if data >= total:
        raise Whole(f"{where}: its FATs and root directory end past the volume")
    clusters = (total - data) // per_cluster
    bits = 12 if clusters < 4085 else 16 if clusters < 65525 else 32
    if -(-(clusters + 2) * bits // 8) > fat_sectors * sector:
        raise Whole(f"{where}: its FAT ({fat_sectors} sectors) is too small for {clusters} "
                    "clusters")
    table = read(fd, start + reserved * sector, -(-(clusters + 2) * bits // 8), f"{where}: its FAT")
    cluster_bytes = per_cluster * sector
    runs = _used_clusters(table, bits, clusters)
    ranges = [(start, data * sector)]  # boot sector, reserved sectors, FATs, root directory
    ranges.extend((start + data * sector + (c - 2) * cluster_bytes, n * cluster_bytes)
                  for c, n in runs)
    data_end = (data + clusters * per_cluster) * sector
    ranges.append((start + data_end, total * sector - data_end))
    in_use = sum(n for _, n in runs)
    return (f"FAT{bits}, {cluster_bytes}-byte clusters, {100 * in_use // max(clusters, 1)}% used",
            ranges, total * sector)


def _used_clusters(table: bytes, bits: int, clusters: int) -> List[Tuple[int, int]]:
    """(first cluster, count) runs of clusters whose entry is neither free nor bad."""
    if bits == 12:
        entries: object = [(int.from_bytes(table[i * 3 // 2:i * 3 // 2 + 2], "little")
                            >> (4 * (i & 1))) & 0xFFF for i in range(clusters + 2)]
    else:
        entries = array("H" if bits == 16 else "I")
        if entries.itemsize != bits // 8:
            raise Whole("this Python's array has no unsigned integer of the FAT's width")
        entries.frombytes(table[:(clusters + 2) * bits // 8])
        if struct.pack("=H", 1) != b"\x01\x00":
            entries.byteswap()
    mask, bad = (1 << min(bits, 28)) - 1, BAD[bits]
    runs: List[Tuple[int, int]] = []
    run_start = None
    for c in range(2, clusters + 2):
        value = entries[c] & mask  # type: ignore[index]
        if value and value != bad:
            if run_start is None:
                run_start = c
        elif run_start is not None:
            runs.append((run_start, c - run_start))
            run_start = None
    if run_start is not None:
        runs.append((run_start, clusters + 2 - run_start))
    return runs
