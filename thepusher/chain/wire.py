"""The data-plane wire format between two hops (documented in docs/protocol.md).

A connection goes: the receiver sends HELLO with a fresh nonce; the sender answers
with HEADER (JSON facts + HMAC over nonce and facts, keyed by the round's secret);
the receiver answers ACCEPT (with the first byte it lacks) or REJECT (with a reason).
Then the sender streams records. Every record has a fixed 16-byte head so that a hop
can read it into the front of the same buffer as the payload and forward both with
one send, untouched.

Everything here is pure encoding and decoding plus exact-size socket reads; the
threads that use it live in chain/hop/ (receiving side) and master/source.py (source).
"""

import hashlib
import hmac
import json
import os
import re
import socket
import struct
import time
from dataclasses import asdict, dataclass, field
from typing import Optional, Tuple

PROTOCOL_VERSION = 1  # what a stream without FREE records says: clients of any age take it
FREE_VERSION = 2  # a stream with FREE records: a client that predates them refuses it
VERSIONS = (PROTOCOL_VERSION, FREE_VERSION)

HELLO_MAGIC = b"TPH1"
HEADER_MAGIC = b"TPHD"
ACCEPT_MAGIC = b"TPOK"
REJECT_MAGIC = b"TPNO"
PROBE_MAGIC = b"TPPR"  # sent instead of a header: "are you alive?", then close
NONCE_SIZE = 16
MAC_SIZE = 32
MAX_HEADER = 64 * 1024
MAX_REASON = 4096
MAX_SIZE = (1 << 63) - 1  # header sizes and offsets: fit a record's u64 and a file offset

RECORD_HEAD = struct.Struct("!B3xIQ")  # type, payload length, stream offset
HEAD_SIZE = RECORD_HEAD.size
DATA = 1
ZERO = 2
END = 3
KEEPALIVE = 4
ABORT = 5  # the sender gave up: nobody above it can complete the stream
FREE = 6  # a run of bytes the image does not define: skipped, never written (version 2)
RECORD_TYPES = {DATA: "DATA", ZERO: "ZERO", END: "END", KEEPALIVE: "KEEPALIVE", ABORT: "ABORT",
                FREE: "FREE"}
RUNS = (ZERO, FREE)  # length only, no payload
STREAM_BYTES = (DATA, ZERO, FREE)  # records that carry stream bytes

DEFAULT_RECORD_SIZE = 1 << 20
MAX_RECORD = 16 << 20
MIN_RECORD = 64 << 10  # the smallest the master picks (below, per-record costs grow)
FILL_SHARE = 64  # a chain's fill lag may be this share of its stream (record_size_for)


def record_size_for(stream_size: int, depth: int) -> int:
    """The record size for a stream through chains of up to `depth` hops.

    A hop forwards a record once it holds all of it, so the last hop lags `depth`
    records behind the master: 200 hops of 1 MiB records are 200 MiB, as long as a
    200 MiB image takes. The largest power of two from MIN_RECORD to 1 MiB that keeps
    that lag within 1/FILL_SHARE of the stream; records only shrink where the chain
    is deep for its image, which is also where their per-record cost matters least.
    """
    size = DEFAULT_RECORD_SIZE
    while size > MIN_RECORD and max(depth, 1) * size * FILL_SHARE > stream_size:
        size //= 2
    return size

END_PAYLOAD = struct.Struct("!32sQ")  # content sha256, content size


class ProtocolError(Exception):
    """The peer sent something that is not a valid thepusher stream."""


class UpstreamGaveUp(ProtocolError):
    """The upstream sent ABORT: it lost its own upstream and nobody took over."""


class PeerClosed(ProtocolError):
    """The peer closed the connection where more bytes were due."""


