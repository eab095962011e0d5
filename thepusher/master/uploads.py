"""Images uploaded to the master: `PUT /api/images/NAME` (thepusher put-image, curl -T).

An upload becomes an image only when it is complete and verified, and it never replaces
one. The body goes into a hidden temp file in the image dir while the digest of its
content is computed (decompressing it when the name says it is compressed); then the
file is fsynced, its digest sidecar put in place and the file hard-linked to its name,
which fails if the name exists. Whatever goes wrong on the way (the uploader gone or
silent, bad chunk framing, corrupt compressed data, a wrong digest, a full disk)
removes the temp file: a broken upload leaves nothing behind.

The body itself comes off the socket in upload_body.py. The caller sets the socket
timeout (the config's io_timeout), so a stalled uploader cannot hold a server thread.
"""

import errno
import itertools
import logging
import os
import re
import socket
import threading
import time
from email.message import Message
from typing import Callable, Dict, List, Optional, Set, Tuple

from thepusher.config.model import Config
from thepusher.image.facts import SIDECAR, FactsHasher, ImageFacts, sidecar_path, stamp_of, write_sidecar
from thepusher.image.formats import BY_COMPRESSION, SPELLINGS, DecodeError, compression_of_name
from thepusher.master.errors import ApiError
from thepusher.master.images import Catalog, deploy_hint
from thepusher.image.bmap import save as save_bmap
from thepusher.master.upload_body import Body, ChunkedBody, SizedBody, ended
from thepusher.master.upload_map import write_all, map_length, place
from thepusher.units import size as human_bytes

log = logging.getLogger("thepusher.uploads")

MAX_NAME = 128
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")  # a leading "-" reads as an option in a shell
NAME_RULE = "letters, digits, '.', '_' and '-', not starting with '.' or '-', at most 128 characters"
MARGIN = 64 << 20  # free space an upload always leaves on the image dir's filesystem
RECHECK = 256 << 20  # free space is read again at least this often during an upload
DIGEST = re.compile(r"[0-9a-f]{64}")
# `.NAME.upload-PID-N`, its sidecar while being placed, and that sidecar's own temp file
LEFTOVER = re.compile(r"\..+\.upload-(\d+)-\d+(\.digest\.json|\.bmap)?(\.tmp\.\d+)?")
EMPTY = "the upload is empty (0 bytes): nothing to store as an image"
Mapped = Optional[List[Tuple[int, int, str]]]  # an upload's mapped ranges and their digests


class SpaceGuard:
    """Keeps uploads from filling the image dir's filesystem: MARGIN always stays free."""

    def __init__(self, directory: str, name: str) -> None:
        self.directory = directory
        self.name = name
        self._room = self._read_room()
        self._since_read = 0

    def _read_room(self) -> int:
        st = os.statvfs(self.directory)
        return st.f_bavail * st.f_frsize - MARGIN

    def refuse(self, needed: int, what: str) -> ApiError:
        return ApiError(
            507, f"not enough space for {self.name} in {self.directory}: "
            f"{human_bytes(max(0, self._room + MARGIN))} free, {what} {human_bytes(needed)} "
            f"and {human_bytes(MARGIN)} must stay free; nothing was kept",
        )

    def check(self, expected: Optional[int]) -> None:
        """Refuse up front an upload whose size is known and would not fit."""
        if expected is not None and expected > self._room:
            raise self.refuse(expected, "the upload is")

    def take(self, n: int, reached: int) -> None:
        """Account for `n` more bytes (the upload is at byte `reached` with them); others
        write too, so free space is read again whenever our tally runs out and every RECHECK
        bytes."""
        self._since_read += n
        if n > self._room or self._since_read >= RECHECK:
            self._room, self._since_read = self._read_room(), 0
            if n > self._room:
                raise self.refuse(reached, "the upload reached")
        self._room -= n


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(image_dir: str) -> None:
    """Temp files of uploads a master died during. At start-up no upload of ours has
    begun, so our own pid (a container's master may always get the same) counts as dead."""
    for entry in os.listdir(image_dir):
        match = LEFTOVER.fullmatch(entry)
        if match and (int(match.group(1)) == os.getpid() or not _alive(int(match.group(1)))):
            log.warning("removing %s, left by an upload that never finished", entry)
            _remove(os.path.join(image_dir, entry))


