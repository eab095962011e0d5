"""What the master knows about clients and rounds, behind one lock.

HTTP handler threads call in here (register, ready, next_action, report) and the round
runner (rounds.py) drives each round through it. A condition variable wakes the
clients' long-polls when a round starts, so a start reaches the whole room at once.
"""

import heapq
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from thepusher import plan
from thepusher.chain import wire
from thepusher.config.model import ClientGroup, Config
from thepusher.master import keys, limits
from thepusher.master.history import History
from thepusher.image.facts import ImageFacts
from thepusher.master.images import ImageFile
from thepusher.master.marks import Marks

log = logging.getLogger("thepusher.master")

STATES = ("NONE", "WAIT", "BUSY", "DONE", "ERROR")
FINAL = ("DONE", "ERROR")
# Hosts that registered but are in no group, kept for the page (to be added to a group):
# twice a large room. Beyond it the least recently heard from are let go, MAX_UNASSIGNED
# // 16 at a time (so that finding them is rare); a real one registers again within 10 s.
MAX_UNASSIGNED = 1024


@dataclass
class Client:
    host: str
    group: Optional[str] = None
    state: str = "NONE"
    mac: str = ""
    data_port: int = 0
    disk_size: Optional[int] = None  # bytes of its destination disk, when it says
    destination: str = ""  # where it writes: the image's destination or its --destination
    disks: List[dict] = field(default_factory=list)  # its inventory (master/disks.py), replaced whole
    registered: bool = False
    bytes_done: int = 0
    bytes_total: int = 0
    free_bytes: int = 0  # of bytes_done, those the image leaves free: skipped, not written
    rate: float = 0.0
    error: str = ""
    sha256: str = ""
    verified_by: str = ""  # how its DONE was checked: "write" (hash of what was written) or "readback"
    read_back: int = 0  # bytes read back from its disk so far (verify = "readback")
    after_write: List[str] = field(default_factory=list)  # steps after a verified copy, as lines
    # It cannot take part as it is (its preImage failed, the image does not fit its
    # disk): no round waits for it until it registers again.
    unready: bool = False
    personalized: List[str] = field(default_factory=list)  # what its DONE says personalize changed
    queues: dict = field(default_factory=dict)
    cpu_seconds: Optional[float] = None
    max_rss_kb: Optional[int] = None
    last_seen: float = 0.0
    last_report: float = 0.0  # monotonic time of its last progress report (0: none since it registered)
    nonce: str = ""  # what it sent with its last registration: its answers are signed over it
    session: str = ""
    ready_at: float = 0.0  # monotonic time it last became WAIT: the start policies' clock
    outcome: str = ""  # how its last round ended: "", "DONE" or "ERROR" (kept across restarts)
    failures: int = 0  # rounds in a row it ended in ERROR: counted against `retries`
    next_boot: str = ""  # the admin's mark for its next network boot (nextboot.py): "image", "put:DEV"
    last_boot: dict = field(default_factory=dict)  # what the master told it at its last network boot

    def eta(self) -> Optional[float]:
        """Seconds until this client has written everything, at its current rate."""
        if self.state != "BUSY" or self.rate <= 0 or not self.bytes_total:
            return None
        return max(0.0, (self.bytes_total - self.bytes_done) / self.rate)

    def public(self) -> dict:
        eta = self.eta()
        return {
            "host": self.host,
            "state": self.state,
            "mac": self.mac,
            "registered": self.registered,
            "destination": self.destination,
            "disk_size": self.disk_size,
            "disks": self.disks,
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "free_bytes": self.free_bytes,
            "rate": round(self.rate, 1),
            "eta_seconds": None if eta is None else round(eta, 1),
            "error": self.error,
            "sha256": self.sha256,
            "verified_by": self.verified_by if self.state == "DONE" else "",
            "personalized": self.personalized if self.state == "DONE" else [],
            "read_back": self.read_back,
            "after_write": self.after_write if self.state == "DONE" else [],
            "queues": self.queues,
            "cpu_seconds": self.cpu_seconds,
            "max_rss_kb": self.max_rss_kb,
            "seen_ago": round(time.monotonic() - self.last_seen, 1) if self.last_seen else None,
            "last_report_age": round(time.monotonic() - self.last_report, 1) if self.last_report else None,
            "next_boot": self.next_boot,
            "last_boot": self.last_boot,
        }


