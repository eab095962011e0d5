"""The control plane: clients register, get ready, wait for a start and report; rounds
begin by the groups' start policies (a starter thread, policy.py) or when a person
says `thepusher start` / `retry`.

Every call validates its input and answers with a dict; errors a client can fix are
raised as ApiError with an HTTP status and a sentence, never as a crash.
"""

import hmac
import logging
import math
import threading
import time
from typing import Dict, List, Optional

from thepusher import signing
from thepusher.chain import wire
from thepusher.config.model import ClientGroup, normalize_host
from thepusher.master import keys, policy, wol
from thepusher.master.history import INTERRUPTED
from thepusher.master.hosts import HostBook
from thepusher.master.images import Catalog, ImageFile
from thepusher.master.rounds import describe_chains, run_round
from thepusher.master.state import Client, FINAL, Round, State


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


LONG_POLL = 25.0  # longest a /api/next request is held open

MAX_INT = (1 << 63) - 1  # largest integer a client may send (a byte count, a port)


def _get(body: dict, key: str, kind, default=None, required: bool = False):
    value = body.get(key, default)
    if value is None:
        if required:
            raise ApiError(400, f"missing field {key!r}")
        return default
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ApiError(400, f"field {key!r} must be {kind.__name__}, got {type(value).__name__}")
    # JSON allows NaN, Infinity and 10**4000; the status page's arithmetic does not
    if kind is int and not -MAX_INT <= value <= MAX_INT:
        raise ApiError(400, f"field {key!r} is out of range")
    if kind is float and not math.isfinite(value):
        raise ApiError(400, f"field {key!r} must be a finite number")
    return value


log = logging.getLogger("thepusher.master")


