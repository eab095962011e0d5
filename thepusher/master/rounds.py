"""One round of one group, start to finish, in its own thread.

prepare (open the image, its facts of that very file) -> arm (every client takes the
start and opens its listener) -> stream (master sends to the first hop of each chain)
-> settle (every client reports DONE or ERROR, or is declared lost after a bounded
silence) -> finished.
"""

import logging
import threading
import time
from typing import Dict, List, Optional

from thepusher import plan
from thepusher.chain import wire
from thepusher.config.model import Settings
from thepusher.image import freemap
from thepusher.master.images import Catalog, ImageUnusable, stream_runs
from thepusher.master.state import Client, FINAL, Round, State, STATES
from thepusher.master.source import ImageChanged, Source, StreamFailed
from thepusher.units import duration, eta, rate_text, size

log = logging.getLogger("thepusher.round")

SUMMARY_EVERY = 10.0  # while a round runs, the log gets one line about it this often
ABORT_GRACE = 5.0  # an aborted round waits this long for its streams to stop, no longer


def run_round(st: State, catalog: Catalog, r: Round) -> None:
    """The round's whole life: it needs the state it moves through and the images it
    opens, nothing of the calls that start it (control.py)."""
    log.info("round %d: group %s starts, %s", r.number, r.group, describe_chains(r.chains))
    over = threading.Event()
    threading.Thread(target=_log_progress, args=(st, r, over), name=f"round-{r.number}-log",
                     daemon=True).start()
    try:
        sources = _arm(st, catalog, r)
        if sources is not None:
            _stream(st, r, sources)
        _settle(st, r)
    except Exception as e:  # noqa: BLE001 - a round must always finish and free its group
        log.exception("round %d failed", r.number)
        with st.lock:
            r.error = r.error or f"internal error: {e}"
            for host in r.chain:
                c = st.clients[host]
                if c.state not in FINAL:
                    st.set_state(c, "ERROR", f"round aborted: {r.error}")
    with st.lock:
        st.finish_round(r)
    if r.image_file is not None:
        r.image_file.release()  # closed once the last stream or gap fill lets go too
    over.set()
    log.info("%s", summary(r))


def describe_chains(chains: List[List[str]]) -> str:
    """'chain a -> b', or 'chains a -> b | c -> d' for several."""
    return ("chain " if len(chains) == 1 else "chains ") + " | ".join(" -> ".join(c) for c in chains)


def summary(r: Round) -> str:
    """One line for the log: who got the image, who did not and why, who was not there."""
    done = [h for h in r.chain if r.outcome[h] == "DONE"]
    line = (
        f"round {r.number}: group {r.group} finished in {r.finished - r.started:.1f} s: "
        f"{len(done)} of {len(r.chain)} DONE"
    )
    if done:
        line += f" ({', '.join(done)})"
    if r.errors:
        line += "; ERROR: " + "; ".join(f"{h} ({why})" for h, why in r.errors.items())
    if r.left_out:
        line += f"; not in the round: {', '.join(r.left_out)}"
    return line


def _log_progress(st: State, r: Round, over: threading.Event) -> None:
    """Every SUMMARY_EVERY seconds until the round is over, one line: the log tells how
    a round goes without a line per client report."""
    while not over.wait(SUMMARY_EVERY):
        with st.lock:
            if r.phase == "finished":
                return
            line = progress(r, [st.clients[h] for h in r.chain], time.time())
        log.info("%s", line)


def progress(r: Round, clients: List[Client], now: float) -> str:
    """How a running round goes, in one line:

    round 3 (group lab1): streaming for 1m05s; slowest disk 2.1 GiB of 8.0 GiB (26%),
    112 MB/s, ETA 57s; master sent 2.3 GiB; 5 BUSY, 1 DONE, 0 ERROR

    The slowest disk is the BUSY client that has written least: the round lasts as long
    as it does.
    """
    line = f"round {r.number} (group {r.group}): {r.phase} for {duration(now - r.started)}"
    busy = [c for c in clients if c.state == "BUSY"]
    if busy:
        slow = min(busy, key=lambda c: c.bytes_done)
        line += f"; slowest disk {size(slow.bytes_done)}"
        if slow.bytes_total:
            line += f" of {size(slow.bytes_total)} ({100 * slow.bytes_done // slow.bytes_total}%)"
        line += f", {rate_text(slow.rate)}, ETA {eta(slow.bytes_done, slow.bytes_total, slow.rate)}"
    if r.sources:
        line += "; master sent " + " / ".join(size(s.sent) for s in r.sources)
    counts = {s: sum(1 for c in clients if c.state == s) for s in STATES}
    shown = [s for s in STATES if s in ("BUSY", "DONE", "ERROR") or counts[s]]
    return line + "; " + ", ".join(f"{counts[s]} {s}" for s in shown)


