"""What the master knows about clients and rounds, behind one lock.

HTTP handler threads call in here (register, ready, next_action, report) and the round
runner (rounds.py) drives each round through it. A condition variable wakes the
clients' long-polls when a round starts, so a start reaches the whole room at once.
"""

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from thepusher.config import Config

log = logging.getLogger("thepusher.master")

STATES = ("NONE", "WAIT", "BUSY", "DONE", "ERROR")
FINAL = ("DONE", "ERROR")


@dataclass
class Client:
    host: str
    group: Optional[str] = None
    state: str = "NONE"
    mac: str = ""
    data_port: int = 0
    disk_size: Optional[int] = None
    registered: bool = False
    bytes_done: int = 0
    bytes_total: int = 0
    rate: float = 0.0
    error: str = ""
    sha256: str = ""
    queues: dict = field(default_factory=dict)
    cpu_seconds: Optional[float] = None
    max_rss_kb: Optional[int] = None
    last_seen: float = 0.0
    session: str = ""

    def public(self) -> dict:
        return {
            "host": self.host,
            "state": self.state,
            "mac": self.mac,
            "registered": self.registered,
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "rate": round(self.rate, 1),
            "error": self.error,
            "sha256": self.sha256,
            "queues": self.queues,
            "cpu_seconds": self.cpu_seconds,
            "max_rss_kb": self.max_rss_kb,
            "seen_ago": round(time.monotonic() - self.last_seen, 1) if self.last_seen else None,
        }


@dataclass
class Round:
    number: int
    group: str
    image: str
    session: str
    secret: bytes
    chain: List[str]
    phase: str = "preparing"  # preparing -> arming -> streaming -> finished
    started: float = field(default_factory=time.time)
    finished: Optional[float] = None
    start_info: Optional[dict] = None
    armed: set = field(default_factory=set)
    source: Optional[Any] = None  # master/stream.Source once streaming; has .sent
    error: str = ""
    outcome: Dict[str, str] = field(default_factory=dict)

    def public(self) -> dict:
        return {
            "number": self.number,
            "group": self.group,
            "image": self.image,
            "session": self.session,
            "chain": self.chain,
            "phase": self.phase,
            "started": self.started,
            "finished": self.finished,
            "bytes_sent": self.source.sent if self.source else 0,
            "error": self.error,
            "outcome": self.outcome,
        }


class State:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.clients: Dict[str, Client] = {}
        self.rounds: Dict[str, Round] = {}
        self.history: List[Round] = []
        self.round_counter = 0
        for group in config.groups.values():
            for host in group.hosts:
                self.clients[host] = Client(host=host, group=group.name)

    # -- helpers (call with the lock held) ------------------------------------

    def client(self, host: str) -> Client:
        c = self.clients.get(host)
        if c is None:
            group = self.config.group_of(host)
            c = self.clients[host] = Client(host=host, group=group.name if group else None)
        return c

    def set_state(self, c: Client, state: str, error: str = "") -> None:
        if (c.state, c.error) != (state, error):
            if state == "ERROR":
                log.warning("%s: %s -> ERROR: %s", c.host, c.state, error)
            else:
                log.info("%s: %s -> %s", c.host, c.state, state)
        c.state = state
        c.error = error
        self.changed.notify_all()

    def mark_skipped(self, r: Round, host: str, by: str, reason: str) -> None:
        """A hop skipped `host` in round `r`: it cannot end with a verified copy."""
        with self.lock:
            c = self.clients.get(host)
            if c is not None and host in r.chain and c.state not in FINAL:
                self.set_state(c, "ERROR", f"skipped by {by}: {reason}")

    def active_round(self, host: str) -> Optional[Round]:
        c = self.clients.get(host)
        if c is None or c.group is None:
            return None
        r = self.rounds.get(c.group)
        if r is not None and r.phase != "finished" and host in r.chain:
            return r
        return None

    # -- status ----------------------------------------------------------------

    def status(self) -> dict:
        with self.lock:
            groups = []
            for name, group in self.config.groups.items():
                r = self.rounds.get(name)
                groups.append({
                    "name": name,
                    "image": group.image,
                    "hosts": group.hosts,
                    "round": r.public() if r else None,
                    "clients": [
                        dict(self.clients[h].public(), position=i + 1)
                        for i, h in enumerate(group.hosts)
                    ],
                })
            unassigned = [c.public() for c in self.clients.values() if c.group is None]
            history = [r.public() for r in self.history[-20:]]
        return {"groups": groups, "unassigned": unassigned, "history": history}
