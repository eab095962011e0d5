"""Writing a disk in whole sectors from page-aligned memory, while the stream goes on.

Two kinds of disk take only that: a macOS raw disk (/dev/rdiskN), which has no cache
in front of it to absorb a stream cut at any byte, and a Linux block device opened
with O_DIRECT, which is how a client writes its disk: past the page cache, so that the
bytes reach the disk as they come rather than in one giant flush at the end, and the
copy into the cache, and the cache's own memory, are saved. Either wants each write to
start on a sector, be whole sectors long, and come from aligned memory.

So the stream is gathered into one of two page-aligned buffers (mmap), and a full one
is written by a thread of its own while the next one fills: the hop's writer thread
hashes the next piece while the disk takes the last. Where the stream jumps (a zero
run the device zeroes itself, a free range left alone), the gathered bytes are written
and gathering goes on at the new offset. A part sector at a jump or at the end is
completed with the disk's own old bytes, read first, so that nothing the stream leaves
alone changes (free ranges, what follows the image). Every `step` bytes the disk is
told to make what it holds durable, so the final flush is short and a copy's progress
is close to what the disk really holds.
"""

import mmap
import queue
import threading
from typing import Optional, Tuple

from thepusher import syscalls

CHUNK = 2 << 20  # bytes per write: a multiple of any sector size; two of them per disk
STEP = 256 << 20  # bytes written between two flushes of the disk's own cache


class SectorWriter:
    """`fd` takes whole sectors from aligned memory only (O_DIRECT, a raw disk); its
    writes are in `offset` order. OSError from write(), jump() or finish() once the disk
    refused a write: then `offset` is where that write began, `refused` its length."""

    def __init__(self, fd: int, sector: int, chunk: int = CHUNK, step: int = STEP) -> None:
        if chunk % sector or chunk % mmap.PAGESIZE:
            raise ValueError(f"a buffer of {chunk} bytes is no whole number of {sector}-byte sectors")
        self.fd = fd
        self.sector = sector
        self.step = step
        self.offset = 0  # where the buffer being gathered goes: every byte before is handed over
        self.refused = 0  # bytes in the write the disk refused, once it has
        self._buffers = [mmap.mmap(-1, chunk) for _ in range(2)]  # page-aligned
        self._views = [memoryview(b) for b in self._buffers]
        self._free: "queue.Queue[int]" = queue.Queue()
        self._todo: "queue.Queue[Optional[Tuple[int, int, int]]]" = queue.Queue()
        self._failed: Optional[Tuple[int, int, OSError]] = None  # offset, length, error
        self._current = 0
        self._free.put(1)
        self._fill = 0
        self._thread: Optional[threading.Thread] = None

    def write(self, data) -> None:
        """Take `data`; the disk sees it once a buffer is full (or at jump()/finish())."""
        data = memoryview(data)
        view = self._views[self._current]
        while data:
            n = min(len(data), len(view) - self._fill)
            view[self._fill : self._fill + n] = data[:n]
            self._fill += n
            data = data[n:]
            if self._fill == len(view):
                self._hand_over(self._fill)
                view = self._views[self._current]

    def jump(self, offset: int) -> None:
        """Go on at `offset` (not before what was taken): the bytes between are left as
        the disk holds them (zeroed by it, a free range). Part sectors at either end are
        completed with the disk's own bytes, so nothing between changes."""
        end = self.offset + self._fill
        if offset < end:
            raise ValueError(f"cannot go back from byte {end} to {offset}")
        if end % self.sector:
            sector_end = end - end % self.sector + self.sector
            self._keep_old(end, min(offset, sector_end))
            if offset < sector_end:
                return
        if self._fill:
            self._hand_over(self._fill)
        self.offset = offset - offset % self.sector
        self._keep_old(self.offset, offset)

    def _keep_old(self, start: int, stop: int) -> None:
        """Gather the disk's own bytes [start, stop), all in one sector not yet written."""
        if stop <= start:
            return
        at = start - start % self.sector
        old = mmap.mmap(-1, max(self.sector, mmap.PAGESIZE))
        try:
            with memoryview(old) as view:
                syscalls.read_at(self.fd, view[: self.sector], at)
            self._views[self._current][self._fill : self._fill + stop - start] = \
                old[start - at : stop - at]
            self._fill += stop - start
        finally:
            old.close()

    def finish(self) -> None:
        """Write what is gathered and wait for every write; a part sector at the end is
        completed with the bytes the disk holds there now. Then the disk's cache is the
        caller's to flush."""
        end = self.offset + self._fill
        if end % self.sector:
            self._keep_old(end, end - end % self.sector + self.sector)
        if self._fill:
            self._hand_over(self._fill)
        self._wait()

    def close(self) -> None:
        """Stop the writing thread (after an error, say) and free the buffers."""
        if self._thread is not None:
            self._todo.put(None)
            self._thread.join()
            self._thread = None
        for view, buf in zip(self._views, self._buffers):
            if not buf.closed:
                view.release()
                buf.close()

    def _hand_over(self, length: int) -> None:
        """Queue the current buffer's first `length` bytes for `offset`, and gather on in
        the other one once the disk is done with it."""
        self._raise_failure()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="disk-writes", daemon=True)
            self._thread.start()
        self._todo.put((self._current, length, self.offset))
        self.offset += length
        self._fill = 0
        self._current = self._free.get()
        self._raise_failure()

    def _wait(self) -> None:
        """Until the disk has taken every buffer handed over."""
        if self._thread is not None:
            index = self._free.get()
            self._free.put(index)
            self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failed is not None:
            self.offset, self.refused, error = self._failed
            raise error

    def _run(self) -> None:
        unsynced = 0
        while True:
            job = self._todo.get()
            if job is None:
                return
            index, length, offset = job
            if self._failed is None:
                try:
                    with self._views[index][:length] as part:
                        syscalls.write_at(self.fd, part, offset)
                    unsynced += length
                    if unsynced >= self.step:
                        syscalls.flush(self.fd)
                        unsynced = 0
                except OSError as e:
                    self._failed = (offset, length, e)
            self._free.put(index)
