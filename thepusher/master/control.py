"""The control plane the clients talk to: register, ready, wait for a start, report.

Every call validates its input and answers with a dict; errors a client can fix are
raised as ApiError with an HTTP status and a sentence, never as a crash.
"""

import hmac
import secrets
import threading
import time
from typing import Optional

from thepusher import wire
from thepusher.master.images import Catalog
from thepusher.master.rounds import run_round
from thepusher.master.state import FINAL, Client, Round, State


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


LONG_POLL = 25.0  # longest a /api/next request is held open


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
    return value


class Controller:
    def __init__(self, state: State, catalog: Catalog) -> None:
        self.state = state
        self.catalog = catalog
        self.settings = state.config.settings

    # -- client calls --------------------------------------------------------------

    def register(self, host: str, body: dict) -> dict:
        mac = _get(body, "mac", str, "")
        port = _get(body, "data_port", int, required=True)
        disk_size = _get(body, "disk_size", int)
        if not 0 < port < 65536:
            raise ApiError(400, f"data_port {port} is not a TCP port")
        st = self.state
        with st.lock:
            c = st.client(host)
            c.registered = True
            c.mac, c.data_port, c.disk_size = mac, port, disk_size
            c.last_seen = time.monotonic()
            r = st.active_round(host)
            if r is not None:
                st.set_state(c, "ERROR", f"client restarted during round {r.number}")
            else:
                self._reset(c)
                st.set_state(c, "NONE")
            return {"host": host, "group": c.group, "task": self._task(c)}

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
            st.set_state(c, "WAIT")
            self._maybe_start(c.group)
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
                    return dict(r.start_info[host], action="receive")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return {"action": "wait" if c.group else "none", "state": c.state}
                st.changed.wait(remaining)

    def report(self, host: str, body: dict) -> dict:
        state = _get(body, "state", str, required=True)
        session = _get(body, "session", str, required=True)
        if state not in ("BUSY", "DONE", "ERROR"):
            raise ApiError(400, f"state must be BUSY, DONE or ERROR, not {state!r}")
        st = self.state
        with st.lock:
            c = st.clients.get(host)
            r = st.active_round(host)
            if c is None or r is None or session != r.session:
                return {"ok": False, "reason": "no running round with this session for this host"}
            c.last_seen = time.monotonic()
            c.bytes_done = _get(body, "bytes_done", int, 0)
            c.bytes_total = _get(body, "bytes_total", int, 0)
            c.rate = _get(body, "rate", float, 0.0)
            c.queues = _get(body, "queues", dict, {})
            c.cpu_seconds = _get(body, "cpu_seconds", float)
            c.max_rss_kb = _get(body, "max_rss_kb", int)
            for entry in _get(body, "skipped", list, []):
                if isinstance(entry, list) and len(entry) == 2 and entry[0] in r.chain:
                    skipped = st.clients[entry[0]]
                    if skipped.state not in FINAL:
                        st.set_state(skipped, "ERROR", f"skipped by {host}: {entry[1]}")
            if c.state in FINAL:
                return {"ok": True}
            if state == "BUSY":
                r.armed.add(host)
                st.set_state(c, "BUSY")
            elif state == "DONE":
                c.sha256 = _get(body, "sha256", str, "")
                st.set_state(c, *self._judge_done(c, r))
            else:
                st.set_state(c, "ERROR", _get(body, "error", str, "") or "client reported an error")
            return {"ok": True}

    def image_range(self, session: str, offset: int, length: int, mac: str) -> str:
        """Authorise a hop's gap fill: the image path, if the range and its MAC are right."""
        st = self.state
        with st.lock:
            r = next(
                (r for r in st.rounds.values() if r.session == session and r.phase != "finished"),
                None,
            )
            if r is None:
                raise ApiError(404, "no running round with this session")
            if not hmac.compare_digest(mac, wire.range_mac(r.secret, session, offset, length)):
                raise ApiError(403, "range request not signed with this round's secret")
            image = st.config.images[r.image]
        facts = self.catalog.wait(r.image, 0)
        if facts is None or offset < 0 or length < 0 or offset + length > facts.stream_size:
            raise ApiError(416, f"range {offset}+{length} is outside the image")
        return image.path

    # -- internals (lock held) -----------------------------------------------------

    def _judge_done(self, c: Client, r: Round):
        """The master's own check: DONE only for the image's exact digest and size."""
        facts = self.catalog.wait(r.image, 0)
        if facts is None:
            return "ERROR", "image digest unknown to the master"
        if c.sha256 != facts.sha256:
            return "ERROR", f"wrote digest {c.sha256 or 'none'}, image is {facts.sha256}"
        if c.bytes_done != facts.content_size:
            return "ERROR", f"wrote {c.bytes_done} bytes, image has {facts.content_size}"
        return "DONE", ""

    @staticmethod
    def _reset(c: Client) -> None:
        c.bytes_done = c.bytes_total = 0
        c.rate = 0.0
        c.sha256 = ""
        c.queues = {}
        c.cpu_seconds = c.max_rss_kb = None

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
            "preImage": image.pre_image,
            "postImage": image.post_image,
        }

    def _maybe_start(self, group_name: str) -> None:
        """Original behaviour: a group starts when every one of its hosts is ready."""
        st = self.state
        current = st.rounds.get(group_name)
        if current is not None and current.phase != "finished":
            return
        group = st.config.groups[group_name]
        if any(st.clients[h].state != "WAIT" for h in group.hosts):
            return
        st.round_counter += 1
        r = Round(
            number=st.round_counter,
            group=group_name,
            image=group.image,
            session=secrets.token_hex(8),
            secret=secrets.token_bytes(32),
            chain=list(group.hosts),
        )
        st.rounds[group_name] = r
        threading.Thread(
            target=run_round, args=(self, r), name=f"round-{r.number}", daemon=True
        ).start()
