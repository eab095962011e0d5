"""`thepusher put-image`: stream a disk or an image file into the master's image store.

It is also the unattended netboot path: `putImage=/dev/sda` on the kernel command line
runs `put-image -p MASTER -i /dev/sda`. The input is read in 4 MiB blocks, compressed on
the fly if asked (on every core: compress.py), and sent as one HTTP/1.1 chunked PUT whose
framing is written here, so that the SHA-256 of the content (uncompressed), computed while
reading, goes in the trailer: the master keeps the image only if its own digest of what
arrived is the same.

The request carries `Expect: 100-continue`: the body starts only once the master has
accepted the name and found room, so a refusal costs a round trip, not a disk's worth
of data.
"""

import http.client
import json
import logging
import os
import re
import select
import socket
from typing import NoReturn, Optional, Tuple
from urllib.parse import quote

from thepusher.client.choose import AUTO, NoDisk, choose, describe
from thepusher.config.model import DiskHints
from thepusher.disk.inventory import inventory
from thepusher.client.master_link import split_host_port
from thepusher.image.capture import Capture, CaptureRefused, open_capture
from thepusher.image.compress import CompressError, ParallelCompressor, feed_piece
from thepusher.image.freemap import encode_map
from thepusher.image.facts import FactsHasher
from thepusher.image.formats import FORMATS
from thepusher.plan import DEFAULT_PORT
from thepusher.console import ProgressLine
from thepusher.units import size as human_bytes

log = logging.getLogger("thepusher.upload")

BLOCK = 4 << 20
HEAD_WAIT = 60.0  # the master checks name and space before it says 100 Continue
SEND_WAIT = 120.0  # a master (or its disk) this long without taking data is gone
ANSWER_WAIT = 900.0  # after the body the master fsyncs what may be many GiB

# put-image --compress keeps xz at preset 1: it reads a disk, and xz's default (6) manages
# only about 2 MB/s per core, while 1 does about 19 and still beats gz's ratio. gz and bz2 keep
# their tools' defaults (6, 9).
LEVELS = {"xz": 1}


class UploadError(Exception):
    """The upload failed; the message says what, where and how far it got."""


def make_compressor(fmt: Optional[str]) -> Optional[ParallelCompressor]:
    """The compressor for --compress FORMAT (None: no compression), a worker per core.
    TinyCore's Python may lack bz2 or lzma: that is found before anything is sent."""
    if fmt is None:
        return None
    try:
        return ParallelCompressor(fmt, LEVELS.get(fmt))
    except CompressError as e:
        raise UploadError(f"--compress {fmt}: {e}, or upload uncompressed") from None


