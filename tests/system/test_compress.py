"""thepusher compress and the parallel compressor: real bzip2, gzip and xz read what it
writes, thepusher's own Decoder too, and the CLI runs as a real process that is
interrupted and killed. The master takes the digest sidecar without hashing again."""

import bz2
import hashlib
import json
import lzma
import os
import shutil
import signal
import subprocess
import sys
import zlib
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

from tests.conftest import ENV, Proc, thepusher, write_config
from tests.support.fifo import open_fifo_writer
from thepusher.image.compress import ParallelCompressor, Refused
from thepusher.image.decode import Decoder
from thepusher.image.facts import read_sidecar
from thepusher.image.formats import FORMATS

MiB = 1 << 20
TOOLS = {"bz2": "bzip2", "gz": "gzip", "xz": "xz"}
COMPRESSION = {fmt: spec.compression for fmt, spec in FORMATS.items()}
BZ2_STREAM_START = b"BZh9" + bytes.fromhex("314159265359")  # header, then a block's magic
# xz at preset 1 in the tests that only need some xz: chunking does not depend on the
# level, and preset 6 manages only about 2 MB/s per core.
QUICK_LEVEL = {"bz2": 9, "gz": 6, "xz": 1}


def sample(size: int) -> bytes:
    """Like a disk: runs of random data (incompressible) between runs of zeros and text."""
    unit = 64 << 10
    parts = []
    for i in range(0, size, unit):
        parts.append(os.urandom(unit // 4) + b"thepusher %d\n" % i * 1000)
        parts.append(bytes(unit - len(parts[-1])))
    return b"".join(parts)[:size]


def compress(data: bytes, fmt: str, level=None, workers: int = 2, piece: int = 4 * MiB) -> bytes:
    with ParallelCompressor(fmt, level, workers) as compressor:
        packed = [out for i in range(0, len(data), piece)
                  for out in compressor.feed(memoryview(data)[i : i + piece])]
        return b"".join(packed + list(compressor.finish()))


def tool_decompress(fmt: str, data: bytes) -> bytes:
    """The format's own command line tool, as an admin would run it."""
    result = subprocess.run([TOOLS[fmt], "-dc"], input=data, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def decoder_decompress(fmt: str, data: bytes) -> bytes:
    """What a client writes to its disk."""
    decoder = Decoder(COMPRESSION[fmt])
    try:
        out = [bytes(p) for i in range(0, len(data), MiB) for p in decoder.feed(data[i : i + MiB])]
        return b"".join(out + [bytes(p) for p in decoder.finish()])
    finally:
        decoder.close()


def stream_sizes(fmt: str, data: bytes) -> List[int]:
    """The content size of each stream in the file, one stream after the other."""
    new = {"bz2": bz2.BZ2Decompressor, "gz": lambda: zlib.decompressobj(31),
           "xz": lzma.LZMADecompressor}[fmt]
    sizes = []
    while data:
        stream = new()
        sizes.append(len(stream.decompress(data)))
        assert stream.eof
        data = stream.unused_data
    return sizes


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the compressor ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["bz2", "gz", "xz"])
def test_output_is_one_stream_per_chunk_and_bzip2_gzip_xz_and_the_decoder_read_it_whole(fmt):
    compressor = ParallelCompressor(fmt, QUICK_LEVEL[fmt])
    data = sample(2 * compressor.chunk + 12345)
    packed = compress(data, fmt, QUICK_LEVEL[fmt])
    assert len(packed) < len(data) // 2
    assert stream_sizes(fmt, packed) == [compressor.chunk, compressor.chunk, 12345]
    assert tool_decompress(fmt, packed) == data
    assert decoder_decompress(fmt, packed) == data


def test_bz2_streams_each_hold_nine_whole_blocks_of_the_level():
    assert [ParallelCompressor("bz2", level).chunk for level in (9, 5, 1)] == [8_100_000, 4_500_000, 900_000]
    data = sample(20 * MiB)
    packed = compress(data, "bz2")
    assert packed.count(BZ2_STREAM_START) == 3 and packed.startswith(BZ2_STREAM_START)
    assert stream_sizes("bz2", packed) == [8_100_000, 8_100_000, len(data) - 16_200_000]


@pytest.mark.parametrize("fmt", ["bz2", "gz", "xz"])
def test_empty_input_is_one_empty_stream_that_every_tool_reads(fmt):
    packed = compress(b"", fmt)
    assert packed and stream_sizes(fmt, packed) == [0]
    assert tool_decompress(fmt, packed) == b"" and decoder_decompress(fmt, packed) == b""


def test_output_does_not_depend_on_threads_or_how_the_input_is_cut():
    data = sample(30 * MiB + 7)
    one = compress(data, "gz", workers=1, piece=4 * MiB)
    assert compress(data, "gz", workers=3, piece=1_000_003) == one
    assert compress(data, "gz", workers=2, piece=len(data)) == one


def test_feed_waits_for_the_oldest_chunk_so_at_most_two_per_worker_are_in_flight():
    data = sample(24 * MiB)
    with ParallelCompressor("gz", 1, workers=1) as compressor:
        compressor.chunk = 1 << 20  # 24 chunks
        got = 0
        for i in range(0, len(data), 3 * MiB):
            got += len(list(compressor.feed(data[i : i + 3 * MiB])))
            assert compressor.streams - got <= 2
        got += len(list(compressor.finish()))
    assert got == compressor.streams == 24


def test_defaults_are_those_of_the_formats_tools_and_bad_levels_are_refused():
    assert {fmt: ParallelCompressor(fmt).level for fmt in FORMATS} == {"bz2": 9, "gz": 6, "xz": 6}
    assert ParallelCompressor("gz").workers == os.cpu_count()
    with pytest.raises(Refused, match="bz2 levels are 1 to 9, not 0"):
        ParallelCompressor("bz2", 0)
    with pytest.raises(Refused, match="xz levels are 0 to 9, not 10"):
        ParallelCompressor("xz", 10)


# -- thepusher compress, a real process --------------------------------------------------


def run(*args: str, python: Optional[List[str]] = None) -> subprocess.CompletedProcess:
    """`thepusher compress ARGS` (or `python` instead of plain thepusher)."""
    return subprocess.run((python or thepusher()) + ["compress", *args], env=ENV,
                          capture_output=True, text=True, timeout=300)


def listing(directory: Path) -> List[str]:
    return sorted(p.name for p in directory.iterdir())


def test_cli_help_says_formats_defaults_and_that_nothing_is_overwritten():
    result = run("--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: thepusher compress")
    for words in ("--format {bz2,gz,xz}", "bz2 9, gz 6, xz 6", "one per CPU core",
                  "never overwritten", "-o OUT"):
        assert words in " ".join(result.stdout.split()), words


@pytest.mark.parametrize("fmt", ["bz2", "gz", "xz"])
def test_cli_writes_img_with_the_format_suffix_and_a_sidecar_with_the_content_digest(tmp_path, fmt):
    data = sample(9 * MiB)
    img = tmp_path / "disk.img"
    img.write_bytes(data)
    args = ["--format", fmt, "--threads", "2"] + (["--level", "1"] if fmt == "xz" else [])
    result = run(str(img), *args)
    assert result.returncode == 0, result.stderr
    out = tmp_path / f"disk.img.{fmt}"
    assert listing(tmp_path) == ["disk.img", out.name, f"{out.name}.digest.json"]
    assert tool_decompress(fmt, out.read_bytes()) == data
    facts = read_sidecar(str(out))
    assert facts is not None
    assert (facts.sha256, facts.content_size, facts.stream_size) == (sha(data), len(data), out.stat().st_size)
    summary = result.stdout
    assert f"{img} (9.0 MiB) -> {out} (" in summary and " MB/s with 2 threads" in summary
    assert sha(data) in summary


def test_cli_default_is_bz2_readable_by_plain_bzip2(tmp_path):
    data = sample(10 * MiB)
    (tmp_path / "a.img").write_bytes(data)
    result = run(str(tmp_path / "a.img"))
    assert result.returncode == 0, result.stderr
    packed = (tmp_path / "a.img.bz2").read_bytes()
    assert packed.count(BZ2_STREAM_START) == 2
    assert subprocess.run(["bzip2", "-t"], input=packed, capture_output=True).returncode == 0
    assert tool_decompress("bz2", packed) == data


def test_cli_empty_input_makes_a_valid_file_and_sidecar(tmp_path):
    (tmp_path / "empty.img").write_bytes(b"")
    result = run(str(tmp_path / "empty.img"), "--format", "xz", "-o", str(tmp_path / "e.xz"))
    assert result.returncode == 0, result.stderr
    assert tool_decompress("xz", (tmp_path / "e.xz").read_bytes()) == b""
    facts = read_sidecar(str(tmp_path / "e.xz"))
    assert (facts.sha256, facts.content_size) == (sha(b""), 0)


def test_cli_never_overwrites_an_existing_output_exit_2_and_nothing_written(tmp_path):
    (tmp_path / "a.img").write_bytes(sample(MiB))
    (tmp_path / "a.img.gz").write_bytes(b"keep me")
    (tmp_path / "other").write_bytes(b"keep me too")
    before = listing(tmp_path)
    for args in (["--format", "gz"], ["-o", str(tmp_path / "other")]):
        result = run(str(tmp_path / "a.img"), *args)
        assert result.returncode == 2
        assert "exists and is never overwritten" in result.stderr and "Traceback" not in result.stderr
    assert listing(tmp_path) == before
    assert (tmp_path / "a.img.gz").read_bytes() == b"keep me"
    assert (tmp_path / "other").read_bytes() == b"keep me too"


def test_cli_refuses_a_device_without_o_and_a_missing_input_exit_2(tmp_path):
    result = run("/dev/null")
    assert result.returncode == 2
    assert "/dev/null is not a regular file: give -o OUT" in result.stderr
    result = run(str(tmp_path / "nothing.img"))
    assert result.returncode == 2 and "cannot read" in result.stderr and "No such file" in result.stderr
    result = run(str(tmp_path / "nothing.img"), "--level", "12", "--format", "gz")
    assert result.returncode == 2 and "gz levels are 0 to 9, not 12" in result.stderr
    assert listing(tmp_path) == []


def test_cli_compresses_a_block_device_given_o(tmp_path):
    if os.geteuid() != 0 or not shutil.which("losetup"):
        pytest.skip("needs root and losetup")
    data = sample(12 * MiB)
    backing = tmp_path / "backing"
    backing.write_bytes(data)
    dev = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True)
    if dev.returncode != 0:
        pytest.skip(f"no loop device available: {dev.stderr.strip()}")
    device = dev.stdout.strip()
    try:
        refused = run(device)
        result = run(device, "--format", "gz", "-o", str(tmp_path / "disk.gz"))
    finally:
        subprocess.run(["losetup", "-d", device], check=False)
    assert refused.returncode == 2 and "give -o OUT" in refused.stderr
    assert result.returncode == 0, result.stderr
    assert tool_decompress("gz", (tmp_path / "disk.gz").read_bytes()) == data
    assert read_sidecar(str(tmp_path / "disk.gz")).sha256 == sha(data)
    assert "(12.0 MiB) ->" in result.stdout  # the device's size was known: progress had a total


def test_missing_module_is_named_by_compress_and_put_image(tmp_path):
    (tmp_path / "a.img").write_bytes(b"data")
    python = [sys.executable, "-c", "import sys; sys.modules['lzma'] = None; "
              "from thepusher.cli import main; sys.exit(main(sys.argv[1:]))"]
    result = run(str(tmp_path / "a.img"), "--format", "xz", python=python)
    assert result.returncode == 2
    assert "this Python has no lzma module, so no xz; another format (bz2, gz) may do" in result.stderr
    upload = subprocess.run(python + ["put-image", "-p", "127.0.0.1:9", "-i", str(tmp_path / "a.img"),
                                      "--compress", "xz"], env=ENV, capture_output=True, text=True,
                            timeout=60)
    assert upload.returncode == 1
    assert "--compress xz: this Python has no lzma module" in upload.stderr
    assert "or upload uncompressed" in upload.stderr and "cannot reach" not in upload.stderr
    assert listing(tmp_path) == ["a.img"]


# -- interrupted -------------------------------------------------------------------------


def fifo_compress(tmp_path: Path) -> Tuple[Proc, int, Path]:
    """A compress process reading a FIFO we write, and that has written its first
    stream: mid-way for as long as we like."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    out = tmp_path / "out"
    out.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    proc = Proc("compress", ["compress", str(pipe), "--format", "gz", "--threads", "2",
                       "-o", str(out / "disk.gz")], logs)
    fd = open_fifo_writer(pipe)
    piece = sample(MiB)
    for _ in range(200):
        if [p for p in out.iterdir() if p.stat().st_size > 0]:
            return proc, fd, out
        os.write(fd, piece)
    raise AssertionError(f"200 MiB in, and nothing in {out}: {proc.output()}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_interrupted_by_ctrl_c_or_kill_leaves_nothing(tmp_path, sig):
    proc, fd, out = fifo_compress(tmp_path)
    try:
        assert listing(out) == [f".disk.gz.{proc.popen.pid}.tmp"]
        proc.kill(sig)
        assert proc.wait(30) == 130, proc.output()
        assert "interrupted, nothing written" in proc.output()
    finally:
        os.close(fd)
        proc.stop()
    assert listing(out) == []


def test_cli_killed_hard_leaves_only_a_hidden_temp_file_and_a_new_run_succeeds(tmp_path):
    proc, fd, out = fifo_compress(tmp_path)
    try:
        proc.kill(signal.SIGKILL)
        proc.popen.wait(30)
    finally:
        os.close(fd)
        proc.stop()
    leftover = listing(out)
    assert leftover == [f".disk.gz.{proc.popen.pid}.tmp"]  # hidden: the master ignores it
    (tmp_path / "small.img").write_bytes(b"small")
    result = run(str(tmp_path / "small.img"), "--format", "gz", "-o", str(out / "disk.gz"))
    assert result.returncode == 0, result.stderr
    assert listing(out) == sorted(leftover + ["disk.gz", "disk.gz.digest.json"])


# -- the master takes the sidecar ----------------------------------------------------------


def test_master_serves_a_compressed_image_by_its_sidecar_without_hashing_it(lab):
    data = sample(9 * MiB)
    (lab.images / "disk.img").write_bytes(data)
    result = run(str(lab.images / "disk.img"), "--format", "gz")
    assert result.returncode == 0, result.stderr
    (lab.images / "disk.img").unlink()
    write_config(lab.images, ["127.0.0.11"], filename="disk.img.gz", compression="GZIP")
    master = lab.start_master()
    image = lab.wait_for(lambda: [i for i in lab.status()["images"] if i["state"] == "ready"], 20,
                         "the image ready")[0]
    assert (image["sha256"], image["content_size"]) == (sha(data), len(data))
    assert "hashing image" not in master.output()
    assert json.loads((lab.images / "disk.img.gz.digest.json").read_text())["sha256"] == sha(data)
