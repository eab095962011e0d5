"""The disk side of a hop: open the destination, check it fits, write, flush.

A destination is a regular file (created if missing) or a block device (its size
checked before the first byte is written). Either is written over in place, as a disk
is: an existing file keeps its blocks, so re-imaging does not free and allocate them
all again, and it is cut to the image's size at the end, so a longer old file cannot
leave a stale tail. Zero runs are not written where the destination can do better:
past a file's old end they are holes (a seek); over old bytes the filesystem frees
them (a punched hole) or the block device zeroes them itself (BLKZEROOUT); only what
cannot be done so is written as zeros. Free runs (FREE records) are left as they are;
with the image's `discard = true` a block device is told they hold nothing (BLKDISCARD,
disk/discard.py). A Linux block device is written past the page cache (O_DIRECT), and
a raw disk (macOS /dev/rdiskN) takes whole sectors only: the writes of both are
gathered into sectors and written by a thread of their own (disk/sectors.py); where a
device refuses O_DIRECT, it is written through the cache as before. A missing path
under /dev/ (other than /dev/shm/, which is for files) is an error, never a new file:
on a netboot client /dev is RAM, and a mistyped device name would otherwise take the
whole image and report a verified copy.
"""

import errno
import logging
import os
import stat
from typing import Callable, Iterable, Iterator, Optional, Protocol, Sequence, Tuple, Union

from thepusher import syscalls
from thepusher.disk import readback
from thepusher.disk.discard import Discarder
from thepusher.disk.sectors import SectorWriter
from thepusher.image import sparse

ZEROS = bytes(1 << 20)
ZERO_ALIGN = 4096  # BLKZEROOUT wants whole logical blocks, hole punching whole pages
DIRECT_UNIT = 4096  # O_DIRECT writes in whole 4 KiB: any logical block size up to it
# "The device or filesystem cannot free this range" (or the OS has no call for it):
# zeros are written instead.
CANNOT_FREE = (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS, errno.ENODEV,
               errno.EACCES)

log = logging.getLogger("thepusher.target")


class Skip:
    """A free run (a FREE record): bytes the image does not define, left as they are."""

    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        self.length = length


# What the hop's writer hands a target: bytes to write, an int, a run of that many
# zeros, or a Skip.
Piece = Union[memoryview, bytes, int, Skip]


class TargetError(Exception):
    """The destination cannot take the image; the message names device and cause."""


class HopTarget(Protocol):
    """All a hop knows of its destination, called in this order: open, consume, finish,
    read_back (verify = "readback" only), close.

    It exists so that a new kind of destination plugs in here and nothing in chain/
    changes: a filesystem-aware target that writes only the blocks in use, say, is a
    class with these members that the client picks for the image's type
    (client/agent.py), as it picks `Target` (a raw disk or file) or `TarTarget` (a
    directory a tar stream is extracted into). Failures are TargetErrors (TarErrors
    while extracting): their message is the client's disk error, so it names the
    destination.
    """

    path: str  # named in every message about the destination

    def open(self, content_size: int) -> None:
        """Get ready before the first byte; refuse a destination the image cannot fit."""

    def consume(self, pieces: Iterable[Piece]) -> None:
        """Take the decoded stream as it comes, up to its end or the end of the content
        (the hop hashes and drops what is left)."""

    def finish(self) -> None:
        """Make what was written durable: only then may the hop call its copy verified."""

    def read_back(self, size: int, progress: Callable[[int], None],
                  free: Sequence[Tuple[int, int]] = ()) -> str:
        """SHA-256 of the first `size` bytes as the storage returns them after finish()."""

    def close(self) -> None:
        """Release the destination, whether or not the copy succeeded."""


