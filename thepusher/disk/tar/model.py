"""What the parts of the extractor hand each other: the member its headers describe, the
summary they fill in, and the one error they raise.

Every message names the member as the archive spells it and the tar byte where its
headers start, so that a damaged or hostile archive can be found with `dd` and a hex
dump; `show`, `quoted` and `failed` keep those messages alike across the modules.
"""

from dataclasses import dataclass
from typing import List, Optional, Tuple

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
class Member:
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


def show(name: bytes) -> str:
    return name.decode("utf-8", "backslashreplace")


def quoted(name: bytes) -> str:
    return '"' + show(name) + '"'


def failed(action: str, member: Member, e: OSError) -> TarError:
    return TarError(f"{action} {show(member.name)} (tar byte {member.offset}) failed: "
                    f"{e.strerror or e}")
