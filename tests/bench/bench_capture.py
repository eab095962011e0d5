#!/usr/bin/env python3
"""Used-block capture (issue 20), measured: put-image of a disk's used blocks against
--whole, the restore of each to 3 clients, and put-image against partclone.

A script, not a pytest test (`make bench`, or `python3 tests/bench/bench_capture.py
[--size 1G]`). Root and Linux: loop devices, mount, mkfs, sgdisk, ntfs-3g, partclone.

The source, made once per run in --dir (default /var/tmp, the machine's disk):

* a disk of --size (default 4 GiB) with a GPT (sgdisk): a FAT32 ESP (256 MiB, 1/8 of
  smaller disks) and an ext4 partition over the rest, on a loop device, each partition
  on a loop device of its own at its offset (this kernel scans no partition tables and
  has no vfat: the ESP is filled with mtools). The whole disk is first written full of
  old bytes (random); the ext4 is then filled with random files to 85 % (mounted) and
  files are deleted until 25 % is used, the ESP to 50 % and back to 20 %: free space is
  old data, not zeros;
* an NTFS partition (mkfs.ntfs, --ntfs-size, default a quarter of --size) on a loop
  device of its own, filled (ntfs-3g mount) and emptied the same way.

Sections, each kind alternating with the other(s) --repeat times (default 3), medians:

1. capture: `thepusher put-image -i /dev/loopN -p 127.0.0.1:PORT -n NAME` to a real
   master process whose image dir is in --dir, used blocks (default) against --whole.
   The source's pages are dropped before every capture (BLKFLSBUF on its loop devices,
   POSIX_FADV_DONTNEED on their backing files): it is read from the disk. Wall time of
   the put-image process (it returns once the master has fsynced the image), its CPU
   and the master's, bytes read from the source device (its /sys/class/block stat) and
   bytes stored (st_blocks of the image, and its .bmap).
2. restore: a round of a real master and 3 real client processes on 127.0.0.11-13
   (tests/bench/bench.py's Lab and run_round) of the used-block image (with its .bmap:
   free ranges travel as FREE records) against the whole-disk image, onto 3 targets
   filled with old bytes (a 1 MiB random block repeated) before the first round, in
   /dev/shm when it has room (--targets). The image files are read once before the
   rounds (in the page cache). After the first round of each kind one target is checked:
   e2fsck -fn of its ext4, fsck.vfat -n of its ESP, and after the used-block round its
   mapped ranges against the .bmap's SHA-256s and its free ranges still the old bytes.
3. the ext4 partition alone: put-image of its loop device against
   `partclone.ext4 -c -s DEV -o OUT` (plus an fsync of OUT, as the master fsyncs), the
   source's pages dropped before each.
4. the NTFS partition: put-image (used, --whole) against `partclone.ntfs -c`, likewise.
With --link RATE (e.g. 1gbit), also the restore of section 2 over emulated links
(tests/bench/link.py: a network namespace per machine, shaped veths), --repeat rounds.
--only picks sections (capture,restore,ext4,ntfs; restore brings capture, whose images
it restores).

Units: MB = 10^6 bytes, GB = 10^9 bytes, MiB = 2^20 bytes. Stdlib only; runs under
Python 3.9. Exit status 0 unless something broke (a missed target is reported).
"""

import argparse
import hashlib
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import (  # noqa: E402
    ENV, BenchError, Lab, cpu_model, cpu_report, cpu_ticks, hosts_for,
    machine_cpu, median, parse_size, run_round,
)
from bench_verify import drop_cache  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from thepusher.image import bmap as bmaps  # noqa: E402
from thepusher.image.fsmap import read_table  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
CHUNK = 4 * MiB
POOL = 64 * MiB  # old bytes are 4 MiB slices of this random pool at random offsets
TARGET_CAPTURE = 0.3  # used-block capture time <= 0.3 x the whole disk's
TARGET_RESTORE = 0.3  # restore of the used-block image <= 0.3 x the whole disk's
TARGET_PARTCLONE = 1.0  # put-image no slower than partclone
FILL_TO = 0.85  # the filesystems are filled to this, then emptied to KEEP
KEEP = 0.25
TOOLS = ("losetup", "blockdev", "mount", "umount", "sgdisk", "mkfs.ext4", "e2fsck", "mkfs.vfat",
         "fsck.vfat", "mmd", "mcopy", "mdel", "mkfs.ntfs", "ntfs-3g")
PARTCLONE = ("partclone.ext4", "partclone.ntfs")
USED_LINE = re.compile(r"(\S+ \S+) of (\S+ \S+) used and read")


def log(text: str) -> None:
    print(f"bench_capture: {text}", flush=True)


def run(*cmd: str, timeout: float = 600) -> str:
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=timeout)
    if r.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} exited {r.returncode}: {r.stdout[-2000:]} {r.stderr[-2000:]}")
    return r.stdout


def mb(n: float) -> str:
    return f"{n / MiB:.0f}"


# -- old bytes ---------------------------------------------------------------------------


