"""FactsHasher's promise to everyone who reads an image (the master's catalog and uploads,
`thepusher compress`, put-image, and the hop's writer): one pass gives the content's
digest and size, the stream's, and the zero map of an uncompressed image, whatever the
compression and however the bytes are cut."""

import bz2
import gzip
import hashlib
import lzma
import os
import random
import threading

import pytest

from thepusher.image import sparse
from thepusher.image.facts import FactsHasher
from thepusher.image.formats import DecodeError

B = sparse.ZERO_BLOCK
COMPRESS = {
    "NONE": lambda data: data,
    "GZIP": lambda data: gzip.compress(data, 1),
    "BZ2": lambda data: bz2.compress(data, 1),
    "XZ": lambda data: lzma.compress(data, preset=1),
}


@pytest.fixture(scope="module")
def content() -> bytes:
    """Data and zeros: two aligned zero blocks, an unaligned stretch over one more, an
    odd tail."""
    rnd = random.Random(5)
    return b"".join([rnd.randbytes(B), bytes(2 * B), rnd.randbytes(B + 100), bytes(2 * B + 300),
                     rnd.randbytes(777)])


def facts_of(stream, compression: str, pieces=None, map_zeros: bool = False):
    hasher = FactsHasher(compression, map_zeros)
    view = memoryview(stream)
    at = 0
    for size in pieces or [len(stream)]:
        hasher.feed(view[at:at + size])
        at += size
    hasher.feed(view[at:])
    return hasher.finish()


def odd_pieces(total: int, seed: int):
    rnd = random.Random(seed)
    sizes = []
    while sum(sizes) < total:
        sizes.append(rnd.choice([1, 7, 4095, 4097, B - 1, B + 3, 100000]))
    return sizes


@pytest.mark.parametrize("compression", list(COMPRESS))
def test_every_compression_of_an_image_gives_its_content_digest_and_size(content, compression):
    stream = COMPRESS[compression](content)
    facts = facts_of(stream, compression)
    assert (facts.sha256, facts.content_size) == (hashlib.sha256(content).hexdigest(), len(content))
    assert (facts.stream_sha256, facts.stream_size) == (hashlib.sha256(stream).hexdigest(), len(stream))


@pytest.mark.parametrize("compression", list(COMPRESS))
def test_odd_sized_pieces_give_the_same_digests_and_sizes_as_one_piece(content, compression):
    stream = COMPRESS[compression](content)
    whole = facts_of(stream, compression)
    cut = facts_of(stream, compression, odd_pieces(len(stream), seed=len(stream)))
    assert cut == whole


def test_zero_runs_of_an_uncompressed_image_are_its_aligned_zero_blocks(content):
    facts = facts_of(content, "NONE", map_zeros=True)
    assert facts.zero_runs == [(B, 2 * B), (5 * B, B)]  # the unaligned stretch's one whole block
    assert facts.zero_bytes == 3 * B


def test_zero_runs_of_odd_sized_pieces_cover_only_zeros(content):
    facts = facts_of(content, "NONE", odd_pieces(len(content), seed=3), map_zeros=True)
    assert facts.zero_runs  # all-zero pieces are runs too
    for offset, length in facts.zero_runs:
        assert content[offset:offset + length] == bytes(length), (offset, length)


@pytest.mark.parametrize("compression", ["GZIP", "BZ2", "XZ"])
def test_zero_runs_are_mapped_only_when_uncompressed(content, compression):
    facts = facts_of(COMPRESS[compression](content), compression, map_zeros=True)
    assert facts.zero_runs is None and facts.zero_bytes is None
    assert facts_of(content, "NONE").zero_runs is None  # and only when asked for


def test_a_receivers_pieces_and_zero_runs_give_the_digest_of_the_content(content):
    """As a hop's writer has it: decoded pieces and ZERO records (lengths, no bytes)."""
    hasher = FactsHasher(map_zeros=True)
    hasher.update(memoryview(content)[:B])
    hasher.zeros(2 * B)
    hasher.update(memoryview(content)[3 * B:])
    assert hasher.size == len(content)
    assert hasher.hexdigest() == hashlib.sha256(content).hexdigest()
    facts = hasher.finish()
    assert facts.zero_runs == [(B, 2 * B), (5 * B, B)]
    assert facts.stream_sha256 == facts.sha256 and facts.stream_size == len(content)


def test_a_compressed_stream_that_stops_short_fails_at_the_end(content):
    stream = COMPRESS["GZIP"](content)
    hasher = FactsHasher("GZIP")
    hasher.feed(stream[:len(stream) // 2])
    with pytest.raises(DecodeError, match="GZIP data ends in the middle of a stream"):
        hasher.finish()


def test_corrupt_data_is_a_decode_error_when_fed():
    with pytest.raises(DecodeError, match="XZ data is corrupt"):
        FactsHasher("XZ").feed(b"\xfd7zXZ\x00" + os.urandom(4096))


def test_close_mid_stream_stops_the_bzip2_decoders_threads():
    data = random.Random(8).randbytes(3 << 20)
    stream = bz2.compress(data, 1)
    hasher = FactsHasher("BZ2")
    hasher.feed(stream[:len(stream) // 2])
    assert [t for t in threading.enumerate() if t.name.startswith("bz2-decode")]
    hasher.close()
    hasher.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("bz2-decode")]


@pytest.mark.parametrize("offset", [0, 10, B - 5])
def test_a_zero_map_finds_the_same_runs_in_bytes_bytearrays_and_memoryviews(offset):
    rnd = random.Random(offset)
    buf = bytearray(rnd.randbytes(6 * B))
    buf[B:3 * B] = bytes(2 * B)
    buf[4 * B + 10:] = bytes(2 * B - 10)
    found = []
    for kind in (bytes, bytearray, memoryview):
        zeros = sparse.ZeroMap()
        zeros.scan(kind(buf), len(buf), offset)
        zeros.scan(kind(bytes(B + 1)), B + 1, offset + len(buf))  # all zeros: one run
        found.append(zeros.runs)
    assert found[0] == found[1] == found[2]
    assert found[0][-1][0] + found[0][-1][1] == offset + 7 * B + 1


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_a_piece_is_one_run_only_if_its_edges_are_zero_too(kind):
    """Past its whole zero blocks a byte of data at either end keeps the piece from being
    one run: the blocks are the runs."""
    head, tail = bytearray(3 * B + 20), bytearray(3 * B + 20)
    head[3], tail[-1] = 1, 1
    for buf in (head, tail):
        zeros = sparse.ZeroMap()
        zeros.scan(kind(buf), len(buf), B - 10)  # file blocks from buf[10] to buf[3 * B + 10]
        assert zeros.runs == [[B, 3 * B]]