@dataclass
class Round:
    number: int
    group: str
    image: str
    session: str
    secret: bytes
    chains: List[List[str]]  # each streamed by the master at once: config `chains`
    chain: List[str] = field(init=False)  # every host in the round, chain after chain
    chain_of: Dict[str, int] = field(init=False)  # host -> index of its chain
    left_out: List[str] = field(default_factory=list)  # hosts still to image, not ready at the start
    phase: str = "preparing"  # preparing -> arming -> streaming -> finished
    started: float = field(default_factory=time.time)
    finished: Optional[float] = None
    starts: Optional[Dict[str, plan.Start]] = None  # host -> its start, once the round arms
    armed: set = field(default_factory=set)
    sources: List[Any] = field(default_factory=list)  # master/stream.Source per chain once streaming
    feeding: set = field(default_factory=set)  # indices of the chains the master still streams to
    chain_errors: Dict[int, str] = field(default_factory=dict)  # chain index -> why its stream failed
    error: str = ""
    outcome: Dict[str, str] = field(default_factory=dict)
    errors: Dict[str, str] = field(default_factory=dict)  # the reason, for each host not DONE
    aborted: bool = False  # a person stopped it (abort): its hosts are ERROR, its sources stop
    image_file: Optional[ImageFile] = None  # the open file every chain of the round streams
    record_size: int = wire.DEFAULT_RECORD_SIZE  # its streams' (wire.record_size_for), gap fills' too
    facts: Optional[ImageFacts] = None  # of that file: what the round announces, and judges by
    free_map: bytes = b""  # a compressed image's free map (freemap.encode): GET /api/free-map
    verified_by: Dict[str, str] = field(default_factory=dict)  # host -> how its DONE was checked

    def __post_init__(self) -> None:
        self.chain = [h for hosts in self.chains for h in hosts]
        self.chain_of = {h: i for i, hosts in enumerate(self.chains) for h in hosts}

    def streaming_to(self, host: str) -> bool:
        """The master may still send to `host`'s chain: its hops wait for an upstream."""
        return self.phase == "arming" or self.chain_of.get(host) in self.feeding

    def sent(self, i: int) -> int:
        return self.sources[i].sent if i < len(self.sources) else 0

    def public(self) -> dict:
        return {
            "number": self.number,
            "group": self.group,
            "image": self.image,
            "session": self.session,
            "chain": self.chain,
            "chains": [{"hosts": hosts, "bytes_sent": self.sent(i), "error": self.chain_errors.get(i, "")}
                       for i, hosts in enumerate(self.chains)],
            "left_out": self.left_out,
            "phase": self.phase,
            "started": self.started,
            "finished": self.finished,
            "bytes_sent": sum(self.sent(i) for i in range(len(self.chains))),
            "error": self.error,
            "outcome": self.outcome,
            "errors": self.errors,
            "verified_by": self.verified_by,
            "aborted": self.aborted,
            "interrupted": False,
            # The image as this round sent it: late reports after a master restart are
            # judged against these.
            "sha256": self.facts.sha256 if self.facts else None,
            "content_size": self.facts.content_size if self.facts else None,
        }


