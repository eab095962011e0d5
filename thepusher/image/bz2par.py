"""bzip2 decoding on every core of a client.

bzip2 compresses each block (100-900 kB of input) on its own, and the bz2 module lets
go of the GIL while it decodes, so threads scale. Files made by pbzip2 or lbzip2 hold
many streams; files made by plain `bzip2` hold one stream of many blocks. Either way
the input is scanned for the block and end-of-stream magics; the bits from a block
magic to the next magic are re-wrapped as a one-block stream of their own (bz2scan.py)
and worker threads decode those; the output goes out in input order.

A magic can also occur by chance inside a block. The decoder never trusts a magic:
- Blocks are taken strictly in order, each from a position known to start a block
  (the first block of a stream sits right after its "BZh" header, every later one right
  where the previous block ended). A piece that starts at a false magic is therefore
  never used; it was only decoded speculatively.
- A piece ends at the next magic found. libbzip2 checks the re-wrapped stream's block
  CRC, its combined CRC (ours: the block's) and that the block's Huffman data ends
  exactly where the appended end-of-stream marker begins. So a piece cut at a false
  magic fails, and is retried joined with the next piece, until it decodes.
- Each piece is fed to its decompressor in two parts: the bytes that lie wholly before
  the cut, then the rest. The first part holds only the block's own bits, which can
  fail only if the block is corrupt, and every longer piece would fail the same way:
  so an error there is reported at once instead of joining ever longer pieces. Joining
  also stops at the most bits a block of the stream's size can take.
- Each stream's combined CRC is checked against its blocks' CRCs, as `bzip2 -d` does.
So output is produced only from blocks that decoded from a true block start with a
matching CRC; anything else is a DecodeError naming the stream byte where the block
(or stream) starts.

Memory: at most `workers + 1` pieces are in flight (queued, decoding, or decoded and
waiting for their turn; a retry takes the place of the piece it retries, and a piece
dropped as a false start stops within one output piece). A piece holds its re-wrapped
input (a real block of a `-9` stream takes at most 2.3 MB) and its output: at most
46.6 MB (a `-9` block of one repeated byte; zeros give 45 MB). The compressed input is
kept from the oldest block not yet handed out: the pieces' input once more, plus at
most one fed record and one block's worth not yet cut (more input without a magic is
corrupt, and is reported before it is read on). So the worst case is about
`(workers + 1) * 51 MB` plus two records; with ordinary data (a block gives about
0.9 MB) it is a few MB per worker.
"""

import bisect
import bz2
import os
import queue
import threading
import weakref
from collections import deque
from typing import Deque, Iterator, List, Optional, Tuple

from thepusher.image.bz2scan import (BLOCK, DIGITS, END, MAGIC_BYTES, bits_at, combine, find_magics,
                                     is_stream_start, max_block_bits, rewrap)
from thepusher.image.formats import DecodeError, OUTPUT_PIECE


def _header_level(buf, byte: int) -> int:
    """The block size digit of a "BZhN" stream header that ends right before `byte`,
    0 if there is none: it tells the size of the stream the pieces after it are in."""
    if byte >= 4 and buf[byte - 4:byte - 1] == b"BZh" and buf[byte - 1] in DIGITS:
        return buf[byte - 1] - ord("0")
    return 0


class _Piece:
    """The input from a block magic to a later magic, re-wrapped, and what decoding it
    gave. Written by one worker, read by the resolver once `done` is set."""

    __slots__ = ("start", "end", "end_kind", "level", "crc", "data", "split", "done",
                 "cancelled", "output", "failure", "late")

    def __init__(self, buf, base: int, start: int, end: Tuple[int, int], level: int) -> None:
        self.start = start
        self.end, self.end_kind = end
        self.level = level
        self.crc = bits_at(buf, base, start + 48, 32)
        self.data, self.split = rewrap(buf, base, start, self.end, level, self.crc)
        self.done = threading.Event()
        self.cancelled = False
        self.output: List[bytes] = []
        self.failure: Optional[str] = None
        self.late = False  # failed only past the cut: the magic there may be false

    def fail(self, reason: str, late: bool) -> None:
        self.failure, self.late, self.output = reason, late, []