def default_name(path: str, fmt: Optional[str]) -> str:
    """The input's base name ('sda' for /dev/sda) with the format's suffix, made of the
    characters the master accepts."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(os.path.normpath(path))).lstrip(".-")
    return (base or "image") + (FORMATS[fmt].suffix if fmt else "")


def open_source(path: str, force: bool, whole: bool) -> Capture:
    """The input, its used blocks mapped (image/capture.py), or an UploadError saying
    why not."""
    try:
        return open_capture(path, force, whole)
    except CaptureRefused as e:
        raise UploadError(f"refused: {e}") from None
    except OSError as e:
        raise UploadError(f"cannot read {path}: {e.strerror or e}") from None


class Uploader:
    """One upload: `run` returns the master's answer or raises UploadError naming the
    input, the master and the byte reached."""

    def __init__(self, master: str, path: str, name: Optional[str], fmt: Optional[str],
                 token: str = "", force: bool = False, whole: bool = False) -> None:
        self.host, self.port = split_host_port(master, DEFAULT_PORT)
        self.token = token
        self.path = path
        self.fmt = fmt
        self.name = name or default_name(path, fmt)
        self.compressor = make_compressor(fmt)
        self.offset = 0  # bytes of the input read (and sent)
        self.sent = 0  # body bytes sent (compressed, when compressing)
        self.size: Optional[int] = None
        self.force, self.whole = force, whole
        self.free_map = b""  # sent ahead of the used bytes: the master keeps the free ones holes

    def run(self) -> dict:
        source = open_source(self.path, self.force, self.whole)
        self.size = source.size
        if self.size == 0:
            source.close()
            raise UploadError(f"{self.path} is empty (0 bytes): nothing to upload")
        if source.free_runs:
            self.free_map = encode_map(source.size, source.free_runs)
        log.info("put-image %s (%s) -> master %s:%d as %s%s", self.path,
                 "size unknown" if self.size is None else human_bytes(self.size),
                 self.host, self.port, self.name, f", compressing {self.fmt}" if self.fmt else "")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=HEAD_WAIT)
        try:
            try:
                self._send_head(conn)
            except OSError as e:
                self._fail(f"cannot reach the master: {e}")
            self._await_continue(conn)
            self._send_body(conn, source)
            return self._final_answer(conn)
        finally:
            conn.close()
            source.close()
            if self.compressor:
                self.compressor.close()

    # -- the conversation ------------------------------------------------------------

    def _send_head(self, conn: http.client.HTTPConnection) -> None:
        conn.putrequest("PUT", f"/api/images/{quote(self.name, safe='')}", skip_accept_encoding=True)
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.putheader("Trailer", "X-Content-SHA256")
        conn.putheader("Expect", "100-continue")
        conn.putheader("X-Compression", FORMATS[self.fmt].compression if self.fmt else "NONE")
        if self.size is not None:
            conn.putheader("X-Content-Size", str(self.size))
        if self.free_map:
            conn.putheader("X-Free-Map-Length", str(len(self.free_map)))
        if self.token:
            conn.putheader("X-Upload-Token", self.token)
        conn.putheader("Connection", "close")
        conn.endheaders()

    def _await_continue(self, conn: http.client.HTTPConnection) -> None:
        """The master's first word: 100 Continue, else its refusal (raised)."""
        try:
            status, body = _read_head_answer(conn.sock)
        except (OSError, ValueError) as e:
            self._fail(f"no answer from the master to the upload request: {e}")
        if status != 100:
            self._refused(status, body)
        conn.sock.settimeout(SEND_WAIT)

    def _send_body(self, conn: http.client.HTTPConnection, source: Capture) -> None:
        """The free map (if any), then the used bytes; free runs are hashed as zeros and,
        when compressing, compressed as zeros (a dd image with zeros there), never read."""
        content = FactsHasher()
        progress = ProgressLine(f"put-image {self.path}", self.size, log)
        pieces = source.pieces(bytearray(BLOCK))
        try:
            self._chunk(conn, self.free_map)
            while True:
                piece = self._next(pieces)
                if piece is None:
                    break
                for data in feed_piece(piece, content, self.compressor):
                    self._chunk(conn, data)
                self.offset += piece if isinstance(piece, int) else len(piece)
                progress.update(self.offset, self._note())
            for piece in self.compressor.finish() if self.compressor else ():
                self._chunk(conn, piece)
            conn.send(f"0\r\nX-Content-SHA256: {content.hexdigest()}\r\n\r\n".encode())
        except OSError as e:  # the master went away, or said why first
            self._early_answer(conn, e)
        finally:
            progress.close(self.offset, self._note())

    def _note(self) -> str:
        if self.compressor:
            return f"sent {human_bytes(self.sent)} {self.fmt}"
        return f"sent {human_bytes(self.sent)}" if self.free_map else ""

    def _next(self, pieces):
        try:
            return next(pieces, None)
        except OSError as e:
            self._fail(f"reading {self.path} failed: {e.strerror or e}")

    def _chunk(self, conn: http.client.HTTPConnection, data) -> None:
        """One chunk of the body, unless the master has already answered (a refusal)."""
        if not len(data):
            return
        if select.select([conn.sock], [], [], 0)[0]:
            self._early_answer(conn, None)
        conn.send(b"%x\r\n" % len(data))
        conn.send(data)
        conn.send(b"\r\n")
        self.sent += len(data)

    def _early_answer(self, conn: http.client.HTTPConnection, error: Optional[OSError]) -> NoReturn:
        """The master answered (or hung up) before the end of the body: say why."""
        try:
            conn.sock.settimeout(5.0)
            resp = conn.getresponse()
            status, body = resp.status, resp.read()
        except (OSError, http.client.HTTPException) as e:
            self._fail(f"the master closed the connection: {error or e}")
        self._refused(status, body)

    def _final_answer(self, conn: http.client.HTTPConnection) -> dict:
        conn.sock.settimeout(ANSWER_WAIT)
        try:
            resp = conn.getresponse()
            status, body = resp.status, resp.read()
        except (OSError, http.client.HTTPException) as e:
            self._fail(f"no answer from the master after the last byte: {e}")
        if status != 201:
            self._refused(status, body)
        try:
            return json.loads(body.decode("utf-8"))
        except ValueError:
            self._fail(f"the master answered 201 with something that is not JSON: {body[:80]!r}")

    # -- failures --------------------------------------------------------------------

    def _refused(self, status: int, body: bytes) -> NoReturn:
        try:
            reason = json.loads(body.decode("utf-8"))["error"]
        except (ValueError, KeyError, TypeError):
            reason = body[:200].decode("utf-8", "replace") or "(no reason given)"
        hint = ""
        if status in (400, 409) and self.offset == 0 and self.sent == 0:
            hint = " (put-image -n NAME sets the name)"
        elif status == 401 and self.token:
            hint = " (check --upload-token / THEPUSHER_UPLOAD_TOKEN against upload_token in the master's config)"
        self._fail(f"the master refused {self.name} ({status}): {reason}{hint}")

    def _fail(self, reason: str) -> NoReturn:
        total = "" if self.size is None else f" of {self.size}"
        raise UploadError(f"{self.path} -> master {self.host}:{self.port}: {reason} "
                          f"(at byte {self.offset}{total})")