def _fail_all(st: State, r: Round, reason: str) -> None:
    with st.lock:
        r.error = reason
        for host in r.chain:
            st.set_state(st.clients[host], "ERROR", reason)


def _prepare(st: State, catalog: Catalog, r: Round) -> bool:
    """Open the image and bind the round to the facts of that open file (hashing it
    again if it is not the version last hashed): every chain streams this file, and
    every client is told these facts, signed."""
    try:
        f, facts = catalog.open(r.image, cancelled=lambda: r.aborted)
    except ImageUnusable as e:
        if not r.aborted:
            _fail_all(st, r, f"image {r.image} unusable: {e}")
        return False
    # A compressed image's free map, which its hops fetch (GET /api/free-map): encoded
    # once, outside the lock (a large map takes a while)
    compressed = st.config.images[r.image].compression != "NONE"
    free_map = freemap.encode(facts.free_runs) if compressed and facts.free_runs else b""
    with st.lock:
        r.image_file, r.facts, r.free_map = f, facts, free_map
        st.history.record(r.public())  # its digest, for late reports after a restart
        st.touch()
    return not r.aborted


def _arm(st: State, catalog: Catalog, r: Round) -> Optional[List[Source]]:
    """Hand every client its place in the chain and wait until all have taken it."""
    t = st.config.settings
    if not _prepare(st, catalog, r):
        return None
    facts = r.facts
    image = st.config.images[r.image]
    header = wire.StreamHeader(
        session=r.session,
        image=r.image,
        stream_size=facts.stream_size,
        content_size=facts.content_size,
        content_sha256=facts.sha256,
        compression=image.compression,
        # A free map only for clients that know it (FREE records in a raw stream, the
        # map fetched for a compressed one): version 2 when there is one
        version=wire.FREE_VERSION if facts.free_runs else wire.PROTOCOL_VERSION,
        free_bytes=facts.free_bytes,
        free_map_sha256=facts.free_map_sha256,
        record_size=wire.record_size_for(facts.stream_size, max(map(len, r.chains))),
    )
    with st.lock:
        r.record_size = header.record_size
        chains = [[(h, st.clients[h].data_port) for h in hosts] for hosts in r.chains]
        r.starts = _starts(r, chains, header, image.verify, t)
        r.phase = "arming"
        st.changed.notify_all()
        deadline = time.monotonic() + t.arm_timeout
        while len(r.armed) < len(r.chain) and time.monotonic() < deadline and not r.aborted:
            st.changed.wait(deadline - time.monotonic())
        if r.aborted:
            return None
        for host in r.chain:
            if host not in r.armed and st.clients[host].state not in FINAL:
                st.set_state(st.clients[host], "ERROR", f"did not take the start within {t.arm_timeout:.0f} s")
        r.phase = "streaming"
        r.feeding = set(range(len(chains)))
    zero_runs, free_runs = stream_runs(image, facts)
    sources = [
        Source(
            r.image_file, header, r.secret, addresses, t.io_timeout,
            on_skip=lambda host, reason: st.mark_skipped(r, host, "the master", reason),
            zero_runs=zero_runs, check=facts.stream_sha256, free_runs=free_runs,
        )
        for addresses in chains
    ]
    with st.lock:  # from here on an abort reaches the sources (Controller.abort_group)
        r.sources = sources
        if r.aborted:
            r.feeding.clear()
            return None
        return sources


