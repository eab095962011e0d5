"""GNU sparse files: the three places GNU tar keeps the map of a file's stored extents.

Old GNU 'S' members carry it in their header and in extension blocks after it, pax
versions 0.0 and 0.1 in the pax records, version 1.0 in blocks ahead of the data. Each
ends up as (offset, length) pairs on the member, which create.py checks against the
data before it writes anything; a map is read in blocks up to META_LIMIT, so a hostile
one cannot make the extractor hold more than that.
"""

from typing import Dict, List, Tuple

from thepusher.disk.tar.headers import BLOCK, META_LIMIT, number, pax_int
from thepusher.disk.tar.model import Member, TarError, quoted
from thepusher.disk.tar.stream import Stream


def read_old_gnu(member: Member, block: bytes, stream: Stream) -> None:
    """GNU sparse 'S': up to 4 extents in the header, 21 per extension block after it."""
    member.type = b"0"
    member.sparse = []
    member.realsize = number(block[483:495], "realsize", member.offset)
    _entries(member, block[386:482], member.offset)
    extended = block[482]
    read = 0
    while extended:
        offset = stream.offset
        ext = stream.read(BLOCK)
        read += BLOCK
        if len(ext) < BLOCK:
            raise stream.truncated(f"the sparse map of {quoted(member.name)}")
        if read > META_LIMIT:
            raise TarError(f"{quoted(member.name)} (tar byte {member.offset}): its sparse "
                           f"map is larger than {META_LIMIT} bytes")
        _entries(member, ext[:504], offset)
        extended = ext[504]


def _entries(member: Member, area: bytes, offset: int) -> None:
    for pos in range(0, len(area), 24):
        if not area[pos]:
            break
        member.sparse.append((number(area[pos:pos + 12], "sparse offset", offset),
                              number(area[pos + 12:pos + 24], "sparse size", offset)))


def from_pax(member: Member, pax: Dict[str, bytes], local: List[Tuple[str, bytes]]) -> None:
    """GNU sparse files in pax format, versions 0.0, 0.1 and 1.0 (whose map is in the data:
    only marked here, read by read_map_from_data)."""
    offset = member.offset
    if pax.get("GNU.sparse.major") == b"1" and pax.get("GNU.sparse.minor") == b"0":
        member.realsize = pax_int(pax.get("GNU.sparse.realsize", b""), "realsize", offset)
        member.sparse = []
        member.sparse_map_in_data = True
    elif "GNU.sparse.map" in pax:
        member.realsize = pax_int(pax.get("GNU.sparse.size", b""), "GNU.sparse.size",
                                  offset)
        fields = pax["GNU.sparse.map"].split(b",") if pax["GNU.sparse.map"] else []
        numbers = [pax_int(f, "GNU.sparse.map", offset) for f in fields]
        if len(numbers) % 2:
            raise TarError(f"the pax header at tar byte {offset} is damaged: "
                           f"GNU.sparse.map has an odd number of fields")
        member.sparse = list(zip(numbers[0::2], numbers[1::2]))
    elif "GNU.sparse.size" in pax:
        member.realsize = pax_int(pax["GNU.sparse.size"], "GNU.sparse.size", offset)
        offsets = [pax_int(v, k, offset) for k, v in local if k == "GNU.sparse.offset"]
        lengths = [pax_int(v, k, offset) for k, v in local if k == "GNU.sparse.numbytes"]
        if len(offsets) != len(lengths):
            raise TarError(f"the pax header at tar byte {offset} is damaged: "
                           f"GNU.sparse.offset and numbytes do not pair up")
        member.sparse = list(zip(offsets, lengths))


def read_map_from_data(member: Member, stream: Stream) -> None:
    """GNU sparse 1.0: decimal numbers, one a line, in whole blocks before the data."""
    numbers: List[int] = []
    partial = b""
    read = 0
    while not numbers or len(numbers) < 1 + 2 * numbers[0]:
        if read + BLOCK > min(META_LIMIT, member.size):
            raise TarError(f"{quoted(member.name)} (tar byte {member.offset}): its sparse "
                           f"map is damaged or too large")
        block = stream.read(BLOCK)
        read += BLOCK
        if len(block) < BLOCK:
            raise stream.truncated(f"the sparse map of {quoted(member.name)}")
        lines = (partial + block).split(b"\n")
        partial = lines.pop()
        numbers.extend(pax_int(v, "sparse map", member.offset) for v in lines)
    member.sparse = list(zip(numbers[1::2], numbers[2::2]))
    member.size -= read
