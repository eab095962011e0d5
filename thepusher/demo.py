"""`thepusher demo`: a whole round on one machine with no setup.

A master in this process and N real client processes on 127.0.0.11, .12, ... (all of
127/8 is loopback on Linux, so each client has its own source address, as real
machines would), writing to files. Every copy is then hashed independently.
"""

import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import Iterator, List

import thepusher
from thepusher.master import server
from thepusher import units
from thepusher.units import size as human_bytes

log = logging.getLogger("thepusher.demo")

def parse_size(text: str) -> int:
    try:
        value = units.parse_size(text)
    except ValueError:
        raise ValueError(f"size {text!r}: expected a number with K, M or G, e.g. 256M") from None
    if value <= 0:
        raise ValueError(f"size {text!r} must be positive")
    return value


def client_hosts(n: int) -> List[str]:
    if not 1 <= n <= 200:
        raise ValueError(f"--clients {n}: choose 1 to 200")
    return [f"127.0.0.{11 + i}" for i in range(n)]


def make_image(path: str, size: int) -> None:
    """Random data, so that no copy can be right by accident."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 4 << 20)
            f.write(os.urandom(n))
            left -= n


def write_config(image_dir: str, hosts: List[str]) -> None:
    quoted = ", ".join(f'"{h}"' for h in hosts)
    with open(os.path.join(image_dir, server.CONFIG_NAME), "w") as f:
        f.write(
            "# written by `thepusher demo`\n"
            'image "demo" {\n'
            '  filename    = "demo.img"\n'
            '  comment     = "random data made by the demo"\n'
            '  destination = "/dev/null"  # each demo client overrides this\n'
            "}\n\n"
            'clientgroup "demo" {\n'
            '  image = "demo"\n'
            f"  hosts = [{quoted}]\n"
            "}\n"
        )


def client_command() -> List[str]:
    """Run this very copy of thepusher (source tree or zipapp) as a client process."""
    return [sys.executable, "-m", "thepusher"]


def package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(thepusher.__file__)))


def sha256_file(path: str) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def run_demo(n: int, size_text: str, workdir: str, keep: bool, port: int) -> int:
    """0 when every copy is verified, 1 when not (or the master cannot start), 2 for bad
    arguments, 130 when interrupted before the end. A work dir the demo made itself is
    removed whatever happens."""
    try:
        size = parse_size(size_text)
        hosts = client_hosts(n)
    except ValueError as e:
        print(f"thepusher demo: {e}", file=sys.stderr)
        return 2
    own_dir = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="thepusher-demo-")
    try:
        return _run(hosts, size, workdir, keep, port)
    except KeyboardInterrupt:
        print("thepusher demo: interrupted; nothing was verified", file=sys.stderr)
        return 130
    finally:
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(hosts: List[str], size: int, workdir: str, keep: bool, port: int) -> int:
    image_dir = os.path.join(workdir, "images")
    os.makedirs(image_dir, exist_ok=True)
    image = os.path.join(image_dir, "demo.img")
    print(f"demo: {len(hosts)} clients, {human_bytes(size)} image, work dir {workdir}", flush=True)
    make_image(image, size)
    write_config(image_dir, hosts)
    try:
        srv = server.build(image_dir, listen=f"127.0.0.1:{port}")
    except (OSError, ValueError) as e:
        print(f"thepusher demo: {e} (try --port)", file=sys.stderr)
        return 1
    server.serve_in_thread(srv)
    url = f"http://127.0.0.1:{srv.server_address[1]}/"
    print(f"demo: master on {url}", flush=True)
    env = dict(os.environ, PYTHONPATH=package_root())
    procs = []
    try:
        with interrupt_deferred():
            for i, host in enumerate(hosts):
                logf = open(os.path.join(workdir, f"client-{i + 1}.log"), "wb")
                cmd = client_command() + [
                    "client", "-p", f"127.0.0.1:{srv.server_address[1]}", "--bind", host,
                    "--data-port", "0", "--destination", os.path.join(workdir, f"disk-{i + 1}.img"),
                ]
                procs.append((subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                               env=env), logf))
        for p, logf in procs:
            p.wait()
            logf.close()
        ok = report(srv, workdir, image, hosts, size)
        if keep:
            print(f"demo: status page stays up on {url}; Ctrl-C to stop", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass  # the way to stop a kept demo: its outcome stands
        return 0 if ok else 1
    finally:
        for p, logf in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            logf.close()
        srv.shutdown()
        srv.server_close()


@contextmanager
def interrupt_deferred() -> Iterator[None]:
    """Ctrl-C waits until the block is done: one in the middle of starting a client
    would leave that client running, unknown to the cleanup that kills the others.
    (A caught signal is reset to its default in a new process, so the clients can
    still be interrupted.)"""
    interrupted = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        raise KeyboardInterrupt


def report(srv, workdir: str, image: str, hosts: List[str], size: int) -> bool:
    want = sha256_file(image)
    status = srv.state.status()
    group = status["groups"][0]
    rounds = status["history"]
    ok = True
    for c in group["clients"]:
        disk = os.path.join(workdir, f"disk-{c['position']}.img")
        same = os.path.exists(disk) and sha256_file(disk) == want
        ok = ok and same and c["state"] == "DONE"
        verdict = "identical" if same else "DIFFERENT"
        print(f"  {c['position']:>3} {c['host']:<14} {c['state']:<5} copy {verdict}  {c['error']}")
    if rounds:
        r = rounds[-1]
        seconds = r["finished"] - r["started"]
        print(
            f"demo: {len(hosts)} x {human_bytes(size)} in {seconds:.2f} s: "
            f"{size / seconds / 1e6:.0f} MB/s per client, "
            f"{len(hosts) * size / seconds / 1e6:.0f} MB/s written in total"
        )
    print("demo: every copy verified" if ok else "demo: FAILED, see the client logs in the work dir")
    if not ok:
        for i in range(len(hosts)):
            print(f"--- client-{i + 1}.log ---")
            with open(os.path.join(workdir, f"client-{i + 1}.log"), errors="replace") as f:
                print(f.read()[-2000:])
    return ok
