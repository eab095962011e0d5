"""Many connections against one master: event streams by the thousand, a master out of
open files, one address holding connections open. The master must keep answering its
clients and the page, at a small CPU cost, and recover by itself (master/limits.py,
master/lobby.py). Loopback only; the time bounds are generous liveness bounds.
"""

import json
import resource
import time

from tests.conftest import write_config, write_image
from tests.support.crowd import (ProcessWatch, connect_from, first_lines, launcher_with_open_files,
                                 need_open_files, request, sources)
from thepusher.master.limits import EVENT_STREAMS, EVENT_STREAMS_PER_SOURCE, PER_SOURCE

EVENTS = b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n"
MAX_CPU = 0.5  # share of one core: a master that spins in accept() burns all of one
HOST = "127.0.0.11"


def status_line(data: bytes) -> bytes:
    return data.split(b"\r\n", 1)[0]


def open_streams(port: int, froms) -> list:
    socks = []
    for source in froms:
        s = connect_from(source, port)
        s.sendall(EVENTS)
        socks.append(s)
    return socks


def quick_status(port: int) -> float:
    """Seconds /api/status took to answer 200."""
    start = time.monotonic()
    code, body = request("127.0.0.1", port, "GET", "/api/status", timeout=5)
    assert code == 200 and json.loads(body)["groups"]
    return time.monotonic() - start


def test_a_flood_of_event_streams_is_capped_and_the_master_keeps_serving(lab):
    """1100 event streams against a master whose open-file limit is 1024 (soft and
    hard): without a cap it runs out of files and spins in accept()."""
    need_open_files(1400)
    write_image(lab.images / "disk.img", 1 << 20)
    write_config(lab.images, [HOST])
    master = lab.start_master(launcher=launcher_with_open_files(1024, 1024))
    watch = ProcessWatch(master.popen.pid)
    socks = []
    try:
        # one address: EVENT_STREAMS_PER_SOURCE streams, then 503
        socks += open_streams(lab.port, ["127.5.0.1"] * (EVENT_STREAMS_PER_SOURCE + 2))
        got = first_lines(socks, time.monotonic() + 20)
        lines = [status_line(got[s]) for s in socks]
        assert lines.count(b"HTTP/1.1 200 OK") == EVENT_STREAMS_PER_SOURCE, lines
        refused = [got[s] for s in socks if b" 503 " in status_line(got[s])]
        assert len(refused) == 2, lines
        # then 1100 more from 220 addresses, 5 each: EVENT_STREAMS in all
        flood = open_streams(lab.port, [a for a in sources(5, 220) for _ in range(5)])
        socks += flood
        got = first_lines(flood, time.monotonic() + 30)
        lines = [status_line(got[s]) for s in flood]
        assert lines.count(b"HTTP/1.1 200 OK") == EVENT_STREAMS - EVENT_STREAMS_PER_SOURCE, \
            sorted(set(lines))
        assert lines.count(b"HTTP/1.1 503 Service Unavailable") == len(flood) - lines.count(b"HTTP/1.1 200 OK")
        # the 503 says why, and what the page does instead
        code, body = request("127.5.0.1", lab.port, "GET", "/api/events")
        error = json.loads(body)["error"]
        assert code == 503 and "127.5.0.1" in error and "polling /api/status" in error, error

        # meanwhile the master answers its clients and the page, without spinning
        assert max(quick_status(lab.port) for _ in range(3)) < 1.0
        assert lab.call("POST", "/api/register", {"data_port": 9}, source=HOST)[0] == 200
        assert watch.cpu_share(3.0) < MAX_CPU

        # streams that end give their place back (the master notices within seconds)
        for s in socks:
            s.close()
        socks = []

        def one_more():
            with connect_from("127.5.0.1", lab.port) as s:
                s.sendall(EVENTS)
                return status_line(first_lines([s], time.monotonic() + 5)[s]) == b"HTTP/1.1 200 OK"
        lab.wait_for(one_more, 20, "an event stream to be taken again once the others ended")
    finally:
        for s in socks:
            s.close()
    assert "Traceback" not in master.output(), master.output()[-3000:]


def test_accept_backs_off_when_the_master_runs_out_of_open_files(lab):
    need_open_files(1000)
    write_image(lab.images / "disk.img", 1 << 20)
    write_config(lab.images, [HOST], settings="io_timeout = 60\n")
    master = lab.start_master()
    watch = ProcessWatch(master.popen.pid)
    held = [connect_from(a, lab.port) for a in sources(6, 30) for _ in range(10)]
    pending = []
    try:
        lab.wait_for(lambda: watch.status()["open_files"] >= len(held), 20,
                     "the master to hold the idle connections")
        # fewer files than it has open: every accept() now fails with EMFILE
        limit = 200
        resource.prlimit(master.popen.pid, resource.RLIMIT_NOFILE, (limit, limit))
        pending = [connect_from(a, lab.port) for a in sources(7, 50)]  # wait in the backlog
        assert watch.cpu_share(3.0) < MAX_CPU
        assert "out of open files" in master.output()

        for s in held:  # room again: the master accepts what waited, and serves
            s.close()
        held = []
        lab.wait_for(lambda: watch.status()["open_files"] < limit - 60, 30,
                     "the master to close the connections that went away")
        assert quick_status(lab.port) < 5.0
        assert lab.call("POST", "/api/register", {"data_port": 9}, source=HOST)[0] == 200
    finally:
        for s in held + pending:
            s.close()
    assert "Traceback" not in master.output(), master.output()[-3000:]


def test_one_address_gets_a_bounded_number_of_connections_served_at_once(lab):
    """Connections that started a request and stall each hold a thread until their
    request budget ends: one address may have PER_SOURCE of them, the rest are refused
    at once, and other addresses are served meanwhile."""
    need_open_files(1000)
    write_image(lab.images / "disk.img", 1 << 20)
    write_config(lab.images, [HOST], settings="io_timeout = 30\n")
    master = lab.start_master()
    watch = ProcessWatch(master.popen.pid)
    socks = [connect_from("127.8.0.1", lab.port) for _ in range(PER_SOURCE + 20)]
    try:
        for s in socks:
            s.sendall(b"GET /api/status HTTP/1.1\r\n")  # and nothing more
        got = first_lines(socks, time.monotonic() + 5)
        refused = [got[s] for s in socks if got[s]]
        assert len(refused) == 20, [status_line(r) for r in refused]
        assert all(status_line(r) == b"HTTP/1.1 503 Service Unavailable" for r in refused)
        assert b"127.8.0.1" in refused[0]
        assert max(quick_status(lab.port) for _ in range(3)) < 1.0
        threads = watch.status()["Threads"]
        assert PER_SOURCE <= threads < PER_SOURCE + 40, threads
    finally:
        for s in socks:
            s.close()
    assert "Traceback" not in master.output(), master.output()[-3000:]
