"""A real Hop in a thread on 127.0.0.1, and a sender speaking the wire format to it:
the test side of tests/system/test_hop.py, test_disk_faults.py and test_slowloris.py."""

import hashlib
import socket
import threading

from thepusher.chain import wire
from thepusher.chain.hop import Hop, HopConfig
from thepusher.disk.target import Target

SECRET = b"s" * 32
RECORD = 64 * 1024


def make_header(data: bytes, session: str = "sess1", compression: str = "NONE", content=None) -> wire.StreamHeader:
    content = data if content is None else content
    return wire.StreamHeader(
        session=session,
        image="test",
        stream_size=len(data),
        content_size=len(content),
        content_sha256=hashlib.sha256(content).hexdigest(),
        compression=compression,
        record_size=RECORD,
    )


class RunningHop:
    """A Hop listening on 127.0.0.1, run in a thread, writing to `dest`. `header` holds
    the facts the master signed for it (what it checks against): by default those of
    `make_header(data)`, the header send_stream sends for the same data. `free_runs`:
    a compressed stream's free map, as the client fetched it."""

    def __init__(self, dest, data: bytes = b"", downstream=(), accept_timeout=5.0, io_timeout=5.0,
                 position=1, header=None, master_gone=None, free_runs=None, free_map_error=""):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.hop = Hop(
            self.listener,
            HopConfig(
                session="sess1",
                secret=SECRET,
                expect=wire.Expected.of(header or make_header(data)),
                position=position,
                downstream=list(downstream),
                accept_timeout=accept_timeout,
                io_timeout=io_timeout,
                master_gone=master_gone,
                free_runs=free_runs,
                free_map_error=free_map_error,
            ),
            Target(str(dest)),
        )
        self.thread = threading.Thread(target=self.hop.run, daemon=True)
        self.thread.start()

    def wait(self):
        self.thread.join(30)
        assert not self.thread.is_alive(), "hop did not finish within 30 s"
        self.listener.close()
        return self.hop


def send_stream(address, data: bytes, header=None, cut_at=None, secret=SECRET, content=None):
    """Send `data` as records; stop (close without END) at byte `cut_at` if given."""
    header = header or make_header(data, content=content)
    sock, resume = wire.connect(address, header, secret, timeout=5)
    assert resume == 0
    try:
        pos = 0
        while pos < len(data):
            if cut_at is not None and pos >= cut_at:
                return
            chunk = data[pos : pos + RECORD]
            sock.sendall(wire.pack_head(wire.DATA, len(chunk), pos) + chunk)
            pos += len(chunk)
        sock.sendall(wire.end_record(len(data), header.content_sha256, header.content_size))
        sock.shutdown(socket.SHUT_WR)
        sock.recv(1)
    finally:
        sock.close()
