"""The facts of an image file: sizes, digests and zero map, found in one pass as the
image streams by, and kept beside the file in a JSON sidecar `<filename>.digest.json`.

The content digest is of the uncompressed image (what clients write and hash), so for
a compressed image it costs one full decompression; the digest of the stream as sent
(the file's own bytes) comes with it, so the master can check what it sends. For an
uncompressed disk image the same pass finds its zero runs (sparse.py), which the master
streams as ZERO records. Whoever reads an image hashes it with FactsHasher: the master
its image files and uploads, `thepusher compress` and put-image what they read, and a
hop's writer what it hands its disk.

Facts belong to one version of a file, told apart by its stamp: size, mtime, inode and
ctime. `cp -p` or `rsync -t` keep size and mtime, a file renamed over the image brings
another inode, and any write or metadata change moves the ctime, which nobody can set
back. A sidecar is trusted only for the stamp it records.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

from thepusher.image import freemap, sparse
from thepusher.image.decode import Decoder
from thepusher.image.formats import NONE

SIDECAR = ".digest.json"

Stamp = Tuple[int, int, int, int]  # size, mtime_ns, inode, ctime_ns


@dataclass
class ImageFacts:
    stream_size: int
    content_size: int
    sha256: str  # of the content, as clients write it
    zero_runs: Optional[List[sparse.Run]] = None  # None: not looked for (compressed)
    stream_sha256: str = ""  # of the file's bytes as streamed; the same as sha256 when raw
    stamp: Optional[Stamp] = None  # the version of the file these facts are of
    free_runs: Optional[List[sparse.Run]] = None  # ranges the image leaves undefined (a bmap)
    bmap_stamp: Optional[Stamp] = None  # the version of the bmap the free runs come from

    @property
    def free_bytes(self) -> int:
        return sum(length for _, length in self.free_runs or ())

    @property
    def free_map_sha256(self) -> str:
        """The free map's own digest (freemap.py); "" when nothing is free."""
        return freemap.digest(self.free_runs or ())

    @property
    def zero_bytes(self) -> Optional[int]:
        """How much of the image travels as zero runs (None: not mapped)."""
        return None if self.zero_runs is None else sum(length for _, length in self.zero_runs)


class FactsHasher:
    """The facts of an image as it goes by, in order: `feed` the stream as stored or sent
    (decoded here when compressed), or `update` the content and add its `zeros` runs when
    the caller has the content already (a hop's writer, put-image, `thepusher compress`,
    which hashes the stream it makes with a second hasher); then `finish`. Zero runs are
    mapped only when asked for and the image is uncompressed.

    Hashing is the hot path of every image: pieces are hashed as given (memoryviews
    welcome, never copied), zero runs without building their bytes, and an uncompressed
    stream, which is its content, is hashed once.
    """

    def __init__(self, compression: str = NONE, map_zeros: bool = False) -> None:
        """DecodeError if this Python cannot decode the compression (no bz2 or lzma)."""
        self.size = 0  # content bytes so far
        self._stream_size = 0  # compressed bytes fed so far
        self._sha = hashlib.sha256()
        raw = compression == NONE
        self._stream_sha = None if raw else hashlib.sha256()
        self._decoder = None if raw else Decoder(compression)
        self._zeros = sparse.ZeroMap() if map_zeros and raw else None
        self.free = freemap.FreeMap()  # ranges added with skip(): hashed as zeros

    def feed(self, data) -> None:
        """The next bytes of the stream (uncompressed, they are the content); DecodeError
        when they are not valid data of the compression (the message says where)."""
        if self._decoder is None:
            self.update(data)
            return
        self._stream_size += len(data)
        self._stream_sha.update(data)
        for piece in self._decoder.feed(data):
            self.update(piece)

    def update(self, piece) -> None:
        """The next bytes of the content."""
        if self._zeros is not None:
            self._zeros.scan(piece, len(piece), self.size)
        self._sha.update(piece)
        self.size += len(piece)

    def zeros(self, length: int) -> None:
        """The next `length` bytes of the content are zeros (a hole, a ZERO record)."""
        if self._zeros is not None:
            self._zeros.add(self.size, length)
        sparse.hash_zeros(self._sha, length)
        self.size += length

    def skip(self, length: int) -> None:
        """The next `length` bytes are free (undefined by the image, a FREE record):
        zeros in the content digest, and a run of the free map, never a zero run."""
        self.free.add(self.size, length)
        sparse.hash_zeros(self._sha, length)
        self.size += length

    def hexdigest(self) -> str:
        """The content's SHA-256 so far."""
        return self._sha.hexdigest()

    def finish(self) -> ImageFacts:
        """The facts of the whole image; DecodeError if a compressed stream stops short."""
        if self._decoder is not None:
            try:
                for piece in self._decoder.finish():
                    self.update(piece)
            finally:
                self.close()
        digest = self.hexdigest()
        runs = None if self._zeros is None else self._zeros.as_runs()
        if self._stream_sha is None:  # uncompressed: the stream is the content
            free = self.free.as_runs() or None
            return ImageFacts(self.size, self.size, digest, runs, digest, free_runs=free)
        return ImageFacts(self._stream_size, self.size, digest, runs, self._stream_sha.hexdigest())

    def close(self) -> None:
        """Stop the decoder's threads (bzip2): safe to call at any point, and twice."""
        if self._decoder is not None:
            self._decoder.close()


