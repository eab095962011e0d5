"""What a person at the machine sees: one progress line while bytes move, and at the end
a banner readable from across the room.

Shared by the client (receiving an image) and put-image (sending one). On a terminal
the line is redrawn in place: a carriage return, never wider than the terminal or 79
columns, at most every DRAW_EVERY seconds. Anywhere else (a log file, a console that a
script captures) it is a plain log line every LOG_EVERY seconds. While the line is on
a terminal, a log line written to the same stream first erases it and the line is drawn
again below it, so the two never run into each other.

Plain ASCII throughout (no colours, no escape sequences): the netboot console may be a
serial port or a file.
"""

import logging
import os
import sys
import textwrap
import threading
import time
from collections import deque
from typing import Callable, Deque, List, Optional, Tuple

from thepusher.units import duration, eta, rate_text, size, size_pair

DRAW_EVERY = 0.25  # a terminal line is redrawn at most 4 times a second
LOG_EVERY = 5.0  # elsewhere, a plain line this often
RATE_WINDOW = 5.0  # the rate shown (and the ETA) is over about the last 5 s
WIDTH = 80  # the widest console to count on; lines stay one column narrower
MIN_BAR = 8
MAX_BAR = 40


def _fit(label: str, room: int) -> str:
    if len(label) <= room:
        return label
    return label[: max(room - 2, 0)] + ".." if room >= 4 else label[:max(room, 0)]


def render(label: str, done: int, total: Optional[int], rate: float, width: int = WIDTH - 1,
           note: str = "", elapsed: Optional[float] = None) -> str:
    """The terminal line, at most `width` columns:

        client 2/5 of room "lab1" [##.........]  26.2% 2.1/8.0 GiB  112 MB/s ETA 57s

    Without a total (a pipe being uploaded) there is no bar, percentage or ETA. With
    `elapsed` (the final line) 'in 1m12s' replaces the ETA. `note` is added if it fits.
    The figures have fixed widths, so the bar keeps its length from one line to the next;
    the label is shortened before the bar gets narrower than MIN_BAR.
    """
    when = f"in {duration(elapsed)}" if elapsed is not None else f"ETA {eta(done, total, rate)}"
    if not total:
        tail = f" {size(done)} {rate_text(rate)}" + (f" {when}" if elapsed is not None else "")
        if note and len(label) + len(tail) + 1 + len(note) <= width:
            tail += f" {note}"
        return (_fit(label, width - len(tail)) + tail)[:width]
    pct = min(100.0, 100.0 * done / total)
    pair = size_pair(done, total).rjust(len(size_pair(total, total)))
    tail = f" {pct:5.1f}% {pair} {rate_text(rate):>9} {when:<10}"
    if note and len(label) + 3 + MIN_BAR + len(tail) + 1 + len(note) <= width:
        tail += f" {note}"
    label = _fit(label, width - len(tail) - 3 - MIN_BAR)
    bar = min(MAX_BAR, width - len(label) - len(tail) - 3)
    if bar < 1:
        return (label + tail)[:width].rstrip()
    filled = int(bar * pct / 100 + 1e-9)
    return f"{label} [{'#' * filled}{'.' * (bar - filled)}]{tail}"[:width].rstrip()


def plain(label: str, done: int, total: Optional[int], rate: float, note: str = "",
          elapsed: Optional[float] = None) -> str:
    """The log line: 'put-image /dev/sda: 2.1 GiB of 8.0 GiB (26.3%), 45 MB/s, ETA 2m10s'."""
    text = f"{label}: {size(done)}"
    if total:
        text += f" of {size(total)} ({min(100.0, 100.0 * done / total):.1f}%)"
    text += f", {rate_text(rate)}"
    if elapsed is not None:
        text += f", in {duration(elapsed)}"
    elif total:
        text += f", ETA {eta(done, total, rate)}"
    if note:
        text += f", {note}"
    return text


# Big letters, 5 rows, each '#' drawn twice as wide so that they look square on a console.
FONT = {
    "D": ["#### ", "#   #", "#   #", "#   #", "#### "],
    "O": [" ### ", "#   #", "#   #", "#   #", " ### "],
    "N": ["#   #", "##  #", "# # #", "#  ##", "#   #"],
    "E": ["#####", "#    ", "#### ", "#    ", "#####"],
    "R": ["#### ", "#   #", "#### ", "#  # ", "#   #"],
}


def big(word: str) -> List[str]:
    """`word` in big letters (only those of DONE and ERROR exist; anything else stays small)."""
    if not word or any(ch not in FONT for ch in word):
        return [word]
    rows = ["  ".join(FONT[ch][row] for ch in word) for row in range(5)]
    return ["".join(px * 2 for px in row).rstrip() for row in rows]


def banner(word: str, lines: List[str], width: int = WIDTH - 1) -> str:
    """The end of the story, for whoever looks at the screen from across the room:

        ===============================================================================

           ########    ######    ##      ##  ##########
           ...

           DONE: image img written to /dev/sda and verified
           sha256 9f2c...

        ===============================================================================

    `lines` are wrapped to the width (a long reason stays whole).
    """
    rule = "=" * width
    body = []
    lines = list(lines) or [""]
    lines[0] = f"{word}: {lines[0]}"  # the big letters are no text a search finds
    for line in lines:
        body += textwrap.wrap(line, width - 3, break_long_words=True, break_on_hyphens=False) or [""]
    out = ["", rule, ""] + ["   " + row for row in big(word)] + [""]
    out += ["   " + line for line in body] + ["", rule, ""]
    return "\n".join(out) + "\n"


