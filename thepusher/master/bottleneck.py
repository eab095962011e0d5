"""Name the hop that holds a chain back, from the queue fill each hop reports.

In a chain with backpressure, every hop upstream of the slow one has full queues
(it cannot pass data on fast enough) and every hop downstream is starved. So the
culprit is the furthest-downstream hop whose queues are full:
- its writer queue is full: its disk is slow, or its decompression, whichever the
  writer spends more time on;
- its forwarder queue is full: the link to the next hop is slow, or the next hop
  reads slowly (a starved CPU slows its reader as much as its writer, so its own
  queues stay short); `next` names that hop.
No full hop means the chain runs as fast as the master feeds it.

With several chains the round lasts as long as the one furthest behind, so its
bottleneck is the round's.
"""

from typing import List, Optional

FULL = 0.75  # a queue holding this share of the hop's in-flight buffers is full


def find(clients: List[dict]) -> Optional[dict]:
    """`clients`: the round's clients in chain order, as in /api/status."""
    culprit = None
    for i, c in enumerate(clients):
        if c.get("state") != "BUSY":
            continue
        q = c.get("queues") or {}
        capacity = q.get("capacity") or 0
        if not capacity:
            continue
        writer, forwarder = q.get("write_queue", 0), q.get("forward_queue", 0)
        if max(writer, forwarder) < FULL * capacity:
            continue
        if writer >= forwarder:
            slow_decode = q.get("decode_seconds", 0) > q.get("write_seconds", 0)
            cause = "decompression" if slow_decode else "disk"
        else:
            cause = "link"
        culprit = {"host": c["host"], "cause": cause,
                   "write_queue": writer, "forward_queue": forwarder, "capacity": capacity}
        if cause == "link":
            culprit["next"] = clients[i + 1]["host"] if i + 1 < len(clients) else None
    return culprit


def of_round(chains: List[List[dict]]) -> Optional[dict]:
    """`chains`: each chain's clients in chain order. The bottleneck of the chain whose
    slowest BUSY disk has written least."""
    def behind(chain: List[dict]) -> int:
        busy = [c.get("bytes_done", 0) for c in chain if c.get("state") == "BUSY"]
        return min(busy) if busy else 1 << 62
    return find(min(chains, key=behind)) if chains else None
