"""The disk side of a hop: open the destination, check it fits, write, flush.

A destination is a regular file (created if missing, emptied when opened so that zero
runs can stay holes and a longer old file cannot leave a stale tail) or a block device
(never truncated, its size checked before the first byte is written; zero runs are
zeroed by the device itself with BLKZEROOUT, or written as zeros where it cannot). A
missing path under /dev/ (other than /dev/shm/, which is for files) is an error, never
a new file: on a netboot client /dev is RAM, and a mistyped device name would otherwise
take the whole image and report a verified copy.
"""

import errno
import fcntl
import logging
import os
import stat
import struct
from typing import Iterable, Iterator, Optional, Union

from thepusher import sparse

ZEROS = bytes(1 << 20)
BLKZEROOUT = 0x127F  # _IO(0x12, 127): zero a byte range of a block device
ZERO_ALIGN = 4096  # BLKZEROOUT wants whole logical blocks; no device has larger ones

log = logging.getLogger("thepusher.target")

# What the hop's writer hands a target: bytes to write, or an int, a run of that many zeros.
Piece = Union[memoryview, bytes, int]


class TargetError(Exception):
    """The destination cannot take the image; the message names device and cause."""


class Target:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: Optional[int] = None
        self.is_block = False
        self.is_regular = False
        self.written = 0
        self.zeroed = 0  # bytes of zero runs not written as data (holes, BLKZEROOUT)
        self._zeroout = True  # until the device says it cannot

    def open(self, content_size: int) -> None:
        """Open for writing and refuse, before writing anything, a device that is too small."""
        path = os.path.abspath(self.path)
        device = path.startswith("/dev/") and not path.startswith("/dev/shm/")
        flags = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0) | (0 if device else os.O_CREAT)
        try:
            self.fd = os.open(self.path, flags, 0o644)
        except FileNotFoundError:
            if not device:
                raise TargetError(f"cannot open destination {self.path}: its directory "
                                  f"does not exist") from None
            raise TargetError(f"destination {self.path} does not exist: no such disk on this "
                              f"machine (check the image's destination)") from None
        except OSError as e:
            raise TargetError(f"cannot open destination {self.path}: {e.strerror}") from None
        mode = os.fstat(self.fd).st_mode
        self.is_block = stat.S_ISBLK(mode)
        self.is_regular = stat.S_ISREG(mode)
        if self.is_block:
            capacity = os.lseek(self.fd, 0, os.SEEK_END)
            os.lseek(self.fd, 0, os.SEEK_SET)
            if capacity < content_size:
                self.close()
                raise TargetError(
                    f"destination {self.path} holds {capacity} bytes, the image needs {content_size}"
                )
        elif self.is_regular:
            self._empty()
        elif not stat.S_ISCHR(mode):
            self.close()
            raise TargetError(f"destination {self.path} is neither a file nor a device")

    def _empty(self) -> None:
        try:
            os.ftruncate(self.fd, 0)
        except OSError as e:
            self.close()
            raise TargetError(f"cannot empty destination file {self.path}: {e.strerror}") from None

    def consume(self, pieces: Iterable[Piece]) -> None:
        """Write the decoded stream as it comes (a TAR target extracts it instead).

        Decompressed output (bytes) that is all zeros, the free space of a compressed
        disk image, is a zero run too: a hole, or zeroed by the device. Raw images come
        with their zero runs marked already; their pieces are views, never compared.
        """
        for piece in pieces:
            if isinstance(piece, int):
                self.write_zeros(piece)
            elif isinstance(piece, bytes) and len(piece) >= ZERO_ALIGN and piece == sparse.zeros(len(piece)):
                self.write_zeros(len(piece))
            else:
                self.write(piece)

    def write(self, data) -> None:
        """Write all of `data` at the current position; a short write is retried, not lost."""
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except OSError as e:
                raise TargetError(self._describe(e)) from None
            if n == 0:
                raise TargetError(self._describe(OSError(errno.ENOSPC, "no space left")))
            self.written += n
            view = view[n:]

    def write_zeros(self, length: int) -> None:
        """A run of zeros, without writing it where the destination allows: a hole in a
        file (it was emptied when opened), BLKZEROOUT on a block device."""
        if self.is_regular:
            try:
                os.lseek(self.fd, length, os.SEEK_CUR)
            except OSError as e:
                raise TargetError(self._describe(e)) from None
            self.written += length
            self.zeroed += length
            return
        start, end = self.written, self.written + length
        first, last = -(-start // ZERO_ALIGN) * ZERO_ALIGN, end // ZERO_ALIGN * ZERO_ALIGN
        if self.is_block and self._zeroout and last - first >= ZERO_ALIGN:
            self._write_zeros(first - start)
            if self._zero_out(first, last - first):
                self._write_zeros(end - last)
                return
            length = end - first
        self._write_zeros(length)

    def _zero_out(self, offset: int, length: int) -> bool:
        """Zero [offset, offset+length) of the block device; False if it cannot."""
        try:
            fcntl.ioctl(self.fd, BLKZEROOUT, struct.pack("QQ", offset, length))
            os.lseek(self.fd, offset + length, os.SEEK_SET)
        except OSError as e:
            if e.errno not in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
                raise TargetError(self._describe(e)) from None
            log.info("%s cannot zero ranges itself (%s): writing zeros instead",
                     self.path, e.strerror)
            self._zeroout = False
            return False
        self.written += length
        self.zeroed += length
        return True

    def _write_zeros(self, length: int) -> None:
        zeros = memoryview(ZEROS)
        while length:
            n = min(length, len(zeros))
            self.write(zeros[:n])
            length -= n

    def finish(self) -> None:
        """Make the bytes durable; only then may the hop call its copy verified."""
        try:
            if self.is_regular:
                os.ftruncate(self.fd, self.written)  # also makes a trailing zero run a hole
            if self.is_regular or self.is_block:
                os.fsync(self.fd)
        except OSError as e:
            raise TargetError(self._describe(e)) from None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _describe(self, e: OSError) -> str:
        return f"writing {self.path} failed at byte {self.written}: {e.strerror or e}"


class TarTarget:
    """A directory that a TAR image is extracted into as it arrives (untar.py says what
    is refused). The preImage script usually mounts a fresh filesystem there."""

    def __init__(self, path: str) -> None:
        self.path = path

    def open(self, content_size: int) -> None:
        if not os.path.isdir(self.path):
            raise TargetError(f"destination {self.path} of a TAR image is not a directory "
                              f"(the image's preImage script usually mounts it)")

    def consume(self, pieces: Iterable[Piece]) -> None:
        from thepusher.untar import extract

        extract(_as_bytes(pieces), self.path)

    def finish(self) -> None:
        """Everything extracted reaches the disk before the copy is called verified
        (Python has no syncfs; on a netboot client sync costs nothing more)."""
        os.sync()

    def close(self) -> None:
        pass


def _as_bytes(pieces: Iterable[Piece]) -> Iterator:
    """Zero runs as zeros: an extractor reads bytes (the master sends no zero runs in a
    TAR image, but the format allows them)."""
    for piece in pieces:
        if isinstance(piece, int):
            for pos in range(0, piece, len(ZEROS)):
                yield memoryview(ZEROS)[: min(len(ZEROS), piece - pos)]
        else:
            yield piece
