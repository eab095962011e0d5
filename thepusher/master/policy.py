"""When a group's next round starts, and which hosts it takes: the start policies.

Pure functions of the config and the clients' states, so the rules read in one place
(docs/config.md says them in words). A round always takes the ready (WAIT) hosts in
`hosts` order; hosts that become ready later wait for the next round.

- **expected** hosts are the ones a group still waits for on its own: not DONE, not
  out of automatic retries (ended in ERROR in more than `retries` rounds in a row), and
  not unready (its preImage failed, or the image does not fit its disk: it is ERROR
  until its client registers again).
  Once a host whose last round ended DONE is ready again, a new deployment has begun
  and every host of the group is expected again (the room's next re-imaging), unless
  the admin marked hosts of the group "re-image at next boot" (nextboot.py): then the
  marked hosts are expected, and the DONE hosts that were not marked are not.
- `start = "all"`: a round starts once every expected host is ready; with `wait`, also
  once `wait` has passed since the first of them became ready, if at least
  `min_clients` are ready by then.
- `start = "manual"`: never on its own; `thepusher start` takes every ready host,
  `thepusher retry` the ready hosts whose last round did not end DONE.
"""

from typing import Dict, List, Optional, Tuple

from thepusher.config.model import ClientGroup
from thepusher.master.state import Client


def expected(group: ClientGroup, clients: Dict[str, Client]) -> List[str]:
    return [
        h for h in group.hosts
        if clients[h].state != "DONE" and clients[h].failures <= group.retries
        and not clients[h].unready
    ]


def due(group: ClientGroup, clients: Dict[str, Client], now: float) -> Tuple[List[str], Optional[float]]:
    """(the chain to start now, or []; the monotonic time to look again, or None).

    Call only while the group has no running round.
    """
    if group.start == "manual":
        return [], None
    waiting = _awaited(group, clients)
    ready = [h for h in waiting if clients[h].state == "WAIT"]
    if not ready:
        return [], None
    if len(ready) == len(waiting):
        return ready, None
    if group.wait is None:
        return [], None
    deadline = min(clients[h].ready_at for h in ready) + group.wait
    if now < deadline:
        return [], deadline
    # Past the deadline, the next host to become ready is the next chance: no timer.
    return (ready if len(ready) >= group.min_clients else []), None


def waiting_for(group: ClientGroup, clients: Dict[str, Client]) -> List[str]:
    """The hosts a group's next round waits for, once some host is ready for it: what
    the status says, so that a room does not wait in silence (a host that ended DONE
    and was not restarted for a re-imaging, say). Empty for a manual group, and while
    no host is ready. Call only while the group has no running round."""
    if group.start == "manual":
        return []
    waiting = _awaited(group, clients)
    if not any(clients[h].state == "WAIT" for h in waiting):
        return []
    return [h for h in waiting if clients[h].state != "WAIT"]


def _awaited(group: ClientGroup, clients: Dict[str, Client]) -> List[str]:
    marked = [h for h in group.hosts if clients[h].next_boot == "image"]
    if marked:
        still = expected(group, clients)
        return [h for h in group.hosts if h in marked or h in still]
    if any(clients[h].outcome == "DONE" and clients[h].state == "WAIT" for h in group.hosts):
        # A host that already has the image came back for a new one: that is a new
        # deployment of the whole group, not a follow-up round for the stragglers.
        return list(group.hosts)
    return expected(group, clients)


def for_start(group: ClientGroup, clients: Dict[str, Client]) -> List[str]:
    """`thepusher start`: every ready host, now."""
    return [h for h in group.hosts if clients[h].state == "WAIT"]


def for_retry(group: ClientGroup, clients: Dict[str, Client]) -> List[str]:
    """`thepusher retry`: the ready hosts that ended their last round in ERROR or had none."""
    return [h for h in for_start(group, clients) if clients[h].outcome != "DONE"]
