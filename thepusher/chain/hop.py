"""One client's share of the chain: receive a stream, write it to disk, pass it on.

Three threads carry the data (design card): the reader fills pooled buffers straight
from the upstream socket, the writer decodes and writes them to the target, and the
forwarder sends the very same buffers to the downstream hop. A buffer goes back to the
pool when both have released it, so the pool size bounds memory and a slow disk or a
slow downstream slows the reader, and through TCP the whole chain: backpressure, not
buffering.

Failures stay where they happen, and the chain heals around dead hops:
- a disk error stops this hop's writing, never its forwarding;
- a dead or stopped downstream is skipped: the forwarder's Link (relay.py) connects to
  the next live hop and replays, from a window of recently sent records, everything
  that hop lacks;
- a dead upstream makes the reader wait for another one (an earlier hop skipping the
  dead one connects here); any bytes older than that hop's window are fetched from the
  master. Only if nobody takes over in time does this hop end in ERROR, and then it
  sends the next hop ABORT instead of END: nobody downstream can finish either, and
  they end at once instead of each waiting in turn.

What the hop checks its copy against comes from the master's start (HopConfig.expect),
never from a stream's header: every member of the round holds the secret that signs
headers.
"""

import collections
import dataclasses
import hashlib
import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Iterator, List, Optional, Tuple

from thepusher.chain import wire
from thepusher.image import sparse
from thepusher.image.decode import DecodeError, Decoder
from thepusher.chain.link import Link, LinkBroken, NoHopLeft
from thepusher.disk.target import Piece, Target, TargetError
from thepusher.disk.tar import TarError

log = logging.getLogger("thepusher.hop")

Address = Tuple[str, int]
HANDSHAKE_TIMEOUT = 5.0  # a connection to the data port has this long to prove itself
MAX_HANDSHAKES = 64  # connections proving themselves at once; more drop the oldest


@dataclass
class HopConfig:
    """What the master tells a hop when a round starts."""

    session: str
    secret: bytes
    expect: wire.Expected  # the stream's facts as the master signed them: nothing else counts
    position: int = 1  # our place in the chain; upstreams have lower positions
    downstream: List[Address] = field(default_factory=list)  # every hop after us, in order
    buffers: int = 32  # records in flight between reader, writer and forwarder
    window: int = 48 << 20  # bytes of sent records kept to replay after a skip
    accept_timeout: float = 60.0
    io_timeout: float = 30.0
    source: Optional[str] = None
    # Fetches stream bytes [offset, offset+length) from the master (gap fill): returns
    # an object with readinto(), e.g. an HTTP response.
    fetch_range: Optional[Callable[[int, int], Any]] = None
    # True while the master is still streaming: hops upstream may still be healing
    # towards us, so waiting for an upstream goes on past accept_timeout.
    round_alive: Optional[Callable[[], bool]] = None
    # Why the master can no longer feed us (it has not answered for io_timeout, or it
    # lost the round in a restart), else None. Then a lost upstream is waited for one
    # io_timeout, not accept_timeout: only the hops before us could still heal.
    master_gone: Optional[Callable[[], Optional[str]]] = None
    # "readback": after the flush, the copy counts as verified only if what the disk
    # returns hashes to the image's digest, not just what was handed to write().
    verify: str = "write"


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

    @property
    def end(self) -> int:
        """First stream byte after this record (END and KEEPALIVE carry no stream bytes)."""
        return self.offset + self.length if self.kind in (wire.DATA, wire.ZERO) else self.offset

    def tail_from(self, start: int) -> List:
        """What to send so the receiver gets this record from stream byte `start` on."""
        if start <= self.offset or self.kind not in (wire.DATA, wire.ZERO):
            return [self.view]
        skip = start - self.offset
        head = wire.pack_head(self.kind, self.length - skip, start)
        return [head] if self.kind == wire.ZERO else [head, self.payload[skip:]]

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


class HopAbort(Exception):
    """The hop cannot go on receiving (its writer is stuck, say)."""


