"""`thepusher status`: the master's /api/status as a table for a terminal, and an exit
code scripts can act on."""

from typing import List, Optional

from thepusher.units import duration
from thepusher.units import size as human_bytes


VERIFIED = {"readback": "read back", "write": "write hash"}


def _eta(seconds: Optional[float]) -> str:
    return "" if seconds is None else duration(seconds)


def exit_code(status: dict) -> int:
    """0 when every host of every group whose last round has finished is DONE (or no
    round has finished yet), 1 when none of them is, 2 when some are not. A host of that
    round counts as it ended there, whatever it does now (it may be ready for the next
    re-imaging); a host left out of it, as it is now."""
    states = [
        g["round"].get("outcome", {}).get(c["host"], c["state"])
        for g in status.get("groups", [])
        if g.get("round") and g["round"]["phase"] == "finished"
        for c in g["clients"]
    ]
    done = states.count("DONE")
    if done == len(states):
        return 0
    return 1 if done == 0 else 2


def _waits(group: dict) -> str:
    by_host = {c["host"]: c for c in group["clients"]}
    return ", ".join(f"{h} ({_why_not_ready(by_host[h])})" for h in group["waiting_for"])


def _why_not_ready(client: dict) -> str:
    if client["state"] == "DONE":
        return "DONE before, not restarted"
    return "not registered" if client["state"] == "NONE" else client["state"]


def _state(client: dict) -> str:
    state = client["state"]
    if state == "DONE" and client.get("verified_by"):
        state += f" ({VERIFIED.get(client['verified_by'], client['verified_by'])})"
    return state


def render(status: dict) -> str:
    lines: List[str] = []
    for image in status.get("images", []):
        digest = (image.get("sha256") or "")[:16]
        size = human_bytes(image["content_size"]) if image.get("content_size") is not None else "?"
        note = image.get("error") or ""
        if image.get("configured") is False:
            note = f"not configured: {image['hint']}"
        lines.append(
            f"image {image['name']}: {image['filename']} {size} {image['compression']} "
            f"[{image['state']}] {digest} {note}".rstrip()
        )
    for group in status.get("groups", []):
        r = group.get("round")
        phase = f"round {r['number']} {r['phase']}" if r else "no round yet"
        if r and r.get("interrupted"):
            phase += " (interrupted by a master restart; late reports count)"
        lines.append("")
        lines.append(f"group {group['name']} (image {group['image']}): {phase}")
        if r and r.get("error"):
            lines.append(f"  master: {r['error']}")
        if r and r.get("left_out"):
            lines.append(f"  not in round {r['number']}: {', '.join(r['left_out'])}")
        if group.get("held"):
            lines.append("  held after an abort: starts again with thepusher start / retry")
        if group.get("waiting_for"):
            lines.append(f"  next round waits for {_waits(group)} to be ready; "
                         f"thepusher start {group['name']} starts it with the ready ones now")
        totals = group.get("totals")
        if totals and totals["bytes_total"] and r and r["phase"] != "finished":
            lines.append(f"  {human_bytes(totals['bytes_done'])} of {human_bytes(totals['bytes_total'])}, "
                         f"{totals['rate'] / 1e6:.1f} MB/s, ETA {_eta(totals['eta_seconds']) or '?'}")
        states = [_state(c) for c in group["clients"]]
        wide = max([len("state")] + [len(s) for s in states])  # "DONE (read back)" is long
        lines.append(f"  {'#':>3} {'host':<16} {'state':<{wide}} {'progress':>18} {'rate':>11} "
                     f"{'ETA':>6}  error")
        for c, state in zip(group["clients"], states):
            total = c["bytes_total"]
            pct = f"{100 * c['bytes_done'] / total:5.1f}%" if total else "    -"
            progress = f"{human_bytes(c['bytes_done'])} {pct}"
            rate = f"{c['rate'] / 1e6:.1f} MB/s" if c["rate"] else ""
            eta = _eta(c.get("eta_seconds"))
            lines.append(
                f"  {c['position']:>3} {c['host']:<16} {state:<{wide}} {progress:>18} {rate:>11}"
                f" {eta:>6}  {c['error']}".rstrip()
            )
    if status.get("unassigned"):
        lines.append("")
        lines.append("registered but in no group:")
        for c in status["unassigned"]:
            lines.append(f"  {c['host']:<16} {c['mac']}")
    return "\n".join(lines).lstrip("\n")
