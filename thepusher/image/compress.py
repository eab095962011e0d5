"""`thepusher compress`, and the compressor put-image uses on the fly: every core at work.

One core compresses bzip2 at about 20 MB/s and xz (preset 6) at about 2 MB/s, so a disk
image would take hours. The input is therefore cut into chunks, each compressed in a
worker thread (bz2, zlib and lzma release the GIL) into an independent stream: a bzip2
stream, a gzip member, an .xz stream. The streams are written in input order, one after
the other. Concatenated streams are standard for all three formats: `bzip2 -d`,
`gzip -d`, `xz -d` and thepusher's Decoder read the file as one, and the output is the
same whatever the number of threads.

Memory stays bounded: at most two chunks per worker are in flight, and the reader waits
for the oldest when that many are.
"""

import importlib
import logging
import os
import stat
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from queue import SimpleQueue
from typing import Callable, Deque, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from thepusher.console import ProgressLine
from thepusher.image.bmap import RangeDigests
from thepusher.image.capture import CaptureRefused, open_capture
from thepusher.image.bmap import save as save_bmap
from thepusher.image.facts import FactsHasher, ImageFacts, stamp_of, write_sidecar
from thepusher.image.formats import FORMATS
from thepusher.units import rate_text, size

log = logging.getLogger("thepusher.compress")

READ = 4 << 20
BZ2_BLOCK = 100_000  # bzip2's blocks hold level x 100 kB


def _bz2(module, data, level: int) -> bytes:
    return module.compress(data, level)


def _gzip(module, data, level: int) -> bytes:
    member = module.compressobj(level, module.DEFLATED, 31)  # 31: a gzip header and trailer
    return member.compress(data) + member.flush()


def _xz(module, data, level: int) -> bytes:
    return module.compress(data, module.FORMAT_XZ, preset=level)


@dataclass(frozen=True)
class _Codec:
    chunk: Callable[[int], int]  # input bytes per stream, at a level
    compress: Callable[..., bytes]  # (module, data, level) -> one whole stream


# Chunks: bzip2's are 9 blocks' worth of input at the level (a block takes level x 100 kB,
# more for long runs of one byte); bzip2 -d reads the streams one after the other,
# bz2par.py block by block on every core. gzip's 32 KiB window loses nothing measurable
# at 8 MiB. xz's 16 MiB streams at preset 6 (8 MiB dictionary) make the file 1.4% bigger
# than one stream of the whole input: the price of bounded memory (xz -T: 24 MiB blocks).
_CODECS: Dict[str, _Codec] = {
    "bz2": _Codec(lambda level: 9 * level * BZ2_BLOCK, _bz2),
    "gz": _Codec(lambda level: 8 << 20, _gzip),
    "xz": _Codec(lambda level: 16 << 20, _xz),
}


class CompressError(Exception):
    """Compressing failed; the message says what and where."""


class Refused(CompressError):
    """Nothing was done: the request cannot be carried out as asked."""


def load(fmt: str):
    """The format's module. TinyCore's Python may lack bz2 or lzma: say which, before any
    byte is read."""
    module = FORMATS[fmt].module
    try:
        return importlib.import_module(module)
    except ImportError:
        others = ", ".join(f for f in FORMATS if f != fmt)
        raise Refused(f"this Python has no {module} module, so no {fmt}; "
                      f"another format ({others}) may do") from None


