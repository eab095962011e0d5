"""BLKDISCARD over an image's free ranges, for an image with `discard = true`.

A FREE range holds nothing the image defines, and a client leaves it as it is. On an
SSD or a thin-provisioned disk it can do better: tell the device that those blocks
hold nothing (BLKDISCARD), which gives them back to it. Only free ranges are ever
discarded, never data or zero runs: what a discarded range then reads as is the
device's affair (zeros, old bytes or garbage), which is fine for bytes the image does
not define, and the digest counts them as zeros without reading them anyway.

Discarding is a favour to the device, never part of the copy: a device that refuses
it is named once in the log and left alone from then on, and nothing here fails a copy.
"""

import logging
import math
import os
from typing import Optional, Tuple

from thepusher import syscalls

PAGE = 4096  # at least whole pages: the page cache is never cut inside a written page
CHUNK = 1 << 30  # the most one call asks for where the device does not say

log = logging.getLogger("thepusher.target")


def limits(fd: int) -> Tuple[int, int]:
    """(unit, chunk): a discard starts and ends on whole `unit`s, the device's discard
    granularity (and whole pages), and asks for at most `chunk` bytes at a time, its
    discard_max_bytes. From /sys (a partition's are its disk's); where /sys does not
    say, a page and CHUNK: the device then rounds and splits as it must."""
    rdev = os.fstat(fd).st_rdev
    device = f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}"
    granularity = most = None
    for queue in (f"{device}/queue", f"{device}/../queue"):
        granularity = _read(f"{queue}/discard_granularity")
        if granularity is not None:
            most = _read(f"{queue}/discard_max_bytes")
            break
    unit = math.lcm(granularity or 1, PAGE)
    return unit, (most or 0) // unit * unit or CHUNK


def _read(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


class Discarder:
    """Discards the free ranges of a block device as they come: consecutive ones as one
    range (a free run may come as several FREE records), its whole units only; the
    unaligned head and tail are left as they are."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.unit, self.chunk = limits(fd)
        self.offered = 0  # bytes of free ranges given to free()
        self.discarded = 0  # bytes the device took a discard for
        self.refused = False  # the device said no once: no more asking
        self._start = self._end = 0  # the free range not discarded yet

    def free(self, offset: int, length: int) -> None:
        """[offset, offset+length) is free: discarded with the free ranges next to it."""
        self.offered += length
        if offset != self._end:
            self.flush()
            self._start = offset
        self._end = offset + length

    def flush(self) -> None:
        """Discard the free range gathered so far (the copy's end calls this last)."""
        first = -(-self._start // self.unit) * self.unit
        last = self._end // self.unit * self.unit
        self._start = self._end
        while first < last and not self.refused:
            n = min(self.chunk, last - first)
            try:
                syscalls.discard(self.fd, first, n)
            except OSError as e:
                self.refused = True
                log.warning("%s refuses to discard bytes %d to %d (%s): its free ranges are "
                            "just skipped from here on", self.path, first, first + n,
                            e.strerror or e)
                return
            self.discarded += n
            first += n
