"""bmaptool's block map files (`IMAGE.bmap`, the Yocto/Tizen standard), read and written.

A bmap says which blocks of a raw image hold data (mapped), each range with its SHA-256;
the rest the image does not define (free filesystem blocks), so the master streams them
as FREE records and clients leave them alone. We read what `bmaptool create` writes
(format 2.x) and write what `bmaptool copy` accepts.

A bmap comes from outside, so it is checked whole before it is believed: a wrong map
would leave old bytes where the image has data. Refused: a DTD or entity declaration
(no billion laughs), format 1.x (SHA-1, superseded in 2013), a file checksum that does
not match, and any range out of order, overlapping or past the image, or counts that
disagree. Every message names the bmap file, and the range where one is at fault.
"""

import hashlib
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import List, Tuple

from thepusher.image import freemap

Run = Tuple[int, int]
MAX_BMAP = 256 << 20  # about 2.5 million ranges: more than any real image, far below RAM
_HEX64 = re.compile(r"[0-9a-f]{64}")
_RANGE = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")
CHECKSUM_FIELD = "BmapFileChecksum"


class BmapError(ValueError):
    """The bmap file is unusable; the message names it and says why."""


@dataclass
class Bmap:
    path: str
    image_size: int
    block_size: int
    blocks_count: int
    mapped_blocks: int
    ranges: List[Tuple[int, int, str]]  # (first block, last block, sha256 of its bytes)

    def mapped(self) -> List[Tuple[int, int, str]]:
        """(offset, length, sha256) of each mapped range in bytes, the last cut at the image's end."""
        out = []
        for first, last, chksum in self.ranges:
            start = first * self.block_size
            end = min((last + 1) * self.block_size, self.image_size)
            out.append((start, end - start, chksum))
        return out

    def free_runs(self) -> List[Run]:
        return freemap.complement(((o, n) for o, n, _ in self.mapped()), self.image_size)