class ParallelCompressor:
    """`feed` the input in order, then `finish`; both yield the compressed output, in
    order, as soon as it is ready. `close` (or leaving a `with`) stops the workers, also
    half-way."""

    def __init__(self, fmt: str, level: Optional[int] = None, workers: int = 0) -> None:
        spec = FORMATS[fmt]
        self.fmt = fmt
        self.level = spec.level if level is None else level
        if self.level not in spec.levels:
            raise Refused(f"{fmt} levels are {spec.levels[0]} to {spec.levels[-1]}, not {self.level}")
        if workers < 0:
            raise Refused(f"threads must be 0 (every core) or more, not {workers}")
        self.workers = workers or os.cpu_count() or 1
        self.chunk = _CODECS[fmt].chunk(self.level)
        self.streams = 0
        self._module = load(fmt)
        self._compress = _CODECS[fmt].compress
        self._pending = bytearray()
        self._in_flight: Deque[Future] = deque()
        self._jobs: SimpleQueue = SimpleQueue()
        self._started = False
        self._zero_stream: Optional[bytes] = None  # one chunk of zeros, compressed

    def __enter__(self) -> "ParallelCompressor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def feed(self, data) -> Iterator[bytes]:
        view = memoryview(data)
        while len(view):
            room = self.chunk - len(self._pending)
            self._pending += view[:room]
            view = view[room:]
            if len(self._pending) == self.chunk:
                yield from self._submit()
        while self._in_flight and self._in_flight[0].done():
            yield self._in_flight.popleft().result()

    def feed_zeros(self, length: int) -> Iterator[bytes]:
        """`length` zero bytes (a capture's free run). A whole chunk of zeros always
        compresses to the same stream, so it is compressed once and repeated: the free
        space of a disk costs no compression."""
        zeros = memoryview(bytes(min(length, self.chunk)))
        while length:
            if not self._pending and length >= self.chunk:
                if self._zero_stream is None:
                    self._zero_stream = self._compress(self._module, zeros, self.level)
                done: Future = Future()
                done.set_result(self._zero_stream)
                yield from self._queue(done)
                length -= self.chunk
                continue
            n = min(length, self.chunk - len(self._pending))
            yield from self.feed(zeros[:n])
            length -= n

    def finish(self) -> Iterator[bytes]:
        # An empty input still makes one (empty) stream: an empty file is no valid
        # compressed file to bzip2 -d, gzip -d or xz -d.
        if self._pending or not self.streams:
            yield from self._submit()
        while self._in_flight:
            yield self._in_flight.popleft().result()

    def close(self) -> None:
        for future in self._in_flight:
            future.cancel()  # a worker skips what it has not started
        self._in_flight.clear()
        if self._started:
            for _ in range(self.workers):
                self._jobs.put(None)
        self._started = False

    def _submit(self) -> Iterator[bytes]:
        if not self._started:  # a compressor never fed (its upload refused) holds no thread
            self._start()
        future: Future = Future()
        self._jobs.put((future, self._pending))
        self._pending = bytearray()
        yield from self._queue(future)

    def _queue(self, future: Future) -> Iterator[bytes]:
        """The next stream, in order; waits for the oldest when too many are in flight."""
        self._in_flight.append(future)
        self.streams += 1
        while len(self._in_flight) > 2 * self.workers:
            yield self._in_flight.popleft().result()

    def _start(self) -> None:
        for i in range(self.workers):
            # Daemons, not a ThreadPoolExecutor's threads (joined at exit): an interrupted
            # run exits at once, not after the chunks under way (xz -6: seconds each).
            threading.Thread(target=self._work, name=f"compress-{i}", daemon=True).start()
        self._started = True

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, data = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self._compress(self._module, data, self.level))
            except Exception as e:  # noqa: BLE001 - raised again by result(), in the reader
                future.set_exception(e)


def feed_piece(piece: Union[memoryview, int], content: FactsHasher,
               compressor: Optional[ParallelCompressor]) -> Iterable:
    """A capture's next piece (capture.Capture.pieces: used bytes, or the length of a
    free run) into the content's digest, free runs as zeros; what follows it in the
    output: compressed, or the bytes themselves (a free run then is nothing)."""
    if isinstance(piece, int):
        content.skip(piece)
        return compressor.feed_zeros(piece) if compressor else ()
    content.update(piece)
    return compressor.feed(piece) if compressor else (piece,)


# -- thepusher compress IMG --------------------------------------------------------------


@dataclass
class Outcome:
    source: str
    output: str
    facts: ImageFacts
    seconds: float
    threads: int

    def summary(self) -> str:
        """'x.img (256.0 MiB) -> x.img.bz2 (87.0 MiB, 34.0%) in 7.1 s: 38 MB/s with 2 threads'
        and the digest: what an admin compares and what the status page shows."""
        content, stream = self.facts.content_size, self.facts.stream_size
        ratio = f", {100.0 * stream / content:.1f}%" if content else ""
        rate = content / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.source} ({size(content)}) -> {self.output} ({size(stream)}{ratio}) "
                f"in {self.seconds:.1f} s: {rate_text(rate)} with {self.threads} "
                f"thread{'s' if self.threads != 1 else ''}\nsha256 {self.facts.sha256} "
                "(of the uncompressed content, also in the digest sidecar for the master)"
                + (f"\n{size(self.facts.free_bytes)} free, never read, listed in "
                   f"{self.output}.bmap: clients do not write it" if self.facts.free_runs else ""))


