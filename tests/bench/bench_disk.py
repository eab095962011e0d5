#!/usr/bin/env python3
"""A client writing a real block device, side by side with dd on the same device.

A script (`make bench`, or `python3 tests/bench/bench_disk.py --help`; root, Linux).
The device is a loop device over a file on this machine's own disk (`--dir`, default
/var/tmp), set to direct I/O (`losetup --direct-io=on`) so that what is written to it
goes to the disk as it would on a real one, not to the page cache of its backing file.
Each repeat, in turn, with the page cache dropped before each:

* `dd if=IMAGE of=DEV bs=4M conv=fsync`: through the page cache, flushed at the end;
* `dd if=IMAGE of=DEV bs=4M oflag=direct`: past the page cache, the issue's yardstick;
* a round of one client (this tree) onto DEV, from a master on loopback: the master's
  stream time (streaming to finished: the last byte written, flushed, verified, DONE);
* with `--compare DIR`, the same round run from another checkout (e.g. a worktree of
  an earlier commit), for before/after figures in one run.

With `--rate BYTES/s` the device takes at most that (a SATA SSD's 300-500 MB/s, a
disk's 150): this bench and everything it starts run in a blkio cgroup (v1) with that
write limit on DEV, so the disk, not this machine's two cores, sets the pace. cgroup v1
throttles direct writes only, not the page cache's writeback: so a client that writes
through the page cache is not held to the rate, and a `--compare` of one is only
meaningful without `--rate`.

Every client round's copy is read back from DEV and compared with the image. Printed:
medians, dd oflag=direct's time over each client's (the target is >= 0.9), each
client's and the master's CPU seconds, how much the block devices' page cache grew
during the round (/proc/meminfo Buffers, sampled), and the CPU floor of this machine: master and
client run on the same cores here, and both hash every byte (SHA-256), which a dd does
not; (master + client CPU) / cores is the least time they can take.

Units: MB = 10^6 bytes, GB = 10^9 bytes, MiB = 2^20 bytes. Stdlib only; runs under
Python 3.9.
"""

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402 - beside this script, also when run as a file
from bench import BenchError, median, parse_size  # noqa: E402

TMPFS_MAGIC = "tmpfs"
BLKIO = "/sys/fs/cgroup/blkio"


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def filesystem_type(path: str) -> str:
    """The type of the filesystem `path` is on (/proc/self/mounts, longest match)."""
    best, kind = "", ""
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        for line in f:
            _, mount, fstype = line.split()[:3]
            if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
                best, kind = mount, fstype
    return kind


@contextlib.contextmanager
def loop_device(directory: str, size: int) -> Iterator[str]:
    """A loop device with direct I/O over a new file of `size` bytes in `directory`."""
    backing = tempfile.NamedTemporaryFile(dir=directory, prefix="bench-disk-", suffix=".img",
                                          delete=False)
    backing.close()
    try:
        with open(backing.name, "r+b") as f:
            f.truncate(size)
            os.posix_fallocate(f.fileno(), 0, size)  # real blocks, as a disk has
        made = subprocess.run(["losetup", "--find", "--show", "--direct-io=on", backing.name],
                              capture_output=True, text=True)
        if made.returncode != 0:
            raise BenchError(f"losetup failed: {made.stderr.strip()}")
        device = made.stdout.strip()
        try:
            yield device
        finally:
            subprocess.run(["losetup", "-d", device], check=False)
    finally:
        os.unlink(backing.name)


