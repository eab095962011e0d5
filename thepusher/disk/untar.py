"""TAR images: extract a tar stream into a directory as it arrives.

A TAR image's destination is a directory, usually a filesystem the preImage script has
just made and mounted there. `extract` reads the decoded (uncompressed) tar stream piece
by piece and creates each member as soon as its header and data have arrived; nothing is
buffered beyond one member's headers. It returns right after the end-of-archive marker
(two zero blocks) and takes no further piece from the iterator: the caller drains and
hashes what follows (GNU tar pads an archive to a 10 KiB record, other bytes may follow).
Nothing is fsynced here: the caller syncs (os.sync(), or unmounting) before it calls the
copy durable.

The headers are parsed here, not by `tarfile`: its stream mode reads ahead, treats a
damaged header after the first member as the end of the archive (silently dropping the
rest), and its extraction follows symlinks (Python 3.9 before 3.9.17 has no filters).
Understood: ustar, v7, GNU (LongName/LongLink, old sparse 'S', dumpdir 'D' as a plain
directory, volume labels 'V' ignored), pax local and global headers (path, linkpath,
size, uid, gid, mtime, SCHILY.devmajor/devminor, GNU.sparse.* of versions 0.0, 0.1 and
1.0), base-256 numbers. Names are handled as bytes, as on disk.

Security: nothing is ever written outside the destination.
- Member names (also hard link targets) that are absolute, contain a ".." component,
  are empty or contain a NUL byte are refused. A leading "./" is fine; "./" itself is
  the destination directory (its mode, owner and mtime are applied to it).
- Every path is opened component by component relative to the destination
  (O_NOFOLLOW, dir_fd): a symlink that is an existing parent component of a member is
  refused (TarError naming it), never followed, whether the archive made it or it was in
  the destination before. A missing parent is created (mode 0755 less the umask); a
  non-directory where a directory is needed is replaced.
- What already exists at a member's own path is removed first (a symlink is unlinked,
  never followed; an empty directory is removed; a non-empty one is an error), then the
  member is created exclusively (O_CREAT|O_EXCL|O_NOFOLLOW for files): old content of
  the destination that is a hard link to a file elsewhere is never written through. An
  existing directory for a directory member is kept and gets the member's metadata.
- Hard links: the target must be a normal archive name (same rules as member names)
  that exists in the destination as a regular file reached without symlinks; anything
  else (absolute, "..", missing, a symlink, a directory, a device node) is refused.
  The link gets no metadata of its own (it shares the target's inode).
- Symlinks: a relative target that climbs above the destination, resolved lexically
  from the link's directory (`a/b -> ../../../etc`), is refused. ABSOLUTE TARGETS ARE
  KEPT AS THEY ARE (`etc/localtime -> /usr/share/zoneinfo/UTC`,
  `lib64/ld-linux-x86-64.so.2 -> /lib/...`): a TAR image is usually a root filesystem,
  whose absolute links point inside that filesystem once it boots. They are safe while
  extracting because no symlink is ever followed here; a script run afterwards
  (postImage) must not follow them on the client either, where they point at the
  client's own files.
- Device nodes and FIFOs are created as the archive says (a root filesystem has
  /dev/console); without the privilege to do so (not root) that is a TarError.
- Ownership is the archive's numeric uid/gid (never the names: the client's /etc/passwd
  is not the image's), applied when running as root, before the mode, so setuid and
  setgid bits survive. Files get mode, extended attributes and mtime right after their
  data; directories get owner, mode, extended attributes and mtime at the end, deepest
  first, so that a read-only directory does not block its own contents. Files and
  directories are created owner-only (0600/0700) until their final mode is applied.

Not restored (skipped, counted in the Summary where the archive asked for them):
- ACLs (pax SCHILY.acl.*): counted in `acls_skipped`, never applied.
- Extended attributes (pax SCHILY.xattr.* and LIBARCHIVE.xattr.*) are applied with
  os.setxattr; those the filesystem or the kernel refuses (not supported, not
  permitted, e.g. user.* on a symlink), or on a system without os.setxattr or /proc
  (needed for symlinks and device nodes), are counted in `xattrs_skipped`.
- Access times (set to the time of extraction), user/group names, BSD file flags,
  ctime, inode numbers: ignored.
- Multi-volume continuations ('M'), old GNU long-name files ('N') and unknown member
  types are refused with a TarError rather than guessed at.

Strictness: a damaged header anywhere (bad checksum, bad number), data that ends inside
a member or without an end-of-archive marker, and a single zero block followed by more
data are TarErrors naming the tar byte offset. An error from the pieces iterator itself
(e.g. a DecodeError) propagates unchanged.
"""

