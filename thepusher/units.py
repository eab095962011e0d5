"""Sizes, rates and durations as people read them: '1.5 GiB', '112 MB/s', '1m12s'.

One spelling everywhere (client console, put-image, `thepusher status`, the master's log),
so a figure on one screen can be compared with the same figure on another.
"""

import re
from typing import Optional, Tuple

# K, M, G, T, P (also KiB ...) count 1024s; KB, MB, GB, TB, PB 1000s, as disks are sold.
SIZE_UNITS = {"": 1, "b": 1, **{p + s: (1 << 10) ** (i + 1) for i, p in enumerate("kmgtp")
                                for s in ("", "ib")},
              **{p + "b": 1000 ** (i + 1) for i, p in enumerate("kmgtp")}}
SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-z]*)\s*$")


def parse_size(text: str) -> int:
    """Bytes from '256M', '100G', '500 GB', '1.5TiB' or '4096' (see SIZE_UNITS); the
    one reading of a size for the config, the demo and the benches. ValueError if
    `text` is no size; whether 0 will do is the caller's to say."""
    m = SIZE_RE.match(text.lower())
    if m is None or m.group(2) not in SIZE_UNITS:
        raise ValueError(f"{text!r} is no size")
    return int(float(m.group(1)) * SIZE_UNITS[m.group(2)])


def duration(seconds: float) -> str:
    """A short time: '42s', '1m12s', '2h05m' ('>99h' beyond)."""
    s = max(0, int(seconds + 0.5))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 100 * 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return ">99h"


def _scale(n: float) -> Tuple[float, str]:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return n, unit
        n /= 1024
    return n, "TiB"


def size(n: float) -> str:
    """'512 B', '1.5 MiB', '8.0 GiB'."""
    value, unit = _scale(n)
    return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"


def size_pair(done: int, total: int) -> str:
    """'2.1/8.0 GiB', '381/954 MiB', '100/466 GiB': both in the total's unit, with tenths
    only where a tenth is worth seeing (a total of 1 to 100 GiB or TiB)."""
    value, unit = _scale(total)
    factor = 1024 ** ("B", "KiB", "MiB", "GiB", "TiB").index(unit)
    if unit in ("B", "KiB", "MiB") or value >= 99.95:
        return f"{done / factor:.0f}/{total / factor:.0f} {unit}"
    return f"{done / factor:.1f}/{total / factor:.1f} {unit}"


def rate_text(rate: float) -> str:
    """'112 MB/s', '4.5 MB/s' (MB = 10^6 bytes, as disks and links are sold)."""
    mb = rate / 1e6
    return f"{mb:.1f} MB/s" if mb < 9.95 else f"{mb:.0f} MB/s"


def eta(done: int, total: Optional[int], rate: float) -> str:
    """Time left at `rate`: '--' when it cannot be told (no total, nothing moving)."""
    if not total:
        return "--"
    if done >= total:
        return "0s"
    if rate <= 0:
        return "--"
    return duration((total - done) / rate)


def count(n: int, noun: str) -> str:
    """'1 image', '2 images': the plural with an s, which is all thepusher's nouns need."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