# -- the live line -------------------------------------------------------------------


class ProgressLine:
    """How far a transfer is, for whoever watches: `update` as often as you like (it
    throttles itself), `close` once at the end (it prints the final figures)."""

    def __init__(self, label: str, total: Optional[int], logger: logging.Logger,
                 stream=None, tty: Optional[bool] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.total = total
        self.log = logger
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream) if tty is None else tty
        self.clock = clock
        self.started = clock()
        self.moved_at: Optional[float] = None  # the clock starts with the first byte
        self.done = 0
        self.note = ""
        self.closed = False
        self._samples: Deque[Tuple[float, int]] = deque([(self.started, 0)])
        self._drawn_at = float("-inf")  # a terminal gets the first line at once
        self._logged_at = self.started  # a log gets its first line after LOG_EVERY
        self._shown = ""  # what is on the terminal's last line now
        self._text = ""  # what belongs there
        self._lock = threading.RLock()
        self._guards: List[Tuple[logging.StreamHandler, object]] = []
        if self.tty:
            self._guard_log_handlers()

    def elapsed(self) -> float:
        """Seconds since bytes started to move (0 while none did)."""
        return 0.0 if self.moved_at is None else self.clock() - self.moved_at

    def rate(self, now: Optional[float] = None) -> float:
        """Bytes per second over about the last RATE_WINDOW seconds."""
        now = self.clock() if now is None else now
        t0, d0 = self._samples[0]
        return (self.done - d0) / (now - t0) if now > t0 else 0.0

    def update(self, done: int, note: str = "", force: bool = False) -> None:
        now = self.clock()
        with self._lock:
            if self.closed:
                return
            self.done, self.note = done, note
            if self.moved_at is None:
                if done == self._samples[0][1]:  # still waiting, e.g. for the upstream hop
                    self._samples[0] = (now, done)
                else:
                    self.moved_at = self._samples[0][0]
            if now - self._samples[-1][0] >= 0.2:
                self._samples.append((now, done))
                while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW:
                    self._samples.popleft()
            if self.tty:
                if force or now - self._drawn_at >= DRAW_EVERY:
                    self._drawn_at = now
                    self._draw(render(self.label, done, self.total, self.rate(now),
                                      self._width(), note))
            elif force or now - self._logged_at >= LOG_EVERY:
                self._logged_at = now
                self.log.info("%s", plain(self.label, done, self.total, self.rate(now), note))

    def close(self, done: Optional[int] = None, note: Optional[str] = None) -> None:
        """The final figures (average rate, time taken), whether the transfer got through
        or not; on a terminal the line stays and the cursor goes below it."""
        with self._lock:
            if self.closed:
                return
            done = self.done if done is None else done
            if self.moved_at is None and done != self._samples[0][1]:
                self.moved_at = self._samples[0][0]
            note = self.note if note is None else note
            elapsed = self.elapsed()
            average = done / elapsed if elapsed > 0 else 0.0
            self.closed = True
            if not self.tty:
                self.log.info("%s", plain(self.label, done, self.total, average, note, elapsed))
                return
            self._draw(render(self.label, done, self.total, average, self._width(), note,
                              elapsed=elapsed))
            self.stream.write("\n")
            self.stream.flush()
            self._shown = self._text = ""
        # Not under our lock: a handler's lock is taken there, and a thread that logs
        # holds its handler's lock while it waits for ours (_Guarded.write).
        self._unguard()

    # -- terminal ----------------------------------------------------------------

    def _width(self) -> int:
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            columns = 0
        return max(20, min(columns or WIDTH, WIDTH)) - 1  # a serial console tells 0

    def _draw(self, text: str) -> None:
        pad = " " * max(0, len(self._shown) - len(text))
        self.stream.write("\r" + text + pad)
        self.stream.flush()
        self._shown = self._text = text

    def _erase(self) -> None:
        if self._shown:
            self.stream.write("\r" + " " * len(self._shown) + "\r")
            self._shown = ""

    def _guard_log_handlers(self) -> None:
        """Log lines to our stream erase the line first and have it drawn again below."""
        for handler in logging.getLogger().handlers:
            if type(handler) is logging.StreamHandler and handler.stream is self.stream:
                self._guards.append((handler, handler.setStream(_Guarded(self, self.stream))))

    def _unguard(self) -> None:
        for handler, stream in self._guards:
            handler.setStream(stream)
        self._guards = []


class _Guarded:
    """The stream a log handler writes to while a ProgressLine is on the terminal."""

    def __init__(self, line: ProgressLine, stream) -> None:
        self.line = line
        self.stream = stream

    def write(self, text: str) -> int:
        with self.line._lock:
            self.line._erase()
            n = self.stream.write(text)
            if text.endswith("\n") and self.line._text:
                self.line._draw(self.line._text)
            return n

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
