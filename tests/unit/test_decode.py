"""image/decode.py's promise to its callers (the hop's writer, the master's catalog and
uploads): corrupt data of any compression is a DecodeError, never a module's own error."""

import os

import pytest

from thepusher.image.decode import Decoder
from thepusher.image.formats import DecodeError, compression_of_name


@pytest.mark.parametrize("compression", ["GZIP", "BZ2", "XZ"])
def test_corrupt_data_of_every_compression_is_a_decode_error(compression):
    with pytest.raises(DecodeError, match=f"{compression} data is corrupt"):
        list(Decoder(compression).feed(memoryview(os.urandom(4096))))


@pytest.mark.parametrize("name, compression", [
    ("sda", "NONE"), ("sda.gz", "GZIP"), ("SDA.GZ", "GZIP"), ("a.img.bz2", "BZ2"),
    ("a.xz", "XZ"), ("a.gzip", "NONE"), ("a.tar", "NONE"),
])
def test_file_name_suffix_says_the_compression(name, compression):
    assert compression_of_name(name) == compression


def test_corrupt_data_names_the_stream_bytes_it_was_found_in():
    import gzip

    data = bytearray(gzip.compress(os.urandom(1 << 20) + bytes(1 << 20)))
    data[len(data) // 2] ^= 0xFF
    decoder = Decoder("GZIP")
    fed = 0
    with pytest.raises(DecodeError, match=r"GZIP data is corrupt .* \(in stream bytes \d+-\d+\)") as e:
        for i in range(0, len(data), 65536):
            fed = i
            list(decoder.feed(memoryview(data)[i : i + 65536]))
        list(decoder.finish())
    assert f"in stream bytes {fed}-" in str(e.value)


@pytest.mark.parametrize("compression, module", [("GZIP", "gzip"), ("XZ", "lzma")])
def test_truncated_stream_is_an_error_at_finish_not_a_short_image(compression, module):
    import importlib

    data = importlib.import_module(module).compress(os.urandom(100_000))
    decoder = Decoder(compression)
    b"".join(decoder.feed(data[:-20]))
    with pytest.raises(DecodeError, match="ends in the middle of a stream"):
        b"".join(decoder.finish())


@pytest.mark.parametrize("compression, module", [("GZIP", "gzip"), ("XZ", "lzma"), ("BZ2", "bz2")])
def test_concatenated_streams_decode_to_the_concatenated_content(compression, module):
    import importlib

    mod = importlib.import_module(module)
    parts = [os.urandom(70_000), bytes(300_000), b"text " * 20_000]
    data = b"".join(mod.compress(p) for p in parts)
    decoder = Decoder(compression)
    try:
        out = b"".join(bytes(p) for i in range(0, len(data), 4096)
                       for p in decoder.feed(memoryview(data)[i : i + 4096]))
        out += b"".join(bytes(p) for p in decoder.finish())
    finally:
        decoder.close()
    assert out == b"".join(parts)
