"""What the hop's threads tell each other, and which one may say it.

Every field here has exactly one writer, named in its comment; the other threads only
read it. Flags are Events and the offers a queue, so none of it needs a lock of ours.
"""

import queue
import socket
import threading
from typing import NamedTuple, Optional, Tuple

from thepusher.chain import wire


class Offer(NamedTuple):
    """A connection that proved itself in a handshake: a would-be upstream."""

    sock: socket.socket
    header: wire.StreamHeader
    host: str


class Shared:
    """One per hop, made by Hop and handed to the threads that signal through it."""

    def __init__(self) -> None:
        # run(): the hop has finished. The acceptor stops, and handshakes offer nothing more.
        self.done = threading.Event()
        # Handshakes put would-be upstreams that proved themselves; the reader takes them.
        self.offers: "queue.Queue[Offer]" = queue.Queue()
        # Handshakes: when (time.monotonic()) and why the last would-be upstream was
        # refused, so that giving up on upstreams can say who tried.
        self.refused: Optional[Tuple[float, str]] = None
        # Reader: the host it reads from, or last read from.
        self.upstream: Optional[str] = None
        # Reader: set while it reads from a working upstream, and for good once it has
        # finished; meanwhile handshakes refuse every other would-be upstream.
        self.upstream_ok = threading.Event()
        # Reader: it has put its last item on the feeds.
        self.reader_done = threading.Event()
        # Forwarder: set while it looks for a live next hop. Buffers come back slowly
        # then, and the reader keeps waiting for them instead of blaming the disk.
        self.healing = threading.Event()