import base64
import errno
import os
import stat
import struct
import time
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Tuple
from urllib.parse import unquote_to_bytes

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
COPY = 1 << 20  # file contents move in reads and writes of up to this size
SMALL = 64 << 10  # stream pieces smaller than this are gathered into COPY-sized writes
META_LIMIT = 16 << 20  # the largest pax header, long name or sparse map accepted

O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | O_CLOEXEC
O_NEWFILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | O_CLOEXEC

REGULAR = (b"0", b"\0", b"7")
EXTENSIONS = (b"x", b"X", b"g", b"L", b"K")
NODES = {b"3": stat.S_IFCHR, b"4": stat.S_IFBLK, b"6": stat.S_IFIFO}
SKIPPED_XATTR_ERRORS = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.ENOSYS)

Parts = Tuple[bytes, ...]


class TarError(Exception):
    """The archive cannot be extracted; the message names the member, tar byte and why."""


@dataclass
class Summary:
    files: int = 0  # regular files
    dirs: int = 0
    links: int = 0  # symlinks and hard links
    others: int = 0  # device nodes and FIFOs
    bytes: int = 0  # file contents written (holes of sparse files not included)
    tar_bytes: int = 0  # stream bytes read, up to and including the end-of-archive marker
    xattrs: int = 0  # extended attributes applied
    xattrs_skipped: int = 0
    acls_skipped: int = 0


@dataclass
class _Member:
    __slots__ = ("name", "parts", "offset", "type", "mode", "uid", "gid", "mtime_ns", "size",
                 "linkname", "device", "sparse", "realsize", "sparse_map_in_data", "xattrs",
                 "acls")  # directories' members are kept until the end: keep them small
    name: bytes  # as the archive says, for messages
    parts: Parts  # normalised path inside the destination
    offset: int  # tar byte of its first header (extended headers included)
    type: bytes
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    size: int  # bytes stored in the archive after the headers
    linkname: bytes
    device: Tuple[int, int]
    sparse: Optional[List[Tuple[int, int]]]  # (offset, length) of each stored extent
    realsize: int
    sparse_map_in_data: bool  # GNU sparse 1.0: the map precedes the data
    xattrs: List[Tuple[str, bytes]]
    acls: int


def extract(pieces: Iterable, dest: str) -> Summary:
    """Extract the tar stream in `pieces` (bytes-like objects) into the directory `dest`.

    Returns once the end-of-archive marker has been read, without taking another piece.
    A piece may be reused by the caller once the next one is requested: nothing of it is
    kept past that point.
    """
    tree = _Tree(dest)
    try:
        return _Extractor(_Stream(pieces), tree).run()
    finally:
        tree.close()


def _show(name: bytes) -> str:
    return name.decode("utf-8", "backslashreplace")


def _quoted(name: bytes) -> str:
    return '"' + _show(name) + '"'


class _Stream:
    """The tar stream over the caller's pieces: exact reads, and views for file data."""

    def __init__(self, pieces: Iterable) -> None:
        self._pieces: Iterator = iter(pieces)
        self._view = memoryview(b"")
        self._pos = 0
        self.offset = 0  # tar bytes consumed so far

    def take(self, n: int) -> memoryview:
        """Up to `n` bytes from the current piece (valid until the next call); empty at the end."""
        if self._pos == len(self._view):
            self._view = memoryview(b"")
            self._pos = 0
            for piece in self._pieces:
                view = memoryview(piece).cast("B")
                if len(view):
                    self._view = view
                    break
            else:
                return self._view
        end = min(self._pos + n, len(self._view))
        chunk = self._view[self._pos:end]
        self._pos = end
        self.offset += len(chunk)
        return chunk

    def read(self, n: int) -> bytes:
        """Exactly `n` bytes, copied; fewer only where the stream ends."""
        parts = []
        while n:
            chunk = self.take(n)
            if not chunk:
                break
            parts.append(bytes(chunk))
            n -= len(chunk)
        return b"".join(parts)

    def release(self) -> None:
        self._view = memoryview(b"")
        self._pos = 0


def _number(raw: bytes, what: str, offset: int) -> int:
    """A numeric header field: octal text, or GNU base-256 (high bit of the first byte)."""
    if raw[:1] and raw[0] & 0x80:
        if raw[0] & 0x40:
            return int.from_bytes(raw, "big", signed=True)
        return int.from_bytes(bytes([raw[0] & 0x7F]) + raw[1:], "big")
    text = raw.split(b"\0", 1)[0].strip(b" ")
    if text.strip(b"01234567"):
        raise TarError(f"the header at tar byte {offset} is damaged: its {what} field "
                       f"{raw!r} is not a number")
    return int(text, 8) if text else 0


def _name_field(raw: bytes) -> bytes:
    return raw.split(b"\0", 1)[0]