class OldBytes:
    """Non-zero 'old data' at memory speed: 4 MiB slices of a 64 MiB random pool (urandom
    runs at ~0.3 GB/s here, too slow for GiBs)."""

    def __init__(self, seed: int) -> None:
        self.pool = memoryview(os.urandom(POOL))
        self.rng = random.Random(seed)

    def chunk(self, n: int) -> memoryview:
        at = self.rng.randrange(0, POOL - n + 1)
        return self.pool[at:at + n]

    def write(self, f, size: int) -> None:
        left = size
        while left:
            n = min(left, CHUNK)
            f.write(self.chunk(n))
            left -= n


class Pattern:
    """What the restore targets hold before the first round: one random MiB, repeated
    (MiB-aligned), so the bench can check that free ranges were never written."""

    def __init__(self) -> None:
        self.block = os.urandom(MiB)
        self.tile = memoryview(self.block * (CHUNK // MiB + 1))

    def fill(self, path: str, size: int) -> None:
        with open(path, "wb") as f:
            for pos in range(0, size, CHUNK):
                f.write(self.tile[:min(CHUNK, size - pos)])

    def expected(self, pos: int, n: int) -> memoryview:
        return self.tile[pos % MiB:pos % MiB + n]


# -- loop devices and filesystems ------------------------------------------------------


class Devices:
    """Every loop device and mount this run makes, undone by close()."""

    def __init__(self) -> None:
        self.loops: List[str] = []
        self.mounts: List[str] = []

    def loop(self, path: str, read_only: bool = False, offset: int = 0, size: int = 0) -> str:
        """A loop device over `path`, or over `size` bytes of it from `offset` (a
        partition: this kernel may scan no partition tables, so no --partscan)."""
        args = ["losetup", "--find", "--show"]
        if read_only:
            args.append("--read-only")
        if size:
            args += ["--offset", str(offset), "--sizelimit", str(size)]
        dev = run(*args, path).strip()
        self.loops.append(dev)
        return dev

    def unloop(self, dev: str) -> None:
        subprocess.run(["losetup", "--detach", dev], check=False)
        if dev in self.loops:
            self.loops.remove(dev)

    def mount(self, dev: str, where: str, fstype: Optional[str] = None) -> None:
        os.makedirs(where, exist_ok=True)
        run("mount", *(["-t", fstype] if fstype else []), dev, where)
        self.mounts.append(where)

    def umount(self, where: str) -> None:
        run("umount", where)
        self.mounts.remove(where)

    def close(self) -> None:
        for where in reversed(self.mounts):
            subprocess.run(["umount", "-l", where], check=False)
        self.mounts = []
        for dev in reversed(self.loops):
            subprocess.run(["losetup", "--detach", dev], check=False)
        self.loops = []


def used_fraction(where: str) -> float:
    st = os.statvfs(where)
    return (st.f_blocks - st.f_bfree) / st.f_blocks


def fill_and_empty(where: str, old: OldBytes, rng: random.Random, big: Tuple[int, int],
                   small: int, fill_to: float = FILL_TO, keep: float = KEEP) -> float:
    """Files of old bytes in `where` until `fill_to` of it is used, then big ones deleted
    (in random order) until at most `keep`: what is free held data once. Returns the
    used fraction."""
    os.makedirs(os.path.join(where, "small"), exist_ok=True)
    for i in range(small):  # a tree of small files that stay (metadata, fragments)
        with open(os.path.join(where, "small", f"s{i:04d}.bin"), "wb") as f:
            f.write(old.chunk(rng.randrange(1, 64) * 1024))
    files = []
    st = os.statvfs(where)
    total = st.f_blocks * st.f_frsize
    while used_fraction(where) < fill_to:
        path = os.path.join(where, f"f{len(files):05d}.bin")
        n = rng.randrange(big[0], big[1]) & ~4095
        n = min(n, int((fill_to - used_fraction(where)) * total) + 4096)
        with open(path, "wb") as f:
            old.write(f, n)
        files.append(path)
    rng.shuffle(files)
    for path in files:
        if used_fraction(where) <= keep:
            break
        os.unlink(path)
        os.sync()  # the filesystem counts freed blocks once they are committed
    short = int((keep - used_fraction(where)) * total) & ~4095
    if short > 0:  # the last file deleted took it below `keep`: one more, written anew
        with open(os.path.join(where, "last.bin"), "wb") as f:
            old.write(f, short)
        os.sync()
    return used_fraction(where)


def fill_esp(dev: str, size: int, scratch: str, old: OldBytes, rng: random.Random) -> float:
    """The ESP with mtools (this kernel may have no vfat): files to about half of it,
    then some deleted, to about a fifth. Returns the fraction its files take."""
    os.makedirs(scratch)
    names, total = [], 0
    while total < size // 2:
        n = rng.randrange(64 * 1024, 8 * MiB) & ~511
        name = f"f{len(names):03d}.efi"
        with open(os.path.join(scratch, name), "wb") as f:
            old.write(f, n)
        names.append((name, n))
        total += n
    run("mmd", "-i", dev, "::EFI", "::EFI/BOOT")
    run("mcopy", "-i", dev, *(os.path.join(scratch, n) for n, _ in names), "::EFI/BOOT/")
    shutil.rmtree(scratch)
    rng.shuffle(names)
    gone = []
    while total > size // 5:
        name, n = names.pop()
        gone.append(f"::EFI/BOOT/{name}")
        total -= n
    run("mdel", "-i", dev, *gone)
    return total / size


def make_disk(path: str, size: int, devs: Devices) -> dict:
    """The GPT disk: ESP (FAT32) + ext4, old bytes in all free space. Returns its facts."""
    esp = min(256 * MiB, size // 8)
    old = OldBytes(1)
    rng = random.Random(2)
    with open(path, "wb") as f:
        old.write(f, size)
    run("sgdisk", "-Z", f"-n1:0:+{esp // 1024}K", "-t1:ef00", "-c1:ESP",
        "-n2:0:0", "-t2:8300", "-c2:root", path)
    with open(path, "rb") as f:
        _, parts = read_table(f.fileno())
    dev = devs.loop(path)
    esp_dev, ext4_dev = (devs.loop(path, offset=p.start, size=p.size) for p in parts)
    run("mkfs.vfat", "-F", "32", "-n", "ESP", esp_dev)
    run("mkfs.ext4", "-q", "-F", "-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0",
        "-L", "root", ext4_dev)
    esp_used = fill_esp(esp_dev, parts[0].size, path + ".esp", old, rng)
    mnt = path + ".mnt"
    devs.mount(ext4_dev, mnt, "ext4")
    ext4_used = fill_and_empty(mnt, old, rng, (1 * MiB, 48 * MiB), 400)
    devs.umount(mnt)
    os.rmdir(mnt)
    run("e2fsck", "-fn", ext4_dev)
    run("fsck.vfat", "-n", esp_dev)
    return {"dev": dev, "ext4": ext4_dev, "esp": esp_dev, "esp_size": parts[0].size,
            "ext4_size": parts[1].size, "esp_used": esp_used, "ext4_used": ext4_used,
            "parts": [(p.start, p.size) for p in parts]}


def make_ntfs(path: str, size: int, devs: Devices) -> dict:
    old = OldBytes(3)
    with open(path, "wb") as f:
        old.write(f, size)
    dev = devs.loop(path)
    run("mkfs.ntfs", "-q", "-f", "-L", "data", dev)
    mnt = path + ".mnt"
    devs.mount(dev, mnt, "ntfs-3g")
    used = fill_and_empty(mnt, old, random.Random(4), (1 * MiB, 32 * MiB), 200)
    devs.umount(mnt)
    os.rmdir(mnt)
    return {"dev": dev, "used": used}


def drop_caches(devices: List[str], files: List[str]) -> None:
    """The source read from the disk, not from memory: the loop devices' page cache
    flushed and dropped (BLKFLSBUF, blockdev --flushbufs), and their backing files'."""
    for dev in devices:
        run("blockdev", "--flushbufs", dev)
    for path in files:
        drop_cache(path)


def sectors_read(dev: str) -> int:
    """Bytes read from a block device so far (/sys/class/block/NAME/stat, field 3)."""
    with open(f"/sys/class/block/{os.path.basename(dev)}/stat") as f:
        return int(f.read().split()[2]) * 512


def stored_bytes(path: str) -> int:
    return os.stat(path).st_blocks * 512 if os.path.exists(path) else 0


def timed(cmd: List[str], env: Optional[dict] = None, timeout: float = 1800,
          watch: Optional[str] = None) -> dict:
    """Run cmd to its end: wall s, CPU s (user+sys, from wait4), its output; with `watch`,
    also when that file last grew ("last_write", s from the start; polled every 10 ms)."""
    out = tempfile.TemporaryFile()
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = t0 + timeout
    grown, last = -1, 0.0
    try:
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{' '.join(cmd)} still running after {timeout:.0f} s")
            if watch:
                try:
                    n = os.stat(watch).st_size
                except FileNotFoundError:
                    n = -1
                if n != grown:
                    grown, last = n, time.monotonic() - t0
            time.sleep(0.01)
    except BaseException:  # a timeout, Ctrl-C, SIGTERM: it must not outlive the run
        p.kill()
        p.wait()
        raise
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    text = out.read().decode(errors="replace")
    out.close()
    if p.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} exited {p.returncode}:\n{text[-3000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "out": text, "last_write": last}


def put_image(lab: Lab, image_dir: str, source: str, name: str, whole: bool,
              cold: Tuple[List[str], List[str]], keep: bool = False) -> dict:
    """One put-image of `source` to the lab's master (which never replaces an image: the
    previous run's is removed first); the stored image is removed after unless `keep`."""
    path = os.path.join(image_dir, name)
    remove_image(path)
    drop_caches(*cold)
    read0 = sectors_read(source)
    master0 = cpu_ticks(lab.master.popen.pid)
    cmd = [sys.executable, "-m", "thepusher", "-v", "put-image", "-i", source,
           "-p", f"127.0.0.1:{lab.port}", "-n", name] + (["--whole"] if whole else [])
    r = timed(cmd, env=ENV)
    master1 = cpu_ticks(lab.master.popen.pid)
    used = USED_LINE.search(r["out"])
    fig = {
        "wall": r["wall"], "cpu": r["cpu"],
        "master_cpu": (master1 - master0) if master0 is not None and master1 is not None else float("nan"),
        "read": sectors_read(source) - read0,
        "stored": stored_bytes(path), "apparent": os.path.getsize(path),
        "bmap": os.path.getsize(path + ".bmap") if os.path.exists(path + ".bmap") else 0,
        "used_line": used.group(0) if used else "",
        "free": sum(n for _, n in bmaps.load(path + ".bmap").free_runs())
        if os.path.exists(path + ".bmap") else 0,
    }
    if whole and fig["bmap"]:
        raise BenchError(f"put-image --whole of {source} made a bmap")
    if not whole and not fig["bmap"]:
        raise BenchError(f"put-image of {source} made no bmap:\n{r['out'][-2000:]}")
    if not keep:
        remove_image(path)
    return fig


def remove_image(path: str) -> None:
    for p in (path, path + ".bmap", path + ".digest.json"):
        if os.path.exists(p):
            os.unlink(p)


def partclone(tool: str, source: str, out: str, cold: Tuple[List[str], List[str]]) -> dict:
    """`TOOL -c -s SOURCE -o OUT`, then an fsync of OUT (the master fsyncs an upload
    before it answers); OUT removed after."""
    drop_caches(*cold)
    read0 = sectors_read(source)
    r = timed([tool, "-c", "-q", "-s", source, "-o", out, "-L", out + ".log"], watch=out)
    t0 = time.monotonic()
    fd = os.open(out, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    sync = time.monotonic() - t0
    # partclone's progress thread sleeps 2 s between updates and the program waits for it
    # to wake before it fsyncs its output and exits: up to 2 s idle after its last write
    fig = {"wall": r["wall"] + sync, "own": r["wall"], "sync": sync, "cpu": r["cpu"],
           "last_write": min(r["last_write"], r["wall"]),
           "read": sectors_read(source) - read0, "stored": stored_bytes(out),
           "apparent": os.path.getsize(out)}
    os.unlink(out)
    return fig


def med(rows: List[dict], key: str) -> float:
    return median([r[key] for r in rows])


def alternate(repeat: int, kinds: List[Tuple[str, object]]) -> Dict[str, List[dict]]:
    """Each kind once per repeat, in turn; a line per run."""
    out: Dict[str, List[dict]] = {name: [] for name, _ in kinds}
    for i in range(repeat):
        for name, fn in kinds:
            r = fn()
            out[name].append(r)
            extra = f", read {mb(r['read'])} MiB, stored {mb(r['stored'])} MiB" if "read" in r else ""
            log(f"  [{name}, {i + 1}/{repeat}] {r['wall']:.2f} s, CPU {r['cpu']:.2f} s{extra}")
    return out


def ext4_kinds(lab: Lab, image_dir: str, disk: dict, workdir: str, cold) -> list:
    kinds = [("put-image (used blocks)", lambda: put_image(lab, image_dir, disk["ext4"],
                                                           "ext4.img", False, cold))]
    if shutil.which("partclone.ext4"):
        kinds.append(("partclone.ext4", lambda: partclone(
            "partclone.ext4", disk["ext4"], os.path.join(workdir, "ext4.pcl"), cold)))
    return kinds


def ntfs_kinds(lab: Lab, image_dir: str, ntfs: dict, workdir: str, cold) -> list:
    kinds = [("put-image (used blocks)", lambda: put_image(lab, image_dir, ntfs["dev"],
                                                           "ntfs.img", False, cold)),
             ("put-image --whole", lambda: put_image(lab, image_dir, ntfs["dev"],
                                                     "ntfs-whole.img", True, cold))]
    if shutil.which("partclone.ntfs"):
        kinds.append(("partclone.ntfs", lambda: partclone(
            "partclone.ntfs", ntfs["dev"], os.path.join(workdir, "ntfs.pcl"), cold)))
    return kinds


# -- restore -----------------------------------------------------------------------------


def targets_dir(arg: str, need: int, fallback: str) -> str:
    if arg != "auto":
        return arg
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        avail = 0
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
        if shutil.disk_usage(shm).free > need + 2 * GiB and avail > need + 4 * GiB:
            return shm
    return fallback


def check_target(target: str, disk: dict, the_bmap: Optional[bmaps.Bmap], pattern: Pattern,
                 devs: Devices) -> str:
    """fsck of the target's ext4 and ESP; with a bmap: mapped ranges against its SHA-256s,
    free ranges still the pattern the target was filled with."""
    notes = []
    if the_bmap is not None:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        with open(target, "rb", buffering=0) as f:
            for offset, length, digest in the_bmap.mapped():
                sha = hashlib.sha256()
                for pos in range(offset, offset + length, CHUNK):
                    n = f.readinto(view[:min(CHUNK, offset + length - pos)]) if f.seek(pos) == pos else 0
                    sha.update(view[:n])
                if sha.hexdigest() != digest:
                    raise BenchError(f"{target}: mapped range at byte {offset} ({length} bytes) "
                                     "does not match the bmap's SHA-256")
            free = 0
            for offset, length in the_bmap.free_runs():
                for pos in range(offset, offset + length, CHUNK):
                    n = min(CHUNK, offset + length - pos)
                    f.seek(pos)
                    got = f.readinto(view[:n])
                    if got != n or view[:n] != pattern.expected(pos, n):
                        raise BenchError(f"{target}: the free range at byte {offset} was written "
                                         f"(near byte {pos})")
                free += length
        notes.append(f"{len(the_bmap.mapped())} mapped ranges match the bmap's SHA-256, "
                     f"{free / MiB:.0f} MiB of free ranges still hold the old bytes")
    for (start, size), (fsck, name) in zip(disk["parts"], (("fsck.vfat", "ESP"),
                                                            ("e2fsck", "ext4"))):
        dev = devs.loop(target, read_only=True, offset=start, size=size)
        try:
            run(fsck, "-fn" if fsck == "e2fsck" else "-n", dev)
        finally:
            devs.unloop(dev)
        notes.append(f"{fsck} -{'f' if fsck == 'e2fsck' else ''}n of its {name}: clean")
    return "; ".join(notes)


def read_through(path: str) -> None:
    buf = bytearray(CHUNK)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def restore(lab: Lab, image_dir: str, images: Dict[str, str], disk: dict, size: int,
            clients: int, repeat: int, where: str, devs: Devices) -> Tuple[Dict[str, List[dict]], Dict[str, str]]:
    hosts = hosts_for(clients)
    pattern = Pattern()
    targets = [os.path.join(where, f"thepusher-bench-capture-{os.getpid()}-target{i + 1}.img")
               for i in range(clients)]
    checks: Dict[str, str] = {}
    try:
        log(f"restore: filling {clients} targets of {size >> 20} MiB in {where} with old bytes")
        for t in targets:
            pattern.fill(t, size)
        for name in images.values():
            read_through(os.path.join(image_dir, name))
        rows: Dict[str, List[dict]] = {kind: [] for kind in images}
        for i in range(repeat):
            for kind, name in images.items():
                lab.start_master(image_dir, hosts, filename=name, timeout=300)
                r = run_round(lab, hosts, targets, size)
                lab.stop_master()
                rows[kind].append(r)
                log(f"  [restore {kind}, {i + 1}/{repeat}] wall {r['wall']:.2f} s, stream "
                    f"{r['stream']:.2f} s, client CPU {', '.join(f'{c:.2f}' for c in r['cpu'])} s, "
                    f"all {clients} DONE")
                if kind not in checks:
                    path = os.path.join(image_dir, name)
                    the_bmap = bmaps.load(path + ".bmap") if os.path.exists(path + ".bmap") else None
                    checks[kind] = check_target(targets[-1], disk, the_bmap, pattern, devs)
                    log(f"  [restore {kind}] {targets[-1]}: {checks[kind]}")
        return rows, checks
    finally:
        for t in targets:
            if os.path.exists(t):
                os.unlink(t)


def restore_link(images: Dict[str, str], image_dir: str, clients: int, rate: str,
                 repeat: int) -> Dict[str, List[dict]]:
    """The same restore over emulated links (tests/bench/link.py), destinations in /dev/shm."""
    import link

    rows: Dict[str, List[dict]] = {kind: [] for kind in images}
    with link.LinkLab(clients, rate=rate) as lab:
        log(f"link: {rate} links, check: {lab.link_check():.0f} Mbit/s of TCP payload master -> c1")
        for i in range(repeat):
            for kind, name in images.items():
                r = link.run_round(lab, os.path.join(image_dir, name), "NONE", clients=clients,
                                   pyz=None)
                rows[kind].append(r)
                log(f"  [link {rate} {kind}, {i + 1}/{repeat}] stream {r['stream_s']:.2f} s, wall "
                    f"{r['wall_s']:.2f} s, client CPU {', '.join(f'{c:.2f}' for c in r['cpu_s'])} s")
    return rows


# -- report ---------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def report(args, disk: dict, ntfs: dict, cap: Dict[str, List[dict]], res: Dict[str, List[dict]],
           checks: Dict[str, str], ext4: Dict[str, List[dict]], nt: Dict[str, List[dict]],
           link_rows: Optional[Dict[str, List[dict]]], notes: dict) -> None:
    size = args.size
    line = "=" * 118
    print()
    print(line)
    print(f"thepusher capture benchmark: {os.cpu_count()} CPUs ({cpu_model()}), Python "
          f"{platform.python_version()}, {platform.system()} {platform.release()}; load average "
          f"{notes['load']:.2f} before the run")
    print(f"command: {notes['command']}")
    print(f"source disk {size / MiB:.0f} MiB in {args.dir} on a loop device: GPT, ESP FAT32 "
          f"{disk['esp_size'] / MiB:.0f} MiB {disk['esp_used'] * 100:.0f} % used, ext4 "
          f"{disk['ext4_size'] / MiB:.0f} MiB {disk['ext4_used'] * 100:.0f} % used "
          f"(filled to {FILL_TO * 100:.0f} %, then files deleted); free space: old random bytes")
    print(f"every figure is the median of {args.repeat} run(s), the kinds alternating; "
          "MiB = 2^20 B, GB = 1e9 B; SHA-256 of zeros here: "
          f"{notes['sha_zeros']:.2f} GB/s (one core)")
    print()
    free = zeros_s = 0.0
    if cap:
        print(f"1. capture: put-image of the whole disk to a local master (image dir in {args.dir}, "
              "fsynced before it answers); source cold")
        print("   (its loop devices' and backing file's pages dropped before every run); read = "
              "bytes the source device delivered")
        head = (f"   {'kind':<26} {'wall s':>7} {'put-image CPU s':>16} {'master CPU s':>13} "
                f"{'read MiB':>9} {'stored MiB':>11} {'file MiB':>9} {'bmap KiB':>9}")
        print(head)
        print("   " + "-" * (len(head) - 3))
        for kind, rows in cap.items():
            print(f"   {kind:<26} {med(rows, 'wall'):>7.2f} {med(rows, 'cpu'):>16.2f} "
                  f"{med(rows, 'master_cpu'):>13.2f} {mb(med(rows, 'read')):>9} "
                  f"{mb(med(rows, 'stored')):>11} {mb(med(rows, 'apparent')):>9} "
                  f"{med(rows, 'bmap') / 1024:>9.1f}")
        cap_ratio = med(cap["used blocks"], "wall") / med(cap["whole (--whole)"], "wall")
        print(f"   used / whole: wall {cap_ratio:.2f}, read "
              f"{med(cap['used blocks'], 'read') / med(cap['whole (--whole)'], 'read'):.2f}, stored "
              f"{med(cap['used blocks'], 'stored') / med(cap['whole (--whole)'], 'stored'):.2f}; "
              f"put-image said: {cap['used blocks'][0]['used_line']}")
        free = cap["used blocks"][0]["free"]
        zeros_s = free / 1e9 / notes["sha_zeros"]
        print(f"   the used-block image's {free / 1e9:.2f} GB of free ranges are hashed as zeros (the "
              f"image's digest covers them) by put-image and again")
        print(f"   by the master: about {zeros_s:.2f} CPU s each at {notes['sha_zeros']:.2f} GB/s, "
              "besides reading, sending and storing the used bytes")
        print()
    if res:
        print(f"2. restore: a round of a master and {args.clients} clients on loopback "
              f"(127.0.0.11-{10 + args.clients}), targets in {notes['targets']}, pre-filled with old bytes;")
        print("   the image files read once before (in the page cache); wall = the master's round "
              "(finished - started);")
        print("   client CPU = cpu_seconds each client reported (whole process); master CPU = during the "
              "stream phase")
        head = (f"   {'image':<26} {'wall s':>7} {'stream s':>9} {'client CPU s med':>17} {'max':>6} "
                f"{'all clients':>12} {'master CPU s':>13}")
        print(head)
        print("   " + "-" * (len(head) - 3))
        for kind, rows in res.items():
            print(f"   {kind:<26} {med(rows, 'wall'):>7.2f} {med(rows, 'stream'):>9.2f} "
                  f"{median([median(r['cpu']) for r in rows]):>17.2f} "
                  f"{median([max(r['cpu']) for r in rows]):>6.2f} "
                  f"{median([sum(r['cpu']) for r in rows]):>12.2f} {med(rows, 'master_cpu'):>13.2f}")
        res_ratio = med(res["used blocks + bmap"], "wall") / med(res["whole disk"], "wall")
        cpu_ratio = (median([sum(r["cpu"]) for r in res["used blocks + bmap"]])
                     / median([sum(r["cpu"]) for r in res["whole disk"]]))
        print(f"   used / whole: wall {res_ratio:.2f}, client CPU {cpu_ratio:.2f}; the {free / 1e9:.2f} GB "
              f"of FREE records are hashed as zeros by the master")
        print(f"   as it sends and by every client: about {zeros_s:.2f} CPU s each, "
              f"{zeros_s * (args.clients + 1):.1f} s for the {args.clients + 1} processes on "
              f"{os.cpu_count()} CPUs")
        for kind, text in checks.items():
            print(f"   checked after the first {kind} round, the last client's target: {text}")
        if link_rows:
            print(f"   over emulated {args.link} links (tests/bench/link.py, destinations in /dev/shm):")
            for kind, rows in link_rows.items():
                print(f"   {kind:<26} stream {med(rows, 'stream_s'):>7.2f} s, wall "
                      f"{med(rows, 'wall_s'):.2f} s, client CPU {median([median(r['cpu_s']) for r in rows]):.2f} s med")
            link_ratio = (med(link_rows["used blocks + bmap"], "wall_s")
                          / med(link_rows["whole disk"], "wall_s"))
            print(f"   used / whole over {args.link}: wall {link_ratio:.2f}")
        print()
    for title, rows_of, pc in ((f"3. the ext4 partition alone ({disk['ext4_size'] / MiB:.0f} MiB, "
                                f"{disk['ext4_used'] * 100:.0f} % used, {disk['ext4']})", ext4,
                                "partclone.ext4"),
                               (f"4. the NTFS partition ({args.ntfs_size / MiB:.0f} MiB, "
                                f"{ntfs['used'] * 100:.0f} % used, {ntfs['dev']})", nt,
                                "partclone.ntfs")):
        if not rows_of:
            continue
        print(f"{title}: source cold before every run;")
        print("   partclone writes its own format to a file; put-image also hashes (SHA-256 of "
              "the whole partition, free as zeros) and")
        print("   sends over HTTP to the master, which hashes again, writes and fsyncs; partclone "
              "fsyncs its output too (the bench's")
        print("   own fsync after it finds nothing left), but only after up to 2 s idle after its "
              "last write: its progress thread")
        print("   sleeps 2 s at a time and the program waits for it (strace: clock_nanosleep 2 s)")
        head = (f"   {'tool':<34} {'wall s':>7} {'CPU s':>6} {'master CPU s':>13} {'read MiB':>9} "
                f"{'stored MiB':>11} {'file MiB':>9}")
        print(head)
        print("   " + "-" * (len(head) - 3))
        for kind, rows in rows_of.items():
            mc = f"{med(rows, 'master_cpu'):>13.2f}" if "master_cpu" in rows[0] else f"{'-':>13}"
            extra = (f" (run {med(rows, 'own'):.2f} + fsync {med(rows, 'sync'):.2f}; its last "
                     f"write at {med(rows, 'last_write'):.2f})" if "sync" in rows[0] else "")
            print(f"   {kind:<34} {med(rows, 'wall'):>7.2f} {med(rows, 'cpu'):>6.2f} {mc} "
                  f"{mb(med(rows, 'read')):>9} {mb(med(rows, 'stored')):>11} "
                  f"{mb(med(rows, 'apparent')):>9}{extra}")
        print()
    print("5. targets")
    if cap:
        print(f"   capture: used-block time <= {TARGET_CAPTURE}x the whole disk's: "
              f"{cap_ratio:.2f}  {verdict(cap_ratio <= TARGET_CAPTURE)}")
    if res:
        print(f"   restore, {args.clients} clients on loopback: used-block image <= {TARGET_RESTORE}x "
              f"the whole disk's: {res_ratio:.2f}  {verdict(res_ratio <= TARGET_RESTORE)}")
    if link_rows:
        print(f"   restore over {args.link} links: {link_ratio:.2f}  "
              f"{verdict(link_ratio <= TARGET_RESTORE)}")
    for name, rows_of, pc in (("ext4", ext4, "partclone.ext4"), ("NTFS", nt, "partclone.ntfs")):
        if not rows_of:
            continue
        if pc in rows_of:
            ours = med(rows_of["put-image (used blocks)"], "wall")
            r = ours / med(rows_of[pc], "wall")
            floor = ours / med(rows_of[pc], "last_write")
            print(f"   {name}: put-image no slower than {pc}: {r:.2f}x its wall  "
                  f"{verdict(r <= TARGET_PARTCLONE)}; {floor:.2f}x its time to its last write "
                  f"(a floor: no idle end, no fsync)  {verdict(floor <= TARGET_PARTCLONE)}")
        else:
            print(f"   {name}: put-image against {pc}: NOT MEASURED ({notes['partclone']})")
    if nt and "put-image --whole" in nt:
        r = med(nt["put-image (used blocks)"], "wall") / med(nt["put-image --whole"], "wall")
        print(f"   NTFS capture: used-block time <= {TARGET_CAPTURE}x the whole partition's: "
              f"{r:.2f}  {verdict(r <= TARGET_CAPTURE)}")
    print(line)


# -- main --------------------------------------------------------------------------------


def sha_zeros_gb_s() -> float:
    zeros = bytes(MiB)
    sha = hashlib.sha256()
    t0 = time.process_time()
    for _ in range(512):
        sha.update(zeros)
    return 512 * MiB / 1e9 / (time.process_time() - t0)


SECTIONS = ("capture", "restore", "ext4", "ntfs")


def sections(text: str) -> Tuple[str, ...]:
    """An argparse type: some of SECTIONS; restore brings capture along."""
    got = {x.strip() for x in text.split(",") if x.strip()}
    if not got or got - set(SECTIONS):
        raise argparse.ArgumentTypeError(f"{text!r}: expected some of {','.join(SECTIONS)}")
    if "restore" in got:
        got.add("capture")
    return tuple(x for x in SECTIONS if x in got)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=4 * GiB,
                        help="the source disk's size (default 4G; at least 1G)")
    parser.add_argument("--ntfs-size", type=parse_size, default=None,
                        help="the NTFS partition's size (default a quarter of --size)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each kind (default 3)")
    parser.add_argument("--clients", type=int, default=3, help="clients of the restore (default 3)")
    parser.add_argument("--dir", default="/var/tmp",
                        help="where the source, the master's image dir and partclone's output go "
                             "(default /var/tmp: the machine's disk)")
    parser.add_argument("--targets", default="auto",
                        help="where the restore targets go (default auto: /dev/shm if it and the "
                             "memory have room for them, else --dir)")
    parser.add_argument("--only", type=sections, default=SECTIONS, metavar="SECTIONS",
                        help="which sections, comma-separated, of " + ",".join(SECTIONS)
                        + " (default all; restore needs capture: its images)")
    parser.add_argument("--link", metavar="RATE",
                        help="also restore over emulated links of RATE (e.g. 1gbit; tests/bench/link.py)")
    args = parser.parse_args(argv)
    if args.size < GiB:
        parser.error("--size must be at least 1G")
    if args.repeat < 1 or not 1 <= args.clients <= 8:
        parser.error("--repeat must be at least 1, --clients from 1 to 8")
    args.ntfs_size = args.ntfs_size or args.size // 4
    if os.geteuid() != 0:
        print("bench_capture: needs root (loop devices, mount)", file=sys.stderr)
        return 1
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        print(f"bench_capture: missing tools: {', '.join(missing)} (Debian: gdisk e2fsprogs "
              "dosfstools ntfs-3g mount)", file=sys.stderr)
        return 1
    no_partclone = [t for t in PARTCLONE if not shutil.which(t)]
    partclone_note = ""
    if no_partclone:
        partclone_note = (f"{', '.join(no_partclone)} not installed (Debian package partclone: "
                          "apt-get install partclone, or make bench-debs)")
        log(f"WARNING: {partclone_note}: the partclone comparisons are skipped")

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    need = args.size * 3 + args.ntfs_size * 3 + GiB
    free = shutil.disk_usage(args.dir).free
    if free < need:
        print(f"bench_capture: {args.dir} has {free >> 20} MiB free, the run needs about "
              f"{need >> 20} MiB: try a smaller --size", file=sys.stderr)
        return 1
    workdir = tempfile.mkdtemp(prefix="thepusher-bench-capture-", dir=args.dir)
    image_dir = os.path.join(workdir, "images")
    os.makedirs(image_dir)
    lab = Lab(workdir)
    devs = Devices()
    started = time.monotonic()
    notes = {"load": os.getloadavg()[0], "partclone": partclone_note,
             "command": " ".join(["python3" if "python3" in os.path.basename(sys.executable)
                                  else sys.executable, "tests/bench/bench_capture.py"]
                                 + (argv if argv is not None else sys.argv[1:]))}
    cpu0 = machine_cpu()
    try:
        notes["sha_zeros"] = sha_zeros_gb_s()
        log(f"work dir {workdir}; making the {args.size >> 20} MiB source disk"
            + (f" and the {args.ntfs_size >> 20} MiB NTFS partition" if "ntfs" in args.only else "")
            + " (old bytes, fill, delete) ...")
        disk = make_disk(os.path.join(workdir, "source.img"), args.size, devs)
        ntfs = {"used": 0.0, "dev": ""}
        if "ntfs" in args.only:
            ntfs = make_ntfs(os.path.join(workdir, "ntfs.img"), args.ntfs_size, devs)
        log(f"made in {time.monotonic() - started:.0f} s: ESP {disk['esp_used'] * 100:.0f} %, "
            f"ext4 {disk['ext4_used'] * 100:.0f} %"
            + (f", NTFS {ntfs['used'] * 100:.0f} %" if "ntfs" in args.only else "")
            + " used; syncing ...")
        os.sync()
        disk_cold = ([disk["dev"], disk["esp"], disk["ext4"]], [os.path.join(workdir, "source.img")])
        ntfs_cold = ([ntfs["dev"]], [os.path.join(workdir, "ntfs.img")])
        lab.start_master(image_dir, hosts_for(args.clients), filename="none.img", ready=False)
        cap: Dict[str, List[dict]] = {}
        ext4: Dict[str, List[dict]] = {}
        nt: Dict[str, List[dict]] = {}
        res: Dict[str, List[dict]] = {}
        checks: Dict[str, str] = {}
        if "capture" in args.only:
            log("1. capture of the whole disk: used blocks against --whole")
            cap = alternate(args.repeat, [  # the last image of each kind stays, for the restore
                ("used blocks", lambda: put_image(lab, image_dir, disk["dev"], "used.img", False,
                                                  disk_cold, keep=True)),
                ("whole (--whole)", lambda: put_image(lab, image_dir, disk["dev"], "whole.img",
                                                      True, disk_cold, keep=True)),
            ])
        if "ext4" in args.only:
            log("3. the ext4 partition alone: put-image against partclone.ext4")
            ext4 = alternate(args.repeat, ext4_kinds(lab, image_dir, disk, workdir, disk_cold))
        if "ntfs" in args.only:
            log("4. the NTFS partition: put-image (used blocks, --whole) against partclone.ntfs")
            nt = alternate(args.repeat, ntfs_kinds(lab, image_dir, ntfs, workdir, ntfs_cold))
        lab.stop_master()

        link_rows = None
        if "restore" in args.only:
            where = targets_dir(args.targets, args.size * args.clients, workdir)
            notes["targets"] = where + (" (tmpfs)" if where == "/dev/shm" else "")
            log(f"2. restore to {args.clients} clients: the used-block image (+ bmap) against the "
                "whole disk")
            images = {"used blocks + bmap": "used.img", "whole disk": "whole.img"}
            res, checks = restore(lab, image_dir, images, disk, args.size, args.clients,
                                  args.repeat, where, devs)
            if args.link:
                log(f"2b. the same restore over emulated {args.link} links")
                link_rows = restore_link(images, image_dir, args.clients, args.link, args.repeat)
        report(args, disk, ntfs, cap, res, checks, ext4, nt, link_rows, notes)
        lab.close()
        cpu1 = machine_cpu()
        log(f"total {time.monotonic() - started:.0f} s")
        if cpu0 and cpu1:
            log(cpu_report(cpu0, cpu1))
        return 0
    except BenchError as e:
        print(f"\nbench_capture: ABORTED: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbench_capture: interrupted", file=sys.stderr)
        return 130
    finally:
        lab.close()
        devs.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