def _decode_piece(piece: _Piece) -> None:
    """Decode a piece in a worker thread: first the bytes before its cut, then the rest
    (see the module docstring for why)."""
    decompressor = bz2.BZ2Decompressor()
    view = memoryview(piece.data)
    for part, late in ((view[:piece.split], False), (view[piece.split:], True)):
        try:
            _drain(decompressor, part, piece)
        except (OSError, EOFError, ValueError) as e:
            piece.fail(str(e), late)
            return
        if piece.cancelled:
            return
    if not decompressor.eof:
        piece.fail("the block goes on past the next magic", late=True)
    elif decompressor.unused_data:
        piece.fail("the block ends before the next magic", late=True)


def _drain(decompressor, data, piece: _Piece) -> None:
    """Decode `data` in bounded pieces, so that a closing decoder stops a worker soon."""
    out = decompressor.decompress(data, OUTPUT_PIECE)
    while True:
        if out:
            piece.output.append(out)
        if decompressor.eof or decompressor.needs_input or piece.cancelled:
            return
        out = decompressor.decompress(b"", OUTPUT_PIECE)


def _work(pieces: "queue.SimpleQueue[Optional[_Piece]]") -> None:
    while True:
        piece = pieces.get()
        if piece is None:
            return
        try:
            if not piece.cancelled:
                _decode_piece(piece)
        except Exception as e:  # MemoryError, say: never take what came out as the block
            piece.fail(f"decoding it failed: {e!r}", late=False)
        finally:
            piece.done.set()


def _stop_workers(pieces: "queue.SimpleQueue[Optional[_Piece]]",
                  threads: List[threading.Thread]) -> None:
    for _ in threads:
        pieces.put(None)


_HEADER, _BLOCK, _END = "header", "block", "end"  # what the resolver expects next