def _pax_int(value: bytes, key: str, offset: int) -> int:
    if not value.isdigit():
        raise TarError(f"the pax header at tar byte {offset} is damaged: {key}={value!r} "
                       f"is not a number")
    return int(value)


def _pax_time_ns(value: bytes, offset: int) -> int:
    text = value.decode("ascii", "replace")
    sign = -1 if text.startswith("-") else 1
    whole, _, frac = text.lstrip("-").partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise TarError(f"the pax header at tar byte {offset} is damaged: mtime={value!r}")
    return sign * (int(whole) * 10**9 + int((frac + "000000000")[:9]))


def _pax_records(data: bytes, offset: int) -> List[Tuple[str, bytes]]:
    """'LENGTH KEY=VALUE\\n' records; VALUE is raw bytes (UTF-8 or binary)."""
    records = []
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos, pos + 24)
        length = data[pos:space] if space > pos else b""
        end = pos + int(length) if length.isdigit() else -1
        equals = data.find(b"=", space, end)
        if end <= space or end > len(data) or data[end - 1:end] != b"\n" or equals < 0:
            raise TarError(f"the pax header at tar byte {offset} is damaged "
                           f"(bad record at its byte {pos})")
        try:
            key = data[space + 1:equals].decode("utf-8")
        except UnicodeDecodeError:
            raise TarError(f"the pax header at tar byte {offset} is damaged "
                           f"(a key is not UTF-8)") from None
        records.append((key, data[equals + 1:end - 1]))
        pos = end
    return records


def _normalise(name: bytes) -> Optional[Parts]:
    """The path components of an archive name, or None when it must be refused."""
    if not name or name.startswith(b"/") or b"\0" in name:
        return None
    parts = tuple(p for p in name.split(b"/") if p and p != b".")
    return None if b".." in parts else parts


def _why_refused(name: bytes) -> str:
    if not name:
        return "its name is empty"
    if name.startswith(b"/"):
        return "its name is absolute"
    if b"\0" in name:
        return "its name contains a NUL byte"
    return 'its name contains ".."'


def _escapes(parts: Parts, target: bytes) -> bool:
    """True if relative symlink `target` of the link at `parts` climbs above the root."""
    where = list(parts[:-1])
    for comp in target.split(b"/"):
        if comp == b"..":
            if not where:
                return True
            where.pop()
        elif comp and comp != b".":
            where.append(comp)
    return False


