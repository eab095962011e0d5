"""bzip2 at the bit level, for the parallel decoder (bz2par.py): where blocks start
and end, and a block cut out of its stream made a stream of its own.

A bzip2 stream is a bit stream: after the "BZhN" header, blocks follow one another
without byte alignment, each starting with a 48-bit block magic, and the stream ends
with a 48-bit end-of-stream magic and the combined CRC. The magics are found on any bit
offset with one `bytes.find` per magic and bit shift, never a loop per bit; the bits
from a block magic to the next magic are re-wrapped as a one-block stream of their own
(as lbzip2 does), which the bz2 module decodes. A magic can also occur by chance inside
a block: bz2par.py decides which ones are true.
"""

from typing import List, NamedTuple, Tuple

BLOCK_MAGIC = 0x314159265359
END_MAGIC = 0x177245385090
BLOCK, END = 0, 1  # the kinds of magic, in find_magics' answer
MAGIC_BYTES = (BLOCK_MAGIC.to_bytes(6, "big"), END_MAGIC.to_bytes(6, "big"))
DIGITS = b"123456789"


class _Pattern(NamedTuple):
    """How a magic looks when it starts `shift` bits into a byte: the 5 whole bytes it
    fills after that byte, and the bits it puts in the bytes before and after them."""

    kind: int
    shift: int
    middle: bytes
    head: int
    head_mask: int
    tail: int
    tail_mask: int


def _patterns() -> List[_Pattern]:
    patterns = []
    for kind, magic in ((BLOCK, BLOCK_MAGIC), (END, END_MAGIC)):
        for shift in range(8):
            middle = ((magic >> shift) & (1 << 40) - 1).to_bytes(5, "big")
            tail = (magic & (1 << shift) - 1) << (8 - shift)
            tail_mask = (0xFF << (8 - shift)) & 0xFF
            patterns.append(_Pattern(kind, shift, middle, magic >> (40 + shift), 0xFF >> shift,
                                     tail, tail_mask))
    return patterns


_PATTERNS = _patterns()


def find_magics(buf, start: int = 0) -> List[Tuple[int, int]]:
    """(bit offset, kind) of every block or end-of-stream magic in `buf` from bit `start`
    on, in order. A magic counts once the 32 bits after it are in `buf` too (a real one is
    always followed by a CRC), so that fed data can be scanned as it comes."""
    found = []
    for p in _PATTERNS:
        stop = len(buf) - 4 - (p.shift > 0)  # the middle ends here when 80 bits fit
        at = buf.find(p.middle, (start >> 3) + 1, stop)
        while at >= 0:
            bit = 8 * (at - 1) + p.shift
            if (buf[at - 1] & p.head_mask == p.head and buf[at + 5] & p.tail_mask == p.tail
                    and bit >= start):
                found.append((bit, p.kind))
            at = buf.find(p.middle, at + 1, stop)
    found.sort()
    return found


def max_block_bits(level: int) -> int:
    """The most bits a block of a stream of this size can take in libbzip2 1.0.8, so
    joining pieces of a corrupt block stops."""
    symbols = 100000 * level + 1  # at most one per byte of the block, plus end-of-block
    header = 48 + 32 + 1 + 24 + 16 + 16 * 16 + 3 + 15  # magic .. number of selectors
    selectors = 32767 * 6  # unary, below the number of tables (at most 6)
    tables = 6 * (5 + 258 * 39)  # per symbol: at most 19 steps of 2 bits and a stop bit
    return header + selectors + tables + 20 * symbols  # codes take at most 20 bits


def combine(crc: int, block_crc: int) -> int:
    """The stream's combined CRC after one more block (bzip2's rule)."""
    return (((crc << 1) | (crc >> 31)) & 0xFFFFFFFF) ^ block_crc


def rewrap(buf, base: int, start: int, end: int, level: int, crc: int) -> Tuple[bytes, int]:
    """Bits [start, end) of the input (stream bit offsets; `buf` holds the input from
    stream byte `base`) as a one-block stream: header, the bits, end-of-stream magic and
    the combined CRC, which for one block is the block's CRC. Returns the stream and how
    many of its bytes lie wholly before `end`. Big ints shift a block at C speed."""
    first, last = (start >> 3) - base, ((end + 7) >> 3) - base
    chunk = buf[first:last]  # a copy: buf is a bytearray
    chunk[0] &= 0xFF >> (start & 7)
    dropped = 8 * last - (end - 8 * base)  # bits after `end` in the last byte
    chunk[-1] &= (0xFF << dropped) & 0xFF
    bits = end - start
    pad = -(bits + 80) % 8
    value = ((int.from_bytes(chunk, "big") << (80 + pad - dropped))
             | (END_MAGIC << (32 + pad)) | (crc << pad))
    body = value.to_bytes((bits + 80 + pad) // 8, "big")
    return b"BZh%d" % level + body, (32 + bits) // 8


def bits_at(buf, base: int, bit: int, count: int) -> int:
    """`count` bits from stream bit offset `bit` (`buf` holds the input from byte `base`)."""
    first, last = (bit >> 3) - base, ((bit + count + 7) >> 3) - base
    value = int.from_bytes(buf[first:last], "big")
    return (value >> (8 * (last + base) - bit - count)) & ((1 << count) - 1)


def is_stream_start(head: bytes) -> bool:
    """Whether `head` (under 10 bytes) could be the start of a stream cut short."""
    return any((b"BZh" + bytes([digit]) + magic).startswith(head)
               for digit in DIGITS for magic in MAGIC_BYTES)
