"""One client's share of the chain: receive a stream, write it to disk, pass it on.

Three threads carry the data (design card): the reader fills pooled buffers straight
from the upstream socket, the writer decodes and writes them to the target, and the
forwarder sends the very same buffers to the downstream hop. A buffer goes back to the
pool when both have released it, so the pool size bounds memory and a slow disk or a
slow downstream slows the reader, and through TCP the whole chain: backpressure, not
buffering.

Failures stay where they happen: a disk error stops this hop's writing but not its
forwarding; a dead downstream stops forwarding but not writing; only a broken
upstream ends everything, and then without an END record nobody downstream can
finish either.
"""

import hashlib
import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from thepusher import wire
from thepusher.decode import DecodeError, Decoder
from thepusher.target import ZEROS, Target, TargetError

log = logging.getLogger("thepusher.hop")

Address = Tuple[str, int]
HANDSHAKE_TIMEOUT = 5.0


@dataclass
class HopConfig:
    """What the master tells a hop when a round starts."""

    session: str
    secret: bytes
    downstream: List[Address] = field(default_factory=list)
    buffers: int = 32
    accept_timeout: float = 60.0
    io_timeout: float = 30.0
    source: Optional[str] = None


class Chunk:
    """A received record (head + payload) in a pooled buffer, shared by writer and forwarder."""

    __slots__ = ("pool", "buf", "view", "kind", "length", "offset", "_refs", "_lock")

    def __init__(
        self, pool: "BufferPool", buf: bytearray, kind: int, length: int, offset: int, refs: int
    ) -> None:
        self.pool = pool
        self.buf = buf
        wire_length = 0 if kind == wire.ZERO else length
        self.view = memoryview(buf)[: wire.HEAD_SIZE + wire_length]
        self.kind = kind
        self.length = length
        self.offset = offset
        self._refs = refs
        self._lock = threading.Lock()

    @property
    def payload(self) -> memoryview:
        return self.view[wire.HEAD_SIZE :]

    def release(self) -> None:
        with self._lock:
            self._refs -= 1
            last = self._refs == 0
        if last:
            self.view.release()
            self.pool.put(self.buf)


class BufferPool:
    """A fixed set of record-sized buffers: the hop's whole memory budget for data."""

    def __init__(self, count: int, record_size: int) -> None:
        self.size = wire.HEAD_SIZE + record_size
        self._free: "queue.Queue[bytearray]" = queue.Queue()
        for _ in range(count):
            self._free.put(bytearray(self.size))
        self.count = count

    def get(self, timeout: float) -> bytearray:
        return self._free.get(timeout=timeout)

    def put(self, buf: bytearray) -> None:
        self._free.put(buf)

    def in_use(self) -> int:
        return self.count - self._free.qsize()


