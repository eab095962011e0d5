"""FREE records on the wire (issue 20): a version 2 header states the free map, a
version 1 header stays what clients that predate FREE records take, and a hop takes
FREE records only in a version 2 stream whose free map the master signed (the hop on
real sockets: tests/system/test_free_runs.py)."""

import dataclasses
import json

import pytest

from thepusher.chain import wire
from thepusher.chain.rules import check_offer, check_record
from thepusher.image import freemap

V1 = wire.StreamHeader(session="s", image="disk", stream_size=10_000, content_size=10_000,
                       content_sha256="ab" * 32, record_size=1_000)
FREE_MAP = freemap.digest([(4096, 4096)])
V2 = dataclasses.replace(V1, version=wire.FREE_VERSION, free_bytes=4096, free_map_sha256=FREE_MAP)


def test_a_version_1_header_is_byte_for_byte_what_clients_before_free_records_took():
    data = json.loads(V1.encode())
    assert data["version"] == 1 and "free_bytes" not in data and "free_map_sha256" not in data
    assert wire.StreamHeader.decode(V1.encode()) == V1


def test_a_version_2_header_carries_the_free_map_and_decodes_as_sent():
    data = json.loads(V2.encode())
    assert (data["version"], data["free_bytes"], data["free_map_sha256"]) == (2, 4096, FREE_MAP)
    assert wire.StreamHeader.decode(V2.encode()) == V2


@pytest.mark.parametrize("change, match", [
    ({"version": 3}, "protocol version 3, this client knows 1, 2: update thepusher"),
    ({"free_map_sha256": "xyz"}, "free_map_sha256"),
    ({"free_bytes": -1}, "negative"),
])
def test_bad_version_2_headers_are_refused(change, match):
    data = json.loads(V2.encode())
    data.update(change)
    with pytest.raises(wire.ProtocolError, match=match):
        wire.StreamHeader.decode(json.dumps(data).encode())


def test_a_version_1_header_with_free_fields_or_a_v2_one_without_is_refused():
    data = json.loads(V1.encode())
    with pytest.raises(wire.ProtocolError, match="unknown fields"):
        wire.StreamHeader.decode(json.dumps(dict(data, free_bytes=0)).encode())
    with pytest.raises(wire.ProtocolError, match="free_bytes"):
        wire.StreamHeader.decode(json.dumps(dict(data, version=2)).encode())


def test_free_records_only_in_uncompressed_version_2_streams():
    check_record(V2, wire.FREE, 4096, 4096, 4096, False)
    with pytest.raises(wire.ProtocolError, match="FREE record at stream byte 0 in a version 1"):
        check_record(V1, wire.FREE, 4096, 0, 0, False)
    with pytest.raises(wire.ProtocolError, match="free-run record in a compressed stream"):
        check_record(dataclasses.replace(V2, compression="GZIP"), wire.FREE, 1, 0, 0, False)
    with pytest.raises(wire.ProtocolError, match="past its announced size"):
        check_record(V2, wire.FREE, 10_001, 0, 0, False)
    assert wire.unpack_head(wire.pack_head(wire.FREE, 1 << 30, 0)) == (wire.FREE, 1 << 30, 0)


def test_a_header_whose_free_map_differs_from_the_masters_start_is_refused():
    forged = dataclasses.replace(V2, free_map_sha256=freemap.digest([(0, 8192)]), free_bytes=8192)
    with pytest.raises(wire.ProtocolError, match="free_bytes 8192, the master's start says 4096"):
        check_offer(forged, session="s", position=2, expect=wire.Expected.of(V2),
                    working_upstream=None)
    with pytest.raises(wire.ProtocolError, match="free_bytes 0"):  # a v1 offer for a v2 round
        check_offer(V1, session="s", position=2, expect=wire.Expected.of(V2), working_upstream=None)


def test_the_free_map_digest_is_of_maximal_runs_so_record_splits_do_not_change_it():
    assert freemap.digest([(0, 10), (10, 5), (20, 1)]) == freemap.digest([(0, 15), (20, 1)])
    assert freemap.digest([]) == ""
    assert list(freemap.pieces([(0, 5)], [(5, 10), (30, 4)], 2, 40, 8, 6)) == [
        ("zero", 2, 3), ("free", 5, 6), ("free", 11, 4), ("data", 15, 8), ("data", 23, 7),
        ("free", 30, 4), ("data", 34, 6)]

