"""What every filesystem reader shares: its two ways to give up, exact reads, and byte
ranges (merged, rounded outward to a block) from allocation bitmaps.

A map must never leave out a byte a filesystem uses: so a reader that doubts raises
Whole (the partition is copied whole, the reason goes to the capture log), and one
that finds a state in which its bitmaps may lie (a journal to replay, a dirty NTFS,
an encrypted volume) raises Unsafe: the capture is refused unless forced, and even
forced that partition is copied whole, never mapped from bitmaps that may be stale.
"""

import os
import re
from typing import Iterable, List, Tuple

Ranges = List[Tuple[int, int]]  # (start, length) in bytes
NONZERO = re.compile(rb"[^\x00]+")
POPCOUNT = bytes(bin(i).count("1") for i in range(256))  # a byte's set bits, by its value


class Whole(Exception):
    """Copy this filesystem whole; the message says why, naming a byte offset."""


class Unsafe(Exception):
    """A safety refusal: capturing this filesystem now may give a broken image."""


def read(fd: int, offset: int, length: int, what: str) -> bytes:
    """Exactly `length` bytes at `offset`, or Whole naming what was being read."""
    parts = []
    got = 0
    while got < length:
        piece = os.pread(fd, min(length - got, 1 << 24), offset + got)
        if not piece:
            raise Whole(f"{what} at byte {offset} is cut short at byte {offset + got} "
                        "(truncated image or wrong size)")
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)


def merge(ranges: Iterable[Tuple[int, int]]) -> Ranges:
    """Sorted, with touching and overlapping ranges joined, empty ones dropped."""
    out: Ranges = []
    for start, length in sorted(r for r in ranges if r[1] > 0):
        if out and start <= out[-1][0] + out[-1][1]:
            last_start, last_len = out[-1]
            out[-1] = (last_start, max(last_len, start + length - last_start))
        else:
            out.append((start, length))
    return out


def align(ranges: Iterable[Tuple[int, int]], unit: int, limit: int) -> Ranges:
    """Each range rounded outward to `unit` (not past `limit`), then merged."""
    out = []
    for start, length in ranges:
        first = start // unit * unit
        end = min(limit, -(-(start + length) // unit) * unit)
        out.append((first, end - first))
    return merge(out)


def bit_runs(bitmap: bytes, nbits: int, base: int = 0) -> List[Tuple[int, int]]:
    """(first bit, count) runs holding every set bit of a little-endian bitmap (bit 0
    is the low bit of byte 0), up to `nbits`. A run spans whole nonzero bytes, trimmed
    at its ends to the first and last set bit: a few clear bits inside may be kept,
    which is only ever more than needed, and keeps a 32 MiB bitmap fast in Python."""
    runs = []
    for m in NONZERO.finditer(bitmap, 0, (nbits + 7) // 8):
        first_byte, end_byte = m.span()
        lo = bitmap[first_byte]
        hi = bitmap[end_byte - 1]
        first = first_byte * 8 + ((lo & -lo).bit_length() - 1)
        end = min(nbits, (end_byte - 1) * 8 + hi.bit_length())
        if end > first:
            runs.append((base + first, end - first))
    return runs


def count_bits(bitmap: bytes, nbits: int) -> int:
    """How many of the first `nbits` bits are set."""
    whole = nbits // 8
    count = sum(bitmap[:whole].translate(POPCOUNT))
    if nbits % 8:
        count += POPCOUNT[bitmap[whole] & ((1 << (nbits % 8)) - 1)]
    return count