def _read_head_answer(sock: socket.socket) -> Tuple[int, bytes]:
    """The first response to the request head: (100, b'') or a final (status, body).
    Read unbuffered, so nothing after a 100 Continue is taken from http.client."""
    raw = sock.makefile("rb", buffering=0)
    try:
        words = raw.readline(1024).split(None, 2)
        if len(words) < 2 or not words[0].startswith(b"HTTP/"):
            raise ValueError(f"not an HTTP answer: {b' '.join(words)[:80]!r}")
        status = int(words[1])
        headers = http.client.parse_headers(raw)
        if status == 100:
            return status, b""
        length = int(headers.get("Content-Length", "0"))
        body = b""
        while len(body) < length:
            piece = raw.read(length - len(body))
            if not piece:
                break
            body += piece
        return status, body
    finally:
        raw.close()


def put_image(master: str, path: str, name: Optional[str], fmt: Optional[str],
              token: str = "", force: bool = False, whole: bool = False) -> dict:
    """Upload `path` to the master as `name` (default: its base name plus the suffix of
    `fmt`, 'gz', 'bz2', 'xz' or None), with the master's upload token if it needs one;
    the master's answer, or UploadError. `path` "auto" is the one disk of this machine
    that `destination = "auto"` without hints would choose (client/choose.py). Only
    the blocks its filesystems use are read and sent, unless `whole`; `force` captures
    a source that is mounted read-write or whose filesystems may be inconsistent."""
    if path == AUTO:
        try:
            disk = choose(inventory(), DiskHints(), f"-i {AUTO}")
        except NoDisk as e:
            raise UploadError(f"{e.listing}. Give -i the disk to upload"
                              + (f", e.g. -i {e.example}" if e.example else "")) from None
        log.info("-i %s: %s is the one disk to upload", AUTO, describe(disk))
        path = disk.path
    return Uploader(master, path, name, fmt, token, force, whole).run()
