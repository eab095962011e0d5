"""The tar stream over the caller's pieces: exact reads, and views for file data.

The pieces are the decoder's buffers, which the caller reuses once the next one is
asked for: file data is handed on as views into them (no copy on its way to the disk),
headers are copied, and nothing is kept past the next request. The stream counts the
tar bytes consumed, which every message about a damaged archive names.
"""

from typing import Iterable, Iterator

from thepusher.disk.tar.model import TarError

COPY = 1 << 20  # file contents move in reads and writes of up to this size


class Stream:
    def __init__(self, pieces: Iterable) -> None:
        self._pieces: Iterator = iter(pieces)
        self._view = memoryview(b"")
        self._pos = 0
        self.offset = 0  # tar bytes consumed so far

    def take(self, n: int) -> memoryview:
        """Up to `n` bytes from the current piece (valid until the next call); empty at the end."""
        if self._pos == len(self._view):
            self._view = memoryview(b"")
            self._pos = 0
            for piece in self._pieces:
                view = memoryview(piece).cast("B")
                if len(view):
                    self._view = view
                    break
            else:
                return self._view
        end = min(self._pos + n, len(self._view))
        chunk = self._view[self._pos:end]
        self._pos = end
        self.offset += len(chunk)
        return chunk

    def read(self, n: int) -> bytes:
        """Exactly `n` bytes, copied; fewer only where the stream ends."""
        parts = []
        while n:
            chunk = self.take(n)
            if not chunk:
                break
            parts.append(bytes(chunk))
            n -= len(chunk)
        return b"".join(parts)

    def skip(self, n: int, where: str) -> None:
        """Pass over `n` bytes (padding, data not extracted) that belong to `where`."""
        while n:
            chunk = self.take(min(n, COPY))
            if not chunk:
                raise self.truncated(where)
            n -= len(chunk)

    def truncated(self, where: str) -> TarError:
        return TarError(f"the tar stream ends at byte {self.offset}, inside {where}: "
                        f"the archive is truncated")

    def release(self) -> None:
        self._view = memoryview(b"")
        self._pos = 0
