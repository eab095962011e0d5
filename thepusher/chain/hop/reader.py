"""The reader thread: upstream socket -> pooled buffers -> every consumer's feed.

It reads each record straight into a pooled buffer, after checking its head
(rules.check_record), and hands the same buffer to the writer's feed and, when we
forward, the forwarder's. When the upstream breaks it waits for another one (an earlier
hop skipping a dead one connects here); that one resends from the first byte we lack,
or from later, and then the gap comes from the master. run() takes the first upstream
through this class too, before any data thread starts: its header sizes everything.

Owns (writes): header (once, from the first upstream), failure, the expected offset,
sock (the upstream socket it reads now, None when it has none); shared.upstream, the
host it reads from.
Sets: shared.upstream_ok, while it has a working upstream (cleared while it waits for
one) and for good when it ends; shared.reader_done when it ends.
Puts: every record, then END or one Failure, on each feed; takes from shared.offers.
Reads: shared.refused, shared.healing, the config.
"""

import logging
import math
import queue
import socket
import time
from typing import List, Optional

from thepusher.chain import rules, wire
from thepusher.chain.hop.buffers import BufferPool, Chunk, Failure, Feed
from thepusher.chain.hop.config import HopConfig
from thepusher.chain.hop.shared import Shared


log = logging.getLogger("thepusher.hop")


class HopAbort(Exception):
    """The hop cannot go on receiving (its writer is stuck, say)."""


class NoUpstream(HopAbort):
    """No (further) upstream came in time: nobody above us can complete the stream."""


