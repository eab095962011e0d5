"""What a hop accepts from the chain before it, as pure rules.

A hop writes nothing a rule here refused, so each rule is pinned by a test of its own
(tests/unit/test_rules.py) without sockets or threads. A rule returns None or raises
wire.ProtocolError with the reason the hop logs and reports.
"""

from typing import Optional

from thepusher.chain import wire


def check_offer(
    header: wire.StreamHeader,
    *,
    session: str,
    position: int,
    expect: wire.Expected,
    working_upstream: Optional[str],
) -> None:
    """May the sender of `header` (it proved it holds the round's secret) become our upstream?

    The secret is not enough: any member of the round holds it. The sender must be in
    this round, earlier in the chain than we are (`position`), and send the stream the
    master announced to us (`expect`); and we must have no working upstream
    (`working_upstream` names it if we have), else a member could cut in.
    """
    if header.session != session:
        raise wire.ProtocolError(f"header is for session {header.session}, expected {session}")
    if header.sender >= position:
        raise wire.ProtocolError(
            f"sender at chain position {header.sender} is not upstream of us "
            f"(position {position})"
        )
    why = expect.mismatch(header)
    if why is not None:
        raise wire.ProtocolError(f"stream facts differ from the master's start: {why}")
    if working_upstream is not None:
        raise wire.ProtocolError(f"this hop's upstream {working_upstream} is working")


def check_record(
    header: wire.StreamHeader, kind: int, length: int, offset: int, expected: int, fresh: bool
) -> None:
    """Does a record's head fit the stream `header` describes, at the byte we need next?

    `expected` is the first stream byte we lack. A `fresh` upstream (this is its first
    record) may resume past it: the gap then comes from the master. Checked before the
    payload is read, so that no record overruns a pooled buffer (record_size) or the
    stream, and nothing is written twice or out of place.
    """
    if kind == wire.KEEPALIVE:
        if length:
            raise wire.ProtocolError("keep-alive record with a payload")
        return
    if kind == wire.ABORT:
        if length > header.record_size:
            raise wire.ProtocolError(f"ABORT record of {length} bytes exceeds the record size")
        return
    if offset != expected and not (fresh and offset > expected):
        raise wire.ProtocolError(f"record at stream byte {offset}, expected byte {expected}")
    if kind == wire.DATA and length > header.record_size:
        raise wire.ProtocolError(
            f"record of {length} bytes exceeds the announced record size {header.record_size}"
        )
    if kind in wire.STREAM_BYTES and offset + length > header.stream_size:
        raise wire.ProtocolError(f"stream runs past its announced size {header.stream_size}")
    if kind in wire.RUNS and header.compression != "NONE":
        raise wire.ProtocolError(
            f"{'zero' if kind == wire.ZERO else 'free'}-run record in a compressed stream")
    if kind == wire.FREE and header.version < wire.FREE_VERSION:
        raise wire.ProtocolError(f"FREE record at stream byte {offset} in a version "
                                 f"{header.version} stream, which has no free map")
    if kind == wire.END and offset != header.stream_size:
        raise wire.ProtocolError(f"END record at byte {offset}, stream size is {header.stream_size}")
    if kind == wire.END and length != wire.END_PAYLOAD.size:
        raise wire.ProtocolError(
            f"END record payload has {length} bytes, expected {wire.END_PAYLOAD.size}")