@dataclass
class StreamHeader:
    """The facts a receiver needs before it writes a byte.

    `stream_size` counts bytes as transmitted (compressed if the image is);
    `content_size` and `content_sha256` describe what ends up on the disk, free ranges
    counted as zeros. A version 2 header also states the free map (`free_bytes`,
    `free_map_sha256`): a version 1 header has neither field, so clients that predate
    FREE records take it, and refuse a version 2 one for its version.
    """

    session: str
    image: str
    stream_size: int
    content_size: int
    content_sha256: str
    compression: str = "NONE"
    record_size: int = DEFAULT_RECORD_SIZE
    offset: int = 0
    sender: int = 0  # the sender's place in the chain: 0 is the master, 1 the first client
    version: int = PROTOCOL_VERSION
    extra: dict = field(default_factory=dict)
    free_bytes: int = 0  # version 2: bytes sent as FREE records
    free_map_sha256: str = ""  # version 2: the free map's digest (image/freemap.py)

    def encode(self) -> bytes:
        data = asdict(self)
        if self.version == PROTOCOL_VERSION:
            del data["free_bytes"], data["free_map_sha256"]
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> "StreamHeader":
        try:
            data = json.loads(bytes(raw).decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError) as e:
            raise ProtocolError(f"header is not valid JSON: {e}") from None
        except RecursionError:  # "[[[[...": json nests by recursion
            raise ProtocolError("header is not valid JSON: nested too deeply") from None
        if not isinstance(data, dict):
            raise ProtocolError("header is not a JSON object")
        version = data.get("version")
        if version not in VERSIONS or isinstance(version, bool):
            raise ProtocolError(
                f"header has protocol version {version!r}, this client knows "
                f"{', '.join(map(str, VERSIONS))}: update thepusher on this machine"
            )
        types = {
            "session": str, "image": str, "stream_size": int, "content_size": int,
            "content_sha256": str, "compression": str, "record_size": int, "offset": int,
            "sender": int, "extra": dict,
        }
        if version == FREE_VERSION:
            types.update(free_bytes=int, free_map_sha256=str)
        for key, kind in types.items():
            value = data.get(key)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ProtocolError(f"header field {key!r} missing or not {kind.__name__}")
        for key in ("stream_size", "content_size", "offset", "sender", "free_bytes"):
            if key not in types:
                continue
            if data[key] < 0:
                raise ProtocolError(f"header field {key!r} is negative")
            if data[key] > MAX_SIZE:
                raise ProtocolError(f"header field {key!r} is out of range")
        if not _SHA256.fullmatch(data["content_sha256"]):
            raise ProtocolError("header field 'content_sha256' is not a SHA-256 hex digest")
        if version == FREE_VERSION and not _SHA256.fullmatch(data["free_map_sha256"]):
            raise ProtocolError("header field 'free_map_sha256' is not a SHA-256 hex digest")
        if not 0 < data["record_size"] <= MAX_RECORD:
            raise ProtocolError(f"header record_size {data['record_size']} out of range")
        unknown = set(data) - set(types) - {"version"}
        if unknown:
            raise ProtocolError(f"header has unknown fields {sorted(unknown)}")
        return cls(**data)


_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Expected:
    """The facts of a round's stream as the master announced them to a hop (in its
    signed start): the only facts the hop checks a stream against. A header is only
    the sender's claim; any member of the chain could make one up."""

    image: str
    stream_size: int
    content_size: int
    content_sha256: str
    compression: str = "NONE"
    record_size: int = DEFAULT_RECORD_SIZE
    free_bytes: int = 0
    free_map_sha256: str = ""  # "": the stream has no FREE records (version 1)

    @classmethod
    def of(cls, header: StreamHeader) -> "Expected":
        return cls(header.image, header.stream_size, header.content_size,
                   header.content_sha256, header.compression, header.record_size,
                   header.free_bytes, header.free_map_sha256)

    def mismatch(self, header: StreamHeader) -> Optional[str]:
        """Which fact `header` states otherwise than the master did, or None."""
        for name in ("content_sha256", "content_size", "stream_size", "compression",
                     "record_size", "image", "free_bytes", "free_map_sha256"):
            said, signed = getattr(header, name), getattr(self, name)
            if said != signed:
                return f"{name} {said!r}, the master's start says {signed!r}"
        return None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number")