class Failure:
    """Queue message that ends a consumer: the stream broke with this reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class Hop:
    """Receive one round's stream on `listener`, write it to `target`, forward it on."""

    def __init__(self, listener: socket.socket, config: HopConfig, target: Target) -> None:
        self.listener = listener
        self.config = config
        self.target = target
        self.header: Optional[wire.StreamHeader] = None
        self.upstream: Optional[str] = None
        self.pool: Optional[BufferPool] = None
        self.write_q: "queue.Queue" = queue.Queue()
        self.forward_q: "queue.Queue" = queue.Queue()
        self.written = 0
        self.disk_error: Optional[str] = None
        self.stream_error: Optional[str] = None
        self.forward_error: Optional[str] = None
        self.digest: Optional[str] = None
        self.verified = False
        self.done = threading.Event()
        self._forwarding = bool(config.downstream)
        self._reader_finished = False

    # -- lifecycle -----------------------------------------------------------

    def run(self) -> None:
        """Accept the upstream, then carry the stream to the end; always sets `done`."""
        try:
            sock = self._accept_upstream()
            threads = [
                threading.Thread(target=self._reader, args=(sock,), name="hop-reader", daemon=True),
                threading.Thread(target=self._writer, name="hop-writer", daemon=True),
            ]
            if self._forwarding:
                threads.append(
                    threading.Thread(target=self._forwarder, name="hop-forwarder", daemon=True)
                )
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        except HopAbort as e:
            self.stream_error = str(e)
        except Exception as e:  # noqa: BLE001 - the client must hear about any failure
            log.exception("hop failed")
            self.stream_error = self.stream_error or f"hop failed: {e}"
        finally:
            self.done.set()

    @property
    def error(self) -> Optional[str]:
        """Why this hop's own disk is not a verified copy, or None when it is."""
        if self.verified:
            return None
        return self.disk_error or self.stream_error or "stream did not complete"

    def queue_fill(self) -> dict:
        pool = self.pool
        return {
            "pool_in_use": pool.in_use() if pool else 0,
            "pool_size": self.config.buffers,
            "write_queue": self.write_q.qsize(),
            "forward_queue": self.forward_q.qsize(),
        }

    # -- control: accepting an authenticated upstream ---------------------------

    def _accept_upstream(self) -> socket.socket:
        """Wait for a connection that proves it holds this round's secret.

        Anything else (garbage, a wrong secret, an old round's header) is refused and
        logged, and we keep waiting until the accept deadline: nothing it sent has
        been written anywhere.
        """
        deadline = time.monotonic() + self.config.accept_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HopAbort(
                    f"no upstream connected within {self.config.accept_timeout:.0f} s"
                )
            self.listener.settimeout(remaining)
            try:
                sock, peer = self.listener.accept()
            except socket.timeout:
                continue
            # A peer gets a short while to prove itself, so an idle connection cannot
            # keep the real upstream waiting in the backlog for long.
            sock.settimeout(min(HANDSHAKE_TIMEOUT, self.config.io_timeout))
            try:
                wire.tune(sock)
                nonce = wire.new_nonce()
                wire.send_hello(sock, nonce)
                raw, mac = wire.recv_header(sock)
                header = wire.verify_header(raw, mac, self.config.secret, nonce)
                if header.session != self.config.session:
                    raise wire.ProtocolError(
                        f"header is for session {header.session}, expected {self.config.session}"
                    )
                if header.offset != 0:
                    raise wire.ProtocolError("resuming a stream is not supported by this hop")
            except (wire.ProtocolError, OSError) as e:
                log.warning("refused data connection from %s:%s: %s", peer[0], peer[1], e)
                try:
                    wire.send_reject(sock, str(e))
                except OSError:
                    pass
                sock.close()
                continue
            sock.settimeout(self.config.io_timeout)
            self.header = header
            self.upstream = peer[0]
            self._prepare_disk()
            self.pool = BufferPool(self.config.buffers, header.record_size)
            wire.send_accept(sock, 0)
            log.info("receiving %s from %s (%d bytes)", header.image, peer[0], header.stream_size)
            return sock

    def _prepare_disk(self) -> None:
        """Open the target and check we can decode; trouble here is local: we still relay."""
        try:
            Decoder(self.header.compression)
            self.target.open(self.header.content_size)
        except (TargetError, DecodeError) as e:
            self.disk_error = str(e)
            log.error("%s; still forwarding to the next hop", e)

    # -- the three data threads ------------------------------------------------

    def _reader(self, sock: socket.socket) -> None:
        """Socket -> pooled buffers -> both queues, checking every record's place."""
        expected = 0
        stream_size = self.header.stream_size
        try:
            while True:
                buf = self._get_buffer()
                view = memoryview(buf)
                try:
                    wire.recv_exact(sock, view[: wire.HEAD_SIZE])
                    kind, length, offset = wire.unpack_head(buf)
                    self._check_record(kind, length, offset, expected, len(buf))
                    if kind != wire.ZERO:
                        wire.recv_exact(sock, view[wire.HEAD_SIZE : wire.HEAD_SIZE + length])
                finally:
                    view.release()
                if kind in (wire.DATA, wire.ZERO):
                    expected += length
                self._dispatch(Chunk(self.pool, buf, kind, length, offset, self._consumers()))
                if kind == wire.END:
                    return
        except wire.PeerClosed:
            self._fail(
                f"stream ended at byte {expected} of {stream_size} "
                f"(upstream {self.upstream} closed the connection)"
            )
        except socket.timeout:
            self._fail(
                f"stream stalled at byte {expected} of {stream_size}: nothing from upstream "
                f"{self.upstream} for {self.config.io_timeout:.0f} s"
            )
        except Exception as e:  # noqa: BLE001 - any failure must reach both consumers
            self._fail(f"stream from {self.upstream} broken at byte {expected} of {stream_size}: {e}")
        finally:
            self._reader_finished = True
            sock.close()

    def _check_record(self, kind: int, length: int, offset: int, expected: int, room: int) -> None:
        header = self.header
        if offset != expected and kind != wire.KEEPALIVE:
            raise wire.ProtocolError(f"record at stream byte {offset}, expected byte {expected}")
        if kind == wire.DATA and length > room - wire.HEAD_SIZE:
            raise wire.ProtocolError(
                f"record of {length} bytes exceeds the announced record size {header.record_size}"
            )
        if kind in (wire.DATA, wire.ZERO) and expected + length > header.stream_size:
            raise wire.ProtocolError(f"stream runs past its announced size {header.stream_size}")
        if kind == wire.ZERO and header.compression != "NONE":
            raise wire.ProtocolError("zero-run record in a compressed stream")
        if kind == wire.END and offset != header.stream_size:
            raise wire.ProtocolError(f"END record at byte {offset}, stream size is {header.stream_size}")
        if kind == wire.KEEPALIVE and length:
            raise wire.ProtocolError("keep-alive record with a payload")

    def _get_buffer(self) -> bytearray:
        """Wait for a free buffer; waiting long means our own writer or forwarder is stuck."""
        try:
            return self.pool.get(timeout=self.config.io_timeout * 2)
        except queue.Empty:
            raise wire.ProtocolError(
                "no buffer freed for a long time (writer or forwarder stuck)"
            ) from None

    def _consumers(self) -> int:
        return 2 if self._forwarding else 1

    def _dispatch(self, chunk: Chunk) -> None:
        self.write_q.put(chunk)
        if self._forwarding:
            self.forward_q.put(chunk)

    def _fail(self, reason: str) -> None:
        self.stream_error = reason
        log.error("%s", reason)
        self.write_q.put(Failure(reason))
        if self._forwarding:
            self.forward_q.put(Failure(reason))

    def _writer(self) -> None:
        """Queue -> decoder -> disk, hashing what is written; verifies at END."""
        sha = hashlib.sha256()
        decoder = Decoder(self.header.compression) if self.disk_error is None else None
        while True:
            item = self._next(self.write_q)
            if isinstance(item, Failure):
                self._close_target()
                return
            try:
                if self.disk_error is None:
                    if item.kind == wire.DATA:
                        for piece in decoder.feed(item.payload):
                            self._write(piece, sha)
                    elif item.kind == wire.ZERO:
                        self._write_zeros(item.length, sha)
                    elif item.kind == wire.END:
                        self._verify(item.payload, decoder, sha)
            except (TargetError, DecodeError, wire.ProtocolError) as e:
                self.disk_error = str(e)
                log.error("%s", e)
            finally:
                kind = item.kind
                item.release()
            if kind == wire.END:
                self._close_target()
                return

    def _write(self, piece, sha) -> None:
        self.target.write(piece)
        sha.update(piece)
        self.written += len(piece)

    def _write_zeros(self, length: int, sha) -> None:
        zeros = memoryview(ZEROS)
        while length:
            n = min(length, len(zeros))
            self._write(zeros[:n], sha)
            length -= n

    def _verify(self, payload, decoder: Decoder, sha) -> None:
        digest, size = wire.parse_end(payload)
        decoder.finish()
        self.target.finish()
        self.digest = sha.hexdigest()
        if size != self.written:
            raise wire.ProtocolError(f"wrote {self.written} bytes, the image has {size}")
        if digest != self.header.content_sha256:
            raise wire.ProtocolError("END record digest differs from the header's")
        if self.digest != digest:
            raise wire.ProtocolError(
                f"digest mismatch: wrote {self.digest}, image is {digest}"
            )
        self.verified = True

    def _close_target(self) -> None:
        try:
            self.target.close()
        except OSError as e:
            self.disk_error = self.disk_error or f"closing {self.target.path} failed: {e}"

    def _forwarder(self) -> None:
        """Queue -> downstream socket, the same bytes that came in."""
        sock = None
        try:
            sock = self._connect_downstream()
        except (OSError, wire.ProtocolError) as e:
            self.forward_error = f"cannot reach next hop {self.config.downstream[0][0]}: {e}"
            log.error("%s", self.forward_error)
        while True:
            item = self._next(self.forward_q)
            if isinstance(item, Failure):
                break
            if sock is not None:
                try:
                    sock.sendall(item.view)
                except OSError as e:
                    self.forward_error = (
                        f"sending to next hop {self.config.downstream[0][0]} failed at "
                        f"stream byte {item.offset}: {e}"
                    )
                    log.error("%s", self.forward_error)
                    sock.close()
                    sock = None
            kind = item.kind
            item.release()
            if kind == wire.END:
                break
        if sock is not None:
            sock.close()

    def _connect_downstream(self) -> socket.socket:
        address = self.config.downstream[0]
        header = self.header
        sock, resume = wire.connect(
            address, header, self.config.secret, self.config.io_timeout, self.config.source
        )
        if resume != 0:
            sock.close()
            raise wire.ProtocolError(f"next hop asked to resume at byte {resume}")
        return sock

    def _next(self, q: "queue.Queue"):
        """Wait for the next item; the reader ends every stream with END or a Failure."""
        while True:
            try:
                return q.get(timeout=self.config.io_timeout)
            except queue.Empty:
                if self._reader_finished and q.empty():
                    return Failure("reader stopped without a final record")


class HopAbort(Exception):
    """The hop ended before any data arrived."""
