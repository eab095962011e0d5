"""An image's bmap (IMAGE.bmap next to IMAGE, bmaptool's format, image/bmap.py): which of
its blocks the master streams as data and which as FREE records.

The bmap is believed only after every mapped range was read and matched the checksum
the bmap gives it, while the master hashes the image anyway: a bmap of another image,
or an image changed since its bmap was made, would otherwise leave old bytes on every
disk where the image has data. Its facts are bound to both versions, the image's and
the bmap's (facts.bmap_stamp): a changed bmap is read and checked again. Only raw disk
images take a bmap: it describes uncompressed bytes, and a compressed image's map
would have to travel with it (not done yet).
"""

import hashlib
import os
from typing import Callable, Optional, Tuple

from thepusher.config.model import Image
from thepusher.image.bmap import Bmap, BmapError, load
from thepusher.image.facts import FactsHasher, ImageFacts, Stamp, stamp_of

READ_SIZE = 4 << 20
Read = Callable[[memoryview, int], int]  # fills a view from the image at an offset


def bmap_path(image: Image) -> str:
    return image.path + ".bmap"


def bmap_stamp(image: Image) -> Optional[Stamp]:
    """The version of the image's bmap, None when it has none."""
    try:
        return stamp_of(os.stat(bmap_path(image)))
    except FileNotFoundError:
        return None
    except OSError as e:
        raise BmapError(f"cannot read bmap {bmap_path(image)}: {e.strerror or e}") from None


def load_for(image: Image, size: int) -> Optional[Tuple[Bmap, Stamp]]:
    """The image's bmap, checked against its file's `size`, and its version; None when
    it has none. BmapError says why it cannot be used."""
    stamp = bmap_stamp(image)
    if stamp is None:
        return None
    path = bmap_path(image)
    if image.compression != "NONE" or image.type != "IMG":
        raise BmapError(f"bmap {path} is next to a {image.type} image compressed as "
                        f"{image.compression}: bmaps are taken for uncompressed IMG images "
                        f"only (a bmap describes the uncompressed bytes); remove it or "
                        f"deploy the uncompressed image")
    bmap = load(path)
    if bmap.image_size != size:
        raise BmapError(f"bmap {path} is for an image of {bmap.image_size} bytes, "
                        f"{image.path} has {size}: made for another image?")
    return bmap, stamp


def scan_mapped(bmap: Bmap, size: int, read: Read, stop: Callable[[], None]) -> ImageFacts:
    """Hash the image with its unmapped ranges as free (zeros in the digest, never read)
    and map the zero runs of its mapped ranges, checking each range's SHA-256."""
    hasher = FactsHasher(map_zeros=True)
    buf = bytearray(READ_SIZE)
    pos = 0
    for (offset, length, chksum), (first, last, _) in zip(bmap.mapped(), bmap.ranges):
        _skip(hasher, offset - pos, stop)
        sha = hashlib.sha256()
        at, end = offset, offset + length
        while at < end:
            view = memoryview(buf)[: min(READ_SIZE, end - at)]
            n = read(view, at)
            if not n:
                raise BmapError(f"{bmap.path}: the image ended at byte {at} inside range "
                                f"{first}-{last}")
            hasher.update(view[:n])
            sha.update(view[:n])
            at += n
        if sha.hexdigest() != chksum:
            raise BmapError(f"bmap {bmap.path}: range {first}-{last} (bytes {offset}-{end - 1}) "
                            f"of the image hashes to {sha.hexdigest()}, the bmap says {chksum}: "
                            f"the image changed since its bmap was made, or the bmap is "
                            f"another image's")
        pos = end
    _skip(hasher, size - pos, stop)
    return hasher.finish()


def _skip(hasher: FactsHasher, length: int, stop: Callable[[], None]) -> None:
    """A free range: hashing its zeros takes CPU, so an abort is heard between pieces."""
    step = 64 << 20
    for at in range(0, length, step):
        stop()
        hasher.skip(min(step, length - at))
