"""The system calls whose name or very existence differs between Linux and macOS.

A client runs on Linux (the netboot image) or on a booted Mac, and put-image on either.
Each function here makes the running OS's own call and has a way round where it has
none, so that no other module asks which OS it runs on. Facilities are found by what
the running Python offers (hasattr); ioctls, whose numbers mean different things on
each kernel, by sys.platform. docs/macos.md says what a Mac client does differently.
"""

import errno
import fcntl
import mmap
import os
import socket
import stat
import struct
import sys
from typing import Optional, Tuple

LINUX = sys.platform.startswith("linux")
DARWIN = sys.platform == "darwin"
BLKZEROOUT = 0x127F  # Linux _IO(0x12, 127): zero a byte range of a block device
BLKDISCARD = 0x1277  # Linux _IO(0x12, 119): a byte range of a block device holds nothing
BLKSSZGET = 0x1268  # Linux _IO(0x12, 104): a block device's logical block size
DKIOCGETBLOCKSIZE = 0x40046418  # macOS _IOR('d', 24, uint32_t): bytes per sector
DKIOCGETBLOCKCOUNT = 0x40086419  # macOS _IOR('d', 25, uint64_t): sectors on the disk
# FIONREAD (Linux SIOCINQ, macOS _IOR('f', 127, int)): bytes a socket received, not yet read
FIONREAD = 0x541B if LINUX else 0x4004667F if DARWIN else None
# macOS: fsync(2) leaves the bytes in the drive's cache, F_FULLFSYNC empties it too.
F_FULLFSYNC = getattr(fcntl, "F_FULLFSYNC", None)


def unsupported(what: str) -> OSError:
    return OSError(errno.EOPNOTSUPP, f"this system has no call to {what}")


def device_size(fd: int) -> Optional[int]:
    """Bytes on the disk behind `fd`; None for anything else (a file, a pipe, /dev/null)
    or when the OS cannot tell.

    Linux: lseek to a block device's end. macOS says 0 there: it answers in sectors
    (DKIOCGETBLOCKCOUNT x DKIOCGETBLOCKSIZE), for /dev/diskN and the raw /dev/rdiskN alike.
    """
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISBLK(mode) or stat.S_ISCHR(mode)):
        return None
    geometry = _darwin_geometry(fd)
    if geometry:
        return geometry[0] * geometry[1]
    if not stat.S_ISBLK(mode):
        return None
    end = os.lseek(fd, 0, os.SEEK_END)
    os.lseek(fd, 0, os.SEEK_SET)
    return end or None


def raw_sector(fd: int) -> int:
    """The unit a raw disk takes reads and writes in: a macOS /dev/rdiskN's sector size.
    1 for everything that goes through the OS's cache (files, block devices; Linux has
    no raw disk devices any more)."""
    if stat.S_ISCHR(os.fstat(fd).st_mode):
        geometry = _darwin_geometry(fd)
        if geometry:
            return geometry[0]
    return 1


def _darwin_geometry(fd: int) -> Optional[Tuple[int, int]]:
    """(sector size, sectors) of a macOS disk device; None elsewhere."""
    if not DARWIN:
        return None
    try:
        sector = struct.unpack("I", fcntl.ioctl(fd, DKIOCGETBLOCKSIZE, bytes(4)))[0]
        count = struct.unpack("Q", fcntl.ioctl(fd, DKIOCGETBLOCKCOUNT, bytes(8)))[0]
    except OSError:
        return None
    return (sector, count) if sector and count else None


def zero_range(fd: int, offset: int, length: int) -> None:
    """Have a block device zero a range itself (Linux BLKZEROOUT: the drive's own zeroing
    command where it has one). OSError where the OS has no such call."""
    if not LINUX:
        raise unsupported("zero a range of a disk")
    fcntl.ioctl(fd, BLKZEROOUT, struct.pack("QQ", offset, length))


