"""The writer thread: its feed -> decoder -> target, hashing what is written; verifies at END.

The target pulls the decoded stream (a TAR target extracts it as it comes, see
disk/tar/), so pieces are produced by a generator over the feed. After a disk
error, and after a TAR archive's end, the rest of the feed is still taken: the reader
needs its buffers back to keep forwarding. A disk error stays this hop's: it never
stops the forwarding. Free ranges are never written: a raw stream's come as FREE
records, a compressed one's are cut out of the decoded bytes by the free map the
client fetched (config.free_runs); either way they are hashed as zeros and collected,
and the copy is verified for the master's free map too.

Owns (writes): written, decode_seconds, write_seconds, digest, verified, verified_by,
read_back, disk_error; the decoder, the free map's mask and the target. open() runs
on run()'s thread before this one starts.
Reads: its feed (and through it shared.reader_done), the config.
Sets no events.
"""

import logging
import time
from typing import Iterator, Optional

from thepusher.chain import wire
from thepusher.chain.hop.buffers import Failure, Feed
from thepusher.chain.hop.config import HopConfig
from thepusher.disk.target import HopTarget, Piece, Skip, TargetError
from thepusher.disk.tar import TarError
from thepusher.image import freemap
from thepusher.image.decode import DecodeError, Decoder
from thepusher.image.facts import FactsHasher
from thepusher.image.formats import NONE


log = logging.getLogger("thepusher.hop")