class _Tree:
    """The destination directory, reached only by dir_fd-relative, no-follow opens."""

    def __init__(self, dest: str) -> None:
        self.dest = dest
        advice = ("a TAR image extracts into an existing directory: create or mount it "
                  "first (the preImage script typically mounts a filesystem there)")
        try:
            self.root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | O_CLOEXEC)
        except FileNotFoundError:
            raise TarError(f"destination directory {dest} does not exist; {advice}") from None
        except NotADirectoryError:
            raise TarError(f"destination {dest} is not a directory; {advice}") from None
        except OSError as e:
            raise TarError(f"cannot open destination directory {dest}: {e.strerror}") from None
        self._key: Optional[Parts] = None  # the last parent directory opened, kept open
        self._fd: Optional[int] = None

    def close(self) -> None:
        self.forget()
        os.close(self.root)

    def forget(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._key = self._fd = None

    def parent(self, member: _Member, parts: Parts, create: bool = True) -> int:
        """An fd (owned by the tree) of the directory that holds `parts[-1]`.

        Missing directories are created and non-directories replaced when `create`;
        otherwise (a hard link's target) they are refused. A symlink is always refused.
        """
        key = parts[:-1]
        if not key:
            return self.root
        if key == self._key:
            return self._fd
        fd = self.root
        try:
            for i, comp in enumerate(key):
                next_fd = self._step(fd, comp, key[:i + 1], member, create)
                if fd != self.root:
                    os.close(fd)
                fd = next_fd
        except BaseException:
            if fd != self.root:
                os.close(fd)
            raise
        self.forget()
        self._key, self._fd = key, fd
        return fd

    def _step(self, fd: int, comp: bytes, path: Parts, member: _Member, create: bool) -> int:
        shown = _show(b"/".join(path))
        try:
            try:
                return os.open(comp, O_DIR, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise self._missing(member, shown) from None
                os.mkdir(comp, 0o755, dir_fd=fd)
                return os.open(comp, O_DIR, dir_fd=fd)
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
            if stat.S_ISLNK(os.lstat(comp, dir_fd=fd).st_mode):
                raise TarError(f"{_quoted(member.name)} (tar byte {member.offset}): {shown} is "
                               f"a symbolic link in the destination; refusing to write "
                               f"through it")
            if not create:
                raise self._missing(member, shown)
            os.unlink(comp, dir_fd=fd)
            os.mkdir(comp, 0o755, dir_fd=fd)
            return os.open(comp, O_DIR, dir_fd=fd)
        except OSError as e:
            raise TarError(f"creating directory {shown} for {_quoted(member.name)} (tar byte "
                           f"{member.offset}) failed: {e.strerror}") from None

    def _missing(self, member: _Member, shown: str) -> TarError:
        return TarError(f"hard link {_quoted(member.name)} (tar byte {member.offset}): its "
                        f"target {_quoted(member.linkname)} has not been extracted ({shown} "
                        f"is missing or not a directory)")

    def open_dir(self, parts: Parts) -> Optional[int]:
        """A new fd of an existing directory (no symlinks on the way), or None."""
        fd = os.dup(self.root)
        for comp in parts:
            try:
                next_fd = os.open(comp, O_DIR, dir_fd=fd)
            except OSError:
                os.close(fd)
                return None
            os.close(fd)
            fd = next_fd
        return fd

    def clear(self, fd: int, comp: bytes, keep_dir: bool, member: _Member) -> bool:
        """Remove what exists at `comp` (never following it); True if a directory is kept."""
        try:
            mode = os.lstat(comp, dir_fd=fd).st_mode
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(mode):
            if keep_dir:
                return True
            self.forget()  # the cached parent may be (under) this directory
            try:
                os.rmdir(comp, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    raise TarError(f"{_quoted(member.name)} (tar byte {member.offset}): the "
                                   f"destination has a non-empty directory there") from None
                raise
        else:
            os.unlink(comp, dir_fd=fd)
        return False


class _Extractor:
    def __init__(self, stream: _Stream, tree: _Tree) -> None:
        self.stream = stream
        self.tree = tree
        self.summary = Summary()
        self.as_root = os.geteuid() == 0
        self.proc = os.path.isdir("/proc/self/fd")  # names symlinks and nodes for setxattr
        self.now_ns = time.time_ns()
        self.dirs: Dict[Parts, _Member] = {}
        self.buffer = bytearray(COPY)

    def run(self) -> Summary:
        try:
            self._members()
            self._finish_dirs()
        finally:
            self.stream.release()
        return self.summary

    # The stream.

    def _members(self) -> None:
        stream = self.stream
        global_pax: Dict[str, bytes] = {}
        local: List[Tuple[str, bytes]] = []
        longname: Optional[bytes] = None
        longlink: Optional[bytes] = None
        first: Optional[int] = None  # tar byte of the pending extended headers
        while True:
            offset = stream.offset
            block = stream.read(BLOCK)
            if len(block) < BLOCK:
                if offset == 0 and not block:
                    raise TarError("the tar stream is empty: not a tar archive")
                raise TarError(f"the tar stream ends at byte {stream.offset}"
                               + (" inside a header" if block else
                                  " without an end-of-archive marker")
                               + ": the archive is truncated")
            if block == ZERO_BLOCK:
                if first is not None:
                    raise TarError(f"the extended header at tar byte {first} is followed by "
                                   f"the end of the archive, not by a member")
                rest = stream.read(BLOCK)
                if rest.strip(b"\0"):
                    raise TarError(f"the archive has a single zero block at tar byte {offset} "
                                   f"followed by more data: it is damaged")
                self.summary.tar_bytes = stream.offset
                return
            kind = self._check(block, offset)
            size = _number(block[124:136], "size", offset)
            if size < 0:
                raise TarError(f"the header at tar byte {offset} is damaged: negative size")
            if kind in EXTENSIONS:
                data = self._meta(size, offset)
                if kind == b"g":
                    for key, value in _pax_records(data, offset):
                        if value:
                            global_pax[key] = value
                        else:
                            global_pax.pop(key, None)
                    continue
                first = offset if first is None else first
                if kind in (b"x", b"X"):
                    local.extend(_pax_records(data, offset))
                elif kind == b"L":
                    longname = _name_field(data)
                else:
                    longlink = _name_field(data)
                continue
            member = self._member(block, kind, size, offset if first is None else first,
                                  global_pax, local, longname,
                                  longlink)
            local, longname, longlink, first = [], None, None, None
            self._extract(member)

    def _check(self, block: bytes, offset: int) -> bytes:
        """The member type of a header block whose checksum is right."""
        stored = block[148:156].split(b"\0", 1)[0].strip(b" ")
        unsigned = sum(block) - sum(block[148:156]) + 8 * 32
        signed = sum(struct.unpack("148b8x356b", block)) + 8 * 32
        if stored.strip(b"01234567") or not stored or int(stored, 8) not in (unsigned, signed):
            if offset == 0:
                raise TarError("not a tar archive: the stream does not start with a tar header "
                               "(checksum mismatch at tar byte 0)")
            raise TarError(f"the header at tar byte {offset} is damaged (checksum mismatch): "
                           f"the archive is corrupt or not a tar archive")
        kind = block[156:157]
        if kind in (b"M", b"N"):
            raise TarError(f"the member at tar byte {offset} has type {kind.decode()!r} "
                           f"(GNU multi-volume or old long-name data), which is not supported")
        return kind

    def _meta(self, size: int, offset: int) -> bytes:
        """The data of an extended header, read whole (it is small)."""
        if size > META_LIMIT:
            raise TarError(f"the extended header at tar byte {offset} claims {size} bytes, "
                           f"more than the {META_LIMIT} accepted")
        data = self.stream.read(size)
        if len(data) < size:
            self._truncated(f"the extended header at tar byte {offset}")
        self._skip((-size) % BLOCK, f"the extended header at tar byte {offset}")
        return data

    def _truncated(self, where: str) -> None:
        raise TarError(f"the tar stream ends at byte {self.stream.offset}, inside {where}: "
                       f"the archive is truncated")

    def _skip(self, n: int, where: str) -> None:
        while n:
            chunk = self.stream.take(min(n, COPY))
            if not chunk:
                self._truncated(where)
            n -= len(chunk)

    def _member(self, block: bytes, kind: bytes, size: int, first: int,
                global_pax: Dict[str, bytes], local: List[Tuple[str, bytes]],
                longname: Optional[bytes], longlink: Optional[bytes]) -> _Member:
        offset = first
        pax = dict(global_pax)
        for key, value in local:
            if value:
                pax[key] = value
            else:
                pax.pop(key, None)
        name = _name_field(block[0:100])
        if block[257:263] == b"ustar\0" and block[345] and kind not in (b"S", b"D"):
            name = _name_field(block[345:500]) + b"/" + name
        name = pax.get("GNU.sparse.name", pax.get("path", longname if longname else name))
        if kind == b"\0" and name.endswith(b"/"):
            kind = b"5"
        linkname = pax.get("linkpath", longlink if longlink else _name_field(block[157:257]))
        if "size" in pax:
            size = _pax_int(pax["size"], "size", offset)
        if size < 0:
            raise TarError(f"the header at tar byte {offset} is damaged: negative size")

        def number(start: int, end: int, what: str) -> int:
            return _number(block[start:end], what, offset)

        uid = _pax_int(pax["uid"], "uid", offset) if "uid" in pax else number(108, 116, "uid")
        gid = _pax_int(pax["gid"], "gid", offset) if "gid" in pax else number(116, 124, "gid")
        if "mtime" in pax:
            mtime_ns = _pax_time_ns(pax["mtime"], offset)
        else:
            mtime_ns = number(136, 148, "mtime") * 10**9
        device = (0, 0)
        if kind in (b"3", b"4"):
            major = pax.get("SCHILY.devmajor")
            minor = pax.get("SCHILY.devminor")
            device = (
                _pax_int(major, "devmajor", offset) if major else number(329, 337, "devmajor"),
                _pax_int(minor, "devminor", offset) if minor else number(337, 345, "devminor"),
            )
        xattrs: List[Tuple[str, bytes]] = []
        acls = 0
        for key, value in pax.items():
            if key.startswith("SCHILY.xattr."):
                xattrs.append((key[len("SCHILY.xattr."):], value))
            elif key.startswith("LIBARCHIVE.xattr."):
                xname = unquote_to_bytes(key[len("LIBARCHIVE.xattr."):]).decode("utf-8",
                                                                              "surrogateescape")
                if all(xname != seen for seen, _ in xattrs):
                    try:
                        xattrs.append((xname, base64.b64decode(value + b"=" * (-len(value) % 4))))
                    except ValueError:
                        raise TarError(f"the pax header at tar byte {offset} is damaged: "
                                       f"{key} is not base64") from None
            elif key.startswith("SCHILY.acl."):
                acls += 1
        for what, value, low, high in (("uid", uid, 0, 1 << 32), ("gid", gid, 0, 1 << 32),
                                       ("mtime", mtime_ns, -(1 << 63), 1 << 63),
                                       ("devmajor", device[0], 0, 1 << 32),
                                       ("devminor", device[1], 0, 1 << 32)):
            if not low <= value < high:  # what the system calls take
                raise TarError(f"the header at tar byte {offset} is damaged: {what} "
                               f"{value} is out of range")
        member = _Member(
            name=name, parts=(), offset=offset, type=kind,
            mode=number(100, 108, "mode") & 0o7777, uid=uid, gid=gid, mtime_ns=mtime_ns,
            size=size, linkname=linkname, device=device, sparse=None, realsize=size,
            sparse_map_in_data=False, xattrs=xattrs, acls=acls,
        )
        if kind == b"S":
            self._old_gnu_sparse(member, block)
        elif kind in REGULAR:
            self._pax_sparse(member, pax, local)
        return member

    def _old_gnu_sparse(self, member: _Member, block: bytes) -> None:
        """GNU sparse 'S': up to 4 extents in the header, 21 per extension block after it."""
        member.type = b"0"
        member.sparse = []
        member.realsize = _number(block[483:495], "realsize", member.offset)
        self._sparse_entries(member, block[386:482], member.offset)
        extended = block[482]
        read = 0
        while extended:
            offset = self.stream.offset
            ext = self.stream.read(BLOCK)
            read += BLOCK
            if len(ext) < BLOCK:
                self._truncated(f"the sparse map of {_quoted(member.name)}")
            if read > META_LIMIT:
                raise TarError(f"{_quoted(member.name)} (tar byte {member.offset}): its sparse "
                               f"map is larger than {META_LIMIT} bytes")
            self._sparse_entries(member, ext[:504], offset)
            extended = ext[504]

    def _sparse_entries(self, member: _Member, area: bytes, offset: int) -> None:
        for pos in range(0, len(area), 24):
            if not area[pos]:
                break
            member.sparse.append((_number(area[pos:pos + 12], "sparse offset", offset),
                                  _number(area[pos + 12:pos + 24], "sparse size", offset)))

    def _pax_sparse(self, member: _Member, pax: Dict[str, bytes],
                    local: List[Tuple[str, bytes]]) -> None:
        """GNU sparse files in pax format, versions 0.0, 0.1 and 1.0."""
        offset = member.offset
        if pax.get("GNU.sparse.major") == b"1" and pax.get("GNU.sparse.minor") == b"0":
            member.realsize = _pax_int(pax.get("GNU.sparse.realsize", b""), "realsize", offset)
            member.sparse = []
            member.sparse_map_in_data = True
        elif "GNU.sparse.map" in pax:
            member.realsize = _pax_int(pax.get("GNU.sparse.size", b""), "GNU.sparse.size",
                                       offset)
            fields = pax["GNU.sparse.map"].split(b",") if pax["GNU.sparse.map"] else []
            numbers = [_pax_int(f, "GNU.sparse.map", offset) for f in fields]
            if len(numbers) % 2:
                raise TarError(f"the pax header at tar byte {offset} is damaged: "
                               f"GNU.sparse.map has an odd number of fields")
            member.sparse = list(zip(numbers[0::2], numbers[1::2]))
        elif "GNU.sparse.size" in pax:
            member.realsize = _pax_int(pax["GNU.sparse.size"], "GNU.sparse.size", offset)
            offsets = [_pax_int(v, k, offset) for k, v in local if k == "GNU.sparse.offset"]
            lengths = [_pax_int(v, k, offset) for k, v in local if k == "GNU.sparse.numbytes"]
            if len(offsets) != len(lengths):
                raise TarError(f"the pax header at tar byte {offset} is damaged: "
                               f"GNU.sparse.offset and numbytes do not pair up")
            member.sparse = list(zip(offsets, lengths))

    def _sparse_map_from_data(self, member: _Member) -> None:
        """GNU sparse 1.0: decimal numbers, one a line, in whole blocks before the data."""
        numbers: List[int] = []
        partial = b""
        read = 0
        while not numbers or len(numbers) < 1 + 2 * numbers[0]:
            if read + BLOCK > min(META_LIMIT, member.size):
                raise TarError(f"{_quoted(member.name)} (tar byte {member.offset}): its sparse "
                               f"map is damaged or too large")
            block = self.stream.read(BLOCK)
            read += BLOCK
            if len(block) < BLOCK:
                self._truncated(f"the sparse map of {_quoted(member.name)}")
            lines = (partial + block).split(b"\n")
            partial = lines.pop()
            numbers.extend(_pax_int(v, "sparse map", member.offset) for v in lines)
        member.sparse = list(zip(numbers[1::2], numbers[2::2]))
        member.size -= read

    # The filesystem.

    def _error(self, action: str, member: _Member, e: OSError) -> TarError:
        return TarError(f"{action} {_show(member.name)} (tar byte {member.offset}) failed: "
                        f"{e.strerror or e}")

    def _extract(self, member: _Member) -> None:
        kind = member.type
        if kind == b"V":  # a GNU volume label names the archive, not a file
            self._skip(member.size + (-member.size) % BLOCK, "a volume label")
            return
        parts = _normalise(member.name)
        if parts is None or (not parts and kind not in (b"5", b"D")):
            raise TarError(f"{_quoted(member.name)} (tar byte {member.offset}): refused, "
                           f"{_why_refused(member.name) if parts is None else 'its name is empty'}")
        member.parts = parts
        if kind not in (b"5", b"D"):
            self.dirs.pop(parts, None)  # a directory this replaces gets no metadata at the end
        if kind in REGULAR or kind == b"S":
            self._file(member)
            return
        if kind in (b"5", b"D"):
            self._dir(member)
        elif kind == b"2":
            self._symlink(member)
        elif kind == b"1":
            self._hardlink(member)
        elif kind in NODES:
            self._node(member)
        else:
            raise TarError(f"{_quoted(member.name)} (tar byte {member.offset}) has type "
                           f"{_show(kind)!r}, which this extractor does not know; refusing "
                           f"to guess")
        if kind != b"5":  # GNU tar skips data of every type but directories
            self._skip(member.size + (-member.size) % BLOCK,
                       f"the data of {_quoted(member.name)}")

    def _file(self, member: _Member) -> None:
        if member.sparse_map_in_data:
            self._sparse_map_from_data(member)
        extents = member.sparse
        if extents is not None:
            stored = sum(length for _, length in extents)
            if (stored != member.size or not 0 <= member.realsize < 1 << 63 or
                    any(o < 0 or n < 0 or o + n > member.realsize for o, n in extents)):
                raise TarError(f"{_quoted(member.name)} (tar byte {member.offset}): its sparse "
                               f"map does not match its data ({stored} mapped bytes, "
                               f"{member.size} stored, {member.realsize} in the file)")
        parent = self.tree.parent(member, member.parts)
        comp = member.parts[-1]
        try:
            self.tree.clear(parent, comp, False, member)
            fd = os.open(comp, O_NEWFILE, 0o600, dir_fd=parent)
        except OSError as e:
            raise self._error("creating", member, e) from None
        try:
            if extents is None:
                self._copy(fd, member.size, member)
            else:
                for start, length in extents:
                    try:
                        os.lseek(fd, start, os.SEEK_SET)
                    except OSError as e:
                        raise self._error("writing", member, e) from None
                    self._copy(fd, length, member)
            if extents is not None:
                try:
                    os.ftruncate(fd, member.realsize)
                except OSError as e:
                    raise self._error("setting owner and mode of", member, e) from None
            self._finish_inode(fd, member, "setting owner and mode of")
        finally:
            os.close(fd)
        self._skip((-member.size) % BLOCK, f"the data of {_quoted(member.name)}")
        self.summary.files += 1

    def _copy(self, fd: int, n: int, member: _Member) -> None:
        """`n` bytes of the stream into `fd`: big pieces directly, small ones gathered."""
        buffer = self.buffer
        filled = 0
        while n:
            chunk = self.stream.take(min(n, COPY))
            if not chunk:
                self._write(fd, memoryview(buffer)[:filled], member)
                self._truncated(f"the data of {_quoted(member.name)} (tar byte "
                                f"{member.offset}), {n} bytes short")
            n -= len(chunk)
            if len(chunk) >= SMALL and not filled:
                self._write(fd, chunk, member)
                continue
            if filled + len(chunk) > len(buffer):
                self._write(fd, memoryview(buffer)[:filled], member)
                filled = 0
            buffer[filled:filled + len(chunk)] = chunk
            filled += len(chunk)
        self._write(fd, memoryview(buffer)[:filled], member)

    def _write(self, fd: int, view: memoryview, member: _Member) -> None:
        self.summary.bytes += len(view)  # counted as requested: a failed write raises
        while view:
            try:
                n = os.write(fd, view)
            except OSError as e:
                raise self._error("writing", member, e) from None
            if n == 0:
                raise self._error("writing", member, OSError(errno.ENOSPC, "No space left "
                                                                           "on device"))
            view = view[n:]

    def _dir(self, member: _Member) -> None:
        if member.parts:
            parent = self.tree.parent(member, member.parts)
            comp = member.parts[-1]
            try:
                if not self.tree.clear(parent, comp, True, member):
                    os.mkdir(comp, 0o700, dir_fd=parent)
            except OSError as e:
                raise self._error("creating directory", member, e) from None
        self.dirs[member.parts] = member
        self.summary.dirs += 1

    def _finish_dirs(self) -> None:
        """Owner, mode, xattrs and mtime of every directory member, deepest first."""
        for parts in sorted(self.dirs, key=len, reverse=True):
            member = self.dirs[parts]
            fd = self.tree.open_dir(parts)
            if fd is None:  # replaced by a later member
                continue
            try:
                self._finish_inode(fd, member, "setting owner and mode of directory")
            finally:
                os.close(fd)

    def _finish_inode(self, fd: int, member: _Member, what: str) -> None:
        """Owner before mode (so setuid survives), then extended attributes, then mtime:
        the last thing that could change it."""
        try:
            if self.as_root:
                os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, member.mode)
        except OSError as e:
            raise self._error(what, member, e) from None
        self._xattrs(fd, member)
        try:
            os.utime(fd, ns=(self.now_ns, member.mtime_ns))
        except OSError as e:
            raise self._error("setting the mtime of", member, e) from None

    def _symlink(self, member: _Member) -> None:
        target = member.linkname
        if not target or b"\0" in target:
            raise TarError(f"symlink {_quoted(member.name)} (tar byte {member.offset}): its "
                           f"target is empty or contains a NUL byte; refused")
        if not target.startswith(b"/") and _escapes(member.parts, target):
            raise TarError(f"symlink {_quoted(member.name)} -> {_quoted(target)} (tar byte "
                           f"{member.offset}) points outside the destination; refused")
        parent = self.tree.parent(member, member.parts)
        comp = member.parts[-1]
        try:
            self.tree.clear(parent, comp, False, member)
            os.symlink(target, comp, dir_fd=parent)
        except OSError as e:
            raise self._error("creating symlink", member, e) from None
        self._metadata(parent, comp, member, chmod=False)
        self.summary.links += 1

    def _hardlink(self, member: _Member) -> None:
        target = _normalise(member.linkname)
        refused = f"hard link {_quoted(member.name)} (tar byte {member.offset})"
        if not target:
            why = _why_refused(member.linkname) if target is None else "it is empty"
            raise TarError(f"{refused}: its target {_quoted(member.linkname)} is refused, {why}")
        source = os.dup(self.tree.parent(member, target, create=False))
        try:
            try:
                mode = os.lstat(target[-1], dir_fd=source).st_mode
            except FileNotFoundError:
                mode = 0
            if not stat.S_ISREG(mode):
                kind = "does not exist" if not mode else (
                    "is a symbolic link" if stat.S_ISLNK(mode) else "is not a regular file")
                raise TarError(f"{refused}: its target {_quoted(member.linkname)} {kind} in "
                               f"the destination; only links to extracted regular files are "
                               f"made")
            if target == member.parts:
                self.summary.links += 1
                return
            parent = self.tree.parent(member, member.parts)
            comp = member.parts[-1]
            try:
                self.tree.clear(parent, comp, False, member)
                os.link(target[-1], comp, src_dir_fd=source, dst_dir_fd=parent,
                        follow_symlinks=False)
            except OSError as e:
                raise self._error("creating hard link", member, e) from None
        finally:
            os.close(source)
        self.summary.links += 1

    def _node(self, member: _Member) -> None:
        parent = self.tree.parent(member, member.parts)
        comp = member.parts[-1]
        try:
            self.tree.clear(parent, comp, False, member)
            os.mknod(comp, 0o600 | NODES[member.type], os.makedev(*member.device),
                     dir_fd=parent)
        except OSError as e:
            need = " (device nodes need root)" if e.errno == errno.EPERM else ""
            raise TarError(f"creating {'FIFO' if member.type == b'6' else 'device node'} "
                           f"{_show(member.name)} (tar byte {member.offset}) failed: "
                           f"{e.strerror}{need}") from None
        self._metadata(parent, comp, member, chmod=True)
        self.summary.others += 1

    def _metadata(self, parent: int, comp: bytes, member: _Member, chmod: bool) -> None:
        """Owner, mode, xattrs and mtime of a just created symlink, node or FIFO."""
        try:
            if self.as_root:
                os.chown(comp, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
            if chmod:  # a node we just created, not a symlink: following is harmless
                os.chmod(comp, member.mode, dir_fd=parent)
        except OSError as e:
            raise self._error("setting owner and mode of", member, e) from None
        proc = b"/proc/self/fd/%d/%s" % (parent, comp) if self.proc else None
        self._xattrs(proc, member)
        try:
            os.utime(comp, ns=(self.now_ns, member.mtime_ns), dir_fd=parent,
                     follow_symlinks=False)
        except OSError as e:
            raise self._error("setting the mtime of", member, e) from None

    def _xattrs(self, where, member: _Member) -> None:
        """Extended attributes on an fd, or on a /proc path (not followed); None: skip."""
        self.summary.acls_skipped += member.acls
        setxattr = getattr(os, "setxattr", None)
        for name, value in member.xattrs:
            if setxattr is None or where is None:
                self.summary.xattrs_skipped += 1
                continue
            try:
                if isinstance(where, int):
                    setxattr(where, name, value)
                else:
                    setxattr(where, name, value, follow_symlinks=False)
            except OSError as e:
                if e.errno not in SKIPPED_XATTR_ERRORS:
                    raise self._error(f"setting extended attribute {name} of", member,
                                      e) from None
                self.summary.xattrs_skipped += 1
            else:
                self.summary.xattrs += 1