class State:
    def __init__(self, config: Config, history: History, key: bytes,
                 marks: Optional[Marks] = None,
                 forget: Callable[[str], None] = lambda host: None) -> None:
        """`forget(host)` is called for each unassigned host the master lets go."""
        self.config = config
        self.key = key  # the master's own key: each round's secret is derived from it (keys.py)
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # clients' long-polls and round runners
        self.updated = threading.Condition(self.lock)  # the page's event streams
        self.version = 0  # counts changes anyone watching the status would see
        self.held: set = set()  # groups an admin aborted: no automatic start until start/retry
        self.clients: Dict[str, Client] = {}
        self.rounds: Dict[str, Round] = {}  # each group's current (or last) round
        self.history = history
        self.marks = marks if marks is not None else Marks(None)
        self.forget = forget
        self._crowded = limits.Every()
        for group in config.groups.values():
            for host in group.hosts:
                self.clients[host] = Client(host=host, group=group.name)
        self._restore_outcomes()
        for host, mark in self.marks.marks.items():
            if host in self.clients:
                self.clients[host].next_boot = mark

    def _restore_outcomes(self) -> None:
        """After a restart, each host's last outcome, so a group does not wait for hosts
        that are DONE. Only for the group's current image: a changed config starts afresh."""
        for record in self.history.finished():
            group = self.config.groups.get(record["group"])
            if group is None or group.image != record.get("image"):
                continue
            for host, outcome in record["outcome"].items():
                c = self.clients.get(host)
                if c is not None and c.group == group.name:
                    c.state = c.outcome = outcome
                    c.error = record.get("errors", {}).get(host, "")
                    c.verified_by = record.get("verified_by", {}).get(host, "")
                    # a DONE wrote that round's whole image; what an ERROR wrote is not kept
                    done = (record.get("content_size") or 0) if outcome == "DONE" else 0
                    c.bytes_done = c.bytes_total = done

    # -- helpers (call with the lock held) ------------------------------------

    def touch(self) -> None:
        """Something the status shows changed: wake the event streams (not the clients)."""
        self.version += 1
        self.updated.notify_all()

    def wait_update(self, seen: int, timeout: float) -> int:
        """Block until the version differs from `seen` or `timeout`; returns the version."""
        with self.lock:
            if self.version == seen:
                self.updated.wait(timeout)
            return self.version

    def client(self, host: str) -> Client:
        c = self.clients.get(host)
        if c is None:
            group = self.config.group_of(host)
            c = self.clients[host] = Client(host=host, group=group.name if group else None,
                                            next_boot=self.marks.marks.get(host, ""))
            if group is None:
                self._bound_unassigned(host)
            self.touch()
        return c

    def _bound_unassigned(self, newcomer: str) -> None:
        """At most MAX_UNASSIGNED hosts in no group: let the least recently seen go."""
        grouped = sum(len(g.hosts) for g in self.config.groups.values())
        over = len(self.clients) - grouped - MAX_UNASSIGNED
        if over <= 0:
            return
        idle = heapq.nsmallest(over + MAX_UNASSIGNED // 16,
                               (c for c in self.clients.values() if c.group is None and c.host != newcomer),
                               key=lambda c: c.last_seen)
        for c in idle:
            del self.clients[c.host]
            self.forget(c.host)
        skipped = self._crowded.due()
        if skipped is not None:
            log.warning("more than %d hosts in no group registered: let the %d heard from least "
                        "recently go (they are listed again when they register)%s", MAX_UNASSIGNED,
                        len(idle), f"; {skipped} times more since the last message" if skipped else "")

    def set_state(self, c: Client, state: str, error: str = "") -> None:
        if (c.state, c.error) != (state, error):
            if state == "ERROR":
                log.warning("%s: %s -> ERROR: %s", c.host, c.state, error)
            else:
                log.info("%s: %s -> %s", c.host, c.state, state)
            self.touch()  # a BUSY report's repeated BUSY changes nothing the status shows
        c.state = state
        c.error = error
        self.changed.notify_all()

    def set_mark(self, c: Client, mark: str) -> None:
        """The admin's mark for `c`'s next network boot, saved (OSError if it cannot be)."""
        self.marks.set(c.host, mark)
        if c.next_boot != mark:
            c.next_boot = mark
            self.touch()

    def mark_skipped(self, r: Round, host: str, by: str, reason: str) -> None:
        """A hop skipped `host` in round `r`: it cannot end with a verified copy."""
        with self.lock:
            c = self.clients.get(host)
            if c is not None and host in r.chain and c.state not in FINAL:
                self.set_state(c, "ERROR", f"skipped by {by}: {reason}")

    def new_round(self, group: ClientGroup, hosts: List[str]) -> Round:
        """A round for `hosts` in the group's chains, recorded (and saved) as running
        before anything is sent."""
        session = secrets.token_hex(8)
        r = Round(
            number=self.history.counter + 1,
            group=group.name,
            image=group.image,
            session=session,
            secret=keys.round_secret(self.key, session),
            chains=group.split(hosts),
            left_out=[h for h in group.hosts if h not in hosts and self.clients[h].state != "DONE"],
        )
        self.rounds[group.name] = r
        self.history.record(r.public())
        self.changed.notify_all()
        self.touch()
        return r

    def finish_round(self, r: Round) -> None:
        """Each host's outcome (retries count on it) into the round and the saved history."""
        for host in r.chain:
            c = self.clients[host]
            c.outcome = c.state
            c.failures = 0 if c.state == "DONE" else c.failures + 1
            if c.state == "DONE" and c.next_boot == "image":
                try:  # re-imaged as the admin asked: from now on the master decides
                    self.set_mark(c, "")
                except OSError as e:
                    log.error("%s: cannot clear its re-image mark: %s", host, e)
        # New dicts, not updates: status() serialises public() views outside the lock.
        r.outcome = {h: self.clients[h].state for h in r.chain}
        r.errors = {h: self.clients[h].error for h in r.chain if r.outcome[h] != "DONE"}
        r.verified_by = {h: self.clients[h].verified_by for h in r.chain if r.outcome[h] == "DONE"}
        r.phase = "finished"
        r.finished = time.time()
        saved = self.history.record(r.public())
        if saved and not any(x.phase != "finished" for x in self.rounds.values()):
            self.history.clear_journal()
        self.changed.notify_all()
        self.touch()

    def running(self, group: str) -> Optional[Round]:
        r = self.rounds.get(group)
        return r if r is not None and r.phase != "finished" else None

    def active_round(self, host: str) -> Optional[Round]:
        c = self.clients.get(host)
        if c is None or c.group is None:
            return None
        r = self.running(c.group)
        return r if r is not None and host in r.chain else None

    # -- status ----------------------------------------------------------------

    def status(self) -> dict:
        with self.lock:
            groups = []
            finished = self.history.finished()
            for name, group in self.config.groups.items():
                r = self.rounds.get(name)
                last = next((x for x in reversed(finished) if x["group"] == name), None)
                clients = [dict(self.clients[h].public(), position=i + 1)
                           for i, h in enumerate(group.hosts)]
                for c in clients:  # the config's MAC wins over the one the client reported
                    c["mac"] = group.macs.get(c["host"], c["mac"])
                    known = self.config.hosts.get(c["host"])
                    c["name"] = known.name if known else ""
                groups.append({
                    "name": name,
                    "image": group.image,
                    "hosts": group.hosts,
                    "start": group.start,
                    "wait": group.wait,
                    "min_clients": group.min_clients,
                    "retries": group.retries,
                    "chains": group.chains,
                    "round": r.public() if r else last,  # last: from before a restart
                    "held": name in self.held,
                    "clients": clients,
                    "totals": _totals(clients),
                })
            unassigned = [c.public() for c in self.clients.values() if c.group is None]
            history = finished[-20:]
        etas = [g["totals"]["eta_seconds"] for g in groups if g["totals"]["eta_seconds"] is not None]
        return {"groups": groups, "unassigned": unassigned, "history": history,
                "eta_seconds": max(etas) if etas else None, "version": self.version}


def _totals(clients: List[dict]) -> dict:
    """A group at a glance: bytes of all its clients, their summed write rate, and when
    the last of them will be done."""
    etas = [c["eta_seconds"] for c in clients if c["eta_seconds"] is not None]
    return {
        "bytes_done": sum(c["bytes_done"] for c in clients),
        "bytes_total": sum(c["bytes_total"] for c in clients),
        "free_bytes": sum(c["free_bytes"] for c in clients),
        "rate": round(sum(c["rate"] for c in clients if c["state"] == "BUSY"), 1),
        "eta_seconds": max(etas) if etas else None,
        "states": {s: sum(1 for c in clients if c["state"] == s) for s in STATES},
    }
