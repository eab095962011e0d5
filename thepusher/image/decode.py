"""Turn the stream as transmitted into the bytes that go on the disk.

Compressed images travel compressed; only the writer of each hop decodes, for its own
disk. Files made by parallel compressors hold several concatenated streams
(pbzip2, pigz -i, xz -T), so every decoder restarts after each stream end. Output is
produced in bounded pieces so a small, highly compressed record cannot balloon memory.
bzip2, the slowest to decode, is decoded block by block on all cores (bz2par.py).
"""

from typing import Callable, Iterator, Optional, Tuple

OUTPUT_PIECE = 4 << 20

# The file-name suffix of each compression: put-image names what it compresses this way,
# and the master reads an uploaded image's compression from its name.
SUFFIXES = {"BZ2": ".bz2", "GZIP": ".gz", "XZ": ".xz"}


MAGIC = {"BZ2": b"BZh", "GZIP": b"\x1f\x8b", "XZ": b"\xfd7zXZ\x00"}
HEAD = 6  # bytes `sniff` needs


def sniff(head: bytes) -> str:
    """The compression a file's first bytes show; "NONE" when they show none."""
    for compression, magic in MAGIC.items():
        block_size_digit = len(head) > 3 and b"1"[0] <= head[3] <= b"9"[0]  # bzip2: BZh1..BZh9
        if head.startswith(magic) and (compression != "BZ2" or block_size_digit):
            return compression
    return "NONE"


def declaration_problem(head: bytes, declared: str) -> Optional[str]:
    """Why a file's first bytes contradict its declared compression, or None.

    Caught before a round: a compressed file declared NONE would be written to every disk
    as it is, and verified as such.
    """
    found = sniff(head)
    if found == declared:
        return None
    shown = head[:HEAD].hex(" ") or "nothing: the file is empty"
    if declared == "NONE":
        return (f'starts like {found} data ({shown}) but compression is "NONE"; '
                f'set compression = "{found}"')
    if found == "NONE":
        return (f'is not {declared} data (it starts with {shown}); set compression = "NONE" '
                f"if it is a raw image")
    return f'is {found} data ({shown}) but compression is "{declared}"; set compression = "{found}"'


class DecodeError(Exception):
    """The stream is not valid data of its declared compression."""


def compression_of_name(name: str) -> str:
    """The compression a file name's suffix says (case-insensitive), "NONE" without one."""
    lower = name.lower()
    for compression, suffix in SUFFIXES.items():
        if lower.endswith(suffix):
            return compression
    return "NONE"


def _factory(compression: str) -> Tuple[Callable, type]:
    """The decompressor class and its error for corrupt data (zlib and lzma have their
    own); TinyCore's Python may lack bz2 or lzma, which is named."""
    try:
        return _import(compression)
    except ImportError as e:
        raise DecodeError(f"cannot decode {compression} here: Python lacks {e.name}") from None


def _import(compression: str) -> Tuple[Callable, type]:
    if compression == "BZ2":
        import bz2

        return bz2.BZ2Decompressor, OSError
    if compression == "GZIP":
        import zlib

        return lambda: zlib.decompressobj(wbits=31), zlib.error
    if compression == "XZ":
        import lzma

        return lzma.LZMADecompressor, lzma.LZMAError
    raise DecodeError(f"unsupported compression {compression!r}")


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
    if compression == "BZ2":
        try:
            import bz2  # noqa: F401 - TinyCore's Python may lack it: say so before any thread starts
        except ImportError as e:
            raise DecodeError(f"cannot decode BZ2 here: Python lacks {e.name}") from None
        from thepusher.image.bz2par import ParallelBz2Decoder

        return ParallelBz2Decoder(workers)
    return _StreamEngine(compression)


class _StreamEngine:
    """One decompressor after the other: files made by parallel compressors hold several
    concatenated streams (pigz -i, xz -T, `thepusher compress`)."""

    def __init__(self, compression: str) -> None:
        self.compression = compression
        self._new, self._error = _factory(compression)
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
