"""The compressions thepusher reads and writes, in one table, and what a file's name and
first bytes say about them.

The config, the master (an upload's name), put-image and `thepusher compress` name the
same three formats in different ways (BZ2 / bz2 / .bz2); each of them reads its names
from FORMATS here, so that a format is added or changed in one place. Also here is what
every decoder shares (decode.py, bz2par.py): the error for data that is not what it is
declared to be, and the most output a decoder hands out at once.
"""

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

NONE = "NONE"  # an uncompressed image: the stream is the content
OUTPUT_PIECE = 4 << 20  # a decoder's output comes in pieces of at most this many bytes
HEAD = 6  # bytes `sniff` needs


class DecodeError(Exception):
    """The stream is not valid data of its declared compression."""


@dataclass(frozen=True)
class Format:
    compression: str  # as the config, the wire and the master call it
    word: str  # as `thepusher compress --format` and `put-image --compress` take it
    suffix: str  # put-image names what it compresses so; the master reads uploads' names
    magic: bytes  # how a file of this format starts
    module: str  # the stdlib module that reads and writes it: TinyCore's Python may lack it
    level: int  # the default: that of the format's own tool
    levels: range


FORMATS: Dict[str, Format] = {f.word: f for f in (
    Format("BZ2", "bz2", ".bz2", b"BZh", "bz2", 9, range(1, 10)),
    Format("GZIP", "gz", ".gz", b"\x1f\x8b", "zlib", 6, range(0, 10)),
    Format("XZ", "xz", ".xz", b"\xfd7zXZ\x00", "lzma", 6, range(0, 10)),
)}
BY_COMPRESSION: Dict[str, Format] = {f.compression: f for f in FORMATS.values()}
COMPRESSIONS: Tuple[str, ...] = (NONE, *BY_COMPRESSION)  # what a config may say
ALIASES = {"GZ": "GZIP"}  # an older spelling a config (or an upload's header) may use
SPELLINGS: Dict[str, str] = {**{c: c for c in COMPRESSIONS}, **ALIASES}  # upper case -> name


def sniff(head: bytes) -> str:
    """The compression a file's first bytes show; "NONE" when they show none."""
    for fmt in BY_COMPRESSION.values():
        block_size_digit = len(head) > 3 and b"1"[0] <= head[3] <= b"9"[0]  # bzip2: BZh1..BZh9
        if head.startswith(fmt.magic) and (fmt.compression != "BZ2" or block_size_digit):
            return fmt.compression
    return NONE


def declaration_problem(head: bytes, declared: str) -> Optional[str]:
    """Why a file's first bytes contradict its declared compression, or None.

    Caught before a round: a compressed file declared NONE would be written to every disk
    as it is, and verified as such.
    """
    found = sniff(head)
    if found == declared:
        return None
    shown = head[:HEAD].hex(" ") or "nothing: the file is empty"
    if declared == NONE:
        return (f'starts like {found} data ({shown}) but compression is "NONE"; '
                f'set compression = "{found}"')
    if found == NONE:
        return (f'is not {declared} data (it starts with {shown}); set compression = "NONE" '
                f"if it is a raw image")
    return f'is {found} data ({shown}) but compression is "{declared}"; set compression = "{found}"'


def compression_of_name(name: str) -> str:
    """The compression a file name's suffix says (case-insensitive), "NONE" without one."""
    lower = name.lower()
    for fmt in BY_COMPRESSION.values():
        if lower.endswith(fmt.suffix):
            return fmt.compression
    return NONE
