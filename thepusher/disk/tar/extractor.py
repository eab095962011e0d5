"""The walk over the archive: header by header, each member created as soon as its
headers are complete.

Extended headers (pax records, GNU long names) describe the member after them, so they
are collected until that member's own header arrives; a global pax header applies to
every member that follows. The walk stops at the end-of-archive marker and reads
nothing past it: what follows belongs to the caller, who hashes it.
"""

from typing import Dict, List, Optional, Tuple

from thepusher.disk.tar import headers, sparse
from thepusher.disk.tar.create import Creator
from thepusher.disk.tar.headers import BLOCK, EXTENSIONS, META_LIMIT, REGULAR, ZERO_BLOCK
from thepusher.disk.tar.model import Member, Summary, TarError
from thepusher.disk.tar.stream import Stream
from thepusher.disk.tar.tree import Tree


class Extractor:
    def __init__(self, stream: Stream, tree: Tree) -> None:
        self.stream = stream
        self.summary = Summary()
        self.creator = Creator(stream, tree, self.summary)

    def run(self) -> Summary:
        try:
            self._members()
            self.creator.finish_dirs()
        finally:
            self.stream.release()
        return self.summary

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
            kind = headers.member_type(block, offset)
            size = headers.stored_size(block, offset)
            if kind in EXTENSIONS:
                data = self._meta(size, offset)
                if kind == b"g":
                    headers.update(global_pax, headers.pax_records(data, offset))
                    continue
                first = offset if first is None else first
                if kind in (b"x", b"X"):
                    local.extend(headers.pax_records(data, offset))
                elif kind == b"L":
                    longname = headers.name_field(data)
                else:
                    longlink = headers.name_field(data)
                continue
            member = self._member(block, kind, size, offset if first is None else first,
                                  global_pax, local, longname, longlink)
            local, longname, longlink, first = [], None, None, None
            self.creator.create(member)

    def _meta(self, size: int, offset: int) -> bytes:
        """The data of an extended header, read whole (it is small)."""
        if size > META_LIMIT:
            raise TarError(f"the extended header at tar byte {offset} claims {size} bytes, "
                           f"more than the {META_LIMIT} accepted")
        data = self.stream.read(size)
        if len(data) < size:
            raise self.stream.truncated(f"the extended header at tar byte {offset}")
        self.stream.skip((-size) % BLOCK, f"the extended header at tar byte {offset}")
        return data

    def _member(self, block: bytes, kind: bytes, size: int, offset: int,
                global_pax: Dict[str, bytes], local: List[Tuple[str, bytes]],
                longname: Optional[bytes], longlink: Optional[bytes]) -> Member:
        pax = dict(global_pax)
        headers.update(pax, local)
        member = headers.member(block, kind, size, offset, pax, longname, longlink)
        if member.type == b"S":
            sparse.read_old_gnu(member, block, self.stream)
        elif member.type in REGULAR:
            sparse.from_pax(member, pax, local)
        return member
