"""The master's view of its image files: size, content size and content digest.

The digest is of the uncompressed content (what clients write and hash), so for a
compressed image it costs one full decompression. It is computed once and kept in a
JSON sidecar `<filename>.digest.json` that records the image's size and mtime, so an
image replaced later is hashed again instead of trusted. For an uncompressed image the
same pass finds its zero runs (sparse.py), kept in the sidecar too: the master streams
them as ZERO records.

Images uploaded with put-image (uploads.py) arrive with their sidecar. Until the config
names them they are listed as not configured, also after a restart: any file of the
image dir with a valid sidecar that no configured image uses is such an upload.
"""

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional

from thepusher import sparse
from thepusher.config import Config, Image, image_file_problem
from thepusher.decode import Decoder, compression_of_name

log = logging.getLogger("thepusher.images")

READ_SIZE = 4 << 20
SIDECAR = ".digest.json"


@dataclass
class ImageFacts:
    stream_size: int
    content_size: int
    sha256: str
    zero_runs: Optional[List[sparse.Run]] = None  # None: not looked for (compressed)


def sidecar_path(path: str) -> str:
    return path + SIDECAR


def read_sidecar(path: str, zero_runs: bool = False) -> Optional[ImageFacts]:
    """Trust a sidecar only if it was written for this very version of the image, and,
    when `zero_runs` asks for them, by a version that looked for zero runs."""
    try:
        st = os.stat(path)
        with open(sidecar_path(path), encoding="utf-8") as f:
            data = json.load(f)
        if (data["stream_size"], data["mtime_ns"]) != (st.st_size, st.st_mtime_ns):
            return None
        if zero_runs and "zero_runs" not in data:
            return None
        runs = data.get("zero_runs")
        if runs is not None:
            runs = [(int(offset), int(length)) for offset, length in runs]
        return ImageFacts(data["stream_size"], data["content_size"], data["sha256"], runs)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_sidecar(path: str, facts: ImageFacts) -> None:
    """Write atomically (temp file + rename) so a crash never leaves a half-written digest."""
    data = {
        "sha256": facts.sha256,
        "content_size": facts.content_size,
        "stream_size": facts.stream_size,
        "mtime_ns": os.stat(path).st_mtime_ns,
        "note": "sha256 and content_size are of the uncompressed image",
    }
    if facts.zero_runs is not None:
        data["zero_runs"] = [list(run) for run in facts.zero_runs]
    atomic_write(sidecar_path(path), json.dumps(data, indent=2) + "\n")


def atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def compute_facts(image: Image) -> ImageFacts:
    if maps_zeros(image):
        return _scan_raw(image.path)
    sha = hashlib.sha256()
    decoder = Decoder(image.compression)
    content = 0
    stream = 0
    buf = bytearray(READ_SIZE)
    view = memoryview(buf)
    try:
        with open(image.path, "rb", buffering=0) as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                stream += n
                for piece in decoder.feed(view[:n]):
                    sha.update(piece)
                    content += len(piece)
        for piece in decoder.finish():
            sha.update(piece)
            content += len(piece)
    finally:
        decoder.close()
    return ImageFacts(stream, content, sha.hexdigest())


def maps_zeros(image: Image) -> bool:
    """Zero runs are sent as such only in raw disk images: a compressed stream has no
    long zero runs, and a tar stream goes to an extractor, not to a disk."""
    return image.compression == "NONE" and image.type == "IMG"


def _scan_raw(path: str) -> ImageFacts:
    """Hash a raw image and map its zero runs in one pass. Holes are not read: hashing
    their zeros costs CPU but no disk time."""
    sha = hashlib.sha256()
    zeros = sparse.ZeroMap()
    buf = bytearray(READ_SIZE)
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        for offset, length, hole in sparse.extents(f.fileno(), size):
            if hole:
                zeros.add(offset, length)
                sparse.hash_zeros(sha, length)
                continue
            f.seek(offset)
            end = offset + length
            while offset < end:
                n = f.readinto(memoryview(buf)[: min(READ_SIZE, end - offset)])
                if not n:
                    raise OSError(f"{path} ended at byte {offset} while hashing it")
                zeros.scan(buf, n, offset)
                sha.update(memoryview(buf)[:n])
                offset += n
    return ImageFacts(size, size, sha.hexdigest(), [tuple(run) for run in zeros.runs])


