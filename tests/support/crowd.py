"""A crowd on loopback: many connections from many 127.x.y.z source addresses, a master
under a chosen open-file limit, and what the master's process costs (CPU, RSS, threads),
read from /proc. For the tests that flood the master (test_many_connections.py,
test_crowd_round.py); loopback only.
"""

import json
import os
import resource
import selectors
import socket
import sys
import time
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

# Each source address gets its own ephemeral ports (the port is chosen at connect(),
# for the whole 4-tuple), so tens of thousands of connections do not run out of them.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
TICKS = os.sysconf("SC_CLK_TCK")


def need_open_files(count: int) -> None:
    """Raise this process's soft RLIMIT_NOFILE to the hard one (the master it starts
    inherits both); skip the test when even the hard one is below `count`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < count:
        pytest.skip(f"needs {count} open files, the hard limit is {hard} (ulimit -Hn)")
    if soft != resource.RLIM_INFINITY and soft < count:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def launcher_with_open_files(soft: int, hard: int) -> List[str]:
    """What starts `python -m thepusher ARGS` with RLIMIT_NOFILE = (soft, hard)."""
    code = ("import resource, runpy, sys; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard})); "
            "sys.argv[0] = 'thepusher'; runpy.run_module('thepusher', run_name='__main__')")
    return [sys.executable, "-c", code]


def sources(second: int, count: int) -> Iterator[str]:
    """`count` distinct loopback addresses 127.SECOND.x.y (never 127.0.0.x, where the
    tests' clients and the admin live)."""
    for i in range(count):
        yield f"127.{second}.{i // 250}.{i % 250 + 1}"


def connect_from(source: str, port: int, timeout: float = 10) -> socket.socket:
    s = socket.socket()
    try:
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((source, 0))
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
    except OSError:
        s.close()
        raise
    return s


def request(source: str, port: int, method: str, path: str, body: Optional[dict] = None,
            timeout: float = 10) -> Tuple[int, bytes]:
    """One HTTP/1.0 request from `source`: its status and body (read to the end)."""
    data = json.dumps(body).encode() if body is not None else b""
    with connect_from(source, port, timeout) as s:
        s.sendall(f"{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        answer = b""
        while True:
            piece = s.recv(65536)
            if not piece:
                break
            answer += piece
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), payload


def first_lines(socks: List[socket.socket], until: float) -> Dict[socket.socket, bytes]:
    """What each socket received first (its status line and what came with it), read
    together; a socket with nothing by `until` (time.monotonic()) maps to b""."""
    got = {s: b"" for s in socks}
    with selectors.DefaultSelector() as sel:
        for s in socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        waiting = len(socks)
        while waiting and time.monotonic() < until:
            for key, _ in sel.select(max(0.0, until - time.monotonic())):
                s = key.fileobj
                try:
                    got[s] += s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    pass
                if b"\r\n\r\n" in got[s] or not got[s]:
                    sel.unregister(s)
                    waiting -= 1
    return got


class ProcessWatch:
    """The master's CPU, RSS, threads and open files, from /proc/PID."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime

    def cpu_share(self, seconds: float) -> float:
        """The share of one core the process used over the next `seconds`."""
        before, start = self.cpu_seconds(), time.monotonic()
        time.sleep(seconds)
        return (self.cpu_seconds() - before) / (time.monotonic() - start)

    def status(self) -> Dict[str, int]:
        """VmRSS (KiB) and Threads from /proc/PID/status, and how many files it has open."""
        out = {"open_files": len(os.listdir(f"/proc/{self.pid}/fd"))}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "Threads"):
                    out[key] = int(value.split()[0])
        return out
