"""Judging what clients report: progress, DONE and ERROR, in a running round, in one
that ended, or in one a master restart interrupted.

A DONE counts only as the master's own check finds it (_judge_done); what one member
says of others (`skipped`) counts only where that member fed them (_skips). Every
function here but `report` is called with the state's lock held.
"""

import hmac
import logging
import time
from typing import List, Optional, Tuple

from thepusher.chain import wire
from thepusher.master import keys
from thepusher.master.errors import ApiError, body_field
from thepusher.master.history import INTERRUPTED
from thepusher.master.state import Client, FINAL, Round, State

log = logging.getLogger("thepusher.master")

MAX_LINES, MAX_LINE = 20, 300  # what a client did after writing, as it reports it

# What the journal gets once the answer is decided (History.note_outcome): round, host,
# state, reason, how its DONE was checked.
Note = Tuple[int, str, str, str, str]
Answer = Tuple[dict, Optional[Note]]


def report(st: State, host: str, body: dict) -> dict:
    """A client's progress or end. Its DONE or ERROR is in the outcome journal before
    the answer goes out (history.py): a DONE the master acknowledged is never lost.

    The answer tells the client whether to go on: `ok: false` (with `aborted` or
    `reason`) ends its part in the round, e.g. once the master marked it ERROR."""
    state = body_field(body, "state", str, required=True)
    session = body_field(body, "session", str, required=True)
    if state not in ("BUSY", "DONE", "ERROR"):
        raise ApiError(400, f"state must be BUSY, DONE or ERROR, not {state!r}")
    with st.lock:
        c = st.clients.get(host)
        r = st.active_round(host)
        if c is not None and r is not None and session == r.session:
            answer, note = _report_in_round(st, c, r, state, body)
        else:
            answer, note = _report_elsewhere(st, host, c, session, state, body)
    if note is not None:
        st.history.note_outcome(*note)
    return answer


def _report_in_round(st: State, c: Client, r: Round, state: str, body: dict) -> Answer:
    c.last_seen = time.monotonic()
    _progress(c, body)
    st.touch()
    _skips(st, r, c.host, body_field(body, "skipped", list, []))
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
        verdict, why = _judge_done(st, c, r.secret, r.session, r.image, sha256, size, body)
        if verdict == "ERROR" and c.state == "ERROR":
            why = c.error
        elif c.state == "ERROR":
            log.info("%s proved a verified copy after it was marked ERROR (%s)", c.host, c.error)
        st.set_state(c, verdict, why)
        if c.state == "DONE" and c.after_write:
            log.info("%s: after writing: %s", c.host, "; ".join(c.after_write))
    else:
        st.set_state(c, "ERROR", body_field(body, "error", str, "") or "client reported an error")
    note = (r.number, c.host, c.state, c.error, c.verified_by)
    return {"ok": c.state == "DONE", "state": c.state, "reason": c.error}, note


def _report_elsewhere(st: State, host: str, c: Optional[Client], session: str, state: str,
                      body: dict) -> Answer:
    """A report for a round that is not running for this host: one a master restart
    interrupted (its clients may still finish, and say so late), one that ended, or
    one this master never heard of."""
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
        return _late_report(st, c, record, state, body)
    return {"ok": False, "reason": "no running round with this session for this host"}, None


def _late_report(st: State, c: Client, record: dict, state: str, body: dict) -> Answer:
    """A client of a round interrupted by a master restart: it goes on with what it
    has (nobody streams to it any more) and its end counts, a DONE only if it is
    signed with the round's secret and is the digest the round announced."""
    number, host = record["number"], c.host
    if record["outcome"].get(host) == "DONE":
        return {"ok": True, "state": "DONE", "lost_round": True}, None
    earlier = record["errors"].get(host, INTERRUPTED)
    if earlier != INTERRUPTED and state != "DONE":  # it reported its end before the crash
        return {"ok": False, "reason": f"round {number}: {earlier}"}, None
    c.last_seen = time.monotonic()
    _progress(c, body)
    st.touch()
    if state == "BUSY":
        return {"ok": True, "streaming": False, "lost_round": True}, None
    if state == "DONE":
        secret = keys.round_secret(st.key, record["session"])
        verdict, why = _judge_done(st, c, secret, record["session"], record["image"],
                                   record.get("sha256"), record.get("content_size"), body)
        if verdict == "ERROR" and earlier != INTERRUPTED:
            why = earlier
    else:
        verdict, why = "ERROR", body_field(body, "error", str, "") or "client reported an error"
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


def _progress(c: Client, body: dict) -> None:
    c.last_report = time.monotonic()
    c.bytes_done = body_field(body, "bytes_done", int, 0)
    c.bytes_total = body_field(body, "bytes_total", int, 0)
    c.rate = body_field(body, "rate", float, 0.0)
    c.queues = body_field(body, "queues", dict, {})
    c.cpu_seconds = body_field(body, "cpu_seconds", float)
    c.max_rss_kb = body_field(body, "max_rss_kb", int)
    c.read_back = body_field(body, "read_back", int, 0)
    c.free_bytes = body_field(body, "free_bytes", int, 0)


def _skips(st: State, r: Round, host: str, entries: list) -> None:
    """A member's `skipped` list marks a host ERROR only when that member is the one
    that fed it: the host comes after it in its chain, and every host between them
    is out of the round already (or skipped by it earlier in this very list).
    Anything else a member says about others is a lie or a mistake: it changes
    nothing."""
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


def _lines(body: dict, key: str) -> List[str]:
    """A short list of short lines (what a client did after writing), or a 400."""
    lines = body_field(body, key, list, [])
    if len(lines) > MAX_LINES or not all(isinstance(x, str) and len(x) <= MAX_LINE for x in lines):
        raise ApiError(400, f"field {key!r} must be at most {MAX_LINES} strings of at most "
                            f"{MAX_LINE} characters")
    return lines


def _judge_done(st: State, c: Client, secret: bytes, session: str, image_name: str,
                sha256: Optional[str], content_size: Optional[int], body: dict) -> Tuple[str, str]:
    """The master's own check of a DONE: signed by a member of the round, for the
    exact digest and size the round announced (`sha256`, `content_size`; None where a
    record from an older master lacks them), checked the way the image asks."""
    c.sha256 = body_field(body, "sha256", str, "")
    c.verified_by = body_field(body, "verified_by", str, "write")
    c.after_write = _lines(body, "after_write")
    c.personalized = _lines(body, "personalized")  # shown, not judged: auth covers the copy
    auth = body_field(body, "auth", str, "")
    expected = wire.report_mac(secret, session, "DONE", c.sha256, c.bytes_done)
    if not hmac.compare_digest(auth.encode("utf-8", "replace"), expected.encode()):
        return "ERROR", "DONE report not signed with the round's secret"
    if sha256 is None:
        return "ERROR", "the round's image digest is unknown to the master"
    if c.sha256 != sha256:
        return "ERROR", f"wrote digest {c.sha256 or 'none'}, image is {sha256}"
    if c.bytes_done != content_size:
        return "ERROR", f"wrote {c.bytes_done} bytes, image has {content_size}"
    image = st.config.images.get(image_name)
    if image is not None and image.verify == "readback" and c.verified_by != "readback":
        return "ERROR", (f"the image asks for verify = \"readback\", the client checked "
                         f"only {c.verified_by!r}")
    return "DONE", ""
