"""bz2par's promise: the parallel decoder's output is byte-identical to `bzip2 -d` on what
real `bzip2` writes (one stream of many blocks, or many streams), whatever the record
sizes, even where a magic occurs by chance inside a block; and corrupt, truncated or
padded data is a DecodeError naming the stream byte, never output."""

import gc
import random
import re
import subprocess
import threading
from typing import Iterable, List, Optional

import pytest

from thepusher.image import bz2par
from thepusher.image.bz2par import ParallelBz2Decoder
from thepusher.image.bz2scan import BLOCK, BLOCK_MAGIC, END, END_MAGIC, find_magics
from thepusher.image.formats import DecodeError

KiB, MiB = 1 << 10, 1 << 20


def bzip2(data: bytes, *flags: str) -> bytes:
    return subprocess.run(["bzip2", "-c", *flags], input=data, stdout=subprocess.PIPE,
                          check=True).stdout


def bunzip2(data: bytes) -> bytes:
    return subprocess.run(["bzip2", "-dc"], input=data, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, check=True).stdout


def bzip2_accepts(data: bytes) -> bool:
    return subprocess.run(["bzip2", "-t"], input=data, capture_output=True).returncode == 0


def blocks_per_bzip2(data: bytes) -> int:
    """How many blocks `bzip2 -tvv` decodes: the truth the scanner's magics are checked against."""
    report = subprocess.run(["bzip2", "-tvv"], input=data, capture_output=True, check=True).stderr
    return report.count(b"huff+mtf")