class Writer:
    def __init__(self, config: HopConfig, target: HopTarget, feed: Feed) -> None:
        self.config = config
        self.target = target
        self.feed = feed
        self.decode_seconds = 0.0  # time spent decompressing
        self.write_seconds = 0.0  # time spent writing (and hashing) what it decoded
        self.digest: Optional[str] = None
        self.verified = False
        self.verified_by = ""  # "write" or "readback", once verified
        self.read_back = 0  # bytes read back from the disk so far (verify = "readback")
        self.disk_error: Optional[str] = None
        self._decoder: Optional[Decoder] = None
        self._mask: Optional[freemap.Mask] = None  # a compressed image's free map
        self._content = FactsHasher()  # what was handed to the target, as the image's facts
        self._took_last = False  # END or a Failure came off the feed: nothing more will
        self._end: Optional[bytes] = None  # END's payload, once the stream decoded to its end

    @property
    def written(self) -> int:
        """Content bytes handed to the target so far (progress, and the size verified)."""
        return self._content.size

    @property
    def free_bytes(self) -> int:
        """Bytes of FREE records so far: counted, hashed as zeros, never written."""
        return self._content.free.size

    def open(self, header: wire.StreamHeader) -> None:
        """Open the target and the decoder; trouble here is local: we still relay."""
        try:
            self._decoder = Decoder(header.compression)
            self._mask = self._free_mask(header)
            self.target.open(header.content_size)
        except (TargetError, DecodeError) as e:
            self.disk_error = str(e)
            log.error("%s; still forwarding to the next hop", e)

    def _free_mask(self, header: wire.StreamHeader) -> Optional[freemap.Mask]:
        """What cuts a compressed image's decoded bytes by its free map (a raw stream's
        free ranges come as FREE records); TargetError if the map could not be had."""
        if header.compression == NONE or not self.config.expect.free_map_sha256:
            return None
        if self.config.free_runs is None:
            raise TargetError(f"{self.target.path} not written: the image leaves ranges free "
                              f"and this client has no free map ({self.config.free_map_error})")
        return freemap.Mask(self.config.free_runs)

    def run(self) -> None:
        """Write the stream, or after a disk error just give its buffers back, to its end."""
        pieces = self._stream()
        try:
            if self.disk_error is None:
                self.target.consume(pieces)
                for _ in pieces:  # what follows a TAR archive's end: hashed, not written
                    pass
                if self._end is not None:
                    self._verify(self._end)
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
        if not self._took_last:
            self._drain()

    def _stream(self) -> Iterator[Piece]:
        """The decoded stream: bytes, or an int for a zero run. Also accounts where the
        writer's time goes, so the master can tell a slow disk from slow decompression
        when it names what holds the chain back."""
        decoder = self._decoder
        while True:
            item = self.feed.next(self.config.io_timeout)
            if item is None:
                continue
            if isinstance(item, Failure):
                self._took_last = True
                return
            try:
                if item.kind == wire.DATA:
                    yield from self._timed(decoder.feed(item.payload))
                elif item.kind == wire.ZERO:
                    t0 = time.perf_counter()
                    self._content.zeros(item.length)
                    yield item.length
                    self.write_seconds += time.perf_counter() - t0
                elif item.kind == wire.FREE:  # disk time too where the target discards it
                    t0 = time.perf_counter()
                    self._content.skip(item.length)
                    yield Skip(item.length)
                    self.write_seconds += time.perf_counter() - t0
                elif item.kind == wire.END:
                    self._took_last = True  # even if the decoder fails at the end
                    yield from self._timed(decoder.finish())
                    self._end = bytes(item.payload)
                    return
            finally:
                item.release()

    def _timed(self, decoded: Iterator) -> Iterator[Piece]:
        t0 = time.perf_counter()
        for piece in decoded:
            t1 = time.perf_counter()
            self.decode_seconds += t1 - t0
            yield from self._hashed(piece)
            t0 = time.perf_counter()
            self.write_seconds += t0 - t1
        self.decode_seconds += time.perf_counter() - t0

    def _hashed(self, piece) -> Iterator[Piece]:
        """A decoded piece as the target takes it, hashed as the content; with a free
        map, its free parts are hashed as zeros and skipped, whatever their bytes."""
        if self._mask is None:
            self._content.update(piece)
            yield piece
            return
        for free, part in self._mask.split(piece):
            if free:
                self._content.skip(len(part))
                yield Skip(len(part))
            else:
                self._content.update(part)
                yield part

    def _drain(self) -> None:
        """Give back the buffers of a stream this hop no longer writes, up to its end."""
        while True:
            item = self.feed.next(self.config.io_timeout)
            if item is None:
                continue
            if isinstance(item, Failure):
                return
            item.release()
            if item.kind == wire.END:
                return

    def _verify(self, payload: bytes) -> None:
        """The copy against the master's signed facts (never the stream's own claims);
        with verify = "readback", against what the disk gives back, too."""
        digest, size = wire.parse_end(payload)
        expect = self.config.expect
        self.target.finish()
        self.digest = self._content.hexdigest()
        if self.written != expect.content_size:
            raise wire.ProtocolError(f"wrote {self.written} bytes, the image has {expect.content_size}")
        if (digest, size) != (expect.content_sha256, expect.content_size):
            raise wire.ProtocolError("END record differs from the master's start")
        if self.digest != expect.content_sha256:
            raise wire.ProtocolError(
                f"digest mismatch: wrote {self.digest}, image is {expect.content_sha256}")
        free = (self.free_bytes, freemap.digest(self._content.free.as_runs()))
        if free != (expect.free_bytes, expect.free_map_sha256):
            raise wire.ProtocolError(
                f"free map mismatch: left {free[0]} bytes free (map {free[1] or 'none'}), the "
                f"image frees {expect.free_bytes} (map {expect.free_map_sha256 or 'none'})")
        if self.config.verify == "readback":
            self._read_back(expect)
        self.verified = True
        self.verified_by = self.config.verify

    def _read_back(self, expect: wire.Expected) -> None:
        """Hash what the disk returns, past every cache, and refuse a disk that lies.
        Free ranges are not read: they count as zeros, as in the image's digest."""
        t0 = time.monotonic()

        def progress(done: int) -> None:
            self.read_back = done

        got = self.target.read_back(expect.content_size, progress, self._content.free.as_runs())
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

