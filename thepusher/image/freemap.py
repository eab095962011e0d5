"""Free ranges: bytes an image does not define (the unmapped blocks of a bmap, free
filesystem blocks), which travel as FREE records and are never written.

A free range reads as zeros in the image's digest (so the content digest is the same
for everyone who hashes the image, whatever the disk held there before), and the free
map has a digest of its own, so that a copy is verified for both: what was written,
and what was left alone. Everyone who needs these (the master when it hashes an image
or sends a range, a hop's writer when it checks its copy, a target reading its copy
back) takes them from here, so they cannot disagree.

The map's digest is SHA-256 over its maximal runs in offset order, each as two
big-endian u64, offset and length (docs/protocol.md, "Free ranges"): those bytes are
also the map as the master serves it to the hops of a compressed image (`encode`), so
the digest in their signed start is all it takes to trust it.
"""

import hashlib
import heapq
import json
import struct
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Tuple

Run = Tuple[int, int]  # (offset, length)

DATA, ZERO, FREE = "data", "zero", "free"
_RUN = struct.Struct("!QQ")
RUN_SIZE = _RUN.size
# The most runs a compressed image's map may have (16 MiB served, about 150 MB in a
# client's memory): far more than a real image's, and a bound a hop can trust.
MAX_MAP_RUNS = 1 << 20


class FreeMap:
    """Free runs in offset order, adjacent ones merged (no cap: every run counts)."""

    def __init__(self) -> None:
        self.runs: List[List[int]] = []
        self.size = 0  # free bytes

    def add(self, offset: int, length: int) -> None:
        if length <= 0:
            return
        self.size += length
        last = self.runs[-1] if self.runs else None
        if last is not None and last[0] + last[1] == offset:
            last[1] += length
        else:
            self.runs.append([offset, length])

    def as_runs(self) -> List[Run]:
        return [(offset, length) for offset, length in self.runs]


def digest(runs: Iterable[Run]) -> str:
    """The free map's own SHA-256 ("" for no map: nothing free)."""
    data = encode(runs)
    return hashlib.sha256(data).hexdigest() if data else ""


def encode(runs: Iterable[Run]) -> bytes:
    """The map's maximal runs, each as two big-endian u64 (offset, length): the bytes
    its digest is of."""
    merged = FreeMap()
    for offset, length in runs:
        merged.add(offset, length)
    return b"".join(_RUN.pack(offset, length) for offset, length in merged.runs)


def decode(data: bytes) -> List[Run]:
    """The runs of an encoded map; ValueError if it is not one."""
    if len(data) % RUN_SIZE:
        raise ValueError(f"{len(data)} bytes are not a whole number of {RUN_SIZE}-byte runs")
    return list(_RUN.iter_unpack(data))


class Mask:
    """Cuts content that goes by in order into its defined and its free parts: how a
    compressed image's decoded bytes meet its free map, which names content offsets
    (the master checking the image's bmap, a hop's writer leaving free ranges alone)."""

    def __init__(self, runs: Sequence[Run]) -> None:
        self._runs = runs  # in offset order, disjoint
        self._next = 0  # the first run that does not end before `pos`
        self.pos = 0  # content bytes cut so far

    def split(self, piece: Any) -> Iterator[Tuple[bool, Any]]:
        """(free, part) for the next bytes of the content, in order; a piece that is
        not cut comes back as it is (bytes stay bytes), a cut one as views of it."""
        size, done, view = len(piece), 0, None
        runs = self._runs
        while done < size:
            while self._next < len(runs) and sum(runs[self._next]) <= self.pos:
                self._next += 1
            run = runs[self._next] if self._next < len(runs) else None
            free = run is not None and run[0] <= self.pos
            n = size - done
            if run is not None:
                n = min(n, (run[0] + run[1] if free else run[0]) - self.pos)
            if n == size:
                yield free, piece
            else:
                view = view if view is not None else memoryview(piece)
                yield free, view[done : done + n]
            done += n
            self.pos += n


def complement(mapped: Iterable[Run], size: int) -> List[Run]:
    """The runs of [0, size) that `mapped` (sorted, disjoint) does not cover."""
    free = FreeMap()
    pos = 0
    for offset, length in mapped:
        free.add(pos, offset - pos)
        pos = offset + length
    free.add(pos, size - pos)
    return free.as_runs()


def pieces(zero_runs: Optional[List[Run]], free_runs: Optional[List[Run]], start: int,
           end: int, max_data: int, max_run: int) -> Iterator[Tuple[str, int, int]]:
    """(kind, offset, length) pieces covering [start, end) in order: DATA pieces of at
    most `max_data` bytes between the runs, ZERO and FREE pieces of at most `max_run`.
    The two maps never overlap (the master maps zeros only in mapped ranges)."""
    runs = heapq.merge(((o, n, ZERO) for o, n in _runs_from(zero_runs or [], start)),
                       ((o, n, FREE) for o, n in _runs_from(free_runs or [], start)))
    pos = start
    for offset, length, kind in runs:
        if offset >= end:
            break
        run_start, run_end = max(offset, pos), min(offset + length, end)
        yield from _split(DATA, pos, run_start, max_data)
        yield from _split(kind, run_start, run_end, max_run)
        pos = max(pos, run_end)
    yield from _split(DATA, pos, end, max_data)


def _runs_from(runs: List[Run], start: int) -> Iterator[Run]:
    """The runs ending after `start` (binary search: a resume may start anywhere)."""
    lo, hi = 0, len(runs)
    while lo < hi:
        mid = (lo + hi) // 2
        if runs[mid][0] + runs[mid][1] <= start:
            lo = mid + 1
        else:
            hi = mid
    for run in runs[lo:]:
        yield run[0], run[1]


def _split(kind: str, start: int, end: int, step: int) -> Iterator[Tuple[str, int, int]]:
    for pos in range(start, end, step):
        yield kind, pos, min(step, end - pos)


def encode_map(size: int, runs: List[Run]) -> bytes:
    """A free map as an upload sends it ahead of the used bytes (docs/api.md)."""
    return json.dumps({"size": size, "free": [list(run) for run in runs]},
                      separators=(",", ":")).encode()


def parse_map(raw: bytes, size: int, block: int) -> List[Run]:
    """The free runs of an uploaded map for an image of `size` bytes, each on `block`
    boundaries (but the image's end), sorted and apart; ValueError saying what is wrong:
    a map that lies would make the master keep holes where the image has data."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ValueError(f"the free map is not JSON: {e}") from None
    if not isinstance(data, dict) or data.get("size") != size or not isinstance(data.get("free"), list):
        raise ValueError(f"the free map must be {{\"size\": {size}, \"free\": [[offset, length], ...]}}")
    runs: List[Run] = []
    end = 0
    for item in data["free"]:
        if (not isinstance(item, list) or len(item) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in item)):
            raise ValueError(f"free run {str(item)[:60]} is not [offset, length]")
        offset, length = item
        if offset < end or length <= 0 or offset + length > size:
            raise ValueError(f"free run [{offset}, {length}] is out of order, empty or past "
                             f"the image's {size} bytes")
        if offset % block or ((offset + length) % block and offset + length != size):
            raise ValueError(f"free run [{offset}, {length}] is not on {block}-byte blocks")
        if runs and offset == end:
            raise ValueError(f"free runs meet at byte {offset}: send them merged")
        runs.append((offset, length))
        end = offset + length
    return runs
