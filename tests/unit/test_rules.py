"""The hop's rules for would-be upstreams and for records, one test per rule, no sockets.

tests/system/test_hop.py shows a few of them on real connections; here each rule is pinned
alone, with the case just inside it that must still pass.
"""

import dataclasses

import pytest

from thepusher.chain import wire
from thepusher.chain.rules import check_offer, check_record

STREAM = 10_000
RECORD = 1_000

HEADER = wire.StreamHeader(
    session="sess1", image="disk", stream_size=STREAM, content_size=STREAM,
    content_sha256="ab" * 32, record_size=RECORD, sender=1,
)
BZ2 = dataclasses.replace(HEADER, compression="BZ2")


def offer(header=HEADER, working_upstream=None, position=2):
    """Check `header` as the hop at `position`, which the master started with HEADER's facts."""
    check_offer(header, session="sess1", position=position, expect=wire.Expected.of(HEADER),
                working_upstream=working_upstream)


def record(kind, length, offset, expected=0, fresh=False, header=HEADER):
    check_record(header, kind, length, offset, expected, fresh)


# -- offers: who may become our upstream ---------------------------------------------------


def test_an_upstream_of_this_round_earlier_in_the_chain_with_the_masters_facts_is_taken():
    offer()


def test_an_offer_for_another_session_is_refused():
    with pytest.raises(wire.ProtocolError, match="header is for session old, expected sess1"):
        offer(dataclasses.replace(HEADER, session="old"))


@pytest.mark.parametrize("sender", [2, 3])
def test_a_sender_at_or_after_our_place_in_the_chain_is_not_an_upstream(sender):
    with pytest.raises(wire.ProtocolError, match=f"sender at chain position {sender} is not "
                                                 r"upstream of us \(position 2\)"):
        offer(dataclasses.replace(HEADER, sender=sender))


def test_the_master_and_any_hop_before_us_may_send():
    for sender in (0, 1):
        offer(dataclasses.replace(HEADER, sender=sender), position=2)


@pytest.mark.parametrize("name, value", [
    ("content_sha256", "cd" * 32),
    ("content_size", STREAM + 1),
    ("stream_size", STREAM - 1),
    ("compression", "BZ2"),
    ("record_size", 2 * RECORD),
    ("image", "other"),
])
def test_an_offer_whose_facts_differ_from_the_masters_start_is_refused(name, value):
    with pytest.raises(wire.ProtocolError,
                       match=f"stream facts differ from the master's start: {name} "):
        offer(dataclasses.replace(HEADER, **{name: value}))


def test_a_good_offer_is_refused_while_our_upstream_works():
    with pytest.raises(wire.ProtocolError, match="this hop's upstream 10.0.0.1 is working"):
        offer(working_upstream="10.0.0.1")


def test_a_bad_offer_while_our_upstream_works_is_refused_for_what_is_wrong_with_it():
    with pytest.raises(wire.ProtocolError, match="stream facts differ"):
        offer(dataclasses.replace(HEADER, image="other"), working_upstream="10.0.0.1")


# -- records: what the reader lets into a buffer --------------------------------------------


def test_a_record_at_the_byte_we_need_next_is_taken():
    record(wire.DATA, RECORD, 3 * RECORD, expected=3 * RECORD)


@pytest.mark.parametrize("offset", [2 * RECORD, 4 * RECORD])
def test_a_record_elsewhere_than_the_byte_we_need_next_is_refused(offset):
    with pytest.raises(wire.ProtocolError,
                       match=f"record at stream byte {offset}, expected byte {3 * RECORD}"):
        record(wire.DATA, RECORD, offset, expected=3 * RECORD)


def test_a_fresh_upstream_may_resume_past_the_byte_we_need_the_gap_comes_from_the_master():
    record(wire.DATA, RECORD, 5 * RECORD, expected=3 * RECORD, fresh=True)


def test_a_fresh_upstream_may_not_resume_before_the_byte_we_need():
    with pytest.raises(wire.ProtocolError, match="record at stream byte 2000, expected byte 3000"):
        record(wire.DATA, RECORD, 2 * RECORD, expected=3 * RECORD, fresh=True)


def test_a_data_record_longer_than_the_record_size_is_refused():
    record(wire.DATA, RECORD, 0)
    with pytest.raises(wire.ProtocolError, match="record of 1001 bytes exceeds the announced "
                                                 "record size 1000"):
        record(wire.DATA, RECORD + 1, 0)


def test_a_zero_run_may_be_longer_than_a_record():
    record(wire.ZERO, 5 * RECORD, 0)


@pytest.mark.parametrize("kind", [wire.DATA, wire.ZERO])
def test_a_record_past_the_announced_stream_size_is_refused(kind):
    record(kind, RECORD, STREAM - RECORD, expected=STREAM - RECORD)
    with pytest.raises(wire.ProtocolError, match="stream runs past its announced size 10000"):
        record(kind, RECORD, STREAM - RECORD + 1, expected=STREAM - RECORD + 1)


def test_a_zero_run_in_a_compressed_stream_is_refused():
    with pytest.raises(wire.ProtocolError, match="zero-run record in a compressed stream"):
        record(wire.ZERO, RECORD, 0, header=BZ2)


def test_end_at_the_stream_size_is_taken():
    record(wire.END, wire.END_PAYLOAD.size, STREAM, expected=STREAM)


def test_end_before_the_stream_size_is_refused_even_where_we_are():
    with pytest.raises(wire.ProtocolError, match="END record at byte 9000, stream size is 10000"):
        record(wire.END, wire.END_PAYLOAD.size, STREAM - RECORD, expected=STREAM - RECORD)


@pytest.mark.parametrize("length", [0, wire.END_PAYLOAD.size + 1, RECORD + 1, 1 << 31])
def test_an_end_whose_payload_is_not_digest_and_size_is_refused_before_it_is_read(length):
    # Read as announced, a longer END would overrun its pooled buffer and be forwarded
    # with a head claiming bytes that do not follow it.
    with pytest.raises(wire.ProtocolError,
                       match=f"END record payload has {length} bytes, expected 40"):
        record(wire.END, length, STREAM, expected=STREAM)


def test_a_keepalive_carries_nothing_and_may_come_at_any_point():
    record(wire.KEEPALIVE, 0, 12345, expected=3 * RECORD)


def test_a_keepalive_with_a_payload_is_refused():
    with pytest.raises(wire.ProtocolError, match="keep-alive record with a payload"):
        record(wire.KEEPALIVE, 1, 0)


def test_an_abort_is_taken_wherever_the_upstream_got_to():
    record(wire.ABORT, RECORD, 7 * RECORD, expected=3 * RECORD)


def test_an_abort_reason_longer_than_the_record_size_is_refused():
    with pytest.raises(wire.ProtocolError,
                       match="ABORT record of 1001 bytes exceeds the record size"):
        record(wire.ABORT, RECORD + 1, 0)
