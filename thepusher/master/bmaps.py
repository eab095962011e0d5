"""An image's bmap (bmaptool's format, image/bmap.py): which of its blocks the master
streams as data and which it leaves free, never written on any disk.

The bmap is believed only after every mapped range was read and matched the checksum
the bmap gives it, while the master hashes the image anyway: a bmap of another image,
or an image changed since its bmap was made, would otherwise leave old bytes on every
disk where the image has data. Its facts are bound to both versions, the image's and
the bmap's (facts.bmap_stamp): a changed bmap is read and checked again.

A bmap describes uncompressed bytes. A raw image's free ranges travel as FREE records;
a compressed image is decoded here to check the bmap, its free ranges hashed as zeros
whatever the file holds there, and its hops get the free map from the master
(GET /api/free-map) to skip those bytes of what they decode. TAR images take no bmap:
their stream goes to an extractor, not to a disk.
"""

import dataclasses
import hashlib
import os
from typing import Callable, List, Optional, Tuple

from thepusher.config.model import Image
from thepusher.image import freemap
from thepusher.image.bmap import Bmap, BmapError, load
from thepusher.image.decode import Decoder
from thepusher.image.facts import FactsHasher, ImageFacts, Stamp, stamp_of
from thepusher.image.formats import BY_COMPRESSION, NONE

READ_SIZE = 4 << 20
Read = Callable[[memoryview, int], int]  # fills a view from the image file at an offset


def bmap_paths(image: Image) -> List[str]:
    """Where the image's bmap may be, in this order: IMAGE.bmap, and for a compressed
    image also its name without the compression's suffix, plus .bmap, as bmaptool looks
    (`bmaptool create -o disk.img.bmap disk.img; xz disk.img` leaves disk.img.xz and
    disk.img.bmap)."""
    paths = [image.path + ".bmap"]
    fmt = BY_COMPRESSION.get(image.compression)
    if fmt is not None and image.path.lower().endswith(fmt.suffix):
        paths.append(image.path[: -len(fmt.suffix)] + ".bmap")
    return paths


def find(image: Image) -> Optional[Tuple[str, Stamp]]:
    """The image's bmap and its version, None when it has none."""
    for path in bmap_paths(image):
        try:
            return path, stamp_of(os.stat(path))
        except FileNotFoundError:
            continue
        except OSError as e:
            raise BmapError(f"cannot read bmap {path}: {e.strerror or e}") from None
    return None


def bmap_stamp(image: Image) -> Optional[Stamp]:
    """The version of the image's bmap, None when it has none."""
    found = find(image)
    return found[1] if found else None


def load_for(image: Image, size: int) -> Optional[Tuple[Bmap, Stamp]]:
    """The image's bmap and its version, None when it has none; a raw image's is checked
    against the file's `size` (a compressed one's against what it decodes to, by scan).
    BmapError says why it cannot be used."""
    found = find(image)
    if found is None:
        return None
    path, stamp = found
    if image.type != "IMG":
        raise BmapError(f"bmap {path} is next to a {image.type} image: bmaps are taken for "
                        f"IMG images only (a tar stream is unpacked, not written as a disk); "
                        f"remove it")
    bmap = load(path)
    if image.compression == NONE and bmap.image_size != size:
        raise BmapError(f"bmap {path} is for an image of {bmap.image_size} bytes, "
                        f"{image.path} has {size}: made for another image?")
    runs = 0 if image.compression == NONE else len(bmap.free_runs())
    if runs > freemap.MAX_MAP_RUNS:  # its hops fetch it whole
        raise BmapError(f"bmap {path} leaves {runs} ranges free, a compressed image's free "
                        f"map takes at most {freemap.MAX_MAP_RUNS}: deploy the image "
                        f"uncompressed, or make the bmap with larger blocks")
    return bmap, stamp


