"""What a hop is told when a round starts: the client builds it from the master's start
(plan.Start); every thread of the hop reads it and none changes it."""

from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple

from thepusher.chain import wire

Address = Tuple[str, int]


@dataclass
class HopConfig:
    """What the master tells a hop when a round starts."""

    session: str
    secret: bytes
    expect: wire.Expected  # the stream's facts as the master signed them: nothing else counts
    position: int = 1  # our place in the chain; upstreams have lower positions
    downstream: List[Address] = field(default_factory=list)  # every hop after us, in order
    in_flight: int = 16 << 20  # bytes of records between reader, writer and forwarder
    window: int = 32 << 20  # bytes of sent records kept to replay after a skip
    accept_timeout: float = 60.0
    io_timeout: float = 30.0
    source: Optional[str] = None
    # Fetches stream bytes [offset, offset+length) from the master (gap fill): returns
    # an object with readinto(), e.g. an HTTP response; with a third argument True, as
    # records (a stream with FREE records).
    fetch_range: Optional[Callable[[int, int], Any]] = None
    # True while the master is still streaming: hops upstream may still be healing
    # towards us, so waiting for an upstream goes on past accept_timeout.
    round_alive: Optional[Callable[[], bool]] = None
    # Why the master can no longer feed us (it has not answered for io_timeout, or it
    # lost the round in a restart), else None. Then a lost upstream is waited for one
    # io_timeout, not accept_timeout: only the hops before us could still heal.
    master_gone: Optional[Callable[[], Optional[str]]] = None
    # "readback": after the flush, the copy counts as verified only if what the disk
    # returns hashes to the image's digest, not just what was handed to write().
    verify: str = "write"
    # A compressed stream's free map, in offsets of the decoded bytes (which no record
    # can name): fetched from the master before the round and checked against `expect`
    # (client/free_map.py). The writer skips the decoded bytes in these runs. When the
    # start has a map the client could not get, None, and `free_map_error` says why:
    # the hop then writes nothing, and still forwards.
    free_runs: Optional[List[Tuple[int, int]]] = None
    free_map_error: str = ""
