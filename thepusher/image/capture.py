"""What a capture (`put-image`, `thepusher compress`) reads of its source: the blocks its
filesystems use (fsmap/), in order, with everything else free and never read.

Both captures open their input here, so they refuse the same things (a source mounted
read-write, a filesystem whose bitmaps may lie: fsmap's refusals) with the same `--force`
override, log the same lines (which partitions were mapped, which copied whole and why)
and read the same bytes. The used ranges are rounded out to 4 KiB, the block of
bmaptool's files and of every disk: a few free bytes more are read and sent, never one
used byte less. A pipe (size unknown) and `--whole` are read whole.
"""

import logging
import os
import stat
import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator, List, Optional, Tuple, Union

from thepusher import syscalls
from thepusher.image import freemap
from thepusher.image.fsmap import Refused, mounted_rw, used_map
from thepusher.image.fsmap.common import align
from thepusher.units import size as human_bytes

log = logging.getLogger("thepusher.capture")

BLOCK = 4096


class CaptureRefused(Exception):
    """The source must not be captured as it is: the message says why and what to do."""


@dataclass
class Capture:
    path: str
    reader: BinaryIO  # unbuffered
    size: Optional[int]  # None: a pipe, read to its end
    free_runs: List[freemap.Run] = field(default_factory=list)  # never read; zeros in the digest

    @property
    def free_bytes(self) -> int:
        return sum(length for _, length in self.free_runs)

    def close(self) -> None:
        self.reader.close()

    def pieces(self, buf: bytearray) -> Iterator[Union[memoryview, int]]:
        """The source in order: views of `buf` holding used bytes (valid until the next
        piece), and ints, the length of a free run."""
        view = memoryview(buf)
        if self.size is None:  # a pipe: no map, no offsets
            while True:
                n = self.reader.readinto(buf)
                if not n:
                    return
                yield view[:n]
        fd = self.reader.fileno()
        for kind, offset, length in freemap.pieces(None, self.free_runs, 0, self.size,
                                                   len(buf), 1 << 62):
            if kind == freemap.FREE:
                yield length
                continue
            got = 0
            while got < length:
                n = _pread(fd, view[got:length], offset + got)
                if not n:
                    raise OSError(f"{self.path} ended at byte {offset + got}, "
                                  f"before its size ({self.size} bytes)")
                got += n
            yield view[:length]


def _pread(fd: int, view: memoryview, offset: int) -> int:
    """Read into `view` at `offset` without a copy where the OS has preadv."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], offset)
    data = os.pread(fd, len(view), offset)
    view[:len(data)] = data
    return len(data)


def open_input(path: str) -> Tuple[BinaryIO, Optional[int]]:
    """The input (an image file or a disk) opened for reading, and its size: a disk's
    too (a Mac's raw /dev/rdiskN included), None for a pipe, whose end is only known
    when reached. OSError when it cannot be read."""
    reader = open(path, "rb", buffering=0)
    st = os.fstat(reader.fileno())
    if stat.S_ISREG(st.st_mode):
        return reader, st.st_size
    return reader, syscalls.device_size(reader.fileno())


def open_capture(path: str, force: bool = False, whole: bool = False) -> Capture:
    """The source opened for capture, its free runs mapped (none for `whole` or a pipe).
    CaptureRefused for a safety refusal; OSError when it cannot be opened or read."""
    reader, size = open_input(path)
    try:
        if not force:
            mounts = mounted_rw(path)
            if mounts:
                raise CaptureRefused(f"{path}: {'; '.join(mounts)}: a filesystem that changes "
                                     f"while it is read gives an image no fsck can trust; "
                                     f"unmount it (or remount it read-only), or --force captures anyway")
        if size is None or whole:
            log.info("%s: read whole (%s)", path, "--whole" if whole else "a pipe: no map")
            return Capture(path, reader, size)
        try:
            used = used_map(reader.fileno(), size, force)
        except Refused as e:
            raise CaptureRefused(f"{path}: {e}") from None
        except (ValueError, IndexError, struct.error) as e:  # a reader's bug: never a map
            log.warning("%s: mapping its filesystems failed (%r): read whole", path, e)
            return Capture(path, reader, size)
        for note in used.notes:
            log.info("%s: %s", path, note)
        free = freemap.complement(align(used.ranges, BLOCK, size), size)
        capture = Capture(path, reader, size, free)
        log.info("%s: %s of %s used and read; %s free, never read", path,
                 human_bytes(size - capture.free_bytes), human_bytes(size),
                 human_bytes(capture.free_bytes))
        return capture
    except BaseException:
        reader.close()
        raise

