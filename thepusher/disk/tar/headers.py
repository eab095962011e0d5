"""Header blocks and the pax records before them, read into a `Member`.

Each field is checked as it is read: a damaged header is a TarError naming its tar byte,
never a guess, and a number the system calls cannot take is refused here, before
anything of the member is created, rather than by an OSError halfway through it. What a
header leaves open (a long name, pax records) comes from the extended headers
extractor.py collected before it; pax records win over the header's own fields, as tar
writes them exactly when those fields cannot hold the value.
"""

import base64
import struct
from typing import Dict, Iterable, List, Optional, Tuple
from urllib.parse import unquote_to_bytes

from thepusher.disk.tar.model import Member, TarError

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
META_LIMIT = 16 << 20  # the largest pax header, long name or sparse map accepted

REGULAR = (b"0", b"\0", b"7")
EXTENSIONS = (b"x", b"X", b"g", b"L", b"K")


def number(raw: bytes, what: str, offset: int) -> int:
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


def stored_size(block: bytes, offset: int) -> int:
    """The bytes stored after this header, before any pax record says otherwise."""
    stored = number(block[124:136], "size", offset)
    if stored < 0:
        raise TarError(f"the header at tar byte {offset} is damaged: negative size")
    return stored


def name_field(raw: bytes) -> bytes:
    return raw.split(b"\0", 1)[0]


def pax_int(value: bytes, key: str, offset: int) -> int:
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


def pax_records(data: bytes, offset: int) -> List[Tuple[str, bytes]]:
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


def update(pax: Dict[str, bytes], records: Iterable[Tuple[str, bytes]]) -> None:
    """Apply records in order: a later one wins, an empty value removes the key."""
    for key, value in records:
        if value:
            pax[key] = value
        else:
            pax.pop(key, None)


def member_type(block: bytes, offset: int) -> bytes:
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


def member(block: bytes, kind: bytes, size: int, offset: int, pax: Dict[str, bytes],
           longname: Optional[bytes], longlink: Optional[bytes]) -> Member:
    """The member whose headers start at tar byte `offset`; its sparse map is not read yet."""
    name = name_field(block[0:100])
    if block[257:263] == b"ustar\0" and block[345] and kind not in (b"S", b"D"):
        name = name_field(block[345:500]) + b"/" + name
    name = pax.get("GNU.sparse.name", pax.get("path", longname if longname else name))
    if kind == b"\0" and name.endswith(b"/"):
        kind = b"5"
    linkname = pax.get("linkpath", longlink if longlink else name_field(block[157:257]))
    if "size" in pax:
        size = pax_int(pax["size"], "size", offset)
    if size < 0:
        raise TarError(f"the header at tar byte {offset} is damaged: negative size")

    def field(start: int, end: int, what: str) -> int:
        return number(block[start:end], what, offset)

    uid = pax_int(pax["uid"], "uid", offset) if "uid" in pax else field(108, 116, "uid")
    gid = pax_int(pax["gid"], "gid", offset) if "gid" in pax else field(116, 124, "gid")
    if "mtime" in pax:
        mtime_ns = _pax_time_ns(pax["mtime"], offset)
    else:
        mtime_ns = field(136, 148, "mtime") * 10**9
    device = (0, 0)
    if kind in (b"3", b"4"):
        major = pax.get("SCHILY.devmajor")
        minor = pax.get("SCHILY.devminor")
        device = (
            pax_int(major, "devmajor", offset) if major else field(329, 337, "devmajor"),
            pax_int(minor, "devminor", offset) if minor else field(337, 345, "devminor"),
        )
    xattrs, acls = _xattrs(pax, offset)
    for what, value, low, high in (("uid", uid, 0, 1 << 32), ("gid", gid, 0, 1 << 32),
                                   ("mtime", mtime_ns, -(1 << 63), 1 << 63),
                                   ("devmajor", device[0], 0, 1 << 32),
                                   ("devminor", device[1], 0, 1 << 32)):
        if not low <= value < high:  # what the system calls take
            raise TarError(f"the header at tar byte {offset} is damaged: {what} "
                           f"{value} is out of range")
    return Member(
        name=name, parts=(), offset=offset, type=kind,
        mode=field(100, 108, "mode") & 0o7777, uid=uid, gid=gid, mtime_ns=mtime_ns,
        size=size, linkname=linkname, device=device, sparse=None, realsize=size,
        sparse_map_in_data=False, xattrs=xattrs, acls=acls,
    )


def _xattrs(pax: Dict[str, bytes], offset: int) -> Tuple[List[Tuple[str, bytes]], int]:
    """The extended attributes to apply, in star's and libarchive's spellings, and how
    many ACLs the archive asked for: those are counted, never applied."""
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
    return xattrs, acls
