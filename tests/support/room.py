"""A room of hundreds for the page's tests, without hundreds of client processes: each
host makes the calls a client makes (register, ready, next, report) through the real
API, from its own loopback address (127.0.1.1, 127.0.1.2, ...).

The round is real: the master arms every host, then streams to the first one, whose
data port takes the stream (the hop's handshake) and then reads none of it, so the
round streams until the test ends (the image must be larger than the socket buffers
hold, io_timeout longer than the test). Meanwhile the hosts report what the test tells
them: progress, a verified DONE (signed with the round's secret, for the image's
digest), an ERROR, or nothing any more (silent).
"""

import socket
import threading
import time
from typing import Dict, List, Optional

from thepusher.chain import wire

PORT = 9  # the data port of every host but the first: nobody connects to them


def room(n: int) -> List[str]:
    return [f"127.0.1.{i}" for i in range(1, n + 1)]


def mac(host: str) -> str:
    return "52:54:00:00:01:%02x" % int(host.rsplit(".", 1)[1])


class Room:
    def __init__(self, lab, size: int, sha256: str) -> None:
        """`size` and `sha256`: of the image the group deploys."""
        self.lab = lab
        self.size, self.sha256 = size, sha256
        self.starts: Dict[str, dict] = {}
        self.busy: Dict[str, float] = {}  # host -> its progress, reported again and again
        self._lock = threading.Lock()  # a host's last report is the test's, not the reporter's
        self.holder: Optional[socket.socket] = None  # the first host's data port
        self.held: Optional[socket.socket] = None  # the master's stream to it, never read
        self._stop = threading.Event()
        self._reporter = threading.Thread(target=self._report_busy, daemon=True)

    def call(self, method: str, path: str, body, host: str) -> dict:
        status, answer = self.lab.call(method, path, body, host)
        assert status == 200, (method, path, host, status, answer)
        return answer

    def register(self, hosts: List[str], ready: bool = True) -> None:
        for host in hosts:
            port = PORT
            if self.holder is None:
                self.holder = socket.create_server((host, 0))
                port = self.holder.getsockname()[1]
                threading.Thread(target=self._hold, daemon=True).start()
            self.call("POST", "/api/register", {"data_port": port, "mac": mac(host)}, host)
            if ready:
                self.call("POST", "/api/ready", {"destination": "/dev/sda"}, host)

    def arm(self, hosts: List[str]) -> None:
        """Each host takes its start and reports BUSY: once all have, the round streams."""
        for host in hosts:
            start = self.call("GET", "/api/next?wait=10", None, host)
            assert start.get("action") == "receive", start
            self.starts[host] = start
            self.progress(host, 0.0)

    def progress(self, host: str, fraction: float) -> None:
        """`host` has written `fraction` of the image, and says so (a little more each
        time) every 1.5 s from now on."""
        with self._lock:
            self.busy[host] = fraction
            self._report_progress(host)

    def _report_progress(self, host: str) -> None:
        self._report(host, "BUSY", bytes_done=int(self.busy[host] * self.size), rate=12.5e6)

    def done(self, host: str) -> None:
        with self._lock:
            self.busy.pop(host, None)
        secret = bytes.fromhex(self.starts[host]["secret"])
        session = self.starts[host]["session"]
        auth = wire.report_mac(secret, session, "DONE", self.sha256, self.size)
        self._report(host, "DONE", bytes_done=self.size, sha256=self.sha256, verified_by="write",
                     auth=auth)

    def fail(self, host: str, why: str) -> None:
        with self._lock:
            self.busy.pop(host, None)
        self._report(host, "ERROR", bytes_done=self.size // 3, error=why)

    def silent(self, host: str) -> None:
        """`host` reports no more, as a frozen client."""
        with self._lock:
            self.busy.pop(host, None)

    def _report(self, host: str, state: str, **fields) -> None:
        body = dict(session=self.starts[host]["session"], state=state, bytes_total=self.size, **fields)
        self.call("POST", "/api/report", body, host)

    def _hold(self) -> None:
        """The first host's data port: take the master's stream, then read none of it."""
        try:
            sock, _ = self.holder.accept()
            self.held = sock
            wire.send_hello(sock, wire.new_nonce())
            wire.recv_header(sock, time.monotonic() + 10)
            wire.send_accept(sock, 0)
        except OSError:
            pass  # the test ended first

    def _report_busy(self) -> None:
        while not self._stop.wait(1.5):
            for host in list(self.busy):
                with self._lock:
                    if host in self.busy:
                        self.busy[host] = min(0.99, self.busy[host] + 0.01)
                        self._report_progress(host)

    def __enter__(self) -> "Room":
        self._reporter.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._reporter.join()
        for sock in (self.holder, self.held):
            if sock is not None:
                sock.close()