def compress_image(source: str, fmt: str, level: Optional[int] = None, workers: int = 0,
                   output: Optional[str] = None, force: bool = False, whole: bool = False) -> Outcome:
    """Write `source` (a file or a disk) compressed to `output` (default: `source` plus
    the format's suffix), and its digest sidecar, so that a master given this file does
    not decompress it once more just to hash it. Only the blocks its filesystems use are
    read (capture.py; all of them with `whole`): the free ones are compressed as zeros,
    and their map is written as OUTPUT.bmap, so the master streams them as FREE.
    The output appears only whole and fsynced, and never in place of an existing file:
    until then it is a hidden temp file next to it (the master ignores dot files),
    removed when anything, Ctrl-C included, stops the run."""
    compressor = ParallelCompressor(fmt, level, workers)  # a bad level or a missing module first
    output = output or _default_output(source, fmt)
    for path in (output, output + ".bmap"):
        if os.path.lexists(path):
            raise Refused(f"{path} exists and is never overwritten: remove it or give -o OUT")
    with compressor:
        started = time.monotonic()
        try:
            capture = open_capture(source, force, whole)
        except CaptureRefused as e:
            raise Refused(str(e)) from None
        except OSError as e:
            raise Refused(f"cannot read {source}: {e.strerror or e}") from None
        tmp = os.path.join(os.path.dirname(output), f".{os.path.basename(output)}.{os.getpid()}.tmp")
        try:
            with capture.reader:
                facts, mapped = _write(capture, compressor, tmp, output)
            if capture.free_runs:
                save_bmap(tmp + ".bmap", facts.content_size, mapped, what=output)
            _claim(tmp, output)
            if capture.free_runs:
                os.replace(tmp + ".bmap", output + ".bmap")
                facts.bmap_stamp = stamp_of(os.stat(output + ".bmap"))
        except BaseException:
            _remove(tmp)
            _remove(tmp + ".bmap")
            raise
    seconds = time.monotonic() - started
    try:
        write_sidecar(output, facts)
    except OSError as e:  # the image is good; the master will hash it itself
        log.warning("cannot write the digest sidecar of %s: %s", output, e)
    return Outcome(source, output, facts, seconds, compressor.workers)


def _default_output(source: str, fmt: str) -> str:
    """A file's name plus the suffix; a disk's (/dev/sda.bz2) is no place for an image."""
    try:
        mode = os.stat(source).st_mode
    except OSError as e:
        raise Refused(f"cannot read {source}: {e.strerror or e}") from None
    if not stat.S_ISREG(mode):
        raise Refused(f"{source} is not a regular file: give -o OUT to say where its "
                      "compressed image goes")
    return source + FORMATS[fmt].suffix


def _write(capture, compressor: ParallelCompressor, tmp: str,
           output: str) -> Tuple[ImageFacts, List[Tuple[int, int, str]]]:
    """Input -> compressor -> temp file, fsynced; the facts of the input (the content,
    free runs as zeros) and of the output (the stream) on the way, and each mapped
    range's SHA-256 (for the bmap)."""
    content, stream = FactsHasher(), FactsHasher()
    ranges = RangeDigests()
    source, done = capture.path, 0
    progress = ProgressLine(f"compress {source}", capture.size, log)
    pieces = capture.pieces(bytearray(READ))
    try:
        with open(tmp, "xb") as sink:
            while True:
                piece = _next(pieces, source, done)
                if piece is None:
                    break
                if not isinstance(piece, int):
                    ranges.add(done, piece)
                for data in feed_piece(piece, content, compressor):
                    sink.write(data)
                    stream.update(data)
                done += piece if isinstance(piece, int) else len(piece)
                progress.update(done, f"{size(stream.size)} {compressor.fmt}")
            for data in compressor.finish():
                sink.write(data)
                stream.update(data)
            sink.flush()
            os.fsync(sink.fileno())
    except OSError as e:
        raise CompressError(f"writing {output} failed after {done} bytes of input: "
                            f"{e.strerror or e}") from None
    finally:
        progress.close(done, f"{size(stream.size)} {compressor.fmt}")
    facts = ImageFacts(stream.size, content.size, content.hexdigest(),
                       stream_sha256=stream.hexdigest(), free_runs=content.free.as_runs() or None)
    return facts, ranges.finish()


def _next(pieces: Iterator, source: str, done: int):
    try:
        return next(pieces, None)
    except OSError as e:
        raise CompressError(f"reading {source} failed at byte {done}: {e.strerror or e}") from None


def _claim(tmp: str, output: str) -> None:
    """Give the finished file its name, which fails if the name has meanwhile been taken
    (a hard link, unlike a rename, never replaces)."""
    try:
        os.link(tmp, output)
    except FileExistsError:
        raise Refused(f"{output} appeared while compressing and is never overwritten") from None
    except OSError as e:
        raise CompressError(f"cannot name the compressed image {output}: {e.strerror or e}") from None
    _remove(tmp)
    directory = os.open(os.path.dirname(output) or ".", os.O_RDONLY)
    try:
        os.fsync(directory)  # the name survives a power cut, like the bytes
    finally:
        os.close(directory)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
