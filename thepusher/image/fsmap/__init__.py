"""Used-block maps: which bytes of a disk (or of a single filesystem) hold something,
so a capture reads and sends only those and everything else is free.

`used_map(fd, size)` reads the partition table (table.py), recognizes each partition's
filesystem by its superblock (probe.py) and reads its allocation map (ext.py, fat.py,
ntfs.py, swap in probe.py). Partition tables and the gaps between partitions are
copied whole; so is every partition whose filesystem is unknown or doubtful, with
the reason in `notes` (the capture log). Unused blocks are never read.

Safety (a journal to replay, a dirty or hibernated NTFS, BitLocker) is collected in
`refusals`: without `force`, used_map raises Refused; with it, those partitions are
copied whole (their bitmaps may be stale: a map from them could lose data). Whether
the source is mounted read-write is the caller's check: mounts.mounted_rw(path).
"""

from dataclasses import dataclass, field
from typing import List, Tuple

from thepusher.image.fsmap import probe
from thepusher.image.fsmap.common import Ranges, Unsafe, Whole, merge
from thepusher.image.fsmap.mounts import mounted_rw  # noqa: F401 - part of the API
from thepusher.image.fsmap.table import Partition, TableError, read_table  # noqa: F401


@dataclass
class UsedMap:
    size: int  # bytes, of the whole source
    ranges: Ranges  # sorted, merged (start, length): what must be read and written
    notes: List[str] = field(default_factory=list)  # one line per partition, and the table
    refusals: List[str] = field(default_factory=list)  # safety: refuse unless forced

    @property
    def total_used(self) -> int:
        return sum(length for _, length in self.ranges)


class Refused(Exception):
    """A safety refusal; `.map` is what a forced capture would use."""

    def __init__(self, used: UsedMap) -> None:
        super().__init__("; ".join(used.refusals) + " (--force captures anyway, copying "
                         "those partitions whole)")
        self.map = used


def used_map(fd: int, size: int, force: bool = False) -> UsedMap:
    """The used-block map of the disk, partition or image file open on `fd`, of `size`
    bytes. Refused when a safety check fails and not `force`; OSError when reading
    fails (a source that cannot be read is the caller's error to report)."""
    result = UsedMap(size, [])
    try:
        scheme, parts = read_table(fd)
    except TableError as e:
        result.notes.append(f"partition table: {e}: the whole disk is copied")
        result.ranges = [(0, size)] if size else []
        return result
    if not scheme:
        free = _volume(fd, 0, size, "the whole source (no partition table)", result)
    else:
        result.notes.append(f"{scheme} partition table, {len(parts)} partitions: the table "
                            "and the gaps between partitions are copied whole")
        free = []
        for p in parts:
            label = f"partition {p.number} (bytes {p.start}-{p.start + p.size})"
            if p.start + p.size > size:
                result.notes.append(f"{label}: ends past the disk's end ({size} bytes): "
                                    "the table does not fit this disk, copied whole")
            elif any(_overlap(p, q) for q in parts if q is not p):
                result.notes.append(f"{label}: overlaps another partition, copied whole")
            else:
                free.extend(_volume(fd, p.start, p.size, label, result))
    result.ranges = _complement(merge(free), 0, size)
    if result.refusals and not force:
        raise Refused(result)
    return result


def _volume(fd: int, start: int, size: int, label: str, result: UsedMap) -> Ranges:
    """The free ranges of one volume; its note (and refusal) go to `result`."""
    try:
        _, reader = probe.identify(fd, start, size)
        reader_used = reader.used if reader else probe.swap_used  # type: ignore[attr-defined]
        what, used, fs_size = reader_used(fd, start, size)
    except Unsafe as e:
        result.refusals.append(f"{label}: {e}")
        result.notes.append(f"{label}: copied whole: {e}")
        return []
    except Whole as e:
        result.notes.append(f"{label}: copied whole: {e}")
        return []
    used = merge(list(used) + [(start + fs_size, size - fs_size)])
    if used and (used[0][0] < start or used[-1][0] + used[-1][1] > start + size):
        result.notes.append(f"{label}: copied whole: its {what} map reaches outside it")
        return []
    in_use = sum(n for _, n in used)
    result.notes.append(f"{label}: {what}: mapped, {in_use} of {size} bytes used")
    return _complement(used, start, start + size)


def _overlap(a: Partition, b: Partition) -> bool:
    return a.start < b.start + b.size and b.start < a.start + a.size


def _complement(ranges: Ranges, start: int, end: int) -> Ranges:
    """The parts of [start, end) outside the sorted, merged `ranges`."""
    out: List[Tuple[int, int]] = []
    at = start
    for s, n in ranges:
        if s > at:
            out.append((at, s - at))
        at = max(at, s + n)
    if at < end:
        out.append((at, end - at))
    return out