class Target:
    def __init__(self, path: str, discard: bool = False) -> None:
        self.path = path
        self.discard = discard  # the image's `discard`: free ranges of a block device discarded
        self.fd: Optional[int] = None
        self.is_block = False
        self.is_regular = False
        self.written = 0
        self.zeroed = 0  # bytes of zero runs not written as data (holes, BLKZEROOUT)
        self.old_size = 0  # a regular file's size when opened: what zero runs must clear
        self.sectors: Optional[SectorWriter] = None  # a raw disk's writes, gathered
        self.direct: Optional[SectorWriter] = None  # a block device's writes, past the cache
        self._can_free = True  # until the device or filesystem says it cannot
        self.discarder: Optional[Discarder] = None  # with discard, on a block device

    def open(self, content_size: int) -> None:
        """Open for writing and refuse, before writing anything, a device that is too small."""
        path = os.path.abspath(self.path)
        device = path.startswith("/dev/") and not path.startswith("/dev/shm/")
        # Opened for reading too: punching a hole maps a file (_free), and a raw disk's
        # last part sector is completed with what it holds (disk/sectors.py).
        flags = os.O_RDWR | (0 if device else os.O_CREAT) | os.O_CLOEXEC
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
        if self.discard and self.is_block:
            self.discarder = Discarder(self.path, self.fd)
        elif self.discard:
            log.info("%s is not a block device: discard = true does nothing here, free "
                     "ranges are skipped", self.path)
        if self.is_regular:
            self.old_size = os.fstat(self.fd).st_size
            return
        if not (self.is_block or stat.S_ISCHR(mode)):
            self.close()
            raise TargetError(f"destination {self.path} is neither a file nor a device")
        capacity = syscalls.device_size(self.fd)
        if capacity is not None and capacity < content_size:
            self.close()
            raise TargetError(
                f"destination {self.path} holds {capacity} bytes, the image needs {content_size}"
            )
        if capacity is None and self.is_block:
            log.warning("%s: this system does not tell the disk's size: a disk too small for "
                        "the image's %d bytes is found when a write fails", self.path, content_size)
        sector = syscalls.raw_sector(self.fd)
        if sector > 1:
            self.sectors = SectorWriter(self.fd, sector)
        elif self.is_block:
            self._open_direct()

    def _open_direct(self) -> None:
        """A second descriptor on the device, past the page cache, for the data; the first
        one stays for what is not data (zeroing, discard, the final flush)."""
        try:
            fd = syscalls.open_direct(self.path, DIRECT_UNIT)
        except OSError as e:
            log.info("%s refuses writes past the page cache (%s): writing through it",
                     self.path, e.strerror or e)
            return
        if fd is not None:
            self.direct = SectorWriter(fd, DIRECT_UNIT)

    def consume(self, pieces: Iterable[Piece]) -> None:
        """Write the decoded stream as it comes (a TAR target extracts it instead).

        Decompressed output (bytes) that is all zeros, the free space of a compressed
        disk image, is a zero run too: a hole, or zeroed by the device. Raw images come
        with their zero runs marked already; their pieces are views, never compared.
        """
        for piece in pieces:
            if isinstance(piece, int):
                self.write_zeros(piece)
            elif isinstance(piece, Skip):
                self.skip(piece.length)
            elif isinstance(piece, bytes) and len(piece) >= ZERO_ALIGN and piece == sparse.zeros(len(piece)):
                self.write_zeros(len(piece))
            else:
                self.write(piece)

    def write(self, data) -> None:
        """Write all of `data` at the current position; a short write is retried, not lost."""
        view = memoryview(data)
        gather = self.sectors or self.direct
        if gather:
            try:
                gather.write(view)
            except OSError as e:
                raise TargetError(self._describe(e)) from None
            self.written += len(view)
            return
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
        """A run of zeros, written only where the destination cannot do better: past a
        file's old end a seek leaves a hole; old bytes are cleared by _clear."""
        end = self.written + length
        if not self.is_regular:
            self._clear(length)
            return
        if self.old_size > self.written:
            self._clear(min(end, self.old_size) - self.written)
        try:
            os.lseek(self.fd, end, os.SEEK_SET)
        except OSError as e:
            raise TargetError(self._describe(e)) from None
        self.zeroed += end - self.written
        self.written = end

    def skip(self, length: int) -> None:
        """A free run is left as it is: a seek (past a file's old end, a hole), or a jump
        of the gathered writes (disk/sectors.py). With discard, a block device is told
        the range holds nothing (disk/discard.py)."""
        if self.discarder:
            self.discarder.free(self.written, length)
        gather = self.sectors or self.direct
        try:
            if gather:
                gather.jump(self.written + length)
            else:
                os.lseek(self.fd, self.written + length, os.SEEK_SET)
        except OSError as e:
            raise TargetError(self._describe(e)) from None
        self.written += length

    def _clear(self, length: int) -> None:
        """Zeros over `length` bytes that may hold old data: the aligned middle freed by
        the filesystem or zeroed by the device, the unaligned edges (and everything, where
        neither can) written."""
        start, end = self.written, self.written + length
        first, last = -(-start // ZERO_ALIGN) * ZERO_ALIGN, end // ZERO_ALIGN * ZERO_ALIGN
        if (self.is_block or self.is_regular) and self._can_free and last - first >= ZERO_ALIGN:
            self._write_zeros(first - start)
            if self._free(first, last - first):
                self._write_zeros(end - last)
                return
        self._write_zeros(end - self.written)

    def _free(self, offset: int, length: int) -> bool:
        """Make [offset, offset+length) read as zeros without writing them: the block
        device zeroes it, or the file's filesystem frees it. False if they cannot."""
        try:
            if self.is_block:
                syscalls.zero_range(self.fd, offset, length)
            else:
                syscalls.punch_hole(self.fd, offset, length)
            if self.direct:  # gathered up to `offset`, a ZERO_ALIGN boundary
                self.direct.jump(offset + length)
            else:
                os.lseek(self.fd, offset + length, os.SEEK_SET)
        except (OSError, ValueError) as e:  # ValueError: pages larger than ZERO_ALIGN
            if isinstance(e, OSError) and e.errno not in CANNOT_FREE:
                raise TargetError(self._describe(e)) from None
            why = getattr(e, "strerror", None) or str(e)
            log.info("%s cannot clear ranges itself (%s): writing zeros instead", self.path, why)
            self._can_free = False
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
        if self.discarder and self.discarder.offered:
            self.discarder.flush()
            log.info("%s: %d of the image's %d free bytes discarded", self.path,
                     self.discarder.discarded, self.discarder.offered)
        gather = self.sectors or self.direct
        try:
            if gather:
                gather.finish()
            if self.is_regular:
                os.ftruncate(self.fd, self.written)  # also makes a trailing zero run a hole
            if self.is_regular or self.is_block or self.sectors:
                syscalls.flush(self.fd)
        except OSError as e:
            raise TargetError(self._describe(e)) from None

    def read_back(self, size: int, progress: Callable[[int], None],
                  free: Sequence[Tuple[int, int]] = ()) -> str:
        """SHA-256 of the first `size` bytes as the disk returns them after finish(),
        past every cache, the `free` runs (offset, length) hashed as zeros (disk/readback.py)."""
        if not (self.is_regular or self.is_block or self.sectors):
            raise TargetError(f"cannot read back {self.path}: not a file or a disk")
        try:
            return readback.sha256(self.path, self.fd, self.is_block, bool(self.sectors),
                                   size, progress, free)
        except readback.ReadBackError as e:
            raise TargetError(str(e)) from None

    def close(self) -> None:
        if self.sectors:
            self.sectors.close()
        if self.direct:
            self.direct.close()
            os.close(self.direct.fd)
            self.direct = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _describe(self, e: OSError) -> str:
        """Where on the device the failed write was: a gathered write (disk/sectors.py)
        is named by the bytes it held."""
        gather = self.sectors or self.direct
        if gather and gather.refused:
            where = f"in bytes {gather.offset}-{gather.offset + gather.refused - 1}"
        else:
            where = f"at byte {gather.offset if gather else self.written}"
        return f"writing {self.path} failed {where}: {e.strerror or e}"


class TarTarget:
    """A directory that a TAR image is extracted into as it arrives (disk/tar/ says what
    is refused). The preImage script usually mounts a fresh filesystem there."""

    def __init__(self, path: str) -> None:
        self.path = path

    def open(self, content_size: int) -> None:
        if not os.path.isdir(self.path):
            raise TargetError(f"destination {self.path} of a TAR image is not a directory "
                              f"(the image's preImage script usually mounts it)")

    def consume(self, pieces: Iterable[Piece]) -> None:
        from thepusher.disk.tar import extract

        extract(_as_bytes(pieces), self.path)

    def finish(self) -> None:
        """Everything extracted reaches the disk before the copy is called verified
        (Python has no syncfs; on a netboot client sync costs nothing more)."""
        os.sync()

    def read_back(self, size: int, progress: Callable[[int], None],
                  free: Sequence[Tuple[int, int]] = ()) -> str:
        """Never asked for: the config refuses verify = "readback" for a TAR image, as
        extracted files are no byte range that could be hashed like the stream."""
        raise TargetError(f"cannot read back {self.path}: a TAR image is extracted into "
                          f"files, there is no disk image to read back")

    def close(self) -> None:
        pass


def _as_bytes(pieces: Iterable[Piece]) -> Iterator:
    """Zero runs as zeros: an extractor reads bytes (the master sends no zero runs in a
    TAR image, but the format allows them)."""
    for piece in pieces:
        if isinstance(piece, Skip):  # never sent for a TAR image: read as zeros
            piece = piece.length
        if isinstance(piece, int):
            for pos in range(0, piece, len(ZEROS)):
                yield memoryview(ZEROS)[: min(len(ZEROS), piece - pos)]
        else:
            yield piece