class Controller:
    def __init__(self, state: State, catalog: Catalog, book: HostBook) -> None:
        self.state = state
        self.catalog = catalog
        self.book = book
        self.settings = state.config.settings
        # The nonce each host sent with its last registration: its starts are signed over
        # it (with the config's `secret`), so no answer recorded earlier passes for them.
        self._nonces: Dict[str, str] = {}
        for host, mac in book.macs.items():  # until they register again
            if host in state.clients:
                state.clients[host].mac = mac

    def start(self) -> None:
        threading.Thread(target=self._starter, name="starter", daemon=True).start()

    # -- client calls --------------------------------------------------------------

    def register(self, host: str, body: dict) -> dict:
        mac = _get(body, "mac", str, "")
        port = _get(body, "data_port", int, required=True)
        disk_size = _get(body, "disk_size", int)
        nonce = _get(body, "nonce", str, "")
        if not 0 < port < 65536:
            raise ApiError(400, f"data_port {port} is not a TCP port")
        if len(nonce) > signing.MAX_NONCE:
            raise ApiError(400, f"nonce is longer than {signing.MAX_NONCE} characters")
        st = self.state
        with st.lock:
            c = st.client(host)
            c.registered = True
            c.mac, c.data_port, c.disk_size = mac, port, disk_size
            c.last_seen = time.monotonic()
            st.touch()
            r = st.active_round(host)
            if r is not None:
                if c.state not in FINAL:  # else keep the reason it failed with
                    st.set_state(c, "ERROR", f"client restarted during round {r.number}")
            else:
                self._reset(c)
                st.set_state(c, "NONE")
            self._nonces[host] = nonce
            answer = self._signed(signing.TASK, host,
                                  {"host": host, "group": c.group, "task": self._task(c)})
        self.book.learn_mac(host, mac)
        return answer

    def ready(self, host: str, body: dict) -> dict:
        st = self.state
        with st.lock:
            c = st.clients.get(host)
            if c is None or not c.registered:
                raise ApiError(409, f"{host} is not registered; POST /api/register first")
            if c.group is None:
                raise ApiError(409, f"{host} belongs to no client group in the config")
            if st.active_round(host) is not None:
                raise ApiError(409, f"{host} is already part of a running round")
            c.last_seen = time.monotonic()
            error = _get(body, "error", str, "")
            if error:
                st.set_state(c, "ERROR", error)
                return {"state": c.state}
            c.ready_at = time.monotonic()
            st.set_state(c, "WAIT")  # wakes the starter, which applies the start policy
            return {"state": c.state}

    def next_action(self, host: str, wait: float) -> dict:
        """Long-poll: returns as soon as this client's round starts, else after `wait`."""
        st = self.state
        deadline = time.monotonic() + max(0.0, min(wait, LONG_POLL))
        with st.lock:
            while True:
                c = st.clients.get(host)
                if c is None or not c.registered:
                    raise ApiError(409, f"{host} is not registered; POST /api/register first")
                c.last_seen = time.monotonic()
                r = st.active_round(host)
                if r is not None and r.start_info is not None and c.session != r.session:
                    c.session = r.session
                    return self._signed(signing.START, host,
                                        dict(r.start_info[host], action="receive"))
                if c.state == "ERROR":  # failed in a round before its start reached it
                    return self._signed(signing.START, host,
                                        {"action": "error", "error": c.error})
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self._signed(signing.START, host,
                                        {"action": "wait" if c.group else "none", "state": c.state})
                st.changed.wait(remaining)

    def report(self, host: str, body: dict) -> dict:
        """A client's progress or end. Its DONE or ERROR is in the outcome journal before
        the answer goes out (history.py): a DONE the master acknowledged is never lost.

        The answer tells the client whether to go on: `ok: false` (with `aborted` or
        `reason`) ends its part in the round, e.g. once the master marked it ERROR."""
        state = _get(body, "state", str, required=True)
        session = _get(body, "session", str, required=True)
        if state not in ("BUSY", "DONE", "ERROR"):
            raise ApiError(400, f"state must be BUSY, DONE or ERROR, not {state!r}")
        st = self.state
        with st.lock:
            c = st.clients.get(host)
            r = st.active_round(host)
            if c is not None and r is not None and session == r.session:
                answer, note = self._report_in_round(c, r, state, body)
            else:
                answer, note = self._report_elsewhere(host, c, session, state, body)
        if note is not None:
            st.history.note_outcome(*note)
        return answer

    def _report_in_round(self, c: Client, r: Round, state: str, body: dict):
        st = self.state
        c.last_seen = time.monotonic()
        self._progress(c, body)
        st.touch()
        self._skips(r, c.host, _get(body, "skipped", list, []))
        if r.aborted:
            return {"ok": False, "streaming": False, "aborted": r.error}, None
        if c.state == "DONE":  # a repeated final report (the answer to the first got lost)
            return {"ok": True, "state": "DONE", "streaming": False}, None
        if c.state == "ERROR" and state != "DONE":  # the master gave up on it: skipped, lost ...
            return {"ok": False, "reason": c.error}, None
        if state == "BUSY":
            r.armed.add(c.host)
            st.set_state(c, "BUSY")
            return {"ok": True, "streaming": r.streaming_to(c.host)}, None
        if state == "DONE":
            # A copy proven right counts, even from a host given up on meanwhile (lost,
            # skipped after it had the whole stream); one that is not keeps the reason
            # the host was given up for, if any.
            sha256, size = (r.facts.sha256, r.facts.content_size) if r.facts else (None, None)
            verdict, why = self._judge_done(c, r.secret, r.session, r.image, sha256, size, body)
            if verdict == "ERROR" and c.state == "ERROR":
                why = c.error
            elif c.state == "ERROR":
                log.info("%s proved a verified copy after it was marked ERROR (%s)", c.host, c.error)
            st.set_state(c, verdict, why)
        else:
            st.set_state(c, "ERROR", _get(body, "error", str, "") or "client reported an error")
        note = (r.number, c.host, c.state, c.error, c.verified_by)
        return {"ok": c.state == "DONE", "state": c.state, "reason": c.error}, note

    def _report_elsewhere(self, host: str, c: Optional[Client], session: str, state: str,
                          body: dict):
        """A report for a round that is not running for this host: one a master restart
        interrupted (its clients may still finish, and say so late), one that ended, or
        one this master never heard of."""
        st = self.state
        last = st.rounds.get(c.group) if c is not None and c.group else None
        if last is not None and last.session == session:
            if last.aborted:
                return {"ok": False, "aborted": last.error}, None
            if state == "DONE" and last.outcome.get(host) == "DONE":
                return {"ok": True, "state": "DONE"}, None  # a repeat: the answer got lost
            outcome = last.outcome.get(host, "ERROR")
            return {"ok": False, "reason": f"round {last.number} is over for {host}: {outcome}"
                                           f" {last.errors.get(host, '')}".rstrip()}, None
        record = st.history.interrupted(session)
        if c is not None and record is not None and host in record["chain"] \
                and st.active_round(host) is None:
            return self._late_report(c, record, state, body)
        return {"ok": False, "reason": "no running round with this session for this host"}, None

    def _late_report(self, c: Client, record: dict, state: str, body: dict):
        """A client of a round interrupted by a master restart: it goes on with what it
        has (nobody streams to it any more) and its end counts, a DONE only if it is
        signed with the round's secret and is the digest the round announced."""
        st = self.state
        number, host = record["number"], c.host
        if record["outcome"].get(host) == "DONE":
            return {"ok": True, "state": "DONE", "lost_round": True}, None
        earlier = record["errors"].get(host, INTERRUPTED)
        if earlier != INTERRUPTED and state != "DONE":  # it reported its end before the crash
            return {"ok": False, "reason": f"round {number}: {earlier}"}, None
        c.last_seen = time.monotonic()
        self._progress(c, body)
        st.touch()
        if state == "BUSY":
            return {"ok": True, "streaming": False, "lost_round": True}, None
        if state == "DONE":
            secret = keys.round_secret(st.key, record["session"])
            verdict, why = self._judge_done(c, secret, record["session"], record["image"],
                                            record.get("sha256"), record.get("content_size"), body)
            if verdict == "ERROR" and earlier != INTERRUPTED:
                why = earlier
        else:
            verdict, why = "ERROR", _get(body, "error", str, "") or "client reported an error"
        st.history.set_outcome(record, host, verdict, why, c.verified_by)
        if st.running(c.group) is None and st.history.latest(c.group) is record:
            # the group's last round: its hosts' states are shown from it
            c.outcome = verdict
            c.failures = 0 if verdict == "DONE" else c.failures
            st.set_state(c, verdict, why)
        log.info("round %d (interrupted by a master restart): %s reported %s late%s", number,
                 host, verdict, f": {why}" if why else "")
        note = (number, host, verdict, why, c.verified_by)
        return {"ok": verdict == "DONE", "state": verdict, "reason": why, "lost_round": True}, note

    @staticmethod
    def _progress(c: Client, body: dict) -> None:
        c.bytes_done = _get(body, "bytes_done", int, 0)
        c.bytes_total = _get(body, "bytes_total", int, 0)
        c.rate = _get(body, "rate", float, 0.0)
        c.queues = _get(body, "queues", dict, {})
        c.cpu_seconds = _get(body, "cpu_seconds", float)
        c.max_rss_kb = _get(body, "max_rss_kb", int)
        c.read_back = _get(body, "read_back", int, 0)

    def _skips(self, r: Round, host: str, entries: list) -> None:
        """A member's `skipped` list marks a host ERROR only when that member is the one
        that fed it: the host comes after it in its chain, and every host between them
        is out of the round already (or skipped by it earlier in this very list).
        Anything else a member says about others is a lie or a mistake: it changes
        nothing."""
        st = self.state
        chain = r.chains[r.chain_of[host]]
        at = chain.index(host)
        for entry in entries:
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], str)):
                continue
            victim = entry[0]
            if victim not in chain[at + 1:]:
                continue
            between = chain[at + 1 : chain.index(victim)]
            if any(st.clients[h].state not in FINAL for h in between):
                continue
            skipped = st.clients[victim]
            if skipped.state not in FINAL:
                st.set_state(skipped, "ERROR", f"skipped by {host}: {entry[1]}")

    def image_range(self, session: str, offset: int, length: int, mac: str) -> ImageFile:
        """Authorise a hop's gap fill: the round's open image file (acquired: the caller
        releases it), if the range and its MAC are right."""
        st = self.state
        with st.lock:
            r = next(
                (r for r in st.rounds.values() if r.session == session and r.phase != "finished"),
                None,
            )
            if r is None:
                raise ApiError(404, "no running round with this session")
            expected = wire.range_mac(r.secret, session, offset, length)
            # as bytes: compare_digest refuses str with non-ASCII (headers are Latin-1)
            if not hmac.compare_digest(mac.encode("utf-8", "replace"), expected.encode()):
                raise ApiError(403, "range request not signed with this round's secret")
            facts, f = r.facts, r.image_file
        if facts is None or offset < 0 or length < 0 or offset + length > facts.stream_size:
            raise ApiError(416, f"range {offset}+{length} is outside the image")
        if not f.acquire():
            raise ApiError(404, "the round is over")
        return f

    # -- people's calls -------------------------------------------------------------

    def start_group(self, name: str) -> dict:
        """`thepusher start`: a round now, with every ready host of the group."""
        return self._start_by_hand(name, policy.for_start, "no host is ready (WAIT)")

    def retry_group(self, name: str) -> dict:
        """`thepusher retry`: a round now, for the ready hosts that failed or came late."""
        return self._start_by_hand(
            name, policy.for_retry,
            "no host that failed or came late is ready (WAIT); its client must register again",
        )

    def _start_by_hand(self, name: str, pick, nobody: str) -> dict:
        st = self.state
        with st.lock:
            group = self._group(name)
            running = st.running(name)
            if running is not None:
                raise ApiError(409, f"group {name}: round {running.number} is still running")
            hosts = pick(group, st.clients)
            if not hosts:
                raise ApiError(409, f"group {name}: {nobody}")
            st.held.discard(name)
            r = self._launch(group, hosts)
            message = f"group {name}: round {r.number} started, {describe_chains(r.chains)}"
            if r.left_out:
                message += f"; not ready, so not in it: {', '.join(r.left_out)}"
            return {"group": name, "round": r.number, "chain": r.chain,
                    "chains": r.chains, "left_out": r.left_out,
                    "message": message}

    def abort_group(self, name: str, who: str) -> dict:
        """Stop a running round now: its unfinished hosts are ERROR, the stream stops, and
        the group waits for `start` or `retry` instead of starting again by itself."""
        st = self.state
        with st.lock:
            self._group(name)
            r = st.running(name)
            if r is None:
                raise ApiError(409, f"group {name}: no round is running")
            r.aborted = True
            r.error = f"round {r.number} aborted by {who}"
            st.held.add(name)
            for host in r.chain:
                if st.clients[host].state not in FINAL:
                    st.set_state(st.clients[host], "ERROR", r.error)
            sources = r.sources
        log.warning("group %s: %s", name, r.error)
        for source in sources:
            source.stop()
        return {"group": name, "round": r.number,
                "message": f"group {name}: round {r.number} aborted; the group starts again "
                           f"only with start or retry"}

    def wake_group(self, name: str) -> dict:
        """Wake-on-LAN for every host of the group whose MAC is known (config or
        registration) and that is not already taking part."""
        st = self.state
        with st.lock:
            group = self._group(name)
            macs = {h: group.macs.get(h) or st.client(h).mac for h in group.hosts
                    if st.client(h).state in ("NONE", "DONE", "ERROR")}
        woken = {h: m for h, m in macs.items() if m}
        unknown = [h for h, m in macs.items() if not m]
        target = wol.parse_target(self.settings.wake_address)
        try:
            wol.wake(woken.values(), target)
        except OSError as e:
            raise ApiError(500, f"cannot send Wake-on-LAN packets to {target[0]}:{target[1]}: "
                                f"{e.strerror or e}") from None
        message = f"group {name}: woke {len(woken)} host{'s' if len(woken) != 1 else ''}"
        if unknown:
            message += f"; MAC unknown (add it to the group's macs): {', '.join(unknown)}"
        log.info("%s", message)
        return {"group": name, "woken": woken, "unknown": unknown, "message": message}

    def assign_host(self, host: str, name: str) -> dict:
        """Put a registered client no group lists at the end of group `name`'s chain,
        remembered across restarts (hosts.py). Its client picks the task up when it asks
        again (every 10 s)."""
        host = normalize_host(host)
        st = self.state
        with st.lock:
            group = self._group(name)
            c = st.clients.get(host)
            if c is None or not c.registered:
                raise ApiError(404, f"{host} has not registered with this master")
            if c.group is not None:
                raise ApiError(409, f"{host} is already in group {c.group}")
            try:
                self.book.add(host, name)
            except OSError as e:
                raise ApiError(500, f"cannot save {self.book.path}: {e.strerror or e}") from None
            group.hosts.append(host)
            c.group = name
            st.touch()
        message = f"{host} added to group {name} (position {len(group.hosts)})"
        log.info("%s", message)
        return {"host": host, "group": name, "position": len(group.hosts), "message": message}

    def _group(self, name: str) -> ClientGroup:
        group = self.state.config.groups.get(name)
        if group is None:
            known = ", ".join(self.state.config.groups) or "none"
            raise ApiError(404, f"no client group {name!r} (groups: {known})")
        return group

    # -- rounds ----------------------------------------------------------------------

    def _starter(self) -> None:
        """Start each group's round when its policy says so; wake on every state change
        (a host ready, a round finished) and at the next `wait` deadline."""
        st = self.state
        with st.lock:
            while True:
                now = time.monotonic()
                wake: Optional[float] = None
                for group in st.config.groups.values():
                    if st.running(group.name) is not None or group.name in st.held:
                        continue
                    hosts, when = policy.due(group, st.clients, now)
                    if hosts:
                        self._launch(group, hosts)
                    elif when is not None:
                        wake = when if wake is None else min(wake, when)
                st.changed.wait(None if wake is None else wake - now)

    # -- internals (lock held) -----------------------------------------------------

    def _judge_done(self, c: Client, secret: bytes, session: str, image_name: str,
                    sha256: Optional[str], content_size: Optional[int], body: dict):
        """The master's own check of a DONE: signed by a member of the round, for the
        exact digest and size the round announced (`sha256`, `content_size`; None where a
        record from an older master lacks them), checked the way the image asks."""
        c.sha256 = _get(body, "sha256", str, "")
        c.verified_by = _get(body, "verified_by", str, "write")
        auth = _get(body, "auth", str, "")
        expected = wire.report_mac(secret, session, "DONE", c.sha256, c.bytes_done)
        if not hmac.compare_digest(auth.encode("utf-8", "replace"), expected.encode()):
            return "ERROR", "DONE report not signed with the round's secret"
        if sha256 is None:
            return "ERROR", "the round's image digest is unknown to the master"
        if c.sha256 != sha256:
            return "ERROR", f"wrote digest {c.sha256 or 'none'}, image is {sha256}"
        if c.bytes_done != content_size:
            return "ERROR", f"wrote {c.bytes_done} bytes, image has {content_size}"
        image = self.state.config.images.get(image_name)
        if image is not None and image.verify == "readback" and c.verified_by != "readback":
            return "ERROR", (f"the image asks for verify = \"readback\", the client checked "
                             f"only {c.verified_by!r}")
        return "DONE", ""

    @staticmethod
    def _reset(c: Client) -> None:
        c.bytes_done = c.bytes_total = c.read_back = 0
        c.rate = 0.0
        c.sha256 = c.verified_by = ""
        c.queues = {}
        c.cpu_seconds = c.max_rss_kb = None

    def _signed(self, kind: str, host: str, answer: dict) -> dict:
        """With the config's `secret`: the answer plus the host and the nonce of its
        registration, and a signature over all of it (signing.py), which clients holding
        the secret require before they act."""
        if not self.settings.secret:
            return answer
        answer["host"] = host
        answer["nonce"] = self._nonces.get(host, "")
        return signing.sign(self.settings.secret, kind, answer)

    def _task(self, c: Client) -> Optional[dict]:
        if c.group is None:
            return None
        image = self.state.config.images[self.state.config.groups[c.group].image]
        return {
            "group": c.group,
            "image": image.name,
            "comment": image.comment,
            "destination": image.destination,
            "type": image.type,
            "compression": image.compression,
            "verify": image.verify,
            "preImage": image.pre_image,
            "postImage": image.post_image,
        }

    def _launch(self, group: ClientGroup, hosts: List[str]) -> Round:
        r = self.state.new_round(group, hosts)
        threading.Thread(
            target=run_round, args=(self, r), name=f"round-{r.number}", daemon=True
        ).start()
        return r