def _zero_bytes(facts: ImageFacts) -> Optional[int]:
    """How much of the image travels as zero runs (None: not mapped, it is compressed)."""
    return None if facts.zero_runs is None else sum(length for _, length in facts.zero_runs)


def deploy_hint(filename: str, config_path: str) -> str:
    """What an admin does with an uploaded image the config does not name yet."""
    compression = compression_of_name(filename)
    extra = f' and compression = "{compression}"' if compression != "NONE" else ""
    return (f'add an image block with filename = "{filename}"{extra} to '
            f"{os.path.basename(config_path)} and restart the master to deploy it")


class Catalog:
    """Digests of every configured image, computed in the background at start-up, and the
    facts of uploaded images that no configured image uses (yet)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._facts: Dict[str, ImageFacts] = {}
        self._errors: Dict[str, str] = {}
        self._uploaded: Dict[str, ImageFacts] = {}  # by file name
        self.generation = 0  # grows whenever describe() would answer differently
        self._lock = threading.Lock()
        self._ready: Dict[str, threading.Event] = {name: threading.Event() for name in config.images}

    def start(self) -> None:
        self._find_uploads()
        threading.Thread(target=self._hash_all, name="image-hasher", daemon=True).start()

    def add_upload(self, filename: str, facts: ImageFacts) -> None:
        """A finished upload (its sidecar written). Listed at once; a configured image that
        was waiting for this very file is hashed again, from that sidecar, and becomes usable."""
        waiting = [(n, i) for n, i in self.config.images.items() if i.filename == filename]
        if not waiting:
            with self._lock:
                self._uploaded[filename] = facts
                self.generation += 1
        for name, image in waiting:
            self._hash(name, image)

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
        for name, image in self.config.images.items():
            self._hash(name, image)

    def _hash(self, name: str, image: Image) -> None:
        try:
            problem = image_file_problem(image)
            if problem is not None:
                raise ValueError(f"image {problem}")
            facts = read_sidecar(image.path, zero_runs=maps_zeros(image))
            if facts is None:
                log.info("hashing image %s (%s)", name, image.path)
                facts = compute_facts(image)
                try:
                    write_sidecar(image.path, facts)
                except OSError as e:
                    log.warning("cannot write digest sidecar for %s: %s", image.path, e)
            with self._lock:
                self._facts[name] = facts
                self._errors.pop(name, None)
                self.generation += 1
            log.info("image %s: %d bytes, sha256 %s", name, facts.content_size, facts.sha256)
        except Exception as e:  # noqa: BLE001 - reported on the page, never fatal
            with self._lock:
                self._errors[name] = str(e)
                self.generation += 1
            log.error("image %s unusable: %s", name, e)
        finally:
            self._ready[name].set()

    def wait(self, name: str, timeout: Optional[float] = None) -> Optional[ImageFacts]:
        """The facts, once hashed; None if the image is unusable (see `error`)."""
        self._ready[name].wait(timeout)
        with self._lock:
            return self._facts.get(name)

    def error(self, name: str) -> Optional[str]:
        with self._lock:
            return self._errors.get(name)

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
                    "zero_bytes": _zero_bytes(facts) if facts and maps_zeros(image) else None,
                    "state": "ready" if facts else ("error" if name in self._errors else "hashing"),
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
            "zero_bytes": _zero_bytes(facts),
            "state": "ready",
            "error": None,
            "configured": False,
            "hint": deploy_hint(filename, self.config.path),
        }
