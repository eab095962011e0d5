"""The forwarder thread: its feed -> the first live downstream hop, the same bytes that came in.

Its Link (chain/link.py) skips a dead or stopped next hop and connects to the one after;
sent records stay in a window (up to config.window bytes) so that hop can be given
everything it lacks without asking anyone else. When this hop gives up on upstreams,
the forwarder sends ABORT instead of END: nobody downstream can finish either, and they
end at once instead of each waiting in turn.

Owns (writes): skipped, forward_error; the Link and the replay window.
Sets: shared.healing, while it looks for a live next hop (the reader reads it).
Reads: its feed (and through it shared.reader_done), the header, the config.
"""

import collections
import dataclasses
import logging
import threading
from typing import Deque, Iterator, List, Optional, Tuple

from thepusher.chain import wire
from thepusher.chain.hop.buffers import Chunk, Failure, Feed
from thepusher.chain.hop.config import HopConfig
from thepusher.chain.link import Link, LinkBroken, NoHopLeft


log = logging.getLogger("thepusher.hop")


class Forwarder:
    def __init__(self, config: HopConfig, feed: Feed, healing: threading.Event) -> None:
        self.config = config
        self.feed = feed
        self.healing = healing
        self.skipped: List[Tuple[str, str]] = []  # (host, reason) of downstream hops we skipped
        self.forward_error: Optional[str] = None

    def run(self, header: wire.StreamHeader) -> None:
        """Forward until END (or ABORT) has gone out, or no next hop is left."""
        ours = dataclasses.replace(header, sender=self.config.position, offset=0)
        link = Link(
            self.config.downstream, ours, self.config.secret, self.config.io_timeout,
            self.config.source,
            on_skip=lambda host, reason: self.skipped.append((host, reason)),
        )
        window = _Window(self.config.window, header.record_size)
        live = self._heal(link, window)
        healed = False  # the replay after a heal already sent the current item
        idle = self.config.io_timeout / 3  # keep-alives well inside the receiver's timeout
        try:
            while True:
                item = self.feed.next(idle)
                if isinstance(item, Failure):
                    if item.tell_downstream and live:
                        _send_abort(link, window.end(), item.reason, header.record_size)
                    return
                if item is not None:
                    window.add(item)
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
            window.release()

    def _heal(self, link: Link, window: "_Window", broken: Optional[LinkBroken] = None) -> bool:
        """(Re)connect to the next hop that takes the stream and replay what it lacks."""
        self.healing.set()
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
            self.healing.clear()


def _send_abort(link: Link, offset: int, reason: str, record_size: int) -> None:
    """Tell the next hop we gave up, so it need not wait for an upstream of its own."""
    try:
        link.send(wire.abort_record(offset, reason, record_size), offset)
    except LinkBroken:
        pass


class _Window:
    """The records sent last, about `limit` bytes of them, to replay after a skip."""

    def __init__(self, limit: int, record_size: int) -> None:
        self._chunks: Deque[Chunk] = collections.deque()
        self._held = 0
        self._limit = limit
        self._record_size = record_size

    def __iter__(self) -> Iterator[Chunk]:
        return iter(self._chunks)

    def add(self, chunk: Chunk) -> None:
        """Keep `chunk`, giving back the oldest records beyond the limit (never the last)."""
        self._chunks.append(chunk)
        self._held += self._cost(chunk)
        while self._held > self._limit and len(self._chunks) > 1:
            old = self._chunks.popleft()
            self._held -= self._cost(old)
            old.release()

    def end(self) -> int:
        """The stream byte after the last record sent: how far the next hop got from us."""
        return self._chunks[-1].end if self._chunks else 0

    def release(self) -> None:
        for chunk in self._chunks:
            chunk.release()

    def _cost(self, chunk: Chunk) -> int:
        """What a record in the window costs: its payload, or a whole pooled buffer for a
        ZERO or FREE run (no payload, but the pool is sized for window / record_size records)."""
        if chunk.kind == wire.DATA:
            return chunk.length
        return self._record_size if chunk.kind in wire.RUNS else 0