@contextlib.contextmanager
def write_limit(device: str, rate: int) -> Iterator[None]:
    """This process, and all it starts from now on, may write `device` at `rate` bytes/s."""
    if not os.path.isfile(os.path.join(BLKIO, "blkio.throttle.write_bps_device")):
        raise BenchError(f"--rate needs the cgroup v1 blkio controller at {BLKIO}")
    group = os.path.join(BLKIO, f"bench-disk-{os.getpid()}")
    os.mkdir(group)
    try:
        rdev = os.stat(device).st_rdev
        with open(os.path.join(group, "blkio.throttle.write_bps_device"), "w") as f:
            f.write(f"{os.major(rdev)}:{os.minor(rdev)} {rate}\n")
        with open(os.path.join(group, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
        try:
            yield
        finally:
            with open(os.path.join(BLKIO, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
    finally:
        for _ in range(50):  # its last processes may take a moment to leave
            try:
                os.rmdir(group)
                break
            except OSError:
                time.sleep(0.1)


def timed_dd(image: str, device: str, flag: str) -> float:
    drop_caches()
    t0 = time.monotonic()
    subprocess.run(["dd", f"if={image}", f"of={device}", "bs=4M", flag, "status=none"], check=True)
    return time.monotonic() - t0


def same_bytes(device: str, image: str, size: int) -> bool:
    def digest(path: str) -> str:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            left = size
            while left:
                chunk = f.read(min(left, 4 << 20))
                if not chunk:
                    break
                h.update(chunk)
                left -= len(chunk)
        return h.hexdigest()

    return digest(device) == digest(image)


def block_cache() -> int:
    """Bytes of block devices' pages in the page cache now (/proc/meminfo Buffers)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Buffers:"):
                return int(line.split()[1]) * 1024
    return 0


class CacheWatch:
    """The most the block devices' page cache grew by while it ran (sampled every 20 ms)."""

    def __init__(self) -> None:
        self.base = block_cache()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, block_cache())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak - self.base


def client_round(checkout: str, image_dir: str, image: str, device: str, size: int) -> dict:
    """One round of one client onto `device`, thepusher run from `checkout`."""
    saved, here = bench.ENV, os.getcwd()
    bench.ENV = dict(saved, PYTHONPATH=checkout)
    os.chdir(checkout)  # `python3 -m thepusher` looks in the current directory first
    lab = bench.Lab(tempfile.mkdtemp(prefix="bench-disk-lab-"))
    try:
        lab.start_master(image_dir, ["127.0.0.11"])
        drop_caches()
        watch = CacheWatch()
        try:
            r = bench.run_round(lab, ["127.0.0.11"], [device], size)
        finally:
            cached = watch.stop()
    finally:
        lab.close()
        shutil.rmtree(lab.workdir, ignore_errors=True)
        bench.ENV = saved
        os.chdir(here)
    if not same_bytes(device, image, size):
        raise BenchError(f"{device} does not hold the image after a round run from {checkout}")
    return {"stream": r["stream"], "cpu": r["cpu"][0], "master_cpu": r["master_cpu"],
            "cached": cached}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="a client writing a block device, beside dd")
    parser.add_argument("--size", type=parse_size, default=1 << 30, help="image size (default 1G)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each; medians (default 3)")
    parser.add_argument("--dir", default="/var/tmp",
                        help="where the loop device's backing file goes: on a real disk, not "
                             "tmpfs (default /var/tmp)")
    parser.add_argument("--rate", type=parse_size, default=0,
                        help="the device takes at most this many bytes/s, e.g. 300M (blkio "
                             "cgroup v1; default: as fast as it goes)")
    parser.add_argument("--compare", metavar="DIR",
                        help="also run the client from this checkout (e.g. an earlier commit's "
                             "worktree), side by side")
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or not shutil.which("losetup"):
        parser.error("needs root and losetup")
    if filesystem_type(args.dir) in (TMPFS_MAGIC, "ramfs"):
        parser.error(f"{args.dir} is in RAM: give --dir on a real disk")
    runs: Dict[str, Callable[[], dict]] = {}
    results: Dict[str, List[dict]] = {}
    image_dir = tempfile.mkdtemp(prefix="bench-disk-", dir="/dev/shm")
    try:
        image = os.path.join(image_dir, "disk.img")
        bench.write_random(image, args.size)
        with contextlib.ExitStack() as stack:
            device = stack.enter_context(loop_device(args.dir, args.size + (64 << 20)))
            if args.rate:
                stack.enter_context(write_limit(device, args.rate))
            runs["dd conv=fsync"] = lambda: {"stream": timed_dd(image, device, "conv=fsync")}
            runs["dd oflag=direct"] = lambda: {"stream": timed_dd(image, device, "oflag=direct")}
            runs["client"] = lambda: client_round(bench.ROOT, image_dir, image, device, args.size)
            if args.compare:
                compare = os.path.abspath(args.compare)
                runs["client (--compare)"] = lambda: client_round(compare, image_dir, image,
                                                                   device, args.size)
            limit = f", writes limited to {args.rate / 1e6:.0f} MB/s" if args.rate else ""
            print(f"bench_disk: {args.size >> 20} MiB random image onto {device} (direct I/O "
                  f"over a file in {args.dir}, {filesystem_type(args.dir)}{limit}), "
                  f"{args.repeat} repeat(s), kinds in turn", flush=True)
            for i in range(args.repeat):
                for name, run in runs.items():
                    results.setdefault(name, []).append(run())
                    print(f"  {i + 1}/{args.repeat} {name:<20} {results[name][-1]['stream']:6.2f} s",
                          flush=True)
    except BenchError as e:
        print(f"bench_disk: ABORTED: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(image_dir, ignore_errors=True)
    report(args, results)
    return 0


def report(args, results: Dict[str, List[dict]]) -> None:
    cores = os.cpu_count() or 1
    direct = median([r["stream"] for r in results["dd oflag=direct"]])
    print()
    head = (f"{'what':<20} {'s':>6} {'MB/s':>7} {'dd direct / it':>15} {'client CPU s':>13} "
            f"{'master CPU s':>13} {'CPU floor s':>12} {'cache MiB':>10}")
    print(head)
    print("-" * len(head))
    for name, rows in results.items():
        t = median([r["stream"] for r in rows])
        line = f"{name:<20} {t:6.2f} {args.size / t / 1e6:7.0f} {direct / t:15.2f}"
        if "cpu" in rows[0]:
            cpu, master = median([r["cpu"] for r in rows]), median([r["master_cpu"] for r in rows])
            cached = median([r["cached"] for r in rows]) / (1 << 20)
            line += f" {cpu:13.2f} {master:13.2f} {(cpu + master) / cores:12.2f} {cached:10.0f}"
        print(line)
    client = median([r["stream"] for r in results["client"]])
    ok = direct / client >= 0.9
    print(f"\ndd oflag=direct / client: {direct / client:.2f}  (target >= 0.9: "
          f"{'met' if ok else 'MISSED'}); CPU floor: (client + master CPU) / {cores} cores")


if __name__ == "__main__":
    sys.exit(main())
