"""newc ("070701") cpio archives, the format the Linux kernel unpacks as an initramfs.

Written here so that `create-nbi` needs neither root nor a cpio binary: ownership and
modes are whatever we say, not whatever the build machine's files happen to have.
The reader exists so tests can check an archive's exact contents.
"""

import os
import stat
from dataclasses import dataclass
from typing import BinaryIO, List, Optional

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
HEADER_SIZE = 110
COPY_SIZE = 1 << 20


class CpioError(ValueError):
    """A malformed archive (reader) or an impossible entry (writer)."""


@dataclass
class Entry:
    name: str
    mode: int  # full st_mode: file type bits and permissions
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    data: bytes = b""
    rdevmajor: int = 0
    rdevminor: int = 0

    @property
    def perm(self) -> int:
        return stat.S_IMODE(self.mode)

    @property
    def kind(self) -> str:
        return {stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "symlink",
                stat.S_IFCHR: "char", stat.S_IFBLK: "block"}.get(stat.S_IFMT(self.mode), "other")


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _check_name(path: str) -> str:
    name = path.strip("/")
    if not name or any(part in ("", ".", "..") for part in name.split("/")):
        raise CpioError(f"bad archive path {path!r}: must be relative, without '.' or '..'")
    return name


class Writer:
    """Appends entries to a binary stream; `close()` writes the trailer.

    Every entry gets its own inode number and nlink 1 (no hard links), which is all
    the kernel's unpacker needs. mtime defaults to 0 so that the same inputs give a
    byte-identical archive.
    """

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self._ino = 0
        self._names: set = set()

    def _header(self, name: str, mode: int, size: int, uid: int, gid: int, mtime: int,
                rdevmajor: int = 0, rdevminor: int = 0) -> None:
        name = _check_name(name) if name != TRAILER else name
        if name in self._names:
            raise CpioError(f"{name} is already in the archive")
        self._names.add(name)
        self._ino += 1
        encoded = name.encode() + b"\0"
        fields = (self._ino, mode, uid, gid, 1, mtime, size, 0, 0, rdevmajor, rdevminor,
                  len(encoded), 0)
        head = MAGIC + b"".join(b"%08X" % f for f in fields)
        self.out.write(head + encoded + _pad(HEADER_SIZE + len(encoded)))

    def directory(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0,
                  mtime: int = 0) -> None:
        self._header(path, stat.S_IFDIR | mode, 0, uid, gid, mtime)

    def file(self, path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0,
             mtime: int = 0) -> None:
        self._header(path, stat.S_IFREG | mode, len(data), uid, gid, mtime)
        self.out.write(data + _pad(len(data)))

    def file_from(self, path: str, source: str, mode: Optional[int] = None, uid: int = 0,
                  gid: int = 0, mtime: int = 0) -> None:
        """A host file, streamed; its permission bits unless `mode` is given."""
        with open(source, "rb") as f:
            st = os.fstat(f.fileno())
            perm = stat.S_IMODE(st.st_mode) if mode is None else mode
            self._header(path, stat.S_IFREG | perm, st.st_size, uid, gid, mtime)
            left = st.st_size
            while left:
                chunk = f.read(min(COPY_SIZE, left))
                if not chunk:
                    raise CpioError(f"{source} shrank while being archived")
                self.out.write(chunk)
                left -= len(chunk)
        self.out.write(_pad(st.st_size))

    def symlink(self, path: str, target: str, uid: int = 0, gid: int = 0, mtime: int = 0) -> None:
        data = target.encode()
        self._header(path, stat.S_IFLNK | 0o777, len(data), uid, gid, mtime)
        self.out.write(data + _pad(len(data)))

    def device(self, path: str, mode: int, major: int, minor: int, char: bool = True,
               uid: int = 0, gid: int = 0) -> None:
        kind = stat.S_IFCHR if char else stat.S_IFBLK
        self._header(path, kind | mode, 0, uid, gid, 0, major, minor)

    def close(self) -> None:
        self._header(TRAILER, 0, 0, 0, 0, 0)


def read(data: bytes) -> List[Entry]:
    """Every entry of one uncompressed newc archive, up to its trailer."""
    entries = []
    pos = 0
    while True:
        head = data[pos:pos + HEADER_SIZE]
        if len(head) < HEADER_SIZE:
            raise CpioError(f"archive ends at byte {pos} without a trailer")
        if head[:6] != MAGIC:
            raise CpioError(f"byte {pos}: not a newc header (magic {head[:6]!r})")
        try:
            f = [int(head[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        except ValueError:
            raise CpioError(f"byte {pos}: header fields are not hex") from None
        mode, uid, gid, mtime, size, rmaj, rmin, namesize = (
            f[1], f[2], f[3], f[5], f[6], f[9], f[10], f[11])
        name_start = pos + HEADER_SIZE
        name = data[name_start:name_start + namesize - 1].decode()
        pos = name_start + namesize
        pos += -pos % 4
        if name == TRAILER:
            return entries
        body = data[pos:pos + size]
        if len(body) < size:
            raise CpioError(f"byte {pos}: {name}: archive ends inside its data")
        pos += size
        pos += -pos % 4
        entries.append(Entry(name, mode, uid, gid, mtime, body, rmaj, rmin))
