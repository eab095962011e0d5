"""The control plane: clients register, get ready, wait for a start and report; rounds
begin by the groups' start policies (a starter thread, policy.py) or when a person
says `thepusher start` / `retry`.

Every call validates its input and answers with a dict; errors a client can fix are
raised as ApiError (errors.py) with an HTTP status and a sentence, never as a crash.
What a client is told to do is plan.py's Task and Start; how its reports are judged,
reports.py; a round's own life, rounds.py.
"""

import hmac
import logging
import threading
import time
from typing import Callable, List, Optional, Tuple

from thepusher import plan, signing
from thepusher.chain import wire
from thepusher.config.model import AUTO, ClientGroup, normalize_host
from thepusher.master import policy, reports, wol
from thepusher.master.disks import disks_field
from thepusher.master.errors import ApiError, body_field
from thepusher.master.hosts import HostBook
from thepusher.master.images import Catalog, ImageFile, StreamRuns, stream_runs
from thepusher.master.rounds import describe_chains, run_round
from thepusher.master.state import Client, FINAL, Round, State
from thepusher.units import count, size

LONG_POLL = 25.0  # longest a /api/next request is held open
TOO_OLD_FOR_AUTO = ('its client lists no disks, so it is older than destination = "auto" and '
                    "would write to a file named auto: give it this master's thepusher.pyz "
                    "(create-nbi again)")

log = logging.getLogger("thepusher.master")


