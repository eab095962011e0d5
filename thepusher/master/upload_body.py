"""An upload's request body as it comes off the socket: Content-Length bytes (curl -T)
or chunks (put-image, which sends its digest in the trailer).

http.server does not read chunked request bodies, so ChunkedBody does, with bounded
lines: a peer cannot make the master buffer an endless size or trailer line. Reads
take what has arrived: a stalled uploader's last bytes are counted, so the error
says how far it got.
"""

import re
import socket
import time
from typing import Dict, Iterator, Optional, Union

from thepusher.master.errors import ApiError

BUFFER = 4 << 20  # most bytes taken off the socket at once
MAX_LINE = 1024  # a longer chunk-size or trailer line is not an upload
MAX_TRAILER_FIELDS = 32
DRAIN_SECONDS = 2.0  # a refused upload's rest is read away this long, so the uploader hears why
HEX_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


def ended(offset: int) -> ApiError:
    return ApiError(400, f"the upload ended at byte {offset}, before its end (uploader stopped or killed?)")


def _bad_framing(offset: int, what: str) -> ApiError:
    return ApiError(400, f"bad chunked encoding at byte {offset}: {what}")


def _read(rfile, most: int, offset: int) -> bytes:
    """What has arrived, up to `most` bytes, waiting only if nothing has (read1: a stalled
    uploader's last bytes are counted, not held in a half-filled buffer)."""
    data = rfile.read1(most)
    if not data:
        raise ended(offset)
    return data


class SizedBody:
    """A body of Content-Length bytes (curl -T)."""

    def __init__(self, rfile, length: int) -> None:
        self.rfile = rfile
        self.length: Optional[int] = length
        self.received = 0
        self.trailers: Dict[str, str] = {}

    def pieces(self) -> Iterator[bytes]:
        while self.received < self.length:
            data = _read(self.rfile, min(self.length - self.received, BUFFER), self.received)
            self.received += len(data)
            yield data


class ChunkedBody:
    """A `Transfer-Encoding: chunked` body; the trailer fields (put-image sends the digest
    there) are in `trailers` at the end."""

    def __init__(self, rfile) -> None:
        self.rfile = rfile
        self.length: Optional[int] = None
        self.received = 0
        self.trailers: Dict[str, str] = {}

    def pieces(self) -> Iterator[bytes]:
        while True:
            left = self._chunk_size()
            if left == 0:
                self._read_trailers()
                return
            while left:
                data = _read(self.rfile, min(left, BUFFER), self.received)
                self.received += len(data)
                left -= len(data)
                yield data
            if self._line("chunk end"):
                raise _bad_framing(self.received, "a chunk is longer than its size line says")

    def _line(self, what: str) -> bytes:
        line = self.rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise _bad_framing(self.received, f"{what} line longer than {MAX_LINE} bytes")
        if not line.endswith(b"\n"):
            raise ended(self.received)
        return line.rstrip(b"\r\n")

    def _chunk_size(self) -> int:
        text = self._line("chunk size").split(b";", 1)[0].strip()
        if not HEX_SIZE.fullmatch(text):
            raise _bad_framing(self.received, f"chunk size {text[:40]!r} is not a hexadecimal number")
        return int(text, 16)

    def _read_trailers(self) -> None:
        for _ in range(MAX_TRAILER_FIELDS + 1):
            line = self._line("trailer")
            if not line:
                return
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise _bad_framing(self.received, f"trailer line {line[:40]!r} has no ':'")
            self.trailers[name.strip().lower()] = value.strip()
        raise _bad_framing(self.received, f"more than {MAX_TRAILER_FIELDS} trailer fields")


Body = Union[SizedBody, ChunkedBody]


def drain(sock: socket.socket, seconds: float) -> None:
    """Read and drop what a peer still sends, until it closes or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        sock.settimeout(left)
        try:
            if not sock.recv(1 << 16):
                return
        except OSError:  # timeout or reset: either way we are done
            return