def _header_int(headers: Message, name: str) -> Optional[int]:
    text = headers.get(name)
    if text is None:
        return None
    if not text.strip().isdigit():
        raise ApiError(400, f"{name} must be a number of bytes, not {text!r}")
    return int(text)


class Uploads:
    """The image dir as the target of uploads; one per master, shared by its threads."""

    def __init__(self, config: Config, catalog: Catalog, reserved: Tuple[str, ...],
                 io_timeout: float) -> None:
        self.config = config
        self.image_dir = config.image_dir
        self.catalog = catalog
        self.io_timeout = io_timeout
        self.reserved = set(reserved) | {os.path.basename(config.path)}
        self._lock = threading.Lock()
        self._busy: Set[str] = set()  # names being uploaded right now
        self._numbers = itertools.count(1)

    def receive(self, name: str, headers: Message, rfile, host: str, accept: Callable[[], None]) -> dict:
        """Check the request, call `accept` (which tells the uploader to send the body),
        store the body as image `name` and answer with its facts; ApiError otherwise."""
        try:
            compression, body, guard = self._admit(name, headers, rfile)
        except ApiError as e:
            log.warning("upload %r from %s refused: %s", name[:150], host, e.message)
            raise
        try:
            return self._store(name, compression, body, guard, host, accept, headers)
        finally:
            with self._lock:
                self._busy.discard(name)

    # -- checks before the body ------------------------------------------------------

    def _admit(self, name: str, headers: Message, rfile) -> Tuple[str, Body, SpaceGuard]:
        """Everything that can be refused before a byte of the body is read; on success
        the name is marked busy (the caller frees it)."""
        self._check_name(name)
        compression = self._compression(name, headers.get("X-Compression"))
        body = self._body(headers, rfile)
        mapped = map_length(headers.get("X-Free-Map-Length")) is not None
        # the size to check free space against up front: put-image's plain uploads are
        # chunked (for the digest trailer) and say their size in X-Content-Size (with a
        # free map, the used size is known once the map is read)
        expected = body.length
        if expected is None and compression == "NONE" and not mapped:
            expected = _header_int(headers, "X-Content-Size")
        with self._lock:
            if os.path.lexists(os.path.join(self.image_dir, name)):
                raise ApiError(409, f"an image named {name!r} already exists on the master, "
                                    "and images are never overwritten: choose another name")
            if os.path.lexists(os.path.join(self.image_dir, name + ".bmap")):
                raise ApiError(409, f"{name}.bmap exists on the master without its image, and "
                                    f"would be taken for the map of this upload: remove it or "
                                    f"choose another name")
            if name in self._busy:
                raise ApiError(409, f"an upload of {name!r} is already under way: choose another name")
            guard = SpaceGuard(self.image_dir, name)
            guard.check(expected)
            self._busy.add(name)
        return compression, body, guard

    def _check_name(self, name: str) -> None:
        """No way out of the image dir, and none of the master's own files."""
        if not name:
            raise ApiError(400, f"the image name is empty: use {NAME_RULE}")
        if len(name) > MAX_NAME or not NAME.fullmatch(name):
            raise ApiError(400, f"image name {name[:150]!r} is not allowed: use {NAME_RULE}")
        for own in sorted(self.reserved):
            if name == own or name.startswith(own + "."):
                raise ApiError(400, f"image name {name!r} is not allowed: the master's {own} "
                                    "lives in the image directory")
        if SIDECAR in name:
            raise ApiError(400, f"image name {name!r} is not allowed: names with {SIDECAR} "
                                "are the master's digest files")

    @staticmethod
    def _compression(name: str, header: Optional[str]) -> str:
        """The name's suffix says it; an X-Compression header must agree, so that the name
        alone always tells an admin (and the catalog after a restart) what the file is."""
        by_name = compression_of_name(name)
        if header is None:
            return by_name
        said = SPELLINGS.get(header.strip().upper())
        if said is None:
            raise ApiError(400, f"X-Compression {header!r} is not one of NONE, BZ2, GZIP, XZ")
        if said != by_name:
            wanted = (f"end in {BY_COMPRESSION[said].suffix}" if said != "NONE"
                      else "not end in .bz2, .gz or .xz")
            raise ApiError(400, f"the upload is {said} but its name {name!r} says {by_name}: "
                                f"the name must {wanted}")
        return said

    @staticmethod
    def _body(headers: Message, rfile) -> Body:
        coding = headers.get("Transfer-Encoding")
        if coding is not None:
            if coding.strip().lower() != "chunked":
                raise ApiError(400, f"Transfer-Encoding {coding!r} is not supported (only chunked)")
            return ChunkedBody(rfile)
        length = _header_int(headers, "Content-Length")
        if length is None:
            raise ApiError(411, "an upload needs Content-Length or Transfer-Encoding: chunked")
        if length == 0:
            raise ApiError(400, EMPTY)
        return SizedBody(rfile, length)

    # -- the body ----------------------------------------------------------------------

    def _store(self, name: str, compression: str, body: Body, guard: SpaceGuard, host: str,
               accept: Callable[[], None], headers: Message) -> dict:
        try:
            hasher = FactsHasher(compression, map_zeros=True)
        except DecodeError as e:
            raise ApiError(501, f"the master cannot read {name}: {e}") from None
        tmp = os.path.join(self.image_dir, f".{name}.upload-{os.getpid()}-{next(self._numbers)}")
        started = time.monotonic()
        size = "" if body.length is None else f", {body.length} bytes"
        log.info("upload %s from %s: receiving (%s%s)", name, host, compression, size)
        try:
            facts, mapped = self._receive(tmp, name, compression, body, hasher, guard, accept,
                                          headers)
            _verify(facts, headers, body.trailers)
            self._install(tmp, name, facts, mapped)
        except OSError as e:  # socket trouble is ApiError by now: this is the master's disk
            self._discard(tmp, name, host, body, str(e))
            raise self._disk_failed(name, e, body.received, guard) from None
        except BaseException as e:
            self._discard(tmp, name, host, body, e.message if isinstance(e, ApiError) else repr(e))
            raise
        seconds = max(time.monotonic() - started, 1e-6)
        log.info("upload %s from %s: stored %d bytes (content %d bytes, sha256 %s) in %.1f s, %.1f MB/s",
                 name, host, facts.stream_size, facts.content_size, facts.sha256, seconds,
                 facts.stream_size / seconds / 1e6)
        return self._answer(name, compression, facts)

    def _receive(self, tmp: str, name: str, compression: str, body: Body, hasher: FactsHasher,
                 guard: SpaceGuard, accept: Callable[[], None],
                 headers: Message) -> Tuple[ImageFacts, Mapped]:
        """Tell the uploader to go on, then body -> temp file, fsynced; with the mapped
        ranges' digests when the upload came with a free map."""
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        mapped: Mapped = None
        try:
            try:
                accept()
                length = map_length(headers.get("X-Free-Map-Length"))
                if length is None:
                    facts = self._copy(name, body, fd, hasher, guard)
                else:
                    facts, mapped = place(body, length, _header_int(headers, "X-Content-Size"),
                                          compression, fd, hasher, guard)
            except socket.timeout:
                raise ApiError(408, f"no data for {self.io_timeout:g} s at byte {body.received}: "
                                    "upload abandoned") from None
            except ConnectionError:
                raise ended(body.received) from None
            os.fsync(fd)
            return facts, mapped
        finally:
            os.close(fd)

    @staticmethod
    def _copy(name: str, body: Body, fd: int, hasher: FactsHasher, guard: SpaceGuard) -> ImageFacts:
        """Write the body as it comes, hashing the content (decoded) on the way."""
        try:
            for data in body.pieces():
                guard.take(len(data), body.received)
                write_all(fd, memoryview(data))
                hasher.feed(data)
            facts = hasher.finish()
        except DecodeError as e:
            raise ApiError(400, f"{name} (byte {body.received}): {e}") from None
        finally:
            hasher.close()
        if body.received == 0:
            raise ApiError(400, EMPTY)
        if facts.content_size == 0:
            raise ApiError(400, f"{name} decompresses to 0 bytes: nothing to store as an image")
        return facts

    def _disk_failed(self, name: str, e: OSError, offset: int, guard: SpaceGuard) -> ApiError:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):  # others filled the disk under us
            return guard.refuse(offset, "the upload reached")
        return ApiError(500, f"storing {name} in {self.image_dir} failed at byte {offset}: {e}")

    @staticmethod
    def _discard(tmp: str, name: str, host: str, body: Body, reason: str) -> None:
        _remove(sidecar_path(tmp))
        _remove(tmp + ".bmap")
        _remove(tmp)
        log.warning("upload %s from %s failed at byte %d, nothing kept: %s",
                    name, host, body.received, reason)

    def _install(self, tmp: str, name: str, facts: ImageFacts, mapped: Mapped) -> None:
        """Sidecar (and bmap) first, then the hard link that claims the name: the image
        never shows without its digest and map, and a name that exists is never replaced
        (link fails). The link and the removal of the temp name move the file's ctime, so
        the sidecar is written once more, for the file as it then is (images.py: facts
        are of one version of a file)."""
        final = os.path.join(self.image_dir, name)
        write_sidecar(tmp, facts)
        taken = ApiError(409, f"an image named {name!r} appeared on the master during the "
                              "upload, and images are never overwritten: choose another name")
        if os.path.lexists(final) or (mapped is not None and os.path.lexists(final + ".bmap")):
            raise taken
        if mapped is not None:
            save_bmap(tmp + ".bmap", facts.content_size, mapped, what=name)
            os.replace(tmp + ".bmap", final + ".bmap")
            facts.bmap_stamp = stamp_of(os.stat(final + ".bmap"))
        os.replace(sidecar_path(tmp), sidecar_path(final))
        try:
            os.link(tmp, final)
        except FileExistsError:
            _remove(sidecar_path(final))
            if mapped is not None:
                _remove(final + ".bmap")
            raise taken from None
        _remove(tmp)
        facts.stamp = stamp_of(os.stat(final))
        write_sidecar(final, facts)
        try:
            _fsync_dir(self.image_dir)
        except OSError as e:  # the image is in place: say so, but do not fail it
            log.warning("cannot fsync %s after storing %s: %s", self.image_dir, name, e)
        self.catalog.add_upload(name, facts)

    def _answer(self, name: str, compression: str, facts: ImageFacts) -> dict:
        content = "" if compression == "NONE" else f" ({human_bytes(facts.content_size)} uncompressed)"
        if facts.free_runs:
            content += f" ({human_bytes(facts.free_bytes)} of it free, in {name}.bmap)"
        users = [i.name for i in self.config.images.values() if i.filename == name]
        then = (f"image {', '.join(users)} of the config uses it" if users
                else deploy_hint(name, self.config.path))
        return {
            "name": name,
            "filename": name,
            "size": facts.stream_size,
            "content_size": facts.content_size,
            "sha256": facts.sha256,
            "compression": compression,
            "free_bytes": facts.free_bytes,
            "message": f"stored {name} on the master: {human_bytes(facts.stream_size)}{content}, "
                       f"sha256 {facts.sha256}; {then}",
        }


def _verify(facts: ImageFacts, headers: Message, trailers: Dict[str, str]) -> None:
    """The uploader's digest (in the trailer or a header) and content size, if it sent them."""
    for claim in (trailers.get("x-content-sha256"), headers.get("X-Content-SHA256")):
        if claim is None:
            continue
        claim = claim.strip().lower()
        if not DIGEST.fullmatch(claim):
            raise ApiError(400, f"X-Content-SHA256 {claim[:80]!r} is not a SHA-256 in hex")
        if claim != facts.sha256:
            raise ApiError(422, f"the content's sha256 is {facts.sha256}, the uploader says "
                                f"{claim}: corrupted on the way, nothing kept")
    claimed_size = _header_int(headers, "X-Content-Size")
    if claimed_size is not None and claimed_size != facts.content_size:
        raise ApiError(422, f"received {facts.content_size} bytes of content, the uploader says "
                            f"{claimed_size}: nothing kept")
