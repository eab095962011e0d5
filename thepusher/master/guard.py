"""Slow down token guessing: per peer, after LIMIT wrong tokens (admin or upload token)
within WINDOW seconds, the master answers 429 for the rest of that window without
looking at the token, so a guesser gets at most LIMIT tries a minute per address.

The memory is bounded: peers whose last wrong token is older than the window are
forgotten, and at most MAX_PEERS are remembered (the least recently wrong go first).
IPv6 peers count per /64, which one machine can fill with addresses.
"""

import collections
import ipaddress
import math
import threading
import time
from typing import Callable, Deque

from thepusher.config.model import normalize_host

LIMIT = 5
WINDOW = 60.0
MAX_PEERS = 4096


def peer_key(host: str) -> str:
    """What wrong tokens are counted by: the address, or an IPv6 address's /64."""
    host = normalize_host(host)
    if ":" not in host:
        return host
    try:
        return str(ipaddress.ip_network(f"{host}/64", strict=False))
    except ValueError:
        return host


class Throttle:
    """Wrong tokens per peer; thread-safe (one per master, shared by its threads)."""

    def __init__(self, limit: int = LIMIT, window: float = WINDOW, max_peers: int = MAX_PEERS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.max_peers = max_peers
        self.clock = clock
        self._lock = threading.Lock()
        # peer -> times of its last `limit` wrong tokens; least recently wrong first
        self._wrong: "collections.OrderedDict[str, Deque[float]]" = collections.OrderedDict()

    def blocked(self, host: str) -> int:
        """Seconds (rounded up) until `host` may try a token again; 0: it may now."""
        now = self.clock()
        with self._lock:
            self._forget(now)
            times = self._wrong.get(peer_key(host))
            if times is None or len(times) < self.limit:
                return 0
            left = times[0] + self.window - now
        return max(1, math.ceil(left)) if left > 0 else 0

    def wrong(self, host: str) -> None:
        """`host` sent a wrong token."""
        now = self.clock()
        key = peer_key(host)
        with self._lock:
            times = self._wrong.pop(key, None) or collections.deque(maxlen=self.limit)
            times.append(now)
            self._wrong[key] = times  # now the most recently wrong
            self._forget(now)
            while len(self._wrong) > self.max_peers:
                self._wrong.popitem(last=False)

    def _forget(self, now: float) -> None:
        while self._wrong:
            key, times = next(iter(self._wrong.items()))
            if now - times[-1] < self.window:
                return
            del self._wrong[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._wrong)


