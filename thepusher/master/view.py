"""The one status snapshot that `/api/status`, `/api/events` and `/metrics` all serve.

Building it walks every client under the state's lock, and with hundreds of clients
reporting every second and several pages open it would be built many times a second.
So it is built once per change of the state (`State.version`) or of the images
(`Catalog.generation`), and at least every half second for what changes by itself
(ages, ETAs).
"""

import json
import threading
import time
from typing import Optional, Tuple

from thepusher import __version__
from thepusher.master import bottleneck, policy
from thepusher.master.images import Catalog
from thepusher.master.state import State

MAX_AGE = 0.5  # seconds a snapshot is served for when the state has not changed


class StatusView:
    def __init__(self, state: State, catalog: Catalog) -> None:
        self.state = state
        self.catalog = catalog
        self._lock = threading.Lock()
        self._cached: Optional[Tuple[tuple, float, dict, bytes]] = None

    def snapshot(self) -> Tuple[dict, bytes]:
        """The status and its JSON encoding (shared: callers must not modify the dict)."""
        with self._lock:
            now = time.monotonic()
            key = (self.state.version, self.catalog.generation)
            cached = self._cached
            if cached and cached[0] == key and now - cached[1] < MAX_AGE:
                return cached[2], cached[3]
            status = self._build()
            encoded = json.dumps(status, separators=(",", ":")).encode()
            self._cached = (key, now, status, encoded)
            return status, encoded

    def _build(self) -> dict:
        status = self.state.status()
        config = self.state.config
        st = self.state
        with st.lock:
            waits = {name: policy.waiting_for(group, st.clients)
                     for name, group in config.groups.items()
                     if st.running(name) is None and name not in st.held}
        status["images"] = self.catalog.describe()
        status["master"] = {"version": __version__, "config": config.path}
        status["admin"] = {"token_required": bool(config.settings.admin_token)}
        for group in status["groups"]:
            r = group.get("round") or {}
            by_host = {c["host"]: c for c in group["clients"]}
            chains = [[by_host[h] for h in chain["hosts"] if h in by_host]
                      for chain in r.get("chains", [])]
            group["bottleneck"] = bottleneck.of_round(chains) if r.get("phase") == "streaming" else None
            group["waiting_for"] = waits.get(group["name"], [])
        return status
