"""One client's share of the chain: receive a stream, write it to disk, pass it on.

Three threads carry the data (design card): the reader fills pooled buffers straight
from the upstream socket, the writer decodes and writes them to the target, and the
forwarder sends the very same buffers to the downstream hop. A buffer goes back to the
pool when both have released it, so the pool size bounds memory and a slow disk or a
slow downstream slows the reader, and through TCP the whole chain: backpressure, not
buffering.

Failures stay where they happen, and the chain heals around dead hops:
- a disk error stops this hop's writing, never its forwarding;
- a dead or stopped downstream is skipped: the forwarder's Link (link.py) connects to
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

One module per thread: admission (the acceptor and its handshakes: who may be our
upstream), reader, writer, forwarder; each says at its top what it owns, reads and
sets. What they signal each other is in shared.py, each field with its one writer;
the records go through buffers.py. The rules for offers and records are pure
functions in chain/rules.py. Hop only wires them together.
"""

import logging
import socket
import threading
from operator import attrgetter
from typing import Optional

from thepusher.chain.hop.admission import Admission
from thepusher.chain.hop.buffers import BufferPool, Feed
from thepusher.chain.hop.config import HopConfig
from thepusher.chain.hop.forwarder import Forwarder
from thepusher.chain.hop.reader import HopAbort, Reader
from thepusher.chain.hop.shared import Shared
from thepusher.chain.hop.writer import Writer
from thepusher.disk.target import HopTarget

log = logging.getLogger("thepusher.hop")


class Hop:
    """Receive one round's stream on `listener`, write it to `target`, forward it on."""

    # What the client reads, while the hop runs and after: each is written by the one
    # thread named, so reading needs no lock.
    header = property(attrgetter("_reader.header"))
    written = property(attrgetter("_writer.written"))
    free_bytes = property(attrgetter("_writer.free_bytes"))
    decode_seconds = property(attrgetter("_writer.decode_seconds"))
    write_seconds = property(attrgetter("_writer.write_seconds"))
    digest = property(attrgetter("_writer.digest"))
    verified = property(attrgetter("_writer.verified"))
    verified_by = property(attrgetter("_writer.verified_by"))
    read_back = property(attrgetter("_writer.read_back"))
    disk_error = property(attrgetter("_writer.disk_error"))
    skipped = property(attrgetter("_forwarder.skipped"))
    forward_error = property(attrgetter("_forwarder.forward_error"))
    upstream_socket = property(attrgetter("_reader.sock"))  # None while it has no upstream

    def __init__(self, listener: socket.socket, config: HopConfig, target: HopTarget) -> None:
        self.config = config
        self.pool: Optional[BufferPool] = None
        self._shared = shared = Shared()
        self.done = shared.done
        self._failure: Optional[str] = None  # why run() itself failed
        self._forwarding = bool(config.downstream)
        self._admission = Admission(listener, config, shared)
        self._writer = Writer(config, target, Feed(shared.reader_done))
        # Made even without a next hop, when it never runs: its results are read anyway.
        self._forwarder = Forwarder(config, Feed(shared.reader_done), shared.healing)
        feeds = [self._writer.feed] + ([self._forwarder.feed] if self._forwarding else [])
        self._reader = Reader(config, shared, feeds, target.path)

    def run(self) -> None:
        """Carry the round from the first upstream to the end; always sets `done`."""
        acceptor = threading.Thread(target=self._admission.serve, name="hop-acceptor", daemon=True)
        acceptor.start()
        try:
            sock = self._reader.take_upstream(0, None)
            header = self._reader.header
            self._writer.open(header)
            window = -(-self.config.window // header.record_size) if self._forwarding else 0
            self.pool = BufferPool(self._capacity(header.record_size) + window + 1,
                                   header.record_size)
            threads = [
                threading.Thread(target=self._reader.run, args=(sock, self.pool),
                                 name="hop-reader", daemon=True),
                threading.Thread(target=self._writer.run, name="hop-writer", daemon=True),
            ]
            if self._forwarding:
                threads.append(threading.Thread(target=self._forwarder.run, args=(header,),
                                                name="hop-forwarder", daemon=True))
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        except HopAbort as e:
            self._failure = str(e)
        except Exception as e:  # noqa: BLE001 - the client must hear about any failure
            log.exception("hop failed")
            self._failure = f"hop failed: {e}"
        finally:
            self.done.set()
            acceptor.join()
            self._admission.close()

    def _capacity(self, record_size: int) -> int:
        """Records in flight (docs/protocol.md "Memory"): a byte budget, so that small
        records do not shrink what absorbs a disk's or a link's hiccups."""
        return max(4, self.config.in_flight // record_size)

    @property
    def stream_error(self) -> Optional[str]:
        """Why the stream did not reach its end here, or None."""
        return self._reader.failure or self._failure

    @property
    def error(self) -> Optional[str]:
        """Why this hop's own disk is not a verified copy, or None when it is."""
        if self.verified:
            return None
        return self.disk_error or self.stream_error or "stream did not complete"

    def queue_fill(self) -> dict:
        pool = self.pool
        shared = self._shared
        return {
            "pool_in_use": pool.in_use() if pool else 0,
            "pool_size": pool.count if pool else 0,
            "capacity": self._capacity(self.header.record_size) if self.header else 0,
            # Lost our upstream mid-stream and waiting for another: once every hop
            # before us has finished, only the master can still feed us.
            "waiting_upstream": self.header is not None and not shared.upstream_ok.is_set()
            and not shared.reader_done.is_set(),
            "write_queue": self._writer.feed.qsize(),
            "forward_queue": self._forwarder.feed.qsize(),
            "decode_seconds": round(self.decode_seconds, 3),
            "write_seconds": round(self.write_seconds, 3),
        }
