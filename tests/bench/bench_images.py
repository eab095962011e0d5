"""The images `link.py --mode images` restores when none are given, and how fast
thepusher decodes each format.

The set (issue 6's targets), made once and kept in build/bench-images/ (a stamp file
says with which size; delete the directory to make them again):

* raw.img: content that compresses about 2:1, as disks with an installed system do:
  real files (this machine's /usr/lib, in sorted order) with 15% random stretches
  (already-compressed files), no zero runs;
* raw.img.gz (`gzip -6`), raw.img.bz2 (plain `bzip2 -9`: one stream, as most people
  make them), raw.img.xz (`xz -3 -T2`, multi-block so it is made in useful time);
* random.img: random bytes (incompressible, no zeros), the baseline of the zero test;
* zeros75.img: the same size, 75% zeros in runs of 1 to 64 MiB between random
  stretches, written out (not sparse): the master finds the runs by reading.

Stdlib only; runs under Python 3.9.
"""

import os
import random
import subprocess
import sys
import time
from typing import Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from thepusher.demo import make_image  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(ROOT, "build", "bench-images")
MiB = 1 << 20
COMPRESSORS = {".gz": ["gzip", "-6"], ".bz2": ["bzip2", "-9"], ".xz": ["xz", "-3", "-T2"]}


def standard_set(size: int) -> List[Tuple[str, str]]:
    """[(path, compression)] in the order the table shows them; made when missing."""
    os.makedirs(CACHE, exist_ok=True)
    stamp = os.path.join(CACHE, "size")
    if not os.path.exists(stamp) or open(stamp).read().strip() != str(size):
        for name in os.listdir(CACHE):
            os.unlink(os.path.join(CACHE, name))
        _make(size)
        with open(stamp, "w") as f:
            f.write(f"{size}\n")
    names = [("raw.img", "NONE"), ("raw.img.gz", "GZIP"), ("raw.img.bz2", "BZ2"),
             ("raw.img.xz", "XZ"), ("random.img", "NONE"), ("zeros75.img", "NONE")]
    return [(os.path.join(CACHE, name), compression) for name, compression in names]


def _make(size: int) -> None:
    raw = os.path.join(CACHE, "raw.img")
    _timed(f"making {raw}", _write_like_a_disk, raw, size)
    for suffix, argv in COMPRESSORS.items():
        with open(raw + suffix + ".tmp", "wb") as out:
            _timed(f"{' '.join(argv)} {raw}", subprocess.run, [*argv, "-c", raw], stdout=out,
                   check=True)
        os.rename(raw + suffix + ".tmp", raw + suffix)
    _timed("making random.img", make_image, os.path.join(CACHE, "random.img"), size)
    _timed("making zeros75.img", _write_zeros75, os.path.join(CACHE, "zeros75.img"), size)


def _timed(what: str, fn, *args, **kwargs) -> None:
    print(f"bench_images: {what} ...", end=" ", flush=True)
    t0 = time.monotonic()
    fn(*args, **kwargs)
    print(f"{time.monotonic() - t0:.0f} s", flush=True)


def _files(top: str):
    for base, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(base, name)
            if os.path.isfile(path) and not os.path.islink(path) and os.path.getsize(path) > 16384:
                yield path


def _write_like_a_disk(path: str, size: int) -> None:
    """Real files, and a random MiB whenever random bytes fall below 15% of the total."""
    rnd_bytes = 0
    with open(path, "wb") as out:
        while out.tell() < size:
            for name in _files("/usr/lib"):
                if out.tell() >= size:
                    break
                try:
                    with open(name, "rb") as f:
                        out.write(f.read(size - out.tell()))
                except OSError:
                    continue
                while rnd_bytes < 0.15 * out.tell():
                    out.write(os.urandom(MiB))
                    rnd_bytes += MiB
        out.truncate(size)


def _write_zeros75(path: str, size: int) -> None:
    rnd = random.Random(75)
    zeros = bytes(4 * MiB)
    with open(path, "wb") as f:
        while f.tell() < size:
            data = rnd.randrange(1, 22) * MiB
            run = 3 * data  # 75% zeros overall, in runs of 3 to 63 MiB
            f.write(os.urandom(min(data, size - f.tell())))
            left = min(run, max(size - f.tell(), 0))
            while left:
                n = min(left, len(zeros))
                f.write(zeros[:n])
                left -= n
        f.truncate(size)


def decode_speeds(images: List[Tuple[str, str]], repeat: int) -> Dict[str, Dict[int, float]]:
    """Content MB/s of thepusher's own decoder on each compressed image, with 1 and 2
    threads for bzip2 (the others use one), the median of `repeat` runs, each a fresh
    process so the runs do not share caches."""
    out: Dict[str, Dict[int, float]] = {}
    for path, compression in images:
        if compression == "NONE":
            continue
        for workers in ((1, 2) if compression == "BZ2" else (1,)):
            speeds = sorted(_decode_once(path, compression, workers) for _ in range(repeat))
            out.setdefault(path, {})[workers] = speeds[len(speeds) // 2]
    return out


_DECODE = """
import sys, time
from thepusher.image.decode import Decoder
path, compression, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = Decoder(compression, workers)
n = 0
t0 = time.perf_counter()
with open(path, "rb", buffering=0) as f:
    while True:
        block = f.read(1 << 20)
        if not block:
            break
        for piece in d.feed(block):
            n += len(piece)
for piece in d.finish():
    n += len(piece)
d.close()
print(n / (time.perf_counter() - t0) / 1e6)
"""


def _decode_once(path: str, compression: str, workers: int) -> float:
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", _DECODE, path, compression, str(workers)],
                         capture_output=True, text=True, check=True, env=env)
    return float(out.stdout)