class ParallelBz2Decoder:
    """Feed bzip2 data in order; iterate what to write, as decode.Decoder.

    The caller's thread scans, cuts and re-wraps; `workers` daemon threads decode; the
    caller's thread then puts the output in order ("resolves"). feed() waits for a
    decoding only when `workers + 1` pieces are in flight (backpressure)."""

    def __init__(self, workers: int = 0) -> None:
        self._workers = workers if workers > 0 else os.cpu_count() or 1
        self._bound = self._workers + 1
        self._buf = bytearray()
        self._base = 0  # stream byte of _buf[0]
        self._scanned = 0  # magics starting before this stream bit are in _magics
        # (stream bit, kind, level of a "BZhN" header right before it or 0), in order
        self._magics: List[Tuple[int, int, int]] = []
        self._next = 0  # index in _magics of the next one to start a piece
        self._guess = 9  # the level of the stream the next piece is believed to be in
        self._pieces: Deque[_Piece] = deque()  # in flight, in input order
        self._queue: "queue.SimpleQueue[Optional[_Piece]]" = queue.SimpleQueue()
        self._threads: List[threading.Thread] = []
        # Also when a caller drops the decoder without close(): no thread waits forever.
        self._stop = weakref.finalize(self, _stop_workers, self._queue, self._threads)
        self._closed = False
        self._final = False
        self._phase = _HEADER
        self._at = 0  # where the resolver stands: a stream byte (header) or bit (block, end)
        self._stream = 0  # stream byte where the current stream starts
        self._level = 0  # its block size digit
        self._crc = 0  # its combined CRC over the blocks so far
        self._output = 0  # bytes decoded and handed out

    def feed(self, data) -> Iterator[bytes]:
        """Take the next input (copied: the caller may reuse its buffer) and yield the
        output that is ready, in order."""
        self._buf += data
        yield from self._advance()

    def finish(self) -> Iterator[bytes]:
        """End of input: yield the rest of the output; DecodeError if the data stops
        inside a stream, or anything is corrupt. Stops the workers."""
        self._final = True
        try:
            yield from self._advance()
        finally:
            self.close()

    def close(self) -> None:
        """Stop the workers: each one ends within one output piece of its decoding."""
        if self._closed:
            return
        self._closed = True
        for piece in self._pieces:
            piece.cancelled = True
        self._stop()
        for thread in self._threads:
            thread.join()

    def _advance(self) -> Iterator[bytes]:
        if self._closed:
            raise ValueError("the bzip2 decoder is closed")
        self._scan()
        while True:
            self._dispatch()
            moved, output = self._step(wait=self._final or self._blocked())
            yield from output
            if not moved:
                return

    def _scan(self) -> None:
        start = max(self._scanned - 8 * self._base, 0)
        for bit, kind in find_magics(self._buf, start):
            level = _header_level(self._buf, bit >> 3) if bit & 7 == 0 else 0
            self._magics.append((bit + 8 * self._base, kind, level))
        self._scanned = 8 * self._base + max(8 * len(self._buf) - 79, start)

    def _blocked(self) -> bool:
        """Whether to wait for the oldest piece: the pieces in flight hit the bound, or
        the input since the last magic is longer than any block (the wait lets the
        resolver reach it and report the corruption before memory grows)."""
        if self._next + 1 < len(self._magics) and len(self._pieces) >= self._bound:
            return True
        last = self._magics[-1][0] if self._magics else 8 * self._base
        return self._end_bit() - last > max_block_bits(9) + 8 * 14  # + end and next header

    def _dispatch(self) -> None:
        """Start a piece at every block magic whose successor is known, up to the bound."""
        while self._next + 1 < len(self._magics) and len(self._pieces) < self._bound:
            bit, kind, level = self._magics[self._next]
            self._guess = level or self._guess
            if kind == BLOCK:
                self._submit(self._piece(bit, self._magics[self._next + 1][:2], self._guess))
            self._next += 1

    def _piece(self, start: int, end: Tuple[int, int], level: int) -> _Piece:
        return _Piece(self._buf, self._base, start, end, level)

    def _submit(self, piece: _Piece) -> None:
        if len(self._threads) < self._workers:
            thread = threading.Thread(target=_work, args=(self._queue,), daemon=True,
                                      name=f"bz2-decode-{len(self._threads) + 1}")
            thread.start()
            self._threads.append(thread)
        self._queue.put(piece)
        self._pieces.append(piece)

    def _step(self, wait: bool) -> Tuple[bool, List[bytes]]:
        """One move of the resolver: (whether it moved, output to hand out). Without
        `wait` it does not wait for a piece still decoding."""
        if self._phase == _HEADER:
            return self._step_header(), []
        if self._phase == _END:
            return self._step_end(), []
        return self._step_block(wait)

    def _step_header(self) -> bool:
        s = self._at
        head = bytes(self._buf[s - self._base:s - self._base + 14])
        if len(head) < 10:
            if not self._final:
                return False
            if not head and s > 0:
                return False  # all streams decoded
            if not head:
                raise DecodeError("BZ2 data is empty: not even a stream header (at stream byte 0)")
            if is_stream_start(head):
                raise self._truncated()
            raise self._garbage(s, head)
        if head[:3] != b"BZh" or head[3] not in DIGITS:
            raise self._garbage(s, head)
        if head[4:10] not in MAGIC_BYTES:
            raise DecodeError(f"BZ2 data is corrupt at stream byte {s + 4}: the stream header "
                              f"is followed by neither a block nor the stream's end")
        self._stream, self._level, self._crc = s, head[3] - ord("0"), 0
        self._move(_BLOCK if head[4:10] == MAGIC_BYTES[BLOCK] else _END, 8 * (s + 4))
        return True

    def _step_end(self) -> bool:
        """Check the stream's combined CRC; the next stream starts at the next byte."""
        if self._end_bit() < self._at + 80:
            if self._final:
                raise self._truncated()
            return False
        stored = bits_at(self._buf, self._base, self._at + 48, 32)
        if stored != self._crc:
            raise DecodeError(
                f"BZ2 data is corrupt: the stream at stream byte {self._stream} fails its "
                f"combined CRC (stored {stored:08x}, its blocks give {self._crc:08x})")
        self._move(_HEADER, (self._at + 80 + 7) >> 3)
        return True

    def _step_block(self, wait: bool) -> Tuple[bool, List[bytes]]:
        start = self._at
        while self._pieces and self._pieces[0].start < start:  # began at a false magic
            self._pieces.popleft().cancelled = True
        if not self._pieces:
            return self._stalled(start, None), []
        piece = self._pieces[0]
        if not piece.done.is_set():
            if not wait:
                return False, []
            piece.done.wait()
        if piece.cancelled:
            raise ValueError("the bzip2 decoder was closed while decoding")
        if piece.level != self._level:  # the guess was wrong: decode it again
            self._retry(self._piece(start, (piece.end, piece.end_kind), self._level))
            return True, []
        if piece.failure is None:
            self._pieces.popleft()
            self._crc = combine(self._crc, piece.crc)
            self._output += sum(map(len, piece.output))
            self._move(_END if piece.end_kind == END else _BLOCK, piece.end)
            return True, piece.output
        if not piece.late:
            raise self._corrupt(start, piece.failure)
        return self._join(piece), []

    def _join(self, piece: _Piece) -> bool:
        """Retry a piece that failed past its cut joined with the next piece."""
        i = bisect.bisect_left(self._magics, (piece.end + 1,))
        if i == len(self._magics):
            return self._stalled(piece.start, piece)
        if self._magics[i][0] - piece.start > max_block_bits(self._level):
            raise self._corrupt(piece.start, piece.failure)
        self._retry(self._piece(piece.start, self._magics[i][:2], self._level))
        return True

    def _stalled(self, start: int, failed: Optional[_Piece]) -> bool:
        """No magic is known yet where the block at `start` could end: wait for input,
        unless it has ended or went on longer than any block."""
        if self._end_bit() - start > max_block_bits(self._level) + 80:
            reason = failed.failure if failed else "no block ends within the most a block takes"
            raise self._corrupt(start, reason)
        if not self._final:
            return False
        if failed:  # and no later magic is left to join it with
            raise self._corrupt(start, failed.failure)
        raise self._truncated()

    def _retry(self, piece: _Piece) -> None:
        self._pieces.popleft()
        self._submit(piece)
        self._pieces.rotate(1)  # _submit appended it; it belongs first

    def _move(self, phase: str, at: int) -> None:
        """The resolver goes on at `at` (a byte for a header, else a bit): forget the
        input and the magics before it."""
        self._phase, self._at = phase, at
        bit = 8 * at if phase == _HEADER else at
        gone = bisect.bisect_left(self._magics, (bit,))
        del self._magics[:gone]
        self._next = max(self._next - gone, 0)
        cut = (bit >> 3) - self._base
        del self._buf[:cut]
        self._base += cut

    def _end_bit(self) -> int:
        return 8 * (self._base + len(self._buf))

    def _truncated(self) -> DecodeError:
        return DecodeError(f"BZ2 data ends in the middle of a stream (at stream byte "
                           f"{self._end_bit() >> 3}; the stream starts at byte {self._stream})")

    def _corrupt(self, start: int, reason: Optional[str]) -> DecodeError:
        return DecodeError(f"BZ2 data is corrupt in the block at stream byte {start >> 3} "
                           f"(output byte {self._output}): {reason}")

    def _garbage(self, s: int, head: bytes) -> DecodeError:
        shown = head[:8].hex(" ")
        if s == 0:
            return DecodeError(f"BZ2 data is corrupt at stream byte 0: no bzip2 stream header "
                               f"({shown})")
        return DecodeError(f"BZ2 data is corrupt: trailing garbage at stream byte {s} ({shown} "
                           f"...): what follows the last stream is not a bzip2 stream")