def discard(fd: int, offset: int, length: int) -> None:
    """Tell a block device that a range holds nothing it needs to keep (Linux BLKDISCARD:
    an SSD's TRIM, a thin disk's UNMAP, a loop device's punched hole); what the range
    reads as afterwards is the device's affair. OSError where the OS has no such call
    or the device refuses it."""
    if not LINUX:
        raise unsupported("discard a range of a disk")
    fcntl.ioctl(fd, BLKDISCARD, struct.pack("QQ", offset, length))


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Free a range of a file, which then reads as zeros: MADV_REMOVE on a shared
    mapping, the standard library's way to FALLOC_FL_PUNCH_HOLE (Linux). OSError where
    the OS or filesystem cannot; ValueError for pages larger than the range's alignment."""
    if not hasattr(mmap, "MADV_REMOVE"):
        raise unsupported("free a range of a file")
    with mmap.mmap(fd, length, offset=offset) as mapped:
        mapped.madvise(mmap.MADV_REMOVE)


def drop_cache(fd: int) -> None:
    """Forget the cached pages of `fd` (clean after an fsync), so that reads come from
    the storage: posix_fadvise (Linux). OSError where the OS has no such call."""
    if not hasattr(os, "posix_fadvise"):
        raise unsupported("drop cached pages")
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def open_uncached(path: str) -> Optional[int]:
    """`path` opened for reading past the OS's cache (O_DIRECT: whole sectors from
    aligned buffers only); None where the OS has no O_DIRECT. OSError if refused."""
    if not hasattr(os, "O_DIRECT"):
        return None
    return os.open(path, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)


def open_direct(path: str, unit: int) -> Optional[int]:
    """A block device opened for writing past the OS's cache (O_DIRECT), in writes of
    whole `unit`s; None where the OS has no O_DIRECT or the device's logical blocks are
    larger than `unit`. OSError if the device refuses it."""
    if not hasattr(os, "O_DIRECT") or not LINUX:
        return None
    fd = os.open(path, os.O_RDWR | os.O_DIRECT | os.O_CLOEXEC)
    try:
        block = struct.unpack("i", fcntl.ioctl(fd, BLKSSZGET, bytes(4)))[0]
    except OSError:
        block = 0
    if not 0 < block <= unit or unit % block:
        os.close(fd)
        return None
    return fd


def read_at(fd: int, view: memoryview, offset: int) -> int:
    """Read into `view` from `offset`: preadv, or a seek and a readv where Python has no
    preadv (macOS before 11). The fallback moves the fd's position."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.readv(fd, [view])


def write_at(fd: int, data, offset: int) -> None:
    """All of `data` at `offset`: a short write is continued, a write of nothing is
    ENOSPC. Every view is released on the way out, also by an error, so that the
    caller can close the buffer `data` lies in."""
    with memoryview(data) as view:
        done = 0
        while done < len(view):
            with view[done:] as rest:
                n = os.pwrite(fd, rest, offset + done)
            if n == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            done += n


def flush(fd: int) -> None:
    """Make what was written to `fd` durable: F_FULLFSYNC where the OS has it (macOS; a
    filesystem without it falls back to fsync), else fsync."""
    if F_FULLFSYNC is not None:
        try:
            fcntl.fcntl(fd, F_FULLFSYNC)
            return
        except OSError:
            pass
    os.fsync(fd)


def unread_share(sock: socket.socket) -> Optional[float]:
    """How full `sock`'s receive buffer is with bytes the program has not read yet, 0 to 1
    (about 1 for a reader that cannot keep up, about 0 for one that waits for data); None
    where the OS cannot tell, or once the socket is closed."""
    if FIONREAD is None:
        return None
    try:
        unread = struct.unpack("i", fcntl.ioctl(sock.fileno(), FIONREAD, bytes(4)))[0]
        size = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    except (OSError, ValueError):  # ValueError: closed, its fileno() is -1
        return None
    return min(1.0, unread / size) if size > 0 else None


def max_rss_kib(ru_maxrss: int) -> int:
    """This process's peak memory in KiB. On Linux, VmHWM from /proc/self/status: its own
    peak, where getrusage's ru_maxrss keeps the peak of the process it was forked from
    (a client started from a large program would report that program's size). Else
    getrusage's figure, which macOS counts in bytes."""
    if LINUX:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return ru_maxrss // 1024 if DARWIN else ru_maxrss
