"""An upload that comes with its free map (put-image of a disk whose filesystems it
mapped): the map first, then only the used bytes, which the master puts in place in a
sparse file, holes where the map says free.

The image is then what any tool reads as a dd image (the holes read as zeros), and its
map is kept as bmaptool's `NAME.bmap` next to it, each mapped range with the SHA-256
computed here as the bytes arrive; so the master streams the free ranges as FREE
records (master/bmaps.py) and `bmaptool copy` can write the image too. The body is
checked against the map as it comes: a byte more or less than the map's used bytes is
refused, and nothing is kept.
"""

import hashlib
import os
from typing import Iterator, List, Optional, Tuple

from thepusher.image import freemap
from thepusher.image.bmap import RangeDigests
from thepusher.image.decode import Decoder
from thepusher.image.facts import FactsHasher, ImageFacts
from thepusher.image.formats import NONE, DecodeError
from thepusher.master.errors import ApiError

BLOCK = 4096  # the map's runs are on these (bmap's block size)
MAX_MAP = 64 << 20  # millions of runs: more than any real disk's free extents


class MappedBody:
    """The rest of a body after its map; `take(n)` exact bytes (the map), then `rest()`."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self._held = b""

    def take(self, n: int, received: int) -> bytes:
        parts, got = [self._held], len(self._held)
        while got < n:
            piece = next(self._pieces, None)
            if piece is None:
                raise ApiError(400, f"the upload ended at byte {received} inside its free "
                                    f"map ({n} bytes)")
            parts.append(piece)
            got += len(piece)
        data = b"".join(parts)
        self._held = data[n:]
        return data[:n]

    def rest(self) -> Iterator[bytes]:
        if self._held:
            yield self._held
        yield from self._pieces


def map_length(text: Optional[str]) -> Optional[int]:
    """The X-Free-Map-Length header: how many body bytes the map takes."""
    if text is None:
        return None
    if not text.strip().isdigit() or not 0 < int(text) <= MAX_MAP:
        raise ApiError(400, f"X-Free-Map-Length must be a number of bytes up to {MAX_MAP}, "
                            f"not {text[:40]!r}")
    return int(text)


def read_map(body: MappedBody, length: int, size: Optional[int], received: int) -> List[freemap.Run]:
    if size is None:
        raise ApiError(400, "an upload with a free map must say its size (X-Content-Size)")
    try:
        return freemap.parse_map(body.take(length, received), size, BLOCK)
    except ValueError as e:
        raise ApiError(400, f"bad free map: {e}") from None


class Placer:
    """Writes the used bytes where the map puts them, hashing the image (free runs as
    zeros) and each mapped range (for the bmap) on the way."""

    def __init__(self, fd: int, size: int, free: List[freemap.Run], hasher: FactsHasher) -> None:
        self.fd = fd
        self.size = size
        self.hasher = hasher
        self.mapped = freemap.complement(free, size)
        self.ranges = RangeDigests()
        self._index = -1  # the mapped range being filled
        self._left = 0  # its bytes still to come
        self.at = 0  # image offset reached

    @property
    def used_bytes(self) -> int:
        return sum(length for _, length in self.mapped)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if not self._left:
                self._next_range()
            n = min(len(view), self._left)
            write_all(self.fd, view[:n])
            self.hasher.update(view[:n])
            self.ranges.add(self.at, view[:n])
            self._left -= n
            self.at += n
            view = view[n:]

    def _next_range(self) -> None:
        self._index += 1
        if self._index >= len(self.mapped):
            raise ApiError(400, f"the upload goes on past the {self.used_bytes} used bytes its "
                                f"free map leaves: the map does not fit the data")
        offset, length = self.mapped[self._index]
        self.hasher.skip(offset - self.at)
        self.at = offset
        os.lseek(self.fd, offset, os.SEEK_SET)
        self._left = length

    def finish(self) -> None:
        """The image's end: the last free run a hole, and no used byte missing."""
        if self._left or self._index + 1 < len(self.mapped):
            raise ApiError(400, f"the upload ended at image byte {self.at}, before the "
                                f"{self.used_bytes} used bytes its free map leaves")
        self.hasher.skip(self.size - self.at)
        os.ftruncate(self.fd, self.size)


def place(body, length: int, size: Optional[int], compression: str, fd: int,
          hasher: FactsHasher, guard) -> Tuple[ImageFacts, List[Tuple[int, int, str]]]:
    """The upload's free map (`length` bytes), then its image: the used bytes put where
    the map says, or, compressed, the stream as it comes (decoded here to check it):
    the image's facts and its mapped ranges' digests. `body` is the upload's body
    (upload_body.py), `guard` its SpaceGuard (uploads.py)."""
    rest = MappedBody(body.pieces())
    free = read_map(rest, length, size, body.received)
    try:
        if compression == NONE:
            facts, digests = _place(rest, body, size or 0, free, fd, hasher, guard)
        else:
            facts, digests = _keep(rest, body, size or 0, free, compression, fd, guard)
    except DecodeError as e:
        raise ApiError(400, f"byte {body.received} of the upload: {e}") from None
    finally:
        hasher.close()
    if facts.content_size == 0:
        raise ApiError(400, "the upload is empty (0 bytes): nothing to store as an image")
    return facts, digests


def _place(rest: MappedBody, body, size: int, free: List[freemap.Run], fd: int,
           hasher: FactsHasher, guard) -> Tuple[ImageFacts, List[Tuple[int, int, str]]]:
    placer = Placer(fd, size, free, hasher)
    guard.check(placer.used_bytes)
    for data in rest.rest():
        guard.take(len(data), body.received)
        placer.write(data)
    placer.finish()
    return hasher.finish(), placer.ranges.finish()


def _keep(rest: MappedBody, body, size: int, free: List[freemap.Run], compression: str,
          fd: int, guard) -> Tuple[ImageFacts, List[Tuple[int, int, str]]]:
    """A compressed image of the sparse disk: stored as it comes; its decoded bytes are
    hashed with the free runs as zeros, whatever they hold (as master/bmaps.py does), and
    each mapped range for the bmap."""
    decoder = Decoder(compression)
    content, stream = FactsHasher(), hashlib.sha256()
    mask, ranges = freemap.Mask(free), RangeDigests()
    stored = 0

    def take(piece) -> None:
        for is_free, part in mask.split(piece):
            if is_free:
                content.skip(len(part))
            else:
                ranges.add(content.size, part)
                content.update(part)
        if content.size > size:
            raise ApiError(400, f"the upload decompresses to more than the {size} bytes "
                                f"its free map is for")

    try:
        for data in rest.rest():
            guard.take(len(data), body.received)
            write_all(fd, memoryview(data))
            stream.update(data)
            stored += len(data)
            for piece in decoder.feed(data):
                take(piece)
        for piece in decoder.finish():
            take(piece)
    finally:
        decoder.close()
    if content.size != size:
        raise ApiError(400, f"the upload decompresses to {content.size} bytes, its free map "
                            f"is for {size}")
    facts = content.finish()
    facts.stream_size, facts.stream_sha256, facts.zero_runs = stored, stream.hexdigest(), None
    return facts, ranges.finish()


def write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view):]
