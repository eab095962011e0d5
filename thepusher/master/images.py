"""The master's view of its image files: their facts (image/facts.py: size, content
size, content digest, zero map) bound to the exact version of the file they were
computed from, and the files held open for rounds.

The master hashes each configured image once (FactsHasher) and keeps the facts in the
file's digest sidecar. For an uncompressed disk image the same pass maps its zero runs
(image/sparse.py): the master streams them as ZERO records. A round opens the file first and
then makes sure the facts are of that open file (Catalog.open), so a replaced image is
hashed again, never streamed with the old digest and zero map.

Images uploaded with put-image (uploads.py) arrive with their sidecar. Until the config
names them they are listed as not configured, also after a restart: any file of the
image dir with a valid sidecar that no configured image uses is such an upload.
"""

import logging
import os
import threading
from typing import Callable, Dict, List, Optional, Tuple

from thepusher.config.model import Config, Image, image_file_problem
from thepusher.image import sparse
from thepusher.image.bmap import BmapError
from thepusher.master import bmaps
from thepusher.image.facts import (SIDECAR, FactsHasher, ImageFacts, Stamp, describe_stamp,
                                   read_sidecar, stamp_of, write_sidecar)
from thepusher.image.formats import DecodeError, compression_of_name

log = logging.getLogger("thepusher.images")

READ_SIZE = 4 << 20
HASH_ATTEMPTS = 3  # a file that changes under every one of these is refused for now


class ImageUnusable(Exception):
    """The image cannot be streamed now; the message says why."""


class HashingStopped(ImageUnusable):
    """The round that was hashing the image was aborted: nothing is wrong with it."""