def report_mac(secret: bytes, session: str, state: str, sha256: str, size: int) -> str:
    """Authenticates a client's final report: only a member of the round can vouch for a
    disk, also to a master restarted since (it derives the round's secret again)."""
    msg = f"thepusher-report-v1:{session}:{state}:{sha256}:{size}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def range_mac(secret: bytes, session: str, offset: int, length: int) -> str:
    """Authenticates a hop's request to the master for a range of the stream (gap fill)."""
    msg = f"thepusher-range-v1:{session}:{offset}:{length}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def free_map_mac(secret: bytes, session: str) -> str:
    """Authenticates a hop's request to the master for its round's free map."""
    return hmac.new(secret, f"thepusher-free-map-v1:{session}".encode(), hashlib.sha256).hexdigest()


def header_mac(secret: bytes, nonce: bytes, raw_header: bytes) -> bytes:
    """Bind the header to this connection's nonce, so a recorded header cannot be replayed."""
    return hmac.new(secret, b"thepusher-header-v1" + nonce + raw_header, hashlib.sha256).digest()


def new_nonce() -> bytes:
    return os.urandom(NONCE_SIZE)


def recv_exact(sock: socket.socket, view: memoryview, deadline: Optional[float] = None) -> None:
    """Fill `view` completely from `sock`; the socket's timeout bounds each wait, and
    `deadline` (time.monotonic()) the whole read, so a peer that trickles bytes cannot
    stretch it."""
    got = 0
    size = len(view)
    while got < size:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout(f"timed out after {got} of {size} bytes")
            base = sock.gettimeout()
            sock.settimeout(left if base is None else min(base, left))
        n = sock.recv_into(view[got:])
        if n == 0:
            raise PeerClosed(f"connection closed after {got} of {size} bytes")
        got += n


def recv_bytes(sock: socket.socket, size: int, deadline: Optional[float] = None) -> bytes:
    buf = bytearray(size)
    recv_exact(sock, memoryview(buf), deadline)
    return bytes(buf)


def send_hello(sock: socket.socket, nonce: bytes) -> None:
    sock.sendall(HELLO_MAGIC + nonce)


def recv_hello(sock: socket.socket) -> bytes:
    raw = recv_bytes(sock, len(HELLO_MAGIC) + NONCE_SIZE)
    if raw[:4] != HELLO_MAGIC:
        raise ProtocolError(f"peer is not a thepusher hop (greeting {raw[:4]!r})")
    return raw[4:]


def send_header(sock: socket.socket, header: StreamHeader, secret: bytes, nonce: bytes) -> None:
    raw = header.encode()
    sock.sendall(HEADER_MAGIC + struct.pack("!I", len(raw)) + raw + header_mac(secret, nonce, raw))


class Probe(Exception):
    """The peer only asked whether we are alive."""


def recv_header(sock: socket.socket, deadline: Optional[float] = None) -> Tuple[bytes, bytes]:
    """Return (raw header, mac) without trusting either; the caller checks the MAC first.
    With `deadline` (time.monotonic()) the whole header must arrive by then."""
    magic = recv_bytes(sock, 4, deadline)
    if magic == PROBE_MAGIC:
        raise Probe()
    if magic != HEADER_MAGIC:
        raise ProtocolError(f"expected a stream header, got {magic!r}")
    (length,) = struct.unpack("!I", recv_bytes(sock, 4, deadline))
    if length > MAX_HEADER:
        raise ProtocolError(f"header of {length} bytes exceeds the {MAX_HEADER}-byte limit")
    raw = recv_bytes(sock, length, deadline)
    return raw, recv_bytes(sock, MAC_SIZE, deadline)


