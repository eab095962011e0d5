"""The head of the chain: the master sends the image file to the first hop.

The master never copies image bytes through Python: each record is a 16-byte head
followed by the file range via sendfile(2). The zero runs found when the image was
hashed (sparse.py) go as ZERO records: a head, no payload.
"""

import logging
import os
import socket
from typing import Callable, List, Optional, Tuple

from thepusher import sparse, wire
from thepusher.relay import Link, LinkBroken, NoHopLeft

log = logging.getLogger("thepusher.stream")

MAX_ZERO_RECORD = 1 << 30  # a ZERO record's length is a u32


class StreamFailed(Exception):
    """The first hop could not be reached or dropped the stream."""


class Source:
    """Stream one image file down the chain; `sent` tracks progress for the status page.

    The master holds the whole file, so after skipping a dead first hop it simply
    resumes from whatever byte the next hop asks for.
    """

    def __init__(
        self,
        path: str,
        header: wire.StreamHeader,
        secret: bytes,
        hops: List[Tuple[str, int]],
        timeout: float,
        on_skip: Callable[[str, str], None],
        zero_runs: Optional[List[sparse.Run]] = None,
    ) -> None:
        self.path = path
        self.header = header
        self.zero_runs = zero_runs or []
        self.link = Link(hops, header, secret, timeout, on_skip=on_skip)
        self.sent = 0
        self.stopped = False

    def stop(self) -> None:
        """An admin aborted the round: end the stream now, from any thread. Shutting the
        socket down wakes a send that waits for a slow hop."""
        self.stopped = True
        sock = self.link.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def run(self) -> None:
        size = self.header.stream_size
        with open(self.path, "rb") as f:
            if os.fstat(f.fileno()).st_size != size:
                raise StreamFailed(f"image file {self.path} changed size since it was hashed")
            try:
                pos = self.link.open()
                while True:
                    try:
                        self._send_from(f, pos)
                        self.link.send(
                            wire.end_record(size, self.header.content_sha256, self.header.content_size),
                            size,
                        )
                        self.link.finish(size)
                        return
                    except LinkBroken as e:
                        if self.stopped:
                            raise StreamFailed("stream stopped: the round was aborted") from None
                        pos = self.link.reopen(e)
            except NoHopLeft:
                raise StreamFailed(
                    f"no hop of the chain took the stream (skipped: "
                    f"{', '.join(h for h, _ in self.link.skipped) or 'none'})"
                ) from None
            finally:
                self.link.close()

    def _send_from(self, f, pos: int) -> None:
        size = self.header.stream_size
        pieces = sparse.segments(self.zero_runs, pos, size, self.header.record_size, MAX_ZERO_RECORD)
        for zero, pos, n in pieces:
            if self.stopped:
                raise StreamFailed("stream stopped: the round was aborted")
            if zero:
                self.link.send(wire.pack_head(wire.ZERO, n, pos), pos)
            else:
                self.link.send(wire.pack_head(wire.DATA, n, pos), pos)
                self.link.sendfile(f, pos, n)
            self.sent = max(self.sent, pos + n)