def _starts(r: Round, chains: List[List[plan.Address]], header: wire.StreamHeader, verify: str,
            t: Settings) -> Dict[str, plan.Start]:
    """Every host's start: its place in its chain, and the facts of the image the
    streams' headers state, which the client checks its copy against, and nothing else."""
    return {
        host: plan.Start(
            round=r.number,
            session=r.session,
            secret=r.secret,
            chain=n + 1,
            chains=len(chains),
            position=i + 1,
            chain_length=len(addresses),
            downstream=tuple(addresses[i + 1 :]),
            image=header.image,
            stream_size=header.stream_size,
            content_size=header.content_size,
            sha256=header.content_sha256,
            compression=header.compression,
            record_size=header.record_size,
            verify=verify,
            accept_timeout=t.accept_timeout,
            io_timeout=t.io_timeout,
            window=int(t.replay_window * (1 << 20)),
            free_bytes=header.free_bytes,
            free_map_sha256=header.free_map_sha256,
        )
        for n, addresses in enumerate(chains)
        for i, (host, _) in enumerate(addresses)
    }


def _stream(st: State, r: Round, sources: List[Source]) -> None:
    """Every chain at once, one thread each: a chain that fails or ends leaves the
    others be, and _settle looks after each chain as soon as its stream is over."""
    for i, source in enumerate(sources):
        threading.Thread(target=_feed, args=(st, r, i, source),
                         name=f"round-{r.number}-chain-{i + 1}", daemon=True).start()


def _feed(st: State, r: Round, i: int, source: Source) -> None:
    which = f"chain {i + 1}: " if len(r.chains) > 1 else ""
    try:
        source.run()
        log.info("round %d: %smaster sent all %d bytes", r.number, which, source.sent)
    except StreamFailed as e:
        log.error("round %d: %s%s", r.number, which, e)
        with st.lock:
            r.chain_errors[i] = str(e)
            r.error = r.error or which + str(e)
            if isinstance(e, ImageChanged):  # nobody in this chain can end right
                for host in r.chains[i]:
                    if st.clients[host].state not in FINAL:
                        st.set_state(st.clients[host], "ERROR", str(e))
    finally:
        with st.lock:
            r.feeding.discard(i)  # its hops stop waiting for a new upstream after their timeout
            st.changed.notify_all()


def _settle(st: State, r: Round) -> None:
    """Wait until the streams are over and every client is DONE or ERROR; once the
    stream to its chain is over, a client's silence past a bound counts as ERROR.

    A hop whose upstream died after every hop before it had finished has nobody left
    to heal towards it: once the master's stream to its chain is over, the master
    feeds it again, from the first byte it lacks.
    """
    limit = st.config.settings.report_timeout
    repaired = set()
    aborted_at = None
    with st.lock:
        while True:
            now = time.monotonic()
            pending = [st.clients[h] for h in r.chain if st.clients[h].state not in FINAL]
            if not r.feeding and r.phase == "streaming":
                r.phase = "settling"
            if not pending and not r.feeding:
                return
            if r.aborted:  # its streams were told to stop; a stuck one is not waited for
                aborted_at = aborted_at or now
                if not pending and now - aborted_at >= ABORT_GRACE:
                    log.warning("round %d: a stream did not stop within %.0f s of the abort; "
                                "the round ends without it", r.number, ABORT_GRACE)
                    return
            for c in pending:
                if r.streaming_to(c.host):
                    continue
                if now - c.last_seen > limit:
                    st.set_state(c, "ERROR", f"no report from the client for {limit:.0f} s (lost)")
                elif c.queues.get("waiting_upstream") and c.host not in repaired and r.sources:
                    repaired.add(c.host)
                    threading.Thread(
                        target=_repair, args=(r, (c.host, c.data_port), st.config.settings.io_timeout),
                        name=f"round-{r.number}-repair", daemon=True,
                    ).start()
            st.changed.wait(1.0)


def _repair(r: Round, address, timeout: float) -> None:
    log.warning("round %d: %s lost its upstream after the others finished; "
                "the master feeds it", r.number, address[0])
    first = r.sources[0]  # every chain's source sends the same image
    # No check of the sent digest: it starts mid-stream. The hop checks its copy
    # against the digest the master signed for it.
    source = Source(first.image, first.header, r.secret, [address], timeout,
                    on_skip=lambda host, reason: None, zero_runs=first.zero_runs,
                    free_runs=first.free_runs)
    try:
        source.run()
    except StreamFailed as e:
        log.error("round %d: feeding %s again failed: %s", r.number, address[0], e)