class Reader:
    def __init__(
        self, config: HopConfig, shared: Shared, feeds: List[Feed], writing_to: str
    ) -> None:
        self.config = config
        self.shared = shared
        self.feeds = feeds
        self.writing_to = writing_to  # the target, named when it is too slow to free buffers
        self.header: Optional[wire.StreamHeader] = None
        self.failure: Optional[str] = None  # why the stream broke, once it has
        self.sock: Optional[socket.socket] = None  # the upstream it reads now (for reports)
        self._pool: Optional[BufferPool] = None
        self._taken_at = -math.inf  # when we took our upstream: refusals before are stale

    def take_upstream(self, expected: int, why: Optional[str]) -> socket.socket:
        """Wait for an offered upstream, tell it the first byte we lack, and use it.

        The wait is accept_timeout, longer while the master still streams to our chain
        (hops before us may be healing towards us), and one io_timeout once the master
        cannot feed us any more: then only hops before us could, and they find us
        within that or not at all."""
        config = self.config
        self.shared.upstream_ok.clear()
        began = time.monotonic()
        deadline = began + config.accept_timeout
        while True:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0 and config.round_alive and config.round_alive():
                deadline, remaining = now + 1.0, 1.0
            gone = config.master_gone() if config.master_gone else None
            if gone and now - began >= config.io_timeout:
                lost = why or f"no upstream connected within {now - began:.0f} s"
                raise NoUpstream(f"{lost}, and {gone}: giving up{self._refusal()}")
            if remaining <= 0:
                waited = f"{config.accept_timeout:.0f} s"
                raise NoUpstream((f"no upstream connected within {waited}" if why is None else
                                  f"{why}, and no other upstream took over within {waited}")
                                 + self._refusal())
            try:
                offer = self.shared.offers.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            try:
                offer.sock.settimeout(config.io_timeout)
                wire.send_accept(offer.sock, expected)
            except OSError as e:
                log.warning("upstream %s vanished before we answered: %s", offer.host, e)
                offer.sock.close()
                continue
            if self.header is None:
                self.header = offer.header
                log.info("receiving %s from %s (%d bytes in records of %d KiB)", offer.header.image,
                         offer.host, offer.header.stream_size, offer.header.record_size >> 10)
            else:
                log.warning("%s; continuing at byte %d from upstream %s", why, expected, offer.host)
            self.shared.upstream = offer.host
            self.shared.upstream_ok.set()
            self._taken_at = time.monotonic()
            return offer.sock

    def _refusal(self) -> str:
        refused = self.shared.refused
        if refused is None or refused[0] < self._taken_at:
            return ""
        return f" ({refused[1]})"

    def run(self, sock: socket.socket, pool: BufferPool) -> None:
        """Read from `sock`, the first upstream, and its successors, until END or a failure."""
        self._pool = pool
        self.sock = sock
        expected = 0
        size = self.header.stream_size
        fresh = True  # first record on this connection: it may start past `expected`
        try:
            while True:
                try:
                    chunk = self._read_record(sock, expected, fresh)
                except wire.UpstreamGaveUp as e:
                    raise NoUpstream(f"upstream {self.shared.upstream} gave up at byte {expected} "
                                     f"of {size}: {e}") from None
                except (wire.ProtocolError, OSError) as e:
                    self.sock = None
                    sock.close()
                    sock = self.sock = self.take_upstream(expected, self._describe_break(e, expected))
                    fresh = True
                    continue
                fresh = False
                if chunk is None:
                    continue
                if chunk.offset > expected:
                    self._fill_gap(expected, chunk.offset)
                    expected = chunk.offset
                expected = chunk.end
                self._dispatch(chunk)
                if chunk.kind == wire.END:
                    return
        except NoUpstream as e:
            self._fail(str(e), tell_downstream=True)
        except HopAbort as e:
            self._fail(str(e))
        except Exception as e:  # noqa: BLE001 - any failure must reach every consumer
            upstream = self.shared.upstream
            self._fail(f"stream from {upstream} broken at byte {expected} of {size}: {e}")
        finally:
            self.sock = None
            self.shared.reader_done.set()
            self.shared.upstream_ok.set()  # refuse further offers: we are done reading
            sock.close()

    def _describe_break(self, e: Exception, expected: int) -> str:
        size = self.header.stream_size
        upstream = self.shared.upstream
        if isinstance(e, wire.PeerClosed):
            return (f"stream ended at byte {expected} of {size} "
                    f"(upstream {upstream} closed the connection)")
        if isinstance(e, socket.timeout):
            return (f"stream stalled at byte {expected} of {size}: nothing from upstream "
                    f"{upstream} for {self.config.io_timeout:.0f} s")
        return f"stream from {upstream} broken at byte {expected} of {size}: {e}"

    def _read_record(self, sock: socket.socket, expected: int, fresh: bool) -> Optional[Chunk]:
        """One record into a pooled buffer; None for a keep-alive (consumed here)."""
        buf = self._get_buffer()
        view = memoryview(buf)
        try:
            wire.recv_exact(sock, view[: wire.HEAD_SIZE])
            kind, length, offset = wire.unpack_head(buf)
            rules.check_record(self.header, kind, length, offset, expected, fresh)
            if kind == wire.KEEPALIVE:
                self._pool.put(buf)
                return None
            if kind not in wire.RUNS:
                wire.recv_exact(sock, view[wire.HEAD_SIZE : wire.HEAD_SIZE + length])
            if kind == wire.ABORT:
                reason = bytes(view[wire.HEAD_SIZE : wire.HEAD_SIZE + length])
                raise wire.UpstreamGaveUp(reason.decode("utf-8", "replace"))
        except BaseException:
            view.release()
            self._pool.put(buf)
            raise
        view.release()
        return Chunk(self._pool, buf, kind, length, offset, len(self.feeds))

    def _fill_gap(self, start: int, stop: int) -> None:
        """Bytes our new upstream no longer holds come from the master, as DATA records."""
        if self.config.fetch_range is None:
            raise wire.ProtocolError(f"stream resumed at byte {stop}, we lack bytes from {start}")
        log.warning("fetching stream bytes %d-%d from the master", start, stop)
        if self.header.version >= wire.FREE_VERSION:
            self._fill_records(self.config.fetch_range(start, stop - start, True), start, stop)
            return
        body = self.config.fetch_range(start, stop - start)
        step = self.header.record_size
        pos = start
        while pos < stop:
            n = min(step, stop - pos)
            buf = self._get_buffer()
            view = memoryview(buf)
            try:
                wire.RECORD_HEAD.pack_into(buf, 0, wire.DATA, n, pos)
                got = 0
                while got < n:
                    k = body.readinto(view[wire.HEAD_SIZE + got : wire.HEAD_SIZE + n])
                    if not k:
                        raise wire.ProtocolError(f"master sent only {pos + got - start} of {stop - start} gap bytes")
                    got += k
            except BaseException:
                view.release()
                self._pool.put(buf)
                raise
            view.release()
            self._dispatch(Chunk(self._pool, buf, wire.DATA, n, pos, len(self.feeds)))
            pos += n

    def _fill_records(self, body, start: int, stop: int) -> None:
        """A gap of a stream with FREE records comes as records (DATA, ZERO, FREE), so its
        free ranges stay free here and downstream: as raw bytes they would be the
        master's file there, which the image does not define."""
        pos = start
        while pos < stop:
            buf = self._get_buffer()
            view = memoryview(buf)
            try:
                _read_into(body, view[: wire.HEAD_SIZE], pos - start)
                kind, length, offset = wire.unpack_head(buf)
                if kind not in wire.STREAM_BYTES or offset != pos or offset + length > stop \
                        or (kind == wire.DATA and length > self.header.record_size):
                    raise wire.ProtocolError(
                        f"master's gap fill sent a {wire.RECORD_TYPES[kind]} record at byte "
                        f"{offset} of {length} bytes, expected one at byte {pos} up to {stop}")
                if kind == wire.DATA:
                    _read_into(body, view[wire.HEAD_SIZE : wire.HEAD_SIZE + length], pos - start)
            except BaseException:
                view.release()
                self._pool.put(buf)
                raise
            view.release()
            self._dispatch(Chunk(self._pool, buf, kind, length, offset, len(self.feeds)))
            pos += length

    def _get_buffer(self) -> bytearray:
        """Wait for a free buffer. While the forwarder heals the chain that may take a
        while (its waits are all bounded); otherwise a long wait means our own writer
        is stuck on the disk."""
        waited = 0.0
        while True:
            try:
                return self._pool.get(timeout=self.config.io_timeout)
            except queue.Empty:
                waited = 0.0 if self.shared.healing.is_set() else waited + self.config.io_timeout
                if waited >= 4 * self.config.io_timeout:
                    raise HopAbort(
                        f"no buffer freed for {waited:.0f} s: writing to "
                        f"{self.writing_to} is stuck"
                    ) from None

    def _dispatch(self, chunk: Chunk) -> None:
        for feed in self.feeds:
            feed.put(chunk)

    def _fail(self, reason: str, tell_downstream: bool = False) -> None:
        self.failure = reason
        log.error("%s", reason)
        failure = Failure(reason, tell_downstream)
        for feed in self.feeds:
            feed.put(failure)


def _read_into(body, view: memoryview, done: int) -> None:
    got = 0
    while got < len(view):
        k = body.readinto(view[got:])
        if not k:
            raise wire.ProtocolError(f"master's gap fill ended after {done} bytes of the gap")
        got += k
