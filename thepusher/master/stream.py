"""The head of the chain: the master sends the image file to the first hop.

The master never copies image bytes through Python: each record is a 16-byte head
(sent with MSG_MORE so it rides in the payload's first segment) followed by the file
range via sendfile(2).
"""

import logging
import os
import socket
from typing import Tuple

from thepusher import wire

log = logging.getLogger("thepusher.stream")


class StreamFailed(Exception):
    """The first hop could not be reached or dropped the stream."""


class Source:
    """Stream one image file to `address`; `sent` tracks progress for the status page."""

    def __init__(
        self,
        path: str,
        header: wire.StreamHeader,
        secret: bytes,
        address: Tuple[str, int],
        timeout: float,
    ) -> None:
        self.path = path
        self.header = header
        self.secret = secret
        self.address = address
        self.timeout = timeout
        self.sent = 0

    def run(self) -> None:
        host = self.address[0]
        try:
            sock, resume = wire.connect(self.address, self.header, self.secret, self.timeout)
        except (OSError, wire.ProtocolError) as e:
            raise StreamFailed(f"cannot start the stream to first hop {host}: {e}") from None
        try:
            if resume != 0:
                raise StreamFailed(f"first hop {host} asked to resume at byte {resume}")
            with open(self.path, "rb") as f:
                self._send_records(sock, f)
            sock.sendall(
                wire.end_record(
                    self.header.stream_size, self.header.content_sha256, self.header.content_size
                )
            )
            self._await_close(sock)
        except OSError as e:
            raise StreamFailed(
                f"stream to first hop {host} broke at byte {self.sent} of "
                f"{self.header.stream_size}: {e}"
            ) from None
        finally:
            sock.close()

    @staticmethod
    def _await_close(sock: socket.socket) -> None:
        """Let the hop close first so the END record is not lost to a reset; its own
        report, not this wait, decides whether it succeeded."""
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.recv(1)
        except OSError:
            pass

    def _send_records(self, sock: socket.socket, f) -> None:
        size = self.header.stream_size
        if os.fstat(f.fileno()).st_size != size:
            raise StreamFailed(f"image file {self.path} changed size since it was hashed")
        step = self.header.record_size
        more = getattr(socket, "MSG_MORE", 0)
        while self.sent < size:
            n = min(step, size - self.sent)
            sock.sendall(wire.pack_head(wire.DATA, n, self.sent), more)
            done = sock.sendfile(f, self.sent, n)
            if done != n:
                raise StreamFailed(f"image file {self.path} shrank while streaming at byte {self.sent + done}")
            self.sent += n