class Controller:
    def __init__(self, state: State, catalog: Catalog, book: HostBook) -> None:
        self.state = state
        self.catalog = catalog
        self.book = book
        self.settings = state.config.settings
        for host, mac in book.macs.items():  # until they register again
            if host in state.clients:
                state.clients[host].mac = mac

    def start(self) -> None:
        threading.Thread(target=self._starter, name="starter", daemon=True).start()

    # -- client calls --------------------------------------------------------------

    def register(self, host: str, body: dict) -> dict:
        mac = body_field(body, "mac", str, "")
        port = body_field(body, "data_port", int, required=True)
        disk_size = body_field(body, "disk_size", int)
        nonce = body_field(body, "nonce", str, "")
        disks = disks_field(body)
        if not 0 < port < 65536:
            raise ApiError(400, f"data_port {port} is not a TCP port")
        if len(nonce) > signing.MAX_NONCE:
            raise ApiError(400, f"nonce is longer than {signing.MAX_NONCE} characters")
        st = self.state
        with st.lock:
            c = st.client(host)
            c.registered = True
            c.mac, c.data_port, c.disk_size, c.disks = mac, port, disk_size, disks
            c.last_seen = time.monotonic()
            st.touch()
            c.unready = False
            r = st.active_round(host)
            if r is not None:
                if c.state not in FINAL:  # else keep the reason it failed with
                    st.set_state(c, "ERROR", f"client restarted during round {r.number}")
            else:
                self._reset(c)
                st.set_state(c, "NONE")
            c.nonce = nonce  # its answers are signed over it: no answer recorded earlier passes
            task = self._task(c)
            if task is not None and task.destination == AUTO and "disks" not in body:
                # It would take "auto" for a file name and be DONE with its disk untouched.
                st.set_state(c, "ERROR", TOO_OLD_FOR_AUTO)
                task = None
            answer = self._signed(signing.TASK, host, {
                "host": host, "group": c.group, "task": None if task is None else task.to_json(),
            })
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
            error = body_field(body, "error", str, "")
            c.destination = body_field(body, "destination", str, c.destination)
            c.disk_size = body_field(body, "disk_size", int, c.disk_size)
            error = error or self._misfit(c)
            c.unready = bool(error)
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
                if r is not None and r.starts is not None and c.session != r.session:
                    c.session = r.session
                    return self._signed(signing.START, host, r.starts[host].to_json())
                if c.state == "ERROR":  # failed in a round before its start reached it
                    return self._signed(signing.START, host, plan.RoundFailed(c.error).to_json())
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self._signed(signing.START, host,
                                        plan.Waiting(bool(c.group), c.state).to_json())
                st.changed.wait(remaining)

    def report(self, host: str, body: dict) -> dict:
        """A client's progress or end, judged in reports.py: the rules for what counts
        are long, and need nothing but the state."""
        return reports.report(self.state, host, body)

    def image_range(self, session: str, offset: int, length: int,
                    mac: str) -> Tuple[ImageFile, StreamRuns, int]:
        """Authorise a hop's gap fill: the round's open image file (acquired: the caller
        releases it), the runs its stream carries and its record size, if the range and
        its MAC are right."""
        st = self.state
        with st.lock:
            r = self._round_of(session, mac, "range request",
                               lambda secret: wire.range_mac(secret, session, offset, length))
            facts, f, record_size = r.facts, r.image_file, r.record_size
            image = st.config.images[r.image]
        if facts is None or offset < 0 or length < 0 or offset + length > facts.stream_size:
            raise ApiError(416, f"range {offset}+{length} is outside the image")
        if not f.acquire():
            raise ApiError(404, "the round is over")
        return f, stream_runs(image, facts), record_size

    def free_map(self, session: str, mac: str) -> bytes:
        """A hop's request for the free map of its round's compressed image (freemap.encode),
        which its stream cannot carry. Its digest in the hop's signed start says whether
        the hop may trust it; the MAC only keeps it to the round's hops."""
        with self.state.lock:
            r = self._round_of(session, mac, "free map request",
                               lambda secret: wire.free_map_mac(secret, session))
            if not r.free_map:
                raise ApiError(404, "this round's image has no free map to fetch")
            return r.free_map

    def _round_of(self, session: str, mac: str, what: str, signed: Callable[[bytes], str]) -> Round:
        """The running round of `session`, if `mac` is what `signed` makes of its secret
        (called with the state's lock held)."""
        r = next((r for r in self.state.rounds.values()
                  if r.session == session and r.phase != "finished"), None)
        if r is None:
            raise ApiError(404, "no running round with this session")
        # as bytes: compare_digest refuses str with non-ASCII (headers are Latin-1)
        if not hmac.compare_digest(mac.encode("utf-8", "replace"), signed(r.secret).encode()):
            raise ApiError(403, f"{what} not signed with this round's secret")
        return r

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
            self._refuse_misfits(group)
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
        message = f"group {name}: woke {count(len(woken), 'host')}"
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
                    self._refuse_misfits(group)
                    hosts, when = policy.due(group, st.clients, now)
                    if hosts:
                        self._launch(group, hosts)
                    elif when is not None:
                        wake = when if wake is None else min(wake, when)
                st.changed.wait(None if wake is None else wake - now)

    # -- internals (lock held) -----------------------------------------------------

    def _misfit(self, c: Client) -> str:
        """Why the group's image cannot fit the host's disk, or "": a disk too small is
        found before a round, and the rest of the room goes on without it."""
        if c.group is None or c.disk_size is None:
            return ""
        image = self.state.config.groups[c.group].image
        needs = self.catalog.content_size(image)
        if needs is None or c.disk_size >= needs:
            return ""
        return (f"disk {c.destination or '(its destination)'} holds {size(c.disk_size)} "
                f"({c.disk_size} bytes), image {image} needs {size(needs)} ({needs} bytes)")

    def _refuse_misfits(self, group: ClientGroup) -> None:
        """Ready hosts whose disk the image does not fit (its facts became known, or
        changed, after they said they were ready) are ERROR before the round."""
        for host in group.hosts:
            c = self.state.clients[host]
            why = self._misfit(c) if c.state == "WAIT" else ""
            if why:
                c.unready = True
                self.state.set_state(c, "ERROR", why)

    @staticmethod
    def _reset(c: Client) -> None:
        c.bytes_done = c.bytes_total = c.read_back = 0
        c.rate = 0.0
        c.sha256 = c.verified_by = ""
        c.after_write = []
        c.queues = {}
        c.personalized = []
        c.cpu_seconds = c.max_rss_kb = None
        c.last_report = 0.0

    def _signed(self, kind: str, host: str, answer: dict) -> dict:
        """With the config's `secret`: the answer plus the host and the nonce of its
        registration, and a signature over all of it (signing.py), which clients holding
        the secret require before they act."""
        if not self.settings.secret:
            return answer
        answer["host"] = host
        answer["nonce"] = self.state.clients[host].nonce
        return signing.sign(self.settings.secret, kind, answer)

    def _task(self, c: Client) -> Optional[plan.Task]:
        """The host's task: its group's image and scripts, and who it is (the config's
        name and vars; the MAC it registered with, else the configured one)."""
        if c.group is None:
            return None
        config = self.state.config
        group = config.groups[c.group]
        image = config.images[group.image]
        host = config.hosts.get(c.host)
        mac = c.mac if c.mac.strip("0:") else group.macs.get(c.host, "")
        return plan.Task(
            group=c.group,
            image=image.name,
            comment=image.comment,
            destination=image.destination,
            type=image.type,
            compression=image.compression,
            verify=image.verify,
            pre_image=image.pre_image,
            post_image=image.post_image,
            grow=image.grow,
            discard=image.discard,
            hostname=host.name if host else "",
            address=c.host,
            mac=mac,
            vars=dict(host.vars) if host else {},
            personalize=image.personalize,
            disk=(image.disk.under(host.disk) if host else image.disk).to_json(),
        )

    def _launch(self, group: ClientGroup, hosts: List[str]) -> Round:
        r = self.state.new_round(group, hosts)
        threading.Thread(
            target=run_round, args=(self.state, self.catalog, r), name=f"round-{r.number}",
            daemon=True,
        ).start()
        return r