def scan(bmap: Bmap, compression: str, size: int, read: Read,
         stop: Callable[[], None]) -> ImageFacts:
    """The image's facts with its unmapped ranges as free (zeros in the digest, whatever
    the file holds there), checking each mapped range's SHA-256. BmapError when the bmap
    does not fit the image; DecodeError when a compressed image is corrupt."""
    if compression == NONE:
        return _scan_raw(bmap, size, read, stop)
    return _scan_decoded(bmap, compression, read)


class _RangeCheck:
    """Each mapped range's SHA-256 against the bmap's, as the range's bytes go by."""

    def __init__(self, bmap: Bmap) -> None:
        self.bmap = bmap
        self._ranges = zip(bmap.mapped(), bmap.ranges)
        self._next_range()

    def _next_range(self) -> None:
        self._range = next(self._ranges, None)
        self._sha = hashlib.sha256()

    def update(self, pos: int, data: memoryview) -> None:
        """`data`: the image's mapped bytes at offset `pos`, the next ones in order (past
        the last range they are left to the size check)."""
        while len(data) and self._range is not None:
            (offset, length, chksum), (first, last, _) = self._range
            end = offset + length
            n = min(len(data), end - pos)
            self._sha.update(data[:n])
            pos, data = pos + n, data[n:]
            if pos < end:
                return
            got = self._sha.hexdigest()
            if got != chksum:
                raise BmapError(f"bmap {self.bmap.path}: range {first}-{last} (bytes "
                                f"{offset}-{end - 1}) of the image hashes to {got}, the bmap "
                                f"says {chksum}: the image changed since its bmap was made, "
                                f"or the bmap is another image's")
            self._next_range()


def _scan_raw(bmap: Bmap, size: int, read: Read, stop: Callable[[], None]) -> ImageFacts:
    """A raw image: only its mapped ranges are read, and their zero runs are mapped."""
    hasher = FactsHasher(map_zeros=True)
    check = _RangeCheck(bmap)
    buf = bytearray(READ_SIZE)
    pos = 0
    for (offset, length, _), (first, last, _) in zip(bmap.mapped(), bmap.ranges):
        _skip(hasher, offset - pos, stop)
        at, end = offset, offset + length
        while at < end:
            view = memoryview(buf)[: min(READ_SIZE, end - at)]
            n = read(view, at)
            if not n:
                raise BmapError(f"{bmap.path}: the image ended at byte {at} inside range "
                                f"{first}-{last}")
            hasher.update(view[:n])
            check.update(at, view[:n])
            at += n
        pos = end
    _skip(hasher, size - pos, stop)
    return hasher.finish()


def _scan_decoded(bmap: Bmap, compression: str, read: Read) -> ImageFacts:
    """A compressed image: decoded whole (the free ranges' bytes are in the stream too),
    its free parts hashed as zeros and never looked at, its mapped ranges checked."""
    content = FactsHasher()  # of the decoded bytes, free ranges as zeros
    mask = freemap.Mask(bmap.free_runs())
    check = _RangeCheck(bmap)
    stream = hashlib.sha256()  # of the file's bytes, as the round will stream them
    decoder = Decoder(compression)
    buf = bytearray(READ_SIZE)
    offset = 0

    def take(pieces) -> None:
        for piece in pieces:
            for free, part in mask.split(piece):
                if free:
                    content.skip(len(part))
                else:
                    check.update(content.size, memoryview(part))
                    content.update(part)

    try:
        while True:
            view = memoryview(buf)
            n = read(view, offset)
            if not n:
                break
            stream.update(view[:n])
            take(decoder.feed(view[:n]))
            offset += n
        take(decoder.finish())
    finally:
        decoder.close()
    if content.size != bmap.image_size:
        raise BmapError(f"bmap {bmap.path} is for an image of {bmap.image_size} bytes, the "
                        f"image decompresses to {content.size}: made for another image?")
    return dataclasses.replace(content.finish(), stream_size=offset,
                               stream_sha256=stream.hexdigest())


def _skip(hasher: FactsHasher, length: int, stop: Callable[[], None]) -> None:
    """A free range: hashing its zeros takes CPU, so an abort is heard between pieces."""
    step = 64 << 20
    for at in range(0, length, step):
        stop()
        hasher.skip(min(step, length - at))