def text(size: int, seed: int) -> bytes:
    """Data that compresses about 2:1, so a `bzip2 -1` block holds about 100 kB of it."""
    letters = b"eeeeeeetttttaaaaooooiiinnnsssrrhhldcumfpgwybvkxjqz   \n,."
    table = bytes(letters[v * len(letters) // 256] for v in range(256))
    return random.Random(seed).randbytes(size).translate(table)


def spelling_magics(size: int, seed: int) -> bytes:
    """Data whose set of byte values puts both magics inside every block's header.

    A block header holds a symbol map: 16 bits for which 16-value ranges occur, then 16
    bits per used range for which values occur (most significant bit: the range's first
    value). With every range used, three consecutive ranges spelling a magic put it there."""
    masks = [0x8001] * 16
    masks[2:5] = [BLOCK_MAGIC >> 32, BLOCK_MAGIC >> 16 & 0xFFFF, BLOCK_MAGIC & 0xFFFF]
    masks[6:9] = [END_MAGIC >> 32, END_MAGIC >> 16 & 0xFFFF, END_MAGIC & 0xFFFF]
    values = bytes(16 * i + j for i, mask in enumerate(masks) for j in range(16)
                   if mask >> (15 - j) & 1)
    table = bytes(values[v % len(values)] for v in range(256))
    return random.Random(seed).randbytes(size).translate(table)


def pieces(data: bytes, sizes: Iterable[int]) -> Iterable[bytes]:
    at = 0
    for size in sizes:
        if at >= len(data):
            return
        yield data[at:at + size]
        at += size


def every(size: int) -> Iterable[int]:
    while True:
        yield size


def random_sizes(seed: int, largest: int) -> Iterable[int]:
    rng = random.Random(seed)
    while True:
        yield rng.randint(1, largest)


def decode(data: bytes, sizes: Iterable[int] = (), workers: int = 2,
           into: Optional[list] = None) -> bytes:
    """Feed `data` in pieces of `sizes` (all of it if empty) the way the hop does: a view
    into one pooled buffer that is overwritten right after each feed."""
    output = [] if into is None else into
    pool = bytearray(max(len(data), 1))
    decoder = ParallelBz2Decoder(workers)
    try:
        for piece in pieces(data, sizes or [len(data)]):
            pool[:len(piece)] = piece
            output.extend(decoder.feed(memoryview(pool)[:len(piece)]))
            pool[:len(piece)] = bytes(len(piece))
        output.extend(decoder.finish())
    finally:
        decoder.close()
    return b"".join(output)


def magics(data: bytes, kind: int) -> List[int]:
    return [bit for bit, k in find_magics(data) if k == kind]


def flip_bit(data: bytes, bit: int) -> bytes:
    flipped = bytearray(data)
    flipped[bit >> 3] ^= 0x80 >> (bit & 7)
    return bytes(flipped)


def error_of(data: bytes, sizes: Iterable[int] = ()) -> str:
    with pytest.raises(DecodeError) as e:
        decode(data, sizes)
    return str(e.value)


@pytest.fixture(scope="module")
def few_blocks() -> bytes:
    return bzip2(text(250 * KiB, 1), "-1")


@pytest.fixture(scope="module")
def many_blocks() -> bytes:
    data = bzip2(text(4500 * KiB, 2), "-1")
    assert blocks_per_bzip2(data) >= 40
    return data


@pytest.fixture(scope="module")
def multi_stream() -> bytes:
    """As pbzip2 writes, with streams of different block sizes and an empty one."""
    return b"".join([bzip2(text(300 * KiB, 3), "-1"), bzip2(text(1200 * KiB, 4), "-9"),
                     bzip2(b""), bzip2(text(5, 5)), bzip2(text(700 * KiB, 6), "-5")])


@pytest.mark.parametrize("size", [1, 7, 4 * KiB, 64 * KiB])
def test_a_few_blocks_fed_in_any_record_size_decode_as_bzip2_does(few_blocks, size):
    assert blocks_per_bzip2(few_blocks) >= 3
    assert decode(few_blocks, every(size)) == bunzip2(few_blocks)


@pytest.mark.parametrize("sizes", [every(64 * KiB), every(MiB), (), random_sizes(1, 300 * KiB),
                                   random_sizes(2, 20 * KiB)],
                         ids=["64KiB", "1MiB", "whole", "random", "random-small"])
def test_many_blocks_decode_as_bzip2_does(many_blocks, sizes):
    assert decode(many_blocks, sizes) == bunzip2(many_blocks)


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_any_number_of_workers_gives_the_same_output(few_blocks, workers):
    assert decode(few_blocks, every(10 * KiB), workers=workers) == bunzip2(few_blocks)


@pytest.mark.parametrize("seed", [1, 2])
def test_concatenated_streams_decode_as_bzip2_does(multi_stream, seed):
    assert decode(multi_stream, random_sizes(seed, 200 * KiB)) == bunzip2(multi_stream)


def test_a_stream_of_nothing_decodes_to_nothing():
    assert decode(bzip2(b""), every(1)) == b""


def test_zeros_make_huge_blocks_that_decode_in_order():
    zeros = bzip2(bytes(50 * MiB), "-9")
    assert blocks_per_bzip2(zeros) == 2  # bzip2's run-length step packs 45 MB into a block
    assert decode(zeros, every(7)) == bytes(50 * MiB)


@pytest.mark.parametrize("kind, magic", [(BLOCK, BLOCK_MAGIC), (END, END_MAGIC)])
@pytest.mark.parametrize("shift", range(8))
def test_the_scanner_finds_a_magic_on_every_bit_offset(kind, magic, shift):
    bit = 8 * 11 + shift
    data = ((magic << (192 - bit - 48)) | 0x5A5A5A5A).to_bytes(24, "big")  # 32+ bits after it
    assert (bit, kind) in find_magics(data)
    assert (bit, kind) not in find_magics(data[:(bit + 80 + 7) // 8 - 1])  # no CRC yet


@pytest.mark.parametrize("sizes", [(), every(7 * KiB), random_sizes(3, 50 * KiB)],
                         ids=["whole", "7KiB", "random"])
def test_magics_by_chance_inside_blocks_do_not_change_the_output(sizes):
    data = bzip2(spelling_magics(500 * KiB, 7), "-1")
    blocks = blocks_per_bzip2(data)
    assert blocks >= 4
    assert len(magics(data, BLOCK)) == 2 * blocks  # one true and one false per block
    assert len(magics(data, END)) == blocks + 1  # a false one per block and the true end
    assert decode(data, sizes) == bunzip2(data)


def test_a_wrong_guess_of_a_stream_block_size_is_corrected(monkeypatch, multi_stream):
    """Pieces are decoded before their stream is known, with the block size of the last
    stream header seen; when that guess is wrong they are decoded again."""
    calls = []
    decode_piece = bz2par._decode_piece
    monkeypatch.setattr(bz2par, "_header_level", lambda buf, byte: 0)  # always guess 9
    monkeypatch.setattr(bz2par, "_decode_piece", lambda p: calls.append(p.level) or decode_piece(p))
    assert decode(multi_stream) == bunzip2(multi_stream)
    assert 1 in calls and 5 in calls


def test_blocks_are_decoded_in_parallel(monkeypatch, many_blocks):
    """The first two pieces wait for each other: that only ends if two threads decode at once."""
    meet = threading.Barrier(2, timeout=60)
    names, lock = [], threading.Lock()
    decode_piece = bz2par._decode_piece

    def meeting(piece):
        with lock:
            names.append(threading.current_thread().name)
            first_two = len(names) <= 2
        if first_two:
            meet.wait()
        decode_piece(piece)

    monkeypatch.setattr(bz2par, "_decode_piece", meeting)
    assert decode(many_blocks, every(MiB), workers=2) == bunzip2(many_blocks)
    assert set(names) == {"bz2-decode-1", "bz2-decode-2"}
    assert not meet.broken


def test_feed_does_not_wait_for_decoding_below_the_bound(monkeypatch, few_blocks):
    release, decoded = threading.Event(), []
    decode_piece = bz2par._decode_piece

    def held(piece):
        release.wait(60)
        decode_piece(piece)
        decoded.append(piece)

    monkeypatch.setattr(bz2par, "_decode_piece", held)
    decoder = ParallelBz2Decoder(4)  # every piece of few_blocks in flight at once
    assert list(decoder.feed(few_blocks)) == []
    assert not decoded
    release.set()
    assert b"".join(decoder.finish()) == bunzip2(few_blocks)


def test_close_mid_stream_stops_every_worker(many_blocks):
    decoder = ParallelBz2Decoder(2)
    list(decoder.feed(many_blocks[:len(many_blocks) // 2]))
    assert [t for t in threading.enumerate() if t.name.startswith("bz2-decode")]
    decoder.close()
    decoder.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("bz2-decode")]
    with pytest.raises(ValueError):
        list(decoder.feed(b"more"))


def test_a_decoder_dropped_without_close_stops_its_workers(many_blocks):
    decoder = ParallelBz2Decoder(2)
    list(decoder.feed(many_blocks[:len(many_blocks) // 2]))
    workers = [t for t in threading.enumerate() if t.name.startswith("bz2-decode")]
    assert workers
    del decoder
    gc.collect()
    for thread in workers:
        thread.join(60)
        assert not thread.is_alive()


@pytest.mark.parametrize("which", [0, 17, -2, -1])
def test_a_corrupt_block_is_an_error_at_its_offset_after_the_good_output(many_blocks, which):
    starts = magics(many_blocks, BLOCK)
    ends = starts[1:] + magics(many_blocks, END)
    middle = (starts[which] + ends[which]) // 16
    corrupt = many_blocks[:middle] + bytes([many_blocks[middle] ^ 0x5A]) + many_blocks[middle + 1:]
    assert not bzip2_accepts(corrupt)
    output: list = []
    with pytest.raises(DecodeError, match=r"BZ2 data is corrupt in the block at stream byte "
                                          rf"{starts[which] >> 3} \(output byte \d+\): ") as e:
        decode(corrupt, every(64 * KiB), into=output)
    good = b"".join(output)
    assert good == bunzip2(many_blocks)[:len(good)]
    assert f"(output byte {len(good)})" in str(e.value)


@pytest.mark.parametrize("cut", ["mid-block", "after-block-magic", "in-final-crc", "header",
                                 "between-streams"])
def test_truncated_data_is_an_error(multi_stream, cut):
    first = bzip2(text(300 * KiB, 3), "-1")
    at = {"mid-block": len(multi_stream) // 2, "header": 4,
          "after-block-magic": magics(multi_stream, BLOCK)[1] // 8 + 8,
          "in-final-crc": len(multi_stream) - 2, "between-streams": len(first) + 7}[cut]
    message = error_of(multi_stream[:at], every(64 * KiB))
    assert f"BZ2 data ends in the middle of a stream (at stream byte {at};" in message


def test_no_data_at_all_is_an_error():
    assert "BZ2 data is empty" in error_of(b"")


def test_a_wrong_combined_crc_is_an_error_naming_the_stream(multi_stream):
    second = len(bzip2(text(300 * KiB, 3), "-1"))
    crc = [bit + 48 for bit in magics(multi_stream, END) if bit > 8 * second][0]
    for bit in crc, crc + 31:
        wrong = flip_bit(multi_stream, bit)
        assert not bzip2_accepts(wrong)
        assert re.search(rf"BZ2 data is corrupt: the stream at stream byte {second} fails its "
                         r"combined CRC \(stored [0-9a-f]{8}, its blocks give [0-9a-f]{8}\)",
                         error_of(wrong))


@pytest.mark.parametrize("garbage", [b"this is not bzip2 data", bytes(512), b"BZh9" + bytes(20)])
def test_trailing_garbage_is_an_error_at_its_offset(few_blocks, garbage):
    message = error_of(few_blocks + garbage, every(4 * KiB))
    if garbage.startswith(b"BZh9"):
        assert f"corrupt at stream byte {len(few_blocks) + 4}: the stream header" in message
    else:
        assert f"trailing garbage at stream byte {len(few_blocks)} (" in message


def test_input_without_magics_is_an_error_before_it_piles_up():
    """More input after a block magic than any block takes cannot be bzip2 data: an
    error while it is fed, not memory filling up until the end."""
    data = b"BZh9" + BLOCK_MAGIC.to_bytes(6, "big") + random.Random(9).randbytes(8 * MiB)
    assert not find_magics(data[4:])[1:]
    decoder = ParallelBz2Decoder(2)
    fed = 0
    with pytest.raises(DecodeError, match="BZ2 data is corrupt in the block at stream byte 4 "):
        for piece in pieces(data, every(64 * KiB)):
            fed += len(piece)
            list(decoder.feed(piece))
    decoder.close()
    assert fed < 3 * MiB


def test_data_that_is_not_bzip2_is_an_error_at_once():
    decoder = ParallelBz2Decoder(2)
    with pytest.raises(DecodeError, match="BZ2 data is corrupt at stream byte 0: no bzip2"):
        list(decoder.feed(random.Random(8).randbytes(4096)))
    decoder.close()
