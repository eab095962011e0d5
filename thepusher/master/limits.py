"""How much of the master's machine the network may take: open files, connections
served at once, event streams. A lab's LAN has students on it, and a flood of
connections (idle, half-sent, or event streams that never end) must leave the master
answering its clients and the page (docs/security.md, "Many connections").

The figures and why:
- RESERVE_FILES: kept for the master's own files and sockets (image files of rounds and
  uploads, the chains' data connections, journals, logs); connections from the network
  use the rest of the open-file limit.
- PER_SOURCE: connections one address may have served at once, each a thread (about
  20 KiB). A client uses two or three (register or report, its long-poll, a gap fill);
  the admin's machine a page or two and a few scripts; more is someone else's flood.
- MAX_SERVED: connections served at once in all: a room of 500 clients with a long-poll
  and a report each, pages and uploads, with room to spare; about 80 MiB of threads.
- EVENT_STREAMS, EVENT_STREAMS_PER_SOURCE: each open stream is a thread that sends the
  whole status at every change, up to 4 times a second. A lab has a few pages open; a
  browser opens at most 6 connections to one server, so 8 leave room for a watching
  script. A page refused a stream polls /api/status instead (web/app.js).
"""

import errno
import logging
import resource
import threading
import time
from typing import Callable, Dict, Optional

from thepusher.master.guard import peer_key

log = logging.getLogger("thepusher.master")

RESERVE_FILES = 256
PER_SOURCE = 128
MAX_SERVED = 4096
EVENT_STREAMS = 256
EVENT_STREAMS_PER_SOURCE = 8
LOW_OPEN_FILES = 4096  # below this the master warns at start: a room and a flood need more
OUT_OF_FILES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
ACCEPT_REST = 0.1  # seconds accept() rests after it ran out of files: no busy loop
QUIET = 10.0  # seconds between two log lines about the same flood


def raise_open_files() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one (it is often 1024 while the hard one
    allows far more) and say what the master may hold; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError) as e:
            log.warning("open files: cannot raise the limit from %d to %d: %s", soft, hard, e)
    shown = "unlimited" if soft == resource.RLIM_INFINITY else str(soft)
    if soft != resource.RLIM_INFINITY and soft < LOW_OPEN_FILES:
        log.warning("open files: at most %s (the hard limit), so at most %d connections at "
                    "once; raise it to %d or more where the master starts (`ulimit -Hn %d` "
                    "as root, LimitNOFILE=%d in a systemd unit)", shown, connection_budget(soft),
                    LOW_OPEN_FILES * 16, LOW_OPEN_FILES * 16, LOW_OPEN_FILES * 16)
    else:
        log.info("open files: at most %s", shown)
    return soft


def connection_budget(soft: Optional[int] = None) -> int:
    """How many connections from the network the master keeps open at once: its
    open-file limit less RESERVE_FILES (at least half of the limit)."""
    if soft is None:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(soft - RESERVE_FILES, soft // 2)


class Every:
    """Says yes at most once per `interval` seconds, and how many times it said no since:
    for log lines that a flood would repeat thousands of times a second."""

    def __init__(self, interval: float = QUIET, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last: Optional[float] = None
        self._skipped = 0
        self._lock = threading.Lock()

    def due(self) -> Optional[int]:
        """None: stay quiet; else the number of quiet times since the last yes."""
        now = self.clock()
        with self._lock:
            if self._last is not None and now - self._last < self.interval:
                self._skipped += 1
                return None
            self._last, skipped, self._skipped = now, self._skipped, 0
            return skipped


class Slots:
    """Places counted in all and per source address (an IPv6 address per /64, which one
    machine can fill): take one before the work, give it back in a `finally`."""

    def __init__(self, total: int, per_source: int, what: str) -> None:
        self.total = total
        self.per_source = per_source
        self.what = what  # e.g. "event streams"
        self._lock = threading.Lock()
        self._taken: Dict[str, int] = {}
        self.in_use = 0

    def take(self, host: str) -> str:
        """"" if `host` got a place; else why not, as a sentence."""
        key = peer_key(host)
        with self._lock:
            mine = self._taken.get(key, 0)
            if mine >= self.per_source:
                return f"too many {self.what} from {key}: {mine} open, at most {self.per_source} per address"
            if self.in_use >= self.total:
                return f"too many {self.what}: {self.in_use} open, at most {self.total}"
            self._taken[key] = mine + 1
            self.in_use += 1
            return ""

    def release(self, host: str) -> None:
        key = peer_key(host)
        with self._lock:
            left = self._taken.get(key, 0) - 1
            if left > 0:
                self._taken[key] = left
            else:
                self._taken.pop(key, None)
            self.in_use -= 1


class AcceptRest:
    """What the accept loop does when accept() fails for want of files (EMFILE, ENFILE):
    the listening socket stays readable, so trying again at once would spin a core.
    It rests ACCEPT_REST and says so once per QUIET seconds; connections wait in the
    kernel's backlog meanwhile and are taken when files are free again."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._say = Every()

    def __call__(self, error: OSError) -> None:
        skipped = self._say.due()
        if skipped is not None:
            log.warning("out of open files (%s): accepting no connection for now, %.1f s "
                        "at a time%s; connections from the network may use %d",
                        error.strerror or error, ACCEPT_REST,
                        f" ({skipped} more times since the last message)" if skipped else "",
                        self.budget)
        time.sleep(ACCEPT_REST)
