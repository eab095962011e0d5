#!/usr/bin/env python3
"""What verification costs: read-back against the write-side hash, and the master's
hash of what it sends against handing the file to the socket unseen.

A script, not a pytest test (`make bench`, or `python3 tests/bench/bench_verify.py`).

* send path: one process sends a file from tmpfs to a reader on loopback, in 1 MiB
  records, either with sendfile(2) (the kernel copies file to socket, the bytes never
  seen) or as the master does now: preadv into a buffer, SHA-256 over it, send. The
  sender thread's CPU seconds per GB (time.thread_time), median of --repeat, both
  kinds alternating.
* read-back: whole rounds (real master, one real client process) writing the image to
  a destination on this machine's disk, with verify = "write" and "readback",
  alternating, each starting with the destination out of the page cache: the round's
  wall time and the client's CPU per GB, medians. The
  destinations are a file on the disk (--dir, default /var/tmp) and, as root, a loop
  device with direct I/O over a file there (a block device read back with O_DIRECT).

Units: GB = 10^9 bytes, MiB = 2^20 bytes. Stdlib only; runs under Python 3.9.
"""

import argparse
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import (  # noqa: E402
    BenchError, Lab, fast_dir, hosts_for, median, parse_size, run_round, write_random,
)

RECORD = 1 << 20
HEAD = 16
READ_BACK_LINE = re.compile(r"read back from .*: \d+ bytes in ([\d.]+) s")  # the hop writer's log line


def sink(server: socket.socket, done: threading.Event) -> None:
    conn, _ = server.accept()
    with conn:
        buf = bytearray(4 << 20)
        while conn.recv_into(buf):
            pass
    done.set()


def send_once(path: str, size: int, hashing: bool) -> float:
    """Sender thread CPU seconds for one pass of the file to a loopback reader."""
    server = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()
    threading.Thread(target=sink, args=(server, done), daemon=True).start()
    sock = socket.create_connection(server.getsockname())
    fd = os.open(path, os.O_RDONLY)
    buf = bytearray(HEAD + RECORD)
    view = memoryview(buf)
    sha = hashlib.sha256()
    try:
        t0 = time.thread_time()
        for pos in range(0, size, RECORD):
            n = min(RECORD, size - pos)
            if hashing:  # master/source.py: preadv behind the head, hash, one send
                os.preadv(fd, [view[HEAD:HEAD + n]], pos)
                sha.update(view[HEAD:HEAD + n])
                sock.sendall(view[:HEAD + n])
            else:  # the old way: a head, then the file range via sendfile
                sock.sendall(bytes(HEAD))
                sent = 0
                while sent < n:
                    sent += os.sendfile(sock.fileno(), fd, pos + sent, n - sent)
        cpu = time.thread_time() - t0
    finally:
        os.close(fd)
        sock.close()
        done.wait(30)
        server.close()
    return cpu


def send_path(workdir: str, size: int, repeat: int) -> Dict[str, float]:
    path = os.path.join(workdir, "send.img")
    write_random(path, size)
    runs: Dict[str, List[float]] = {"sendfile": [], "hashing": []}
    for _ in range(repeat):
        for kind in runs:
            runs[kind].append(send_once(path, size, kind == "hashing") / (size / 1e9))
    os.unlink(path)
    return {kind: median(v) for kind, v in runs.items()}