class NoUpstream(HopAbort):
    """No (further) upstream came in time: nobody above us can complete the stream."""


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
        self.decode_seconds = 0.0  # writer time spent decompressing
        self.write_seconds = 0.0  # writer time spent writing (and hashing) what it decoded
        self.disk_error: Optional[str] = None
        self.stream_error: Optional[str] = None
        self.forward_error: Optional[str] = None
        self.skipped: List[Tuple[str, str]] = []  # (host, reason) of downstream hops we skipped
        self.digest: Optional[str] = None
        self.verified = False
        self.verified_by = ""  # "write" or "readback", once verified
        self.read_back = 0  # bytes read back from the disk so far (verify = "readback")
        self._refused: Optional[str] = None  # the last would-be upstream we refused, and why
        self.done = threading.Event()
        self._forwarding = bool(config.downstream)
        self._reader_finished = False
        self._offers: "queue.Queue" = queue.Queue()  # authenticated upstream connections
        self._upstream_ok = False  # while True, other would-be upstreams are refused
        self._healing = False  # the forwarder is looking for a live next hop
        self._decoder: Optional[Decoder] = None
        self._writer_ended = False  # the writer took END or a Failure off its queue

    # -- lifecycle -----------------------------------------------------------

    def run(self) -> None:
        """Carry the round from the first upstream to the end; always sets `done`."""
        acceptor = threading.Thread(target=self._acceptor, name="hop-acceptor", daemon=True)
        acceptor.start()
        try:
            sock = self._take_upstream(0, None)
            self._prepare_disk()
            records = -(-self.config.window // self.header.record_size) if self._forwarding else 0
            self.pool = BufferPool(self.config.buffers + records + 1, self.header.record_size)
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
            acceptor.join()
            while not self._offers.empty():
                self._offers.get_nowait()[0].close()

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
            "pool_size": pool.count if pool else 0,
            "capacity": self.config.buffers,
            # Lost our upstream mid-stream and waiting for another: once every hop
            # before us has finished, only the master can still feed us.
            "waiting_upstream": self.header is not None and not self._upstream_ok
            and not self._reader_finished,
            "write_queue": self.write_q.qsize(),
            "forward_queue": self.forward_q.qsize(),
            "decode_seconds": round(self.decode_seconds, 3),
            "write_seconds": round(self.write_seconds, 3),
        }

    # -- control: who may be our upstream ----------------------------------------

    def _acceptor(self) -> None:
        """Answer every connection on our data port for the whole round.

        Only a connection that proves it holds this round's secret (HMAC over our
        fresh nonce), comes from earlier in the chain and describes the same stream is
        offered to the reader, and only while the reader has no working upstream.
        Everything else is refused and logged; nothing it sent is written anywhere.

        Each connection proves itself in its own short-lived thread, within
        HANDSHAKE_TIMEOUT in all: idle or trickling peers cannot keep the real upstream
        waiting behind them. At most MAX_HANDSHAKES are pending; a new connection beyond
        that drops the oldest, so a flood of idle ones cannot lock the port either.
        """
        self.listener.settimeout(0.5)
        pending: "collections.OrderedDict[socket.socket, threading.Thread]" = (
            collections.OrderedDict()
        )
        lock = threading.Lock()
        try:
            while not self.done.is_set():
                try:
                    sock, peer = self.listener.accept()
                except socket.timeout:
                    continue
                except OSError as e:
                    log.error("data port failed: %s", e)
                    return
                with lock:
                    while len(pending) >= MAX_HANDSHAKES:
                        oldest, _ = pending.popitem(last=False)
                        _shut(oldest)  # its thread sees the connection end and refuses it
                    t = threading.Thread(
                        target=self._handshake, args=(sock, peer, pending, lock),
                        name="hop-handshake", daemon=True,
                    )
                    pending[sock] = t
                t.start()
        finally:
            with lock:
                waiting = list(pending.items())
            for sock, t in waiting:
                _shut(sock)
                t.join()

    def _handshake(self, sock: socket.socket, peer, pending: dict, lock: threading.Lock) -> None:
        """One would-be upstream: an authenticated offer for the reader, or refused."""
        # A peer gets a short while in all to prove itself, so an idle or trickling
        # connection cannot keep a thread (or the real upstream) waiting for long.
        limit = min(HANDSHAKE_TIMEOUT, self.config.io_timeout)
        deadline = time.monotonic() + limit
        offered = False
        try:
            sock.settimeout(limit)
            wire.tune(sock)
            nonce = wire.new_nonce()
            wire.send_hello(sock, nonce)
            raw, mac = wire.recv_header(sock, deadline)
            header = wire.verify_header(raw, mac, self.config.secret, nonce)
            self._check_offer(header)
            with lock:
                if pending.pop(sock, None) is not None and not self.done.is_set():
                    self._offers.put((sock, header, peer[0]))
                    offered = True
        except wire.Probe:
            pass
        except (wire.ProtocolError, OSError) as e:
            log.warning("refused data connection from %s:%s: %s", peer[0], peer[1], e)
            if not isinstance(e, OSError):
                self._refused = f"refused {peer[0]}: {e}"
            try:
                wire.send_reject(sock, str(e))
            except OSError:
                pass
        finally:
            if not offered:
                with lock:
                    pending.pop(sock, None)
                sock.close()

    def _check_offer(self, header: wire.StreamHeader) -> None:
        if header.session != self.config.session:
            raise wire.ProtocolError(
                f"header is for session {header.session}, expected {self.config.session}"
            )
        if header.sender >= self.config.position:
            raise wire.ProtocolError(
                f"sender at chain position {header.sender} is not upstream of us "
                f"(position {self.config.position})"
            )
        why = self.config.expect.mismatch(header)
        if why is not None:
            raise wire.ProtocolError(f"stream facts differ from the master's start: {why}")
        if self._upstream_ok:
            raise wire.ProtocolError(f"this hop's upstream {self.upstream} is working")

    def _take_upstream(self, expected: int, why: Optional[str]) -> socket.socket:
        """Wait for an offered upstream, tell it the first byte we lack, and use it.

        The wait is accept_timeout, longer while the master still streams to our chain
        (hops before us may be healing towards us), and one io_timeout once the master
        cannot feed us any more: then only hops before us could, and they find us
        within that or not at all."""
        self._upstream_ok = False
        began = time.monotonic()
        deadline = began + self.config.accept_timeout
        while True:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0 and self.config.round_alive and self.config.round_alive():
                deadline, remaining = now + 1.0, 1.0
            gone = self.config.master_gone() if self.config.master_gone else None
            if gone and now - began >= self.config.io_timeout:
                lost = why or f"no upstream connected within {now - began:.0f} s"
                raise NoUpstream(f"{lost}, and {gone}: giving up{self._refusal()}")
            if remaining <= 0:
                waited = f"{self.config.accept_timeout:.0f} s"
                raise NoUpstream((f"no upstream connected within {waited}" if why is None else
                                  f"{why}, and no other upstream took over within {waited}")
                                 + self._refusal())
            try:
                sock, header, host = self._offers.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            try:
                sock.settimeout(self.config.io_timeout)
                wire.send_accept(sock, expected)
            except OSError as e:
                log.warning("upstream %s vanished before we answered: %s", host, e)
                sock.close()
                continue
            if self.header is None:
                self.header = header
                log.info("receiving %s from %s (%d bytes)", header.image, host, header.stream_size)
            else:
                log.warning("%s; continuing at byte %d from upstream %s", why, expected, host)
            self.upstream = host
            self._upstream_ok = True
            self._refused = None
            return sock

    def _refusal(self) -> str:
        return f" ({self._refused})" if self._refused else ""

    def _prepare_disk(self) -> None:
        """Open the target and the decoder; trouble here is local: we still relay."""
        try:
            self._decoder = Decoder(self.header.compression)
            self.target.open(self.header.content_size)
        except (TargetError, DecodeError) as e:
            self.disk_error = str(e)
            log.error("%s; still forwarding to the next hop", e)

    # -- the three data threads ------------------------------------------------

    def _reader(self, sock: socket.socket) -> None:
        """Upstream -> pooled buffers -> both queues, checking every record's place.

        When the upstream breaks, wait for another one; it resends from the first
        byte we lack, or from later, and then the gap comes from the master.
        """
        expected = 0
        size = self.header.stream_size
        fresh = True  # first record on this connection: it may start past `expected`
        try:
            while True:
                try:
                    chunk = self._read_record(sock, expected, fresh)
                except wire.UpstreamGaveUp as e:
                    raise NoUpstream(f"upstream {self.upstream} gave up at byte {expected} "
                                     f"of {size}: {e}") from None
                except (wire.ProtocolError, OSError) as e:
                    sock.close()
                    sock = self._take_upstream(expected, self._describe_break(e, expected))
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
        except Exception as e:  # noqa: BLE001 - any failure must reach both consumers
            self._fail(f"stream from {self.upstream} broken at byte {expected} of {size}: {e}")
        finally:
            self._reader_finished = True
            self._upstream_ok = True  # refuse further offers: we are done reading
            sock.close()

    def _describe_break(self, e: Exception, expected: int) -> str:
        size = self.header.stream_size
        if isinstance(e, wire.PeerClosed):
            return (f"stream ended at byte {expected} of {size} "
                    f"(upstream {self.upstream} closed the connection)")
        if isinstance(e, socket.timeout):
            return (f"stream stalled at byte {expected} of {size}: nothing from upstream "
                    f"{self.upstream} for {self.config.io_timeout:.0f} s")
        return f"stream from {self.upstream} broken at byte {expected} of {size}: {e}"

    def _read_record(self, sock: socket.socket, expected: int, fresh: bool) -> Optional[Chunk]:
        """One record into a pooled buffer; None for a keep-alive (consumed here)."""
        buf = self._get_buffer()
        view = memoryview(buf)
        try:
            wire.recv_exact(sock, view[: wire.HEAD_SIZE])
            kind, length, offset = wire.unpack_head(buf)
            self._check_record(kind, length, offset, expected, fresh, len(buf))
            if kind == wire.KEEPALIVE:
                self.pool.put(buf)
                return None
            if kind != wire.ZERO:
                wire.recv_exact(sock, view[wire.HEAD_SIZE : wire.HEAD_SIZE + length])
            if kind == wire.ABORT:
                reason = bytes(view[wire.HEAD_SIZE : wire.HEAD_SIZE + length])
                raise wire.UpstreamGaveUp(reason.decode("utf-8", "replace"))
        except BaseException:
            view.release()
            self.pool.put(buf)
            raise
        view.release()
        return Chunk(self.pool, buf, kind, length, offset, self._consumers())

    def _check_record(
        self, kind: int, length: int, offset: int, expected: int, fresh: bool, room: int
    ) -> None:
        header = self.header
        if kind == wire.KEEPALIVE:
            if length:
                raise wire.ProtocolError("keep-alive record with a payload")
            return
        if kind == wire.ABORT:
            if length > room - wire.HEAD_SIZE:
                raise wire.ProtocolError(f"ABORT record of {length} bytes exceeds the record size")
            return
        if offset != expected and not (fresh and offset > expected):
            raise wire.ProtocolError(f"record at stream byte {offset}, expected byte {expected}")
        if kind == wire.DATA and length > room - wire.HEAD_SIZE:
            raise wire.ProtocolError(
                f"record of {length} bytes exceeds the announced record size {header.record_size}"
            )
        if kind in (wire.DATA, wire.ZERO) and offset + length > header.stream_size:
            raise wire.ProtocolError(f"stream runs past its announced size {header.stream_size}")
        if kind == wire.ZERO and header.compression != "NONE":
            raise wire.ProtocolError("zero-run record in a compressed stream")
        if kind == wire.END and offset != header.stream_size:
            raise wire.ProtocolError(f"END record at byte {offset}, stream size is {header.stream_size}")

    def _fill_gap(self, start: int, stop: int) -> None:
        """Bytes our new upstream no longer holds come from the master, as DATA records."""
        if self.config.fetch_range is None:
            raise wire.ProtocolError(f"stream resumed at byte {stop}, we lack bytes from {start}")
        log.warning("fetching stream bytes %d-%d from the master", start, stop)
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
                self.pool.put(buf)
                raise
            view.release()
            self._dispatch(Chunk(self.pool, buf, wire.DATA, n, pos, self._consumers()))
            pos += n

    def _get_buffer(self) -> bytearray:
        """Wait for a free buffer. While the forwarder heals the chain that may take a
        while (its waits are all bounded); otherwise a long wait means our own writer
        is stuck on the disk."""
        waited = 0.0
        while True:
            try:
                return self.pool.get(timeout=self.config.io_timeout)
            except queue.Empty:
                waited = 0.0 if self._healing else waited + self.config.io_timeout
                if waited >= 4 * self.config.io_timeout:
                    raise HopAbort(
                        f"no buffer freed for {waited:.0f} s: writing to "
                        f"{self.target.path} is stuck"
                    ) from None

    def _consumers(self) -> int:
        return 2 if self._forwarding else 1

    def _dispatch(self, chunk: Chunk) -> None:
        self.write_q.put(chunk)
        if self._forwarding:
            self.forward_q.put(chunk)

    def _fail(self, reason: str, tell_downstream: bool = False) -> None:
        self.stream_error = reason
        log.error("%s", reason)
        self.write_q.put(Failure(reason))
        if self._forwarding:
            self.forward_q.put(Failure(reason, tell_downstream))

    def _writer(self) -> None:
        """Queue -> decoder -> target, hashing what is written; verifies at END.

        The target pulls the decoded stream (a TAR target extracts it as it comes, see
        untar.py), so pieces are produced by a generator over the queue. After a disk
        error, and after a TAR archive's end, the rest of the queue is still taken:
        the reader needs its buffers back to keep forwarding.
        """
        sha = hashlib.sha256()
        end: List[bytes] = []  # the END record's payload, once reached
        pieces = self._pieces(sha, end)
        try:
            if self.disk_error is None:
                self.target.consume(pieces)
                for _ in pieces:  # what follows a TAR archive's end: hashed, not written
                    pass
                if end:
                    self._verify(end[0], sha)
        except (TargetError, DecodeError, TarError, wire.ProtocolError) as e:
            self.disk_error = str(e)
            log.error("%s", e)
        except Exception as e:  # noqa: BLE001 - a bug here must not stop the forwarding
            self.disk_error = f"writing {self.target.path} failed: {e!r}"
            log.exception("writer failed")
        finally:
            pieces.close()
            if self._decoder is not None:
                self._decoder.close()
            self._close_target()
        if not end and not self._writer_ended:
            self._drain()

    def _pieces(self, sha, end: List[bytes]) -> Iterator[Piece]:
        """The decoded stream: bytes, or an int for a zero run. Also accounts where the
        writer's time goes, so the master can tell a slow disk from slow decompression
        when it names what holds the chain back."""
        decoder = self._decoder
        while True:
            item = self._next(self.write_q, self.config.io_timeout)
            if item is None:
                continue
            if isinstance(item, Failure):
                self._writer_ended = True
                return
            try:
                if item.kind == wire.DATA:
                    yield from self._timed(decoder.feed(item.payload), sha)
                elif item.kind == wire.ZERO:
                    t0 = time.perf_counter()
                    sparse.hash_zeros(sha, item.length)
                    self.written += item.length
                    yield item.length
                    self.write_seconds += time.perf_counter() - t0
                elif item.kind == wire.END:
                    yield from self._timed(decoder.finish(), sha)
                    end.append(bytes(item.payload))
                    self._writer_ended = True
                    return
            finally:
                item.release()

    def _timed(self, decoded: Iterator, sha) -> Iterator[Piece]:
        t0 = time.perf_counter()
        for piece in decoded:
            t1 = time.perf_counter()
            self.decode_seconds += t1 - t0
            sha.update(piece)
            self.written += len(piece)
            yield piece
            t0 = time.perf_counter()
            self.write_seconds += t0 - t1
        self.decode_seconds += time.perf_counter() - t0

    def _drain(self) -> None:
        """Give back the buffers of a stream this hop no longer writes, up to its end."""
        while True:
            item = self._next(self.write_q, self.config.io_timeout)
            if item is None:
                continue
            if isinstance(item, Failure):
                return
            item.release()
            if item.kind == wire.END:
                return

    def _verify(self, payload: bytes, sha) -> None:
        """The copy against the master's signed facts (never the stream's own claims);
        with verify = "readback", against what the disk gives back, too."""
        digest, size = wire.parse_end(payload)
        expect = self.config.expect
        self.target.finish()
        self.digest = sha.hexdigest()
        if self.written != expect.content_size:
            raise wire.ProtocolError(f"wrote {self.written} bytes, the image has {expect.content_size}")
        if (digest, size) != (expect.content_sha256, expect.content_size):
            raise wire.ProtocolError("END record differs from the master's start")
        if self.digest != expect.content_sha256:
            raise wire.ProtocolError(
                f"digest mismatch: wrote {self.digest}, image is {expect.content_sha256}")
        if self.config.verify == "readback":
            self._read_back(expect)
        self.verified = True
        self.verified_by = self.config.verify

    def _read_back(self, expect: wire.Expected) -> None:
        """Hash what the disk returns, past every cache, and refuse a disk that lies."""
        t0 = time.monotonic()

        def progress(done: int) -> None:
            self.read_back = done

        got = self.target.read_back(expect.content_size, progress)
        if got != expect.content_sha256:
            raise TargetError(
                f"read back from {self.target.path}: sha256 {got} differs from the image "
                f"({expect.content_sha256}): the disk does not hold what was written to it")
        log.info("read back from %s: %d bytes in %.1f s, sha256 %s matches the image",
                 self.target.path, expect.content_size, time.monotonic() - t0, got)

    def _close_target(self) -> None:
        try:
            self.target.close()
        except OSError as e:
            self.disk_error = self.disk_error or f"closing {self.target.path} failed: {e}"

    def _forwarder(self) -> None:
        """Queue -> the first live downstream hop: the same bytes that came in.

        Sent records stay in `window` (up to config.window bytes) so that after a skip
        the next hop can be given everything it lacks without asking anyone else.
        """
        header = dataclasses.replace(self.header, sender=self.config.position, offset=0)
        link = Link(
            self.config.downstream, header, self.config.secret, self.config.io_timeout,
            self.config.source, on_skip=lambda host, reason: self.skipped.append((host, reason)),
        )
        window: Deque[Chunk] = collections.deque()
        held = 0
        live = self._heal(link, window)
        healed = False  # the replay after a heal already sent the current item
        idle = self.config.io_timeout / 3  # keep-alives well inside the receiver's timeout
        try:
            while True:
                item = self._next(self.forward_q, idle)
                if isinstance(item, Failure):
                    if item.tell_downstream and live:
                        self._send_abort(link, window[-1].end if window else 0, item.reason)
                    return
                if item is not None:
                    window.append(item)
                    held += self._cost(item)
                    while held > self.config.window and len(window) > 1:
                        old = window.popleft()
                        held -= self._cost(old)
                        old.release()
                end = item is not None and item.kind == wire.END
                while live:
                    try:
                        if item is None:
                            link.send(wire.pack_head(wire.KEEPALIVE, 0, 0), 0)
                        elif not healed:
                            link.send(item.view, item.offset)
                        if end:
                            link.finish(item.offset)
                        break
                    except LinkBroken as e:
                        live = healed = self._heal(link, window, broken=e)
                healed = False
                if end:
                    return
        finally:
            link.close()
            for chunk in window:
                chunk.release()

    def _send_abort(self, link: Link, offset: int, reason: str) -> None:
        """Tell the next hop we gave up, so it need not wait for an upstream of its own."""
        try:
            link.send(wire.abort_record(offset, reason, self.header.record_size), offset)
        except LinkBroken:
            pass

    def _cost(self, chunk: Chunk) -> int:
        """What a record in the window costs: its payload, or a whole pooled buffer for a
        ZERO run (no payload, but the pool is sized for window / record_size records)."""
        if chunk.kind == wire.DATA:
            return chunk.length
        return self.header.record_size if chunk.kind == wire.ZERO else 0

    def _heal(self, link: Link, window: Deque[Chunk], broken: Optional[LinkBroken] = None) -> bool:
        """(Re)connect to the next hop that takes the stream and replay what it lacks."""
        self._healing = True
        try:
            while True:
                try:
                    resume = link.open() if broken is None else link.reopen(broken)
                except NoHopLeft as e:
                    self.forward_error = f"{e}; forwarding stopped"
                    log.error("%s", self.forward_error)
                    return False
                try:
                    for chunk in window:
                        if chunk.end > resume or chunk.kind == wire.END:
                            for part in chunk.tail_from(resume):
                                link.send(part, max(resume, chunk.offset))
                    return True
                except LinkBroken as e:
                    broken = e
        finally:
            self._healing = False

    def _next(self, q: "queue.Queue", timeout: float):
        """The next item, or None after `timeout`; a Failure once the reader is gone."""
        try:
            return q.get(timeout=timeout)
        except queue.Empty:
            if self._reader_finished and q.empty():
                return Failure("reader stopped without a final record")
            return None


def _shut(sock: socket.socket) -> None:
    """End a connection another thread is reading: its recv returns at once."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
