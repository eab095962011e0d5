"""Name the hop that holds a chain back, from the figures each hop reports.

A BUSY hop that stopped reporting (frozen, hung, cut off from the master) comes first:
its upstream's queues fill and the hops after it starve, while its own last figures
still look fine.

Otherwise, in a chain with backpressure, every hop upstream of the slow one has full
queues (it cannot pass data on fast enough) and every hop downstream is starved. So the
culprit is the furthest-downstream hop whose queues are full:
- its writer queue is full: its disk is slow, or its decompression, whichever the
  writer spends more time on;
- its forwarder queue is full: either the next hop reads slowly or the link to it is
  slow. A hop short of CPU reads as slowly as it writes, so its own queues stay short,
  but what was sent to it waits unread in its socket (`unread`, the share of its
  receive buffer): then it is named (`cpu`). A hop behind a slow link reads all it
  gets at once: then the link is named (`link`, with `next`). While the next hop has
  reported nothing from the stream yet, there is no telling: no verdict.
No full hop means the chain runs as fast as the master feeds it.

With several chains the round lasts as long as the one furthest behind, so its
bottleneck is the round's; a silent hop is named whichever chain it is in.
"""

from typing import List, Optional

FULL = 0.75  # a queue holding this share of the hop's in-flight buffers is full
SLOW_READ = 0.25  # a hop whose socket holds this share of its receive buffer unread reads slowly
SILENT = 5.0  # seconds without a report from a BUSY hop (they report about once a second)


def find(clients: List[dict]) -> Optional[dict]:
    """`clients`: the round's clients in chain order, as in /api/status."""
    return _silent(clients) or _by_queues(clients)


def of_round(chains: List[List[dict]]) -> Optional[dict]:
    """`chains`: each chain's clients in chain order. A silent hop of any chain, else the
    bottleneck of the chain whose slowest BUSY disk has written least."""
    def behind(chain: List[dict]) -> int:
        busy = [c.get("bytes_done", 0) for c in chain if c.get("state") == "BUSY"]
        return min(busy) if busy else 1 << 62
    silent = next(filter(None, map(_silent, chains)), None)
    return silent or (_by_queues(min(chains, key=behind)) if chains else None)


def _silent(clients: List[dict]) -> Optional[dict]:
    for c in clients:
        age = c.get("last_report_age")
        if c.get("state") == "BUSY" and age is not None and age >= SILENT:
            return dict(_figures(c, "silent"), last_report_age=age)
    return None


def _by_queues(clients: List[dict]) -> Optional[dict]:
    culprit = None
    for i, c in enumerate(clients):
        if c.get("state") != "BUSY":
            continue
        q = c.get("queues") or {}
        capacity = q.get("capacity") or 0
        writer, forwarder = q.get("write_queue", 0), q.get("forward_queue", 0)
        if not capacity or max(writer, forwarder) < FULL * capacity:
            continue
        if writer >= forwarder:
            slow_decode = q.get("decode_seconds", 0) > q.get("write_seconds", 0)
            culprit = _figures(c, "decompression" if slow_decode else "disk")
        else:
            culprit = _past_full_forwarder(c, clients[i + 1] if i + 1 < len(clients) else None)
    return culprit


def _past_full_forwarder(c: dict, nxt: Optional[dict]) -> Optional[dict]:
    """The hop after `c`, whose forwarder queue is full, if it reads slowly; else the link."""
    link = dict(_figures(c, "link"), next=nxt["host"] if nxt else None)
    if nxt is None or nxt.get("state") != "BUSY":
        return link
    if not nxt.get("bytes_done"):
        return None  # its figures are from before the stream reached it
    q = nxt.get("queues") or {}
    if "unread" not in q:  # an older client: it does not say
        return link
    if q["unread"] is None:
        return None
    return dict(_figures(nxt, "cpu"), unread=q["unread"]) if q["unread"] >= SLOW_READ else link


def _figures(c: dict, cause: str) -> dict:
    q = c.get("queues") or {}
    return {"host": c["host"], "cause": cause, "write_queue": q.get("write_queue", 0),
            "forward_queue": q.get("forward_queue", 0), "capacity": q.get("capacity", 0)}
