"""Slow-loris: idle and trickling connections must not tie up the master or a client.

The master gives a request's line and headers, and then its body, `io_timeout` each
(master/server.py TimedHandler); a client's data port gives a connection
HANDSHAKE_TIMEOUT in all to prove itself, each in its own thread (chain/hop/admission.py).
The tests assert that real work gets through and that the hostile connections end;
the time bounds are generous liveness bounds, not measurements.
"""

import json
import socket
import threading
import time

import pytest

from thepusher.chain import wire
from thepusher.chain.hop.admission import HANDSHAKE_TIMEOUT, MAX_HANDSHAKES

from tests.conftest import write_config
from tests.support.hops import RunningHop, send_stream

MASTER_TIMEOUT = 3  # the master's io_timeout in these tests: its request budget
MARGIN = 10


def wait_eof(sock: socket.socket, until: float) -> bytes:
    """Read until the peer closes; fail if it has not by `until` (time.monotonic())."""
    data = b""
    while True:
        left = until - time.monotonic()
        if left <= 0:
            raise AssertionError(f"connection still open (got {data[:100]!r})")
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


class Trickler:
    """Sends each socket's next byte every `interval` seconds, for as long as it may."""

    def __init__(self, socks, payload: bytes, interval: float = 1.0) -> None:
        self.socks = list(socks)
        self.payload = payload
        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        i = 0
        live = list(self.socks)
        while live and i < len(self.payload) and not self.stop.is_set():
            for s in list(live):
                try:
                    s.send(self.payload[i:i + 1])
                except OSError:
                    live.remove(s)  # the server closed it: what we want
            i += 1
            self.stop.wait(self.interval)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


@pytest.fixture
def master(lab):
    (lab.images / "disk.img").write_bytes(b"\0" * 4096)
    write_config(lab.images, ["10.9.9.9"], settings=f"io_timeout = {MASTER_TIMEOUT}\n")
    return lab, lab.start_master()


def test_master_serves_and_closes_idle_and_trickling_connections(master):
    lab, proc = master
    opened = time.monotonic()
    idle = [connect(lab.port) for _ in range(100)]
    slow_headers = [connect(lab.port) for _ in range(70)]
    slow_bodies = [connect(lab.port) for _ in range(15)]
    stuck_bodies = [connect(lab.port) for _ in range(15)]
    for s in slow_bodies + stuck_bodies:
        s.sendall(b"POST /api/register HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n{")
    trickles = [
        Trickler(slow_headers, b"GET /api/status HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 100),
        Trickler(slow_bodies, b'"data_port": 8081' + b" " * 200),
    ]
    try:
        # a normal client is served while all of them hang on
        for _ in range(3):
            assert "groups" in lab.status()
        # ... and the master closes every one of them within its request budget
        until = opened + MASTER_TIMEOUT + MARGIN
        # (a trickler's unread bytes may turn the master's close into a reset, which
        # can take its last answer with it: only the silent ones are sure to read a 408)
        for s in idle + slow_headers + slow_bodies:
            data = wait_eof(s, until)
            assert b" 200 " not in data
        for s in stuck_bodies:
            data = wait_eof(s, until)
            assert data.startswith(b"HTTP/1.1 408 "), data[:200]
        assert "groups" in lab.status()
        assert proc.popen.poll() is None
    finally:
        for t in trickles:
            t.close()
        for s in idle + slow_headers + slow_bodies + stuck_bodies:
            s.close()
    assert "Traceback" not in proc.output(), proc.output()[-3000:]


def test_master_closes_an_idle_keep_alive_connection(master):
    lab, _ = master
    with connect(lab.port) as s:
        s.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n")
        answered = time.monotonic()
        data = wait_eof(s, answered + MASTER_TIMEOUT + MARGIN)
        assert data.startswith(b"HTTP/1.1 200 ")


def test_long_polls_event_streams_and_slow_uploads_outlive_the_request_budget(master):
    lab, _ = master
    assert lab.call("POST", "/api/register", {"data_port": 8081})[0] == 200
    events = connect(lab.port)
    try:
        events.sendall(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
        first = events.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        # a long-poll longer than the budget is answered, not cut
        status, answer = lab.call("GET", f"/api/next?wait={MASTER_TIMEOUT + 2}")
        assert status == 200 and answer["action"] in ("none", "wait"), answer
        # the event stream is still open: it sends, or it is quiet, but it has not ended
        events.settimeout(1)
        try:
            assert events.recv(65536) != b""
        except socket.timeout:
            pass
    finally:
        events.close()
    # an upload whose body comes slowly, over more than the budget, is stored
    body = b"u" * 4096
    with connect(lab.port) as s:
        s.sendall(f"PUT /api/images/slow.img HTTP/1.1\r\nHost: x\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode())
        for i in range(MASTER_TIMEOUT + 2):
            s.sendall(body[i:i + 1])
            time.sleep(1)
        s.sendall(body[MASTER_TIMEOUT + 2:])
        data = wait_eof(s, time.monotonic() + 30)
        assert data.startswith(b"HTTP/1.1 201 "), data[:300]
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])


# ---------------------------------------------------------------- a client's data port


def test_idle_and_trickling_data_connections_do_not_delay_the_real_upstream(tmp_path):
    image = bytes(range(256)) * 1024
    h = RunningHop(tmp_path / "disk", image, accept_timeout=60, io_timeout=30)
    socks = []
    trickle = None
    try:
        opened = time.monotonic()
        # far more than the hop would get through in time one after the other
        socks = [socket.create_connection(h.address, timeout=10) for _ in range(30)]
        trickle = Trickler(socks[:15], wire.HEADER_MAGIC + b"\0\0\1\0" + b"x" * 256)
        time.sleep(0.5)
        # the real upstream still gets its HELLO at once and its stream through
        # (wire.connect gives the hop 5 s to say HELLO)
        send_stream(h.address, image)
        # while the hostile ones are dropped after the handshake budget
        for s in socks:
            data = wait_eof(s, opened + HANDSHAKE_TIMEOUT + MARGIN)
            assert data.startswith(wire.HELLO_MAGIC)
    finally:
        if trickle:
            trickle.close()
        for s in socks:
            s.close()
    hop = h.wait()
    assert hop.verified and hop.error is None
    assert (tmp_path / "disk").read_bytes() == image


def test_a_flood_of_idle_data_connections_cannot_lock_the_port(tmp_path):
    image = b"flood" * 10000
    h = RunningHop(tmp_path / "disk", image, accept_timeout=60, io_timeout=30)
    socks = []
    try:
        socks = [socket.create_connection(h.address, timeout=10)
                 for _ in range(MAX_HANDSHAKES + 20)]
        time.sleep(0.5)
        send_stream(h.address, image)  # the oldest pending ones make room
    finally:
        for s in socks:
            s.close()
    hop = h.wait()
    assert hop.verified and hop.error is None
    assert (tmp_path / "disk").read_bytes() == image