def loop_device(backing: str, size: int) -> Optional[str]:
    """A loop device with direct I/O over `backing` (made `size` bytes), or None."""
    if os.geteuid() != 0 or not shutil.which("losetup"):
        return None
    with open(backing, "wb") as f:
        f.truncate(size)
    r = subprocess.run(["losetup", "--direct-io=on", "--find", "--show", backing],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def drop_cache(path: str) -> None:
    """Every round starts with the destination out of the page cache: a read-back drops
    it, and the round after one would otherwise pay for pages the one before did not."""
    if not os.path.exists(path):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read_back_cost(lab: Lab, image_dir: str, dest: str, size: int, repeat: int,
                   label: str) -> Dict[str, Dict[str, float]]:
    out: Dict[str, Dict[str, List[float]]] = {}
    for i in range(repeat):
        for verify in ("write", "readback"):
            drop_cache(dest)
            lab.start_master(image_dir, hosts_for(1), image_extra=f'  verify = "{verify}"\n')
            r = run_round(lab, hosts_for(1), [dest], size)
            client_log = lab.procs[-1].tail(20000)
            lab.stop_master()
            slot = out.setdefault(verify, {"wall": [], "cpu": [], "read": []})
            slot["wall"].append(r["wall"])
            slot["cpu"].append(r["cpu"][0] / (size / 1e9))
            read = READ_BACK_LINE.search(client_log)
            slot["read"].append(float(read.group(1)) if read else 0.0)
            print(f"  [{label}, {verify}, {i + 1}/{repeat}] wall {r['wall']:.2f} s, client CPU "
                  f"{slot['cpu'][-1]:.2f} s/GB" + (f", read back in {read.group(1)} s" if read else ""),
                  flush=True)
    return {v: {k: median(x) for k, x in d.items()} for v, d in out.items()}


def report(size: int, send: Dict[str, float], cost: Dict[str, Dict[str, Dict[str, float]]],
           repeat: int) -> None:
    print(f"\nsend path ({size >> 20} MiB from tmpfs to loopback, sender CPU, median of {repeat}):")
    print(f"  sendfile, bytes unseen          {send['sendfile']:.3f} s/GB")
    print(f"  preadv + SHA-256 + send         {send['hashing']:.3f} s/GB "
          f"(x{send['hashing'] / send['sendfile']:.2f}, +{send['hashing'] - send['sendfile']:.3f} s/GB)")
    for where, c in cost.items():
        w, r = c["write"], c["readback"]
        print(f"\nread-back, 1 client, {size >> 20} MiB to {where} (median of {repeat}):")
        print(f"  verify = \"write\"     round {w['wall']:.2f} s, client CPU {w['cpu']:.2f} s/GB")
        print(f"  verify = \"readback\"  round {r['wall']:.2f} s, client CPU {r['cpu']:.2f} s/GB; "
              f"the read-back itself {r['read']:.2f} s ({size / max(r['read'], 1e-9) / 1e6:.0f} MB/s)")
        print(f"  readback / write:    round x{r['wall'] / w['wall']:.2f}, "
              f"client CPU x{r['cpu'] / w['cpu']:.2f}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=512 << 20,
                        help="image size (default 512M)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each kind (default 3)")
    parser.add_argument("--dir", default="/var/tmp",
                        help="where the destinations go: on this machine's disk (default /var/tmp)")
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="thepusher-bench-verify-", dir=fast_dir())
    diskdir = tempfile.mkdtemp(prefix="thepusher-bench-verify-", dir=args.dir)
    lab = Lab(workdir)
    device = None
    try:
        print(f"bench_verify: {args.size >> 20} MiB, {args.repeat} run(s) of each kind; "
              f"image on {workdir}, destinations in {diskdir}", flush=True)
        send = send_path(workdir, args.size, args.repeat)
        image_dir = os.path.join(workdir, "images")
        os.makedirs(image_dir)
        write_random(os.path.join(image_dir, "disk.img"), args.size)
        places: Dict[str, Callable[[], Optional[str]]] = {
            f"a file in {args.dir}": lambda: os.path.join(diskdir, "dest.img"),
            f"a loop device (direct I/O) over a file in {args.dir}":
                lambda: loop_device(os.path.join(diskdir, "backing.img"), args.size),
        }
        cost = {}
        for where, make in places.items():
            dest = make()
            if dest is None:
                print(f"bench_verify: skipping {where}: needs root and losetup", flush=True)
                continue
            if dest.startswith("/dev/"):
                device = dest
            print(f"bench_verify: rounds writing {where} ({dest})", flush=True)
            cost[where] = read_back_cost(lab, image_dir, dest, args.size, args.repeat, where.split(" ")[1])
        report(args.size, send, cost, args.repeat)
        return 0
    except BenchError as e:
        print(f"\nbench_verify: ABORTED: {e}", file=sys.stderr)
        return 1
    finally:
        lab.close()
        if device:
            subprocess.run(["losetup", "-d", device], check=False)
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(diskdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
