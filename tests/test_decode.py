"""decode.py's promise to its callers (the hop's writer, the master's catalog and
uploads): corrupt data of any compression is a DecodeError, never a module's own error."""

import os

import pytest

from thepusher.decode import DecodeError, Decoder, compression_of_name


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