class ImageFile:
    """An image file held open for a round: every chain, gap fill and repair of the round
    reads this one open file, so a file renamed over the image meanwhile does not change
    what the round sends. Closed when the last user lets go."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self._users = 1
        self._lock = threading.Lock()

    def stamp(self) -> Stamp:
        return stamp_of(os.fstat(self.fd))

    def acquire(self) -> bool:
        """One more user; False once it is closed."""
        with self._lock:
            if self._users == 0:
                return False
            self._users += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last:
            os.close(self.fd)


Cancelled = Callable[[], bool]
StreamRuns = Tuple[Optional[List[sparse.Run]], Optional[List[sparse.Run]]]  # zero, free


def compute_facts(image: Image) -> ImageFacts:
    """Hash the image file as it is now (tests and tools; rounds use Catalog.open)."""
    f = ImageFile(image.path)
    try:
        return facts_of(f, image, lambda: False)
    finally:
        f.release()


def facts_of(f: ImageFile, image: Image, cancelled: Cancelled) -> ImageFacts:
    """The facts of the open file `f`, refused if it changes while being hashed."""
    for _ in range(HASH_ATTEMPTS):
        before = f.stamp()
        if before[0] == 0:
            raise ImageUnusable(f"file {image.path} is empty (0 bytes): nothing to deploy")
        try:
            bmap = bmaps.load_for(image, before[0])
            if bmap is not None:
                facts = bmaps.scan(bmap[0], image.compression, before[0],
                                   lambda view, at: _read(f.fd, view, at, cancelled),
                                   lambda: _stop_if(cancelled))
                facts.bmap_stamp = bmap[1]
        except (BmapError, DecodeError) as e:
            raise ImageUnusable(str(e)) from None
        if bmap is None:
            facts = _scan_raw(f.fd, before[0], cancelled) if maps_zeros(image) else \
                _decode_all(f.fd, image.compression, cancelled)
        if f.stamp() == before:
            if facts.content_size == 0:
                raise ImageUnusable(f"file {image.path} decompresses to 0 bytes: nothing to deploy")
            facts.stamp = before
            return facts
        log.warning("image %s changed while it was hashed: hashing it again", image.path)
    raise ImageUnusable(f"file {image.path} keeps changing while it is hashed: is a copy "
                        f"still being written?")


def _stop_if(cancelled: Cancelled) -> None:
    if cancelled():
        raise HashingStopped("hashing stopped: the round was aborted")


def _read(fd: int, view: memoryview, offset: int, cancelled: Cancelled) -> int:
    _stop_if(cancelled)
    try:
        return os.preadv(fd, [view], offset)
    except OSError as e:
        raise ImageUnusable(f"reading the image failed at byte {offset}: {e.strerror or e}") from None


def _decode_all(fd: int, compression: str, cancelled: Cancelled) -> ImageFacts:
    """Hash an image as stored, decoding it when compressed (a raw TAR image is read as
    it is: no zero map, its stream is its content)."""
    try:
        hasher = FactsHasher(compression)
    except DecodeError as e:
        raise ImageUnusable(str(e)) from None
    buf = bytearray(READ_SIZE)
    view = memoryview(buf)
    offset = 0
    try:
        while True:
            n = _read(fd, view, offset, cancelled)
            if not n:
                return hasher.finish()
            hasher.feed(view[:n])
            offset += n
    except DecodeError as e:
        raise ImageUnusable(str(e)) from None
    finally:
        hasher.close()


def maps_zeros(image: Image) -> bool:
    """Zero runs are sent as such only in raw disk images: a compressed stream has no
    long zero runs, and a tar stream goes to an extractor, not to a disk."""
    return image.compression == "NONE" and image.type == "IMG"


def stream_runs(image: Image, facts: ImageFacts) -> StreamRuns:
    """The zero and free runs the image's stream carries as ZERO and FREE records: a raw
    disk image's. A compressed image's free map names offsets of its decoded bytes, which
    no record can: its hops fetch the map (GET /api/free-map) and skip those bytes."""
    if not maps_zeros(image):
        return None, None
    return facts.zero_runs, facts.free_runs


def _scan_raw(fd: int, size: int, cancelled: Cancelled) -> ImageFacts:
    """Hash a raw image and map its zero runs in one pass. Holes are not read: hashing
    their zeros costs CPU but no disk time."""
    hasher = FactsHasher(map_zeros=True)
    buf = bytearray(READ_SIZE)
    for offset, length, hole in sparse.extents(fd, size):
        if hole:
            for at in range(0, length, READ_SIZE):  # a big hole takes CPU: stop on cancel
                _stop_if(cancelled)
                hasher.zeros(min(READ_SIZE, length - at))
            continue
        end = offset + length
        while offset < end:
            view = memoryview(buf)[: min(READ_SIZE, end - offset)]
            n = _read(fd, view, offset, cancelled)
            if not n:
                raise ImageUnusable(f"image ended at byte {offset} of {size} while hashing it")
            hasher.update(view[:n])
            offset += n
    return hasher.finish()


def deploy_hint(filename: str, config_path: str) -> str:
    """What an admin does with an uploaded image the config does not name yet."""
    compression = compression_of_name(filename)
    extra = f' and compression = "{compression}"' if compression != "NONE" else ""
    return (f'add an image block with filename = "{filename}"{extra} to '
            f"{os.path.basename(config_path)} and restart the master to deploy it")


class Catalog:
    """Facts of every configured image, computed in the background at start-up and checked
    again, against the file, whenever a round opens it; and the facts of uploaded images
    that no configured image uses (yet)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._facts: Dict[str, ImageFacts] = {}
        self._errors: Dict[str, str] = {}
        self._uploaded: Dict[str, ImageFacts] = {}  # by file name
        self.generation = 0  # grows whenever describe() would answer differently
        self._lock = threading.Lock()
        # One hashing of an image at a time: a round that opens an image the start-up
        # hasher is still on waits for it, then finds its facts current.
        self._hashing: Dict[str, threading.Lock] = {name: threading.Lock() for name in config.images}

    def start(self) -> None:
        self._find_uploads()
        threading.Thread(target=self._hash_all, name="image-hasher", daemon=True).start()

    def add_upload(self, filename: str, facts: ImageFacts) -> None:
        """A finished upload (its sidecar written). Listed at once; a configured image that
        was waiting for this very file is hashed again, from that sidecar, and becomes usable."""
        waiting = [name for name, i in self.config.images.items() if i.filename == filename]
        if not waiting:
            with self._lock:
                self._uploaded[filename] = facts
                self.generation += 1
        for name in waiting:
            self._check(name)

    def _find_uploads(self) -> None:
        """Uploads of earlier runs: files with a valid sidecar that the config does not use."""
        used = {image.filename for image in self.config.images.values()}
        for entry in sorted(os.listdir(self.config.image_dir)):
            if not entry.endswith(SIDECAR):
                continue
            filename = entry[: -len(SIDECAR)]
            if filename in used or filename.startswith("."):
                continue
            facts = read_sidecar(os.path.join(self.config.image_dir, filename))
            if facts is not None:
                self._uploaded[filename] = facts

    def _hash_all(self) -> None:
        for name in self.config.images:
            self._check(name)

    def _check(self, name: str) -> None:
        """Bring an image's facts up to date now (for the page); errors are recorded."""
        try:
            f, _ = self.open(name)
        except ImageUnusable:
            return
        f.release()

    def content_size(self, name: str) -> Optional[int]:
        """The configured image's size on a disk, if its facts are known yet (the round
        checks again against the very file it opens)."""
        with self._lock:
            facts = self._facts.get(name)
        return facts.content_size if facts else None

    def open(self, name: str, cancelled: Cancelled = lambda: False) -> Tuple[ImageFile, ImageFacts]:
        """The image opened for a round, and the facts of exactly that open file: its
        known facts if the file is the version they are of, else its sidecar if that is,
        else hashed now. The caller releases the file. ImageUnusable says why not."""
        image = self.config.images[name]
        try:
            problem = image_file_problem(image)
            if problem is not None:
                raise ImageUnusable(f"image {problem}")
            try:
                f = ImageFile(image.path)
            except OSError as e:
                raise ImageUnusable(f"cannot open {image.path}: {e.strerror or e}") from None
            try:
                with self._hashing[name]:
                    facts = self._facts_of(name, image, f, cancelled)
            except BaseException:
                f.release()
                raise
        except HashingStopped:
            # Its known facts are of another version of the file: hash it in the
            # background, for the page and the next round.
            with self._lock:
                self._facts.pop(name, None)
                self.generation += 1
            threading.Thread(target=self._check, args=(name,), name="image-hasher",
                             daemon=True).start()
            raise
        except ImageUnusable as e:
            with self._lock:
                self._facts.pop(name, None)
                if self._errors.get(name) != str(e):
                    self._errors[name] = str(e)
                    self.generation += 1
            log.error("image %s unusable: %s", name, e)
            raise
        return f, facts

    def _facts_of(self, name: str, image: Image, f: ImageFile, cancelled: Cancelled) -> ImageFacts:
        stamp = f.stamp()
        try:
            bmap = bmaps.bmap_stamp(image)
        except BmapError as e:
            raise ImageUnusable(str(e)) from None
        with self._lock:
            known = self._facts.get(name)
        if known is not None and (known.stamp, known.bmap_stamp) == (stamp, bmap):
            return known
        facts = read_sidecar(image.path, maps_zeros(image), stamp)
        if facts is None or facts.bmap_stamp != bmap:
            if known is not None:
                log.warning("image %s changed on disk since it was hashed (was %s, now %s): "
                            "hashing it again", name, describe_stamp(known.stamp),
                            describe_stamp(stamp))
            log.info("hashing image %s (%s)", name, image.path)
            facts = facts_of(f, image, cancelled)
            self._save_sidecar(image.path, facts)
        with self._lock:
            self._facts[name] = facts
            self._errors.pop(name, None)
            self.generation += 1
        log.info("image %s: %d bytes, sha256 %s", name, facts.content_size, facts.sha256)
        return facts

    @staticmethod
    def _save_sidecar(path: str, facts: ImageFacts) -> None:
        """Only while the name still leads to the version hashed: else the sidecar would
        bind these facts to another file."""
        try:
            if stamp_of(os.stat(path)) == facts.stamp:
                write_sidecar(path, facts)
        except OSError as e:
            log.warning("cannot write digest sidecar for %s: %s", path, e)

    def describe(self) -> list:
        out = []
        with self._lock:
            for name, image in self.config.images.items():
                facts = self._facts.get(name)
                out.append({
                    "name": name,
                    "filename": image.filename,
                    "comment": image.comment,
                    "type": image.type,
                    "compression": image.compression,
                    "destination": image.destination,
                    "size": facts.stream_size if facts else None,
                    "content_size": facts.content_size if facts else None,
                    "sha256": facts.sha256 if facts else None,
                    "zero_bytes": facts.zero_bytes if facts and maps_zeros(image) else None,
                    "free_bytes": facts.free_bytes if facts else None,
                    "state": "error" if name in self._errors else ("ready" if facts else "hashing"),
                    "error": self._errors.get(name),
                    "configured": True,
                })
            for filename, facts in sorted(self._uploaded.items()):
                out.append(self._describe_upload(filename, facts))
        return out

    def _describe_upload(self, filename: str, facts: ImageFacts) -> dict:
        return {
            "name": filename,
            "filename": filename,
            "comment": "",
            "type": "IMG",
            "compression": compression_of_name(filename),
            "destination": None,
            "size": facts.stream_size,
            "content_size": facts.content_size,
            "sha256": facts.sha256,
            "zero_bytes": facts.zero_bytes,
            "free_bytes": facts.free_bytes,
            "state": "ready",
            "error": None,
            "configured": False,
            "hint": deploy_hint(filename, self.config.path),
        }
