"""`thepusher status`: the master's /api/status as a table for a terminal, and an exit
code scripts can act on."""

from typing import List


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def exit_code(status: dict) -> int:
    """0 when every host of every group whose last round has finished is DONE (or no
    round has finished yet), 1 when none of them is, 2 when some are not."""
    states = [
        c["state"]
        for g in status.get("groups", [])
        if g.get("round") and g["round"]["phase"] == "finished"
        for c in g["clients"]
    ]
    done = states.count("DONE")
    if done == len(states):
        return 0
    return 1 if done == 0 else 2


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
        lines.append("")
        lines.append(f"group {group['name']} (image {group['image']}): {phase}")
        if r and r.get("error"):
            lines.append(f"  master: {r['error']}")
        if r and r.get("left_out"):
            lines.append(f"  not in round {r['number']}: {', '.join(r['left_out'])}")
        lines.append(f"  {'#':>3} {'host':<16} {'state':<6} {'progress':>18} {'rate':>11}  error")
        for c in group["clients"]:
            total = c["bytes_total"]
            pct = f"{100 * c['bytes_done'] / total:5.1f}%" if total else "    -"
            progress = f"{human_bytes(c['bytes_done'])} {pct}"
            rate = f"{c['rate'] / 1e6:.1f} MB/s" if c["rate"] else ""
            lines.append(
                f"  {c['position']:>3} {c['host']:<16} {c['state']:<6} {progress:>18} {rate:>11}"
                f"  {c['error']}".rstrip()
            )
    if status.get("unassigned"):
        lines.append("")
        lines.append("registered but in no group:")
        for c in status["unassigned"]:
            lines.append(f"  {c['host']:<16} {c['mac']}")
    return "\n".join(lines).lstrip("\n")
