"""The hop's data memory, and what travels on the queues from the reader to its consumers.

A record is read once, into a pooled buffer, and handed untouched to every consumer (the
writer, and the forwarder when there is a next hop): the bytes forwarded are the bytes
received. The buffer goes back to the pool when the last consumer releases it, so the
pool, not any queue, bounds how much a hop holds.
"""

import queue
import threading
from typing import List, Optional, Union

from thepusher.chain import wire


class Chunk:
    """A received record (head + payload) in a pooled buffer, shared by writer and forwarder."""

    __slots__ = ("pool", "buf", "view", "kind", "length", "offset", "_refs", "_lock")

    def __init__(
        self, pool: "BufferPool", buf: bytearray, kind: int, length: int, offset: int, refs: int
    ) -> None:
        self.pool = pool
        self.buf = buf
        wire_length = 0 if kind in wire.RUNS else length
        self.view = memoryview(buf)[: wire.HEAD_SIZE + wire_length]
        self.kind = kind
        self.length = length
        self.offset = offset
        self._refs = refs
        self._lock = threading.Lock()

    @property
    def payload(self) -> memoryview:
        return self.view[wire.HEAD_SIZE :]

    @property
    def end(self) -> int:
        """First stream byte after this record (END and KEEPALIVE carry no stream bytes)."""
        return self.offset + self.length if self.kind in wire.STREAM_BYTES else self.offset

    def tail_from(self, start: int) -> List:
        """What to send so the receiver gets this record from stream byte `start` on."""
        if start <= self.offset or self.kind not in wire.STREAM_BYTES:
            return [self.view]
        skip = start - self.offset
        head = wire.pack_head(self.kind, self.length - skip, start)
        return [head] if self.kind in wire.RUNS else [head, self.payload[skip:]]

    def release(self) -> None:
        with self._lock:
            self._refs -= 1
            last = self._refs == 0
        if last:
            self.view.release()
            self.pool.put(self.buf)


class BufferPool:
    """At most `count` record-sized buffers: the hop's whole memory budget for data.

    Made as they are first needed, not up front: making 80 MiB of buffers takes tens
    of milliseconds, and a hop that did so before its first byte would hold back every
    hop after it by that much, for the whole round.
    """

    def __init__(self, count: int, record_size: int) -> None:
        self.size = wire.HEAD_SIZE + record_size
        self.count = count
        self._free: "queue.Queue[bytearray]" = queue.Queue()
        self._made = 0
        self._lock = threading.Lock()

    def get(self, timeout: float) -> bytearray:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._made < self.count:
                self._made += 1
                return bytearray(self.size)
        return self._free.get(timeout=timeout)

    def put(self, buf: bytearray) -> None:
        self._free.put(buf)

    def in_use(self) -> int:
        return self._made - self._free.qsize()


class Failure:
    """Queue message that ends a consumer: the stream broke with this reason. With
    `tell_downstream` the forwarder passes it on as an ABORT record: nobody above us
    can complete the stream, so the hops after us need not wait for one either."""

    def __init__(self, reason: str, tell_downstream: bool = False) -> None:
        self.reason = reason
        self.tell_downstream = tell_downstream


Item = Union[Chunk, Failure]


class Feed:
    """One consumer's queue: the reader's records in stream order, then END or a Failure.

    Consumers wait with a timeout (the forwarder sends keep-alives meanwhile), and a
    reader that is gone without a last word must not leave them waiting for ever.
    """

    def __init__(self, reader_done: threading.Event) -> None:
        self._items: "queue.Queue[Item]" = queue.Queue()
        self._reader_done = reader_done

    def put(self, item: Item) -> None:
        self._items.put(item)

    def next(self, timeout: float) -> Optional[Item]:
        """The next item, or None after `timeout`; a Failure once the reader is gone."""
        try:
            return self._items.get(timeout=timeout)
        except queue.Empty:
            if self._reader_done.is_set() and self._items.empty():
                return Failure("reader stopped without a final record")
            return None

    def qsize(self) -> int:
        return self._items.qsize()
