"""Turn the stream as transmitted into the bytes that go on the disk.

Compressed images travel compressed; only the writer of each hop decodes, for its own
disk. Files made by parallel compressors hold several concatenated streams
(pbzip2, pigz -i, xz -T), so every decoder restarts after each stream end. Output is
produced in bounded pieces so a small, highly compressed record cannot balloon memory.
bzip2, the slowest to decode, is decoded block by block on all cores (bz2par.py).
"""

import importlib
from types import ModuleType
from typing import Callable, Iterator

from thepusher.image.formats import BY_COMPRESSION, DecodeError, OUTPUT_PIECE


def _module(compression: str) -> ModuleType:
    """The module that decodes the format; TinyCore's Python may lack bz2 or lzma, which
    is named."""
    fmt = BY_COMPRESSION.get(compression)
    if fmt is None:
        raise DecodeError(f"unsupported compression {compression!r}")
    try:
        return importlib.import_module(fmt.module)
    except ImportError as e:
        raise DecodeError(f"cannot decode {compression} here: Python lacks {e.name}") from None


class Decoder:
    """Feed transmitted bytes in order; iterate what to write. `finish()` yields what is
    still pending and raises if the data stopped mid-stream; `close()` stops any helper
    threads (bzip2 decodes on all cores, see bz2par.py) and is safe to call twice."""

    def __init__(self, compression: str, workers: int = 0) -> None:
        self.compression = compression
        self.consumed = 0  # stream bytes fed so far, to say where corrupt data is
        self._engine = None if compression == "NONE" else _engine(compression, workers)

    def feed(self, data) -> Iterator:
        start = self.consumed
        self.consumed += len(data)
        if self._engine is None:
            yield data
            return
        try:
            yield from self._engine.feed(data)
        except DecodeError as e:
            raise _located(e, start, self.consumed) from None

    def finish(self) -> Iterator:
        if self._engine is not None:
            yield from self._engine.finish()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


def _located(e: DecodeError, start: int, end: int) -> DecodeError:
    """Say where in the stream corrupt data was fed, unless the engine said so itself."""
    text = str(e)
    if "stream byte" in text:
        return e
    return DecodeError(f"{text} (in stream bytes {start}-{end})")


def _engine(compression: str, workers: int):
    module = _module(compression)  # a missing module is named before any thread starts
    if compression == "BZ2":
        from thepusher.image.bz2par import ParallelBz2Decoder  # here: it needs bz2 to import

        return ParallelBz2Decoder(workers)
    if compression == "GZIP":
        return _StreamEngine(compression, lambda: module.decompressobj(wbits=31), module.error)
    return _StreamEngine(compression, module.LZMADecompressor, module.LZMAError)


class _StreamEngine:
    """One decompressor after the other: files made by parallel compressors hold several
    concatenated streams (pigz -i, xz -T, `thepusher compress`)."""

    def __init__(self, compression: str, new: Callable, error: type) -> None:
        """`new` makes a decompressor; `error` is its exception for corrupt data (zlib
        and lzma have their own)."""
        self.compression = compression
        self._new, self._error = new, error
        self._obj = self._new()
        self._in_stream = False
        self.produced = 0

    def feed(self, data) -> Iterator:
        while data:
            out = self._decompress(data)
            self._in_stream = True
            if out:
                self.produced += len(out)
                yield out
            data = b""
            while not self._obj.eof and self._needs_more_output():
                out = self._decompress(b"")
                if out:
                    self.produced += len(out)
                    yield out
            if self._obj.eof:
                data = self._obj.unused_data
                self._obj = self._new()
                self._in_stream = False

    def finish(self) -> Iterator:
        """Raise if the data stopped inside a compressed stream (a truncated image)."""
        if self._in_stream:
            raise DecodeError(f"{self.compression} data ends in the middle of a stream "
                              f"(after {self.produced} bytes of output)")
        return iter(())

    def close(self) -> None:
        self._obj = None

    def _decompress(self, data) -> bytes:
        try:
            if hasattr(self._obj, "needs_input"):
                return self._obj.decompress(data, OUTPUT_PIECE)
            return self._obj.decompress(self._obj.unconsumed_tail + bytes(data), OUTPUT_PIECE)
        except (self._error, OSError, ValueError, EOFError) as e:
            raise DecodeError(f"{self.compression} data is corrupt after {self.produced} bytes "
                              f"of output: {e}") from None

    def _needs_more_output(self) -> bool:
        if hasattr(self._obj, "needs_input"):
            return not self._obj.needs_input
        return bool(self._obj.unconsumed_tail)
