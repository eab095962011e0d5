"""`GET /metrics`: the status in Prometheus' text format (version 0.0.4).

Built from the same snapshot as `/api/status`, so a scrape and the page never disagree.
"""

import time
from typing import Dict, Iterable, List, Optional

from thepusher.master.state import STATES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


class _Family:
    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        self.name = name

    def add(self, value: float, **labels: str) -> None:
        shown = repr(float(value)) if isinstance(value, float) else str(value)
        self.lines.append(f"{self.name}{_labels(**labels) if labels else ''} {shown}")


def round_outcome(record: dict) -> str:
    """`done` (every host DONE), `failed` (none), `partial`; `aborted` when a person stopped it."""
    if record.get("aborted"):
        return "aborted"
    states = list(record.get("outcome", {}).values())
    if states and all(s == "DONE" for s in states):
        return "done"
    if any(s == "DONE" for s in states):
        return "partial"
    return "failed"


def _group_rate(round_info: Optional[dict], now: float) -> float:
    """Average bytes per second the master has sent in the group's running round."""
    if not round_info or round_info.get("phase") != "streaming":
        return 0.0
    elapsed = now - round_info["started"]
    return round_info.get("bytes_sent", 0) / elapsed if elapsed > 0 else 0.0


def render(status: dict, history: Iterable[dict], now: Optional[float] = None) -> str:
    now = time.time() if now is None else now
    done = _Family("thepusher_client_bytes_done", "gauge", "Image bytes written and verified so far.")
    total = _Family("thepusher_client_bytes_total", "gauge", "Image bytes the client has to write.")
    state = _Family("thepusher_client_state", "gauge", "1 for the client's current state.")
    rate = _Family("thepusher_client_rate_bytes_per_second", "gauge", "Client's write rate.")
    grate = _Family("thepusher_group_rate_bytes_per_second", "gauge",
                    "Average send rate of the group's running round (0 when idle).")
    rounds = _Family("thepusher_rounds_total", "counter", "Finished rounds by outcome.")
    for group in status["groups"]:
        for c in group["clients"]:
            labels = {"group": group["name"], "host": c["host"]}
            done.add(c["bytes_done"], **labels)
            total.add(c["bytes_total"], **labels)
            rate.add(float(c["rate"]), **labels)
            for s in STATES:
                state.add(1 if c["state"] == s else 0, state=s, **labels)
        grate.add(_group_rate(group.get("round"), now), group=group["name"])
    counts: Dict[str, int] = {k: 0 for k in ("done", "partial", "failed", "aborted")}
    for record in history:
        counts[round_outcome(record)] += 1
    for outcome, n in counts.items():
        rounds.add(n, outcome=outcome)
    families: List[_Family] = [done, total, state, rate, grate, rounds]
    return "\n".join(line for f in families for line in f.lines) + "\n"
