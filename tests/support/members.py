"""A member of a round played by the test itself, from a member's address: what
tests/system/test_insiders.py and test_round_faults.py make misbehave on purpose."""

import socket
import threading

from thepusher.chain import wire


class Member:
    """A member of the group played by the test: registers, says ready, takes its start,
    reports what it likes. With `swallow` its data port takes whatever the master sends
    (a hop that accepts from offset 0 and reads to the end), so the stream stays with it;
    without, nothing listens there and the master skips it."""

    def __init__(self, lab, host: str, swallow: bool = True) -> None:
        self.lab, self.host = lab, host
        self.listener = socket.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        self.start = None
        if swallow:
            threading.Thread(target=self._swallow, daemon=True).start()
        else:
            self.listener.close()

    def _swallow(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with sock:
                try:
                    wire.send_hello(sock, wire.new_nonce())
                    wire.recv_header(sock)
                    wire.send_accept(sock, 0)
                    while sock.recv(1 << 20):
                        pass
                except (OSError, wire.ProtocolError):
                    pass

    def join(self) -> None:
        assert self.lab.call("POST", "/api/register", {"data_port": self.port},
                             source=self.host)[0] == 200
        assert self.lab.call("POST", "/api/ready", {}, source=self.host)[0] == 200

    def take_start(self) -> dict:
        while self.start is None or self.start.get("action") != "receive":
            self.start = self.lab.call("GET", "/api/next?wait=20", source=self.host)[1]
        return self.start

    def report(self, state: str = "BUSY", **fields) -> dict:
        body = dict(fields, state=state, session=self.start["session"])
        return self.lab.call("POST", "/api/report", body, source=self.host)[1]
