"""Where an uncompressed image is zero, so those runs travel as a length, not as bytes.

Disk images are mostly free space. The master finds the zero runs once, while it hashes
the image anyway: holes of a sparse file come from SEEK_DATA/SEEK_HOLE without reading
them, and the data it reads is checked in aligned blocks of ZERO_BLOCK bytes. The runs
are kept in the image's digest sidecar and turned into ZERO records when streaming.
Shorter zero stretches travel as data: correct either way, and the map stays small.
"""

import errno
import functools
import os
from typing import Iterator, List, Tuple

ZERO_BLOCK = 64 << 10
MAX_RUNS = 1 << 20  # beyond this a pathologically fragmented image sends its zeros as data
_ZERO_BLOCK_BYTES = bytes(ZERO_BLOCK)

Run = Tuple[int, int]  # (offset, length)


class ZeroMap:
    """Zero runs in offset order, adjacent ones merged."""

    def __init__(self) -> None:
        self.runs: List[List[int]] = []

    def add(self, offset: int, length: int) -> None:
        if length <= 0:
            return
        last = self.runs[-1] if self.runs else None
        if last is not None and last[0] + last[1] == offset:
            last[1] += length
        elif len(self.runs) < MAX_RUNS:
            self.runs.append([offset, length])

    def scan(self, buf, n: int, offset: int) -> None:
        """Add the zero blocks of `buf[:n]` (any buffer), which holds the file from
        `offset` on; all of it when `buf` is n zero bytes.

        Blocks are aligned to the file, not to the buffer. Each is compared as bytes,
        a copy of 64 KiB and one memcmp: a memoryview compares item by item, slower
        than hashing the block.
        """
        view = memoryview(buf)
        first = -offset % ZERO_BLOCK
        blocks = range(first, n - ZERO_BLOCK + 1, ZERO_BLOCK)
        zero = [i for i in blocks if view[i : i + ZERO_BLOCK].tobytes() == _ZERO_BLOCK_BYTES]
        whole = n == len(view) and len(zero) == len(blocks)
        if whole and blocks:  # the edges decide; without a whole block, all of it does
            whole = _is_zero(view[:first]) and _is_zero(view[blocks[-1] + ZERO_BLOCK : n])
        elif whole:
            whole = _is_zero(view[:n])
        if whole:
            self.add(offset, n)
            return
        for i in zero:
            self.add(offset + i, ZERO_BLOCK)

    def as_runs(self) -> List[Run]:
        """The runs as the facts of an image keep them."""
        return [(offset, length) for offset, length in self.runs]


def _is_zero(view: memoryview) -> bool:
    """Whether a piece shorter than two zero blocks is all zeros."""
    return view.tobytes() == bytes(len(view))


@functools.lru_cache(maxsize=4)
def zeros(n: int) -> bytes:
    """n zero bytes to compare with: a bytes comparison is one memcmp."""
    return bytes(n)


def hash_zeros(sha, length: int) -> None:
    """Feed `length` zero bytes to a hash: a zero run is part of the content digest."""
    block = memoryview(zeros(min(length, 4 << 20)))
    while length:
        n = min(length, len(block))
        sha.update(block[:n])
        length -= n


def extents(fd: int, size: int) -> Iterator[Tuple[int, int, bool]]:
    """(offset, length, is_hole) covering [0, size), holes found without reading them.

    A filesystem without SEEK_DATA (or a file without holes) gives one data extent.
    """
    if not hasattr(os, "SEEK_DATA"):
        yield 0, size, False
        return
    pos = 0
    while pos < size:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # only a hole is left
                yield pos, size - pos, True
                return
            if e.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                yield pos, size - pos, False
                return
            raise
        data = min(data, size)
        if data > pos:
            yield pos, data - pos, True
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), size)
        if hole > data:
            yield data, hole - data, False
        pos = max(hole, data)