def stamp_of(st: os.stat_result) -> Stamp:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def describe_stamp(stamp: Stamp) -> str:
    return f"{stamp[0]} bytes, mtime {stamp[1]}, inode {stamp[2]}, ctime {stamp[3]}"


def sidecar_path(path: str) -> str:
    return path + SIDECAR


def read_sidecar(path: str, zero_runs: bool = False,
                 stamp: Optional[Stamp] = None) -> Optional[ImageFacts]:
    """Trust a sidecar only if it was written for this very version of the image (`stamp`,
    by default the file's as it is now), and, when `zero_runs` asks for them, by a version
    that looked for zero runs. A sidecar of an older thepusher (no stamp) is not trusted."""
    try:
        if stamp is None:
            stamp = stamp_of(os.stat(path))
        with open(sidecar_path(path), encoding="utf-8") as f:
            data = json.load(f)
        recorded = (data["stream_size"], data["mtime_ns"], data["inode"], data["ctime_ns"])
        if recorded != stamp or not data.get("stream_sha256"):
            return None
        if zero_runs and "zero_runs" not in data:
            return None
        runs = data.get("zero_runs")
        if runs is not None:
            runs = [(int(offset), int(length)) for offset, length in runs]
        free = data.get("free_runs")
        if free is not None:
            free = [(int(offset), int(length)) for offset, length in free]
        bmap_stamp = data.get("bmap_stamp")
        return ImageFacts(data["stream_size"], data["content_size"], data["sha256"], runs,
                          data["stream_sha256"], stamp, free,
                          tuple(int(v) for v in bmap_stamp) if bmap_stamp else None)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_sidecar(path: str, facts: ImageFacts) -> None:
    """Write atomically (temp file + rename) so a crash never leaves a half-written digest.
    The facts' stamp is recorded (the file's as it is now when they carry none: for a
    file just made by us, which nobody else writes)."""
    stamp = facts.stamp or stamp_of(os.stat(path))
    data = {
        "sha256": facts.sha256,
        "content_size": facts.content_size,
        "stream_size": facts.stream_size,
        "stream_sha256": facts.stream_sha256,
        "mtime_ns": stamp[1],
        "inode": stamp[2],
        "ctime_ns": stamp[3],
        "note": "sha256 and content_size are of the uncompressed image; stream_sha256 of "
                "the file; trusted only while size, mtime, inode and ctime are these",
    }
    if facts.zero_runs is not None:
        data["zero_runs"] = [list(run) for run in facts.zero_runs]
    if facts.free_runs is not None:  # from IMAGE.bmap, as it was (bmap_stamp)
        data["free_runs"] = [list(run) for run in facts.free_runs]
    if facts.bmap_stamp is not None:
        data["bmap_stamp"] = list(facts.bmap_stamp)
    atomic_write(sidecar_path(path), json.dumps(data, indent=2) + "\n")


def atomic_write(path: str, text: str) -> None:
    """Temp file, fsync, rename: a crash leaves the old file or the new one, never half."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
