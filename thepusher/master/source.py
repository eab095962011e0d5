"""The head of the chain: the master sends the image file to the first hop.

The master reads each record's bytes into one buffer behind the record's head, hashes
them and sends head and bytes with one send. It could hand the file to the socket
(sendfile) without looking, but then nothing would tie what it sent to the digest the
round announced: a file rewritten or cut during the round would go out as it is now.
Hashing the bytes it actually sends, the master withholds the END record, and fails the
round, when they are not the image it announced (ImageChanged). The zero runs found when
the image was hashed (image/sparse.py) go as ZERO records: a head, no payload, hashed as the
zeros they stand for; so do the free ranges of a raw image's bmap (master/bmaps.py), as FREE
records (a compressed image's hops fetch its free map instead: images.stream_runs).
"""

import hashlib
import logging
import os
import socket
from typing import Callable, List, Optional, Tuple

from thepusher.chain import wire
from thepusher.image import freemap, sparse
from thepusher.master.images import ImageFile
from thepusher.chain.link import Link, LinkBroken, NoHopLeft

log = logging.getLogger("thepusher.stream")

MAX_ZERO_RECORD = 1 << 30  # a ZERO record's length is a u32


class StreamFailed(Exception):
    """The first hop could not be reached or dropped the stream."""


class ImageChanged(StreamFailed):
    """What the file gives is not the image the round announced: no client of the chain
    can end with it, so the round ends them all with this reason."""


class SentDigest:
    """SHA-256 of the stream in order, over what was actually sent: each byte counted the
    first time it goes out (a resend after a skip repeats bytes already counted, and a
    hop resumes at most where the master got to: it has nothing the master did not
    send). Only the master's main sources check it; a source that starts mid-stream (a
    repair) leaves the check to the hop, which compares with the digest the master
    signed for it."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.upto = 0  # stream bytes hashed so far, from 0

    def data(self, pos: int, payload: memoryview) -> None:
        end = pos + len(payload)
        if end > self.upto:
            self.sha.update(payload[self.upto - pos:])
            self.upto = end

    def zeros(self, pos: int, length: int) -> None:
        end = pos + length
        if end > self.upto:
            sparse.hash_zeros(self.sha, end - self.upto)
            self.upto = end


class Source:
    """Stream one image down the chain; `sent` tracks progress for the status page.

    The master holds the whole file, so after skipping a dead first hop it simply
    resumes from whatever byte the next hop asks for. `check` is the digest of the
    stream as sent (facts.ImageFacts.stream_sha256), verified before END goes out.
    """

    def __init__(
        self,
        image: ImageFile,
        header: wire.StreamHeader,
        secret: bytes,
        hops: List[Tuple[str, int]],
        timeout: float,
        on_skip: Callable[[str, str], None],
        zero_runs: Optional[List[sparse.Run]] = None,
        check: Optional[str] = None,
        free_runs: Optional[List[sparse.Run]] = None,
    ) -> None:
        self.image = image
        self.header = header
        self.zero_runs = zero_runs or []
        self.free_runs = free_runs or []
        self.check = check
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
        if not self.image.acquire():
            raise StreamFailed("the round is over: its image file is closed")
        try:
            self._run()
        finally:
            self.image.release()

    def _run(self) -> None:
        size = self.header.stream_size
        digest = SentDigest() if self.check else None
        buf = bytearray(wire.HEAD_SIZE + self.header.record_size)
        try:
            pos = self.link.open()
            while True:
                try:
                    self._send_from(pos, buf, digest)
                    if digest is not None:
                        self._check(digest)
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

    def _check(self, digest: SentDigest) -> None:
        got = digest.sha.hexdigest()
        if got != self.check:
            raise ImageChanged(f"the bytes sent hash to {got}, the round announced "
                               f"{self.check}: image changed during the round")

    def _send_from(self, pos: int, buf: bytearray, digest: Optional[SentDigest]) -> None:
        size = self.header.stream_size
        if digest is not None and pos > digest.upto:  # it cannot hold what was never sent
            raise StreamFailed(f"hop {self.link.host} asks to resume at stream byte {pos}, "
                               f"but the master sent only {digest.upto}")
        view = memoryview(buf)
        pieces = freemap.pieces(self.zero_runs, self.free_runs, pos, size,
                                self.header.record_size, MAX_ZERO_RECORD)
        for kind, pos, n in pieces:
            if self.stopped:
                raise StreamFailed("stream stopped: the round was aborted")
            if kind != freemap.DATA:  # free ranges are zeros in the digest too
                if digest is not None:
                    digest.zeros(pos, n)
                record = wire.ZERO if kind == freemap.ZERO else wire.FREE
                self.link.send(wire.pack_head(record, n, pos), pos)
            else:
                wire.RECORD_HEAD.pack_into(buf, 0, wire.DATA, n, pos)
                payload = view[wire.HEAD_SIZE : wire.HEAD_SIZE + n]
                self._read(payload, pos)
                if digest is not None:
                    digest.data(pos, payload)
                self.link.send(view[: wire.HEAD_SIZE + n], pos)
            self.sent = max(self.sent, pos + n)

    def _read(self, view: memoryview, pos: int) -> None:
        got = 0
        while got < len(view):
            try:
                n = os.preadv(self.image.fd, [view[got:]], pos + got)
            except OSError as e:
                raise StreamFailed(f"reading the image failed at byte {pos + got}: "
                                   f"{e.strerror or e}") from None
            if not n:
                raise ImageChanged(
                    f"image file ended at byte {pos + got} of {self.header.stream_size}: "
                    "image changed during the round")
            got += n