def verify_header(raw: bytes, mac: bytes, secret: bytes, nonce: bytes) -> StreamHeader:
    try:
        expected = header_mac(secret, nonce, raw)
        good = hmac.compare_digest(bytes(mac), expected)
    except TypeError as e:  # not bytes-like: nothing a socket could have delivered
        raise ProtocolError(f"header or MAC is not bytes: {e}") from None
    if not good:
        raise ProtocolError("header not signed with this round's secret")
    return StreamHeader.decode(raw)


def send_accept(sock: socket.socket, resume_offset: int) -> None:
    sock.sendall(ACCEPT_MAGIC + struct.pack("!Q", resume_offset))


def send_reject(sock: socket.socket, reason: str) -> None:
    data = reason.encode("utf-8")[:MAX_REASON]
    sock.sendall(REJECT_MAGIC + struct.pack("!H", len(data)) + data)


def recv_answer(sock: socket.socket) -> int:
    """Read ACCEPT/REJECT; return the receiver's resume offset or raise with its reason."""
    magic = recv_bytes(sock, 4)
    if magic == ACCEPT_MAGIC:
        return struct.unpack("!Q", recv_bytes(sock, 8))[0]
    if magic == REJECT_MAGIC:
        (length,) = struct.unpack("!H", recv_bytes(sock, 2))
        reason = recv_bytes(sock, min(length, MAX_REASON)).decode("utf-8", "replace")
        raise ProtocolError(f"receiver refused the stream: {reason}")
    raise ProtocolError(f"expected ACCEPT or REJECT, got {magic!r}")


def connect(
    address: Tuple[str, int],
    header: StreamHeader,
    secret: bytes,
    timeout: float,
    source: Optional[str] = None,
) -> Tuple[socket.socket, int]:
    """Open a sender connection to a hop; return it and the offset the hop wants first."""
    sock = socket.create_connection(
        address, timeout=timeout, source_address=(source, 0) if source else None
    )
    try:
        tune(sock)
        nonce = recv_hello(sock)
        send_header(sock, header, secret, nonce)
        return sock, recv_answer(sock)
    except BaseException:
        sock.close()
        raise


def tune(sock: socket.socket) -> None:
    """Large socket buffers keep a 1 MiB record in flight without stalls on fast links."""
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
        except OSError:
            pass


def pack_head(kind: int, length: int, offset: int) -> bytes:
    return RECORD_HEAD.pack(kind, length, offset)


def unpack_head(buf) -> Tuple[int, int, int]:
    """Parse the 16-byte record head at the start of `buf` (a ZERO or FREE run's length
    has no payload)."""
    try:
        kind, length, offset = RECORD_HEAD.unpack_from(buf)
    except struct.error as e:
        raise ProtocolError(f"record head: {e}") from None
    if kind not in RECORD_TYPES:
        raise ProtocolError(f"unknown record type {kind} at stream byte {offset}")
    if kind not in RUNS and length > MAX_RECORD:
        raise ProtocolError(f"record of {length} bytes at stream byte {offset} exceeds {MAX_RECORD}")
    return kind, length, offset


def abort_record(offset: int, reason: str, record_size: int) -> bytes:
    """ABORT at stream byte `offset` (how far the sender got), the reason as UTF-8, cut
    to fit a record of the stream."""
    payload = reason.encode("utf-8")[: min(MAX_REASON, record_size)]
    return pack_head(ABORT, len(payload), offset) + payload


def end_record(stream_size: int, content_sha256: str, content_size: int) -> bytes:
    payload = END_PAYLOAD.pack(bytes.fromhex(content_sha256), content_size)
    return pack_head(END, len(payload), stream_size) + payload


def parse_end(payload) -> Tuple[str, int]:
    if len(payload) != END_PAYLOAD.size:
        raise ProtocolError(f"END record payload has {len(payload)} bytes, expected {END_PAYLOAD.size}")
    try:
        digest, size = END_PAYLOAD.unpack(payload)
    except (struct.error, TypeError) as e:
        raise ProtocolError(f"END record payload: {e}") from None
    return digest.hex(), size
