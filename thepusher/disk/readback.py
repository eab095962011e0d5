"""Reading a written copy back past every cache (verify = "readback").

The hop's write-side hash vouches only for the bytes handed to write(): this reads the
copy back as the storage returns it, so that a disk that keeps other bytes than it was
given, or a destination changed after it was written, is found out. Kept apart from
disk/target.py, which writes, as it shares nothing with writing but the open fd.
"""

import errno
import hashlib
import logging
import mmap
import os
from typing import Callable, Sequence, Tuple

from thepusher import syscalls
from thepusher.image import sparse

READ_BACK = 4 << 20  # bytes per read when reading a copy back (a multiple of any sector)

log = logging.getLogger("thepusher.target")


class ReadBackError(Exception):
    """The copy cannot be read back; the message names the destination and byte."""


def sha256(path: str, fd: int, is_block: bool, raw: bool, size: int,
           progress: Callable[[int], None], free: Sequence[Tuple[int, int]] = ()) -> str:
    """SHA-256 of the first `size` bytes of `path` (open as `fd`, flushed) as the
    storage returns them, the `free` runs (offset, length) not read but hashed as zeros.

    Not as the page cache remembers them: the cached pages are dropped (they are
    clean after the fsync), and a block device is read with O_DIRECT where it
    allows. On tmpfs the page cache is the storage: dropping it is a no-op and the
    reads see what is there. A `raw` disk (macOS /dev/rdiskN) has no cache: it is
    read in whole sectors."""
    try:
        syscalls.drop_cache(fd)
    except OSError as e:
        log.info("%s: cannot drop cached pages (%s): reading back what is there", path, e)
    own_fd = fd
    fd, direct = _open(path, fd, is_block, raw)
    buf = mmap.mmap(-1, READ_BACK)  # page-aligned, as O_DIRECT wants
    view = memoryview(buf)
    sha = hashlib.sha256()
    pos = 0
    runs, i = list(free) + [(size, 0)], 0
    try:
        while pos < size:
            if pos >= runs[i][0] + runs[i][1]:
                i += 1
                continue
            if pos >= runs[i][0]:  # a free run: zeros in the digest, not read
                n = runs[i][0] + runs[i][1] - pos
                sparse.hash_zeros(sha, n)
                pos += n
                progress(pos)
                continue
            # O_DIRECT and raw disks read whole sectors: the last read asks for a
            # whole buffer (a device ends on a sector) and only `size` bytes count.
            stop = runs[i][0]
            want = READ_BACK if direct and stop >= size else min(READ_BACK, stop - pos)
            try:
                n = syscalls.read_at(fd, view[:want], pos)
            except OSError as e:
                if direct and pos == 0 and e.errno == errno.EINVAL:
                    # the device takes no O_DIRECT reads of this shape: read it
                    # through the (dropped) cache instead
                    log.info("%s: O_DIRECT reads refused (%s): reading back after dropping "
                             "the cache", path, e.strerror)
                    os.close(fd)
                    fd, direct = os.open(path, os.O_RDONLY | os.O_CLOEXEC), False
                    continue
                raise ReadBackError(f"reading back {path} failed at byte {pos}: "
                                    f"{e.strerror or e}") from None
            if n <= 0:
                raise ReadBackError(f"reading back {path}: it ends at byte {pos}, "
                                    f"the image has {size}")
            n = min(n, stop - pos)
            sha.update(view[:n])
            pos += n
            progress(pos)
    finally:
        view.release()
        buf.close()
        if fd != own_fd:
            os.close(fd)
    return sha.hexdigest()


def _open(path: str, fd: int, is_block: bool, raw: bool) -> Tuple[int, bool]:
    """(fd, whole sectors only): a block device opened anew with O_DIRECT, a raw
    disk opened anew, else the writer's own fd."""
    if is_block:
        try:
            direct = syscalls.open_uncached(path)
            if direct is not None:
                return direct, True
        except OSError as e:
            log.info("%s: no O_DIRECT (%s): reading back after dropping the cache", path, e)
    if is_block or raw:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC), raw
    return fd, False