def load(path: str) -> Bmap:
    """Read and check `path` whole; BmapError says what is wrong with it."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BMAP + 1)
    except OSError as e:
        raise BmapError(f"cannot read bmap {path}: {e.strerror or e}") from None
    if len(raw) > MAX_BMAP:
        raise BmapError(f"bmap {path} is larger than {MAX_BMAP >> 20} MiB: not a bmap")
    return parse(raw, path)


def parse(raw: bytes, path: str = "bmap") -> Bmap:
    where = f"bmap {path}"
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        raise BmapError(f"{where}: has a DOCTYPE or ENTITY declaration, which bmaps never "
                        f"have: refused")
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as e:
        raise BmapError(f"{where}: not valid XML: {e}") from None
    if root.tag != "bmap":
        raise BmapError(f"{where}: root element is <{root.tag}>, not <bmap>")
    version = root.get("version", "")
    if version.split(".")[0] != "2":
        raise BmapError(f"{where}: format version {version!r} is not supported (2.x only; "
                        f"1.x used SHA-1): make a new one with bmaptool create")

    def text(tag: str) -> str:
        node = root.find(tag)
        if node is None or node.text is None:
            raise BmapError(f"{where}: no <{tag}>")
        return node.text.strip()

    def number(tag: str) -> int:
        value = text(tag)
        if not value.isdigit():
            raise BmapError(f"{where}: <{tag}> {value!r} is not a number")
        return int(value)

    if text("ChecksumType").lower() != "sha256":
        raise BmapError(f"{where}: ChecksumType {text('ChecksumType')!r} is not supported "
                        f"(sha256 only)")
    chksum = text(CHECKSUM_FIELD).lower()
    if not _HEX64.fullmatch(chksum):
        raise BmapError(f"{where}: <{CHECKSUM_FIELD}> is not a SHA-256 digest")
    # bmaptool's rule: the file's SHA-256 with the checksum's own digits as zeros
    got = hashlib.sha256(raw.replace(chksum.encode(), b"0" * 64)).hexdigest()
    if got != chksum:
        raise BmapError(f"{where}: file checksum mismatch ({CHECKSUM_FIELD} says {chksum}, "
                        f"the file hashes to {got}): damaged or edited")
    bmap = Bmap(path, number("ImageSize"), number("BlockSize"), number("BlocksCount"),
                number("MappedBlocksCount"), [])
    _check_sizes(bmap, where)
    block_map = root.find("BlockMap")
    if block_map is None:
        raise BmapError(f"{where}: no <BlockMap>")
    after = 0  # the first block a next range may start at
    for i, node in enumerate(block_map.findall("Range"), 1):
        spec = (node.text or "").strip()
        at = f"{where}: range {i} ({spec!r})"
        m = _RANGE.fullmatch(spec)
        if not m:
            raise BmapError(f"{at}: not FIRST-LAST or a block number")
        first = int(m.group(1))
        last = int(m.group(2)) if m.group(2) is not None else first
        digest = (node.get("chksum") or "").lower()
        if last < first:
            raise BmapError(f"{at}: ends before it starts")
        if first < after:
            raise BmapError(f"{at}: out of order or overlapping the range before it")
        if last >= bmap.blocks_count:
            raise BmapError(f"{at}: past the image's last block {bmap.blocks_count - 1}")
        if not _HEX64.fullmatch(digest):
            raise BmapError(f"{at}: chksum is not a SHA-256 digest")
        bmap.ranges.append((first, last, digest))
        after = last + 1
    mapped = sum(last - first + 1 for first, last, _ in bmap.ranges)
    if mapped != bmap.mapped_blocks:
        raise BmapError(f"{where}: MappedBlocksCount is {bmap.mapped_blocks}, the ranges "
                        f"map {mapped} blocks")
    return bmap


def _check_sizes(bmap: Bmap, where: str) -> None:
    if bmap.block_size <= 0 or bmap.block_size % 512:
        raise BmapError(f"{where}: BlockSize {bmap.block_size} is not a multiple of 512")
    blocks = -(-bmap.image_size // bmap.block_size)
    if bmap.blocks_count != blocks:
        raise BmapError(f"{where}: BlocksCount is {bmap.blocks_count}, but ImageSize "
                        f"{bmap.image_size} makes {blocks} blocks of {bmap.block_size}")


class RangeDigests:
    """Each mapped range's SHA-256 while an image is read or written in order: `add`
    every run of data bytes at its offset; a gap (a free run) ends a range. What
    `save` takes, from one pass over the data."""

    def __init__(self) -> None:
        self.ranges: List[Tuple[int, int, str]] = []
        self._start = self._end = -1
        self._sha = hashlib.sha256()

    def add(self, offset: int, data) -> None:
        if offset != self._end:
            self._close()
            self._start = self._end = offset
        self._sha.update(data)
        self._end += len(data)

    def _close(self) -> None:
        if self._end > self._start:
            self.ranges.append((self._start, self._end - self._start, self._sha.hexdigest()))
        self._sha = hashlib.sha256()

    def finish(self) -> List[Tuple[int, int, str]]:
        self._close()
        self._start = self._end = -1
        return self.ranges


def write(path: str, image_path: str, mapped: List[Run], block_size: int = 4096) -> Bmap:
    """Write the bmap of `image_path` whose data is in `mapped` (byte runs, sorted, each
    on block boundaries but the image's end), with each range's SHA-256 read from the
    image; atomically (temp file, rename). The file is what `bmaptool copy` takes."""
    size = os.stat(image_path).st_size
    digests = []
    with open(image_path, "rb") as f:
        for offset, length in mapped:
            sha = hashlib.sha256()
            f.seek(offset)
            left = length
            while left > 0:
                chunk = f.read(min(left, 4 << 20))
                if not chunk:
                    raise BmapError(f"{image_path} ended at byte {offset + length - left} "
                                    "while mapping it")
                sha.update(chunk)
                left -= len(chunk)
            digests.append((offset, length, sha.hexdigest()))
    return save(path, size, digests, block_size, image_path)


def save(path: str, size: int, mapped: List[Tuple[int, int, str]], block_size: int = 4096,
         what: str = "the image") -> Bmap:
    """Write the bmap of an image of `size` bytes whose data is in `mapped` (offset,
    length, SHA-256 of those bytes; sorted, merged, on block boundaries but the image's
    end), atomically: for a caller that hashed the ranges on the way (an upload)."""
    ranges = []
    for offset, length, digest in mapped:
        end = offset + length
        if offset % block_size or (end % block_size and end != size) or end > size:
            raise BmapError(f"mapped range {offset}+{length} is not on {block_size}-byte "
                            f"blocks of {what} ({size} bytes)")
        if length <= 0:
            continue
        if ranges and ranges[-1][1] + 1 == offset // block_size:
            raise BmapError(f"mapped ranges of {what} are not merged at byte {offset}")
        ranges.append((offset // block_size, -(-end // block_size) - 1, digest))
    bmap = Bmap(path, size, block_size, -(-size // block_size),
                sum(last - first + 1 for first, last, _ in ranges), ranges)
    text = _render(bmap, "0" * 64)
    chksum = hashlib.sha256(text.encode()).hexdigest()
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text.replace("0" * 64, chksum))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return bmap


def _render(bmap: Bmap, chksum: str) -> str:
    lines = [
        '<?xml version="1.0" ?>',
        "<!-- made by thepusher: the mapped blocks of the image, with each range's SHA-256 -->",
        '<bmap version="2.0">',
        f"    <ImageSize> {bmap.image_size} </ImageSize>",
        f"    <BlockSize> {bmap.block_size} </BlockSize>",
        f"    <BlocksCount> {bmap.blocks_count} </BlocksCount>",
        f"    <MappedBlocksCount> {bmap.mapped_blocks} </MappedBlocksCount>",
        "    <ChecksumType> sha256 </ChecksumType>",
        f"    <{CHECKSUM_FIELD}> {chksum} </{CHECKSUM_FIELD}>",
        "    <BlockMap>",
    ]
    for first, last, digest in bmap.ranges:
        spec = str(first) if first == last else f"{first}-{last}"
        lines.append(f'        <Range chksum="{digest}"> {spec} </Range>')
    lines += ["    </BlockMap>", "</bmap>", ""]
    return "\n".join(lines)
