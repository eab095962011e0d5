"""Writing a disk that takes only whole sectors: a macOS raw disk, /dev/rdiskN.

A raw disk has no cache in front of it to absorb a stream cut at any byte: each write
must start on a sector and be whole sectors long (a device opened with O_DIRECT
wants the same, plus aligned memory, which is how the tests hold this to it). So the
stream is gathered into a page-aligned buffer and written a buffer at a time; a last
part sector is completed with the disk's own old bytes, read first, so that nothing
after the image's end changes.
"""

import mmap

from thepusher import syscalls

CHUNK = 4 << 20  # bytes per write: a multiple of any sector size


class SectorWriter:
    def __init__(self, fd: int, sector: int, chunk: int = CHUNK) -> None:
        if chunk % sector:
            raise ValueError(f"a buffer of {chunk} bytes is no whole number of {sector}-byte sectors")
        self.fd = fd
        self.sector = sector
        self.offset = 0  # where on the disk the buffer goes: every byte before is written
        self._buf = mmap.mmap(-1, chunk)  # page-aligned, as O_DIRECT wants too
        self._view = memoryview(self._buf)
        self._fill = 0

    def write(self, data) -> None:
        """Take `data`; the disk sees it once a buffer is full (or at finish())."""
        data = memoryview(data)
        while data:
            n = min(len(data), len(self._view) - self._fill)
            self._view[self._fill : self._fill + n] = data[:n]
            self._fill += n
            data = data[n:]
            if self._fill == len(self._view):
                self._put(self._fill)

    def finish(self) -> None:
        """Write what is gathered; a part sector at the end is completed with the bytes
        the disk holds there now."""
        whole = -(-self._fill // self.sector) * self.sector
        if whole > self._fill:
            keep = self._fill % self.sector
            old = mmap.mmap(-1, max(self.sector, mmap.PAGESIZE))
            try:
                with memoryview(old) as view:
                    syscalls.read_at(self.fd, view[: self.sector], self.offset + whole - self.sector)
                self._view[self._fill : whole] = old[keep : self.sector]
            finally:
                old.close()
        if whole:
            self._put(whole)

    def close(self) -> None:
        if not self._buf.closed:
            self._view.release()
            self._buf.close()

    def _put(self, length: int) -> None:
        """Write the buffer's first `length` bytes at `offset` (on an error, `offset` is
        still where the refused write began)."""
        with self._view[:length] as part:
            syscalls.write_at(self.fd, part, self.offset)
        self.offset += length
        self._fill = 0
