"""The disk side of a hop: open the destination, check it fits, write, flush.

A destination is a regular file (created if missing, cut to the image's size at the
end so a longer old file cannot leave a stale tail) or a block device (never
truncated, its size checked before the first byte is written). A missing path under
/dev/ (other than /dev/shm/, which is for files) is an error, never a new file: on a
netboot client /dev is RAM, and a mistyped device name would otherwise take the whole
image and report a verified copy.
"""

import errno
import os
import stat
from typing import Optional

ZEROS = bytes(1 << 20)


class TargetError(Exception):
    """The destination cannot take the image; the message names device and cause."""


class Target:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: Optional[int] = None
        self.is_block = False
        self.is_regular = False
        self.written = 0

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
        elif not self.is_regular and not stat.S_ISCHR(mode):
            self.close()
            raise TargetError(f"destination {self.path} is neither a file nor a device")

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

    def finish(self) -> None:
        """Make the bytes durable; only then may the hop call its copy verified."""
        try:
            if self.is_regular:
                os.ftruncate(self.fd, self.written)
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
