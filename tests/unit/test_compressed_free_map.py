"""A compressed image's free map (issue 20): the master checks the bmap against the
decoded bytes (master/bmaps.py), serves the map as the bytes its digest is of
(image/freemap.py), and a client takes it only for the digest and size in its start
(client/free_map.py). Rounds with real processes: tests/system/test_free_runs_compressed.py."""

import dataclasses
import gzip
import hashlib
import os
import random

import pytest

from thepusher.client import free_map
from thepusher.config.model import Image
from thepusher.image import bmap, freemap
from thepusher.image.bmap import BmapError
from thepusher.master import bmaps
from thepusher.plan import Start

BLOCK = 4096


def test_a_mask_cuts_pieces_at_the_runs_and_hands_back_an_uncut_piece_itself():
    mask = freemap.Mask([(3, 4), (10, 2), (20, 5)])
    cut = [(free, bytes(part)) for piece in (b"abcdefgh", b"ijklmnopqrstuvwxyz0123")
           for free, part in mask.split(piece)]
    assert cut == [(False, b"abc"), (True, b"defg"), (False, b"h"), (False, b"ij"),
                   (True, b"kl"), (False, b"mnopqrst"), (True, b"uvwxy"), (False, b"z0123")]
    whole = b"x" * 100
    assert list(mask.split(whole)) == [(False, whole)] and mask.pos == 130


def test_the_served_map_is_the_bytes_its_digest_is_of_and_reads_back():
    runs = [(0, 10), (10, 5), (4096, 8192)]
    data = freemap.encode(runs)
    assert len(data) == 2 * freemap.RUN_SIZE  # maximal runs
    assert hashlib.sha256(data).hexdigest() == freemap.digest(runs)
    assert freemap.decode(data) == [(0, 15), (4096, 8192)]
    with pytest.raises(ValueError):
        freemap.decode(data[:-1])


def image(path, compression):
    return Image(name="img", filename=os.path.basename(path), path=str(path),
                 destination="/dev/null", line=1, compression=compression)


def test_a_compressed_images_bmap_is_found_by_its_name_or_without_the_suffix(tmp_path):
    img = image(tmp_path / "disk.img.gz", "GZIP")
    assert bmaps.bmap_paths(img) == [f"{img.path}.bmap", str(tmp_path / "disk.img.bmap")]
    assert bmaps.find(img) is None
    (tmp_path / "disk.img.bmap").write_text("x")
    assert bmaps.find(img)[0] == str(tmp_path / "disk.img.bmap")
    (tmp_path / "disk.img.gz.bmap").write_text("x")
    assert bmaps.find(img)[0] == img.path + ".bmap"
    assert bmaps.bmap_paths(image(tmp_path / "disk.img", "NONE")) == [str(tmp_path / "disk.img.bmap")]


def made(tmp_path, change=None):
    """A raw image with garbage in its free ranges (the same every time), its bmap, and
    its gzip; `change(content)` alters the raw bytes after the bmap was made."""
    raw = tmp_path / "disk.img"
    content = bytearray(random.Random(5).randbytes(64 * BLOCK))
    mapped = [(0, 8 * BLOCK), (20 * BLOCK, 10 * BLOCK), (40 * BLOCK, 3 * BLOCK)]
    free = freemap.complement(mapped, len(content))
    for offset, length in free:
        content[offset : offset + length] = b"\xa5" * length
    raw.write_bytes(content)
    the_bmap = bmap.write(str(raw) + ".bmap", str(raw), mapped)
    if change is not None:
        change(content)
    return the_bmap, gzip.compress(bytes(content)), content, free


def scan(the_bmap, packed):
    def read(view, at):
        n = min(len(view), len(packed) - at)
        view[:n] = packed[at : at + n]
        return n
    return bmaps.scan(the_bmap, "GZIP", len(packed), read, lambda: None)


def test_the_master_hashes_a_compressed_image_with_its_free_ranges_as_zeros(tmp_path):
    the_bmap, packed, content, free = made(tmp_path)
    facts = scan(the_bmap, packed)
    defined = bytearray(content)
    for offset, length in free:
        defined[offset : offset + length] = bytes(length)
    assert facts.sha256 == hashlib.sha256(defined).hexdigest()
    assert facts.free_runs == free and facts.zero_runs is None
    assert (facts.stream_size, facts.stream_sha256) == (len(packed), hashlib.sha256(packed).hexdigest())
    assert facts.content_size == len(content)


def test_a_mapped_range_that_changed_after_its_bmap_is_refused_naming_it(tmp_path):
    def damage(content):
        content[21 * BLOCK] ^= 1

    the_bmap, packed, _, _ = made(tmp_path, damage)
    with pytest.raises(BmapError, match=r"range 20-29 \(bytes 81920-122879\) of the image hashes to"):
        scan(the_bmap, packed)


def test_what_the_file_holds_in_a_free_range_is_never_in_the_digest(tmp_path):
    the_bmap, packed, _, _ = made(tmp_path)

    def scribble(content):
        content[10 * BLOCK] = 0x42

    the_bmap, scribbled, _, _ = made(tmp_path, scribble)
    facts, other = scan(the_bmap, packed), scan(the_bmap, scribbled)
    assert (other.sha256, other.free_runs) == (facts.sha256, facts.free_runs)
    assert other.stream_sha256 != facts.stream_sha256


START = Start(round=1, session="s", secret=b"k" * 32, chain=1, chains=1, position=1,
              chain_length=1, downstream=(), image="img", stream_size=100, content_size=1 << 20,
              sha256="ab" * 32, compression="GZIP", record_size=1 << 20, verify="write",
              accept_timeout=5.0, io_timeout=5.0, window=1 << 20, free_bytes=12288,
              free_map_sha256=freemap.digest([(4096, 8192), (65536, 4096)]))


def test_a_client_takes_only_the_map_its_start_states():
    good = freemap.encode([(4096, 8192), (65536, 4096)])
    assert free_map.check(good, START) == [(4096, 8192), (65536, 4096)]
    for bad in (good[freemap.RUN_SIZE:], freemap.encode([(4096, 12288)]),
                freemap.encode([(65536, 4096), (4096, 8192)]), good + b"\0"):
        with pytest.raises(free_map.FreeMapRefused):
            free_map.check(bad, START)
    raw = dataclasses.replace(START, compression="NONE")
    assert free_map.for_start(None, raw) == (None, "")  # its stream carries the map
