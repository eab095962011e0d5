"""The master's answer to a hop's gap fill (`GET /api/range`): stream bytes it lacks,
from the round's open image file.

A stream without FREE records gets the bytes as they are (sendfile: the hop hashes
them and the master's file is the image). A stream with FREE records asks with
`records=1` and gets records (DATA, ZERO, FREE) like the stream's own: as raw bytes,
a free range would be whatever the master's file holds there, which the image does
not define, and the hop would write it and count it as data.
"""

import os

from thepusher.chain import wire
from thepusher.image import freemap
from thepusher.master.images import ImageFile, StreamRuns
from thepusher.master.source import MAX_ZERO_RECORD

RECORDS_TYPE = "application/x-thepusher-records"
_KIND = {freemap.DATA: wire.DATA, freemap.ZERO: wire.ZERO, freemap.FREE: wire.FREE}


def send(handler, image: ImageFile, runs: StreamRuns, offset: int, length: int,
         record_size: int) -> None:
    """Answer on `handler` (the API's request handler) with the stream's bytes, or, given
    the round's `record_size`, with records carrying its `runs` (images.stream_runs: none
    for a compressed image, whose records are all DATA); releases `image`."""
    records = record_size > 0
    try:
        pieces = list(freemap.pieces(*runs, offset, offset + length, record_size,
                                     MAX_ZERO_RECORD)) if records else []
        size = sum(wire.HEAD_SIZE + (n if kind == freemap.DATA else 0) for kind, _, n in pieces)
        handler.send_response(200)
        handler.send_header("Content-Type", RECORDS_TYPE if records else "application/octet-stream")
        handler.send_header("Content-Length", str(size if records else length))
        handler.send_header("Cache-Control", "no-store")
        handler.end_headers()
        if records:
            _send_records(handler, image, pieces, record_size)
            return
        handler.wfile.flush()
        # A duplicate of the round's own descriptor: the file the round streams,
        # even if another was renamed over its name since.
        with os.fdopen(os.dup(image.fd), "rb") as f:
            if handler.connection.sendfile(f, offset, length) < length:
                handler.close_connection = True  # cut short: the hop sees it and says so
    finally:
        image.release()


def _send_records(handler, image: ImageFile, pieces: list, record_size: int) -> None:
    buf = bytearray(wire.HEAD_SIZE + record_size)
    view = memoryview(buf)
    for kind, pos, n in pieces:
        wire.RECORD_HEAD.pack_into(buf, 0, _KIND[kind], n, pos)
        if kind != freemap.DATA:
            handler.wfile.write(view[: wire.HEAD_SIZE])
            continue
        got = 0
        while got < n:
            k = os.preadv(image.fd, [view[wire.HEAD_SIZE + got : wire.HEAD_SIZE + n]], pos + got)
            if not k:  # cut short: the hop sees it and says so
                handler.close_connection = True
                return
            got += k
        handler.wfile.write(view[: wire.HEAD_SIZE + n])
