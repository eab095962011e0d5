"""A round in a crowd: 10 000 idle connections and 2000 addresses registering while a
round of 8 real clients runs. The round must finish with every copy DONE, and
/api/status answer within a second all along (an acceptance bound, not a benchmark).
Loopback only. Prints what the master cost (run with -s to see it).
"""

import threading
import time

from tests.conftest import write_config, write_image
from tests.support.crowd import ProcessWatch, connect_from, need_open_files, request, sources
from thepusher.master.state import MAX_UNASSIGNED

IDLE = 10_000
REGISTERING = 2000
HOSTS = [f"127.0.0.{11 + i}" for i in range(8)]
STATUS_BOUND = 1.0
TOTAL_BOUND = 90.0


class Storm:
    """REGISTERING addresses registering from a few threads, each again after the others
    (a real unassigned client registers every 10 s) until the storm ends, while the
    page's /api/status is asked every 0.2 s and the master's figures are sampled."""

    def __init__(self, port: int, watch: ProcessWatch) -> None:
        self.port = port
        self.watch = watch
        self.answers = []  # status codes of the registrations
        self.latencies = []  # seconds each /api/status took
        self.samples = []  # the master's /proc figures
        self.done = threading.Event()
        addresses = list(sources(4, REGISTERING))
        self.threads = [threading.Thread(target=self._register, args=(addresses[i::4],), daemon=True)
                        for i in range(4)]
        self.threads.append(threading.Thread(target=self._probe, daemon=True))

    def __enter__(self) -> "Storm":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        for t in self.threads:
            t.join(60)

    def _register(self, addresses) -> None:
        while not self.done.is_set():
            for i, source in enumerate(addresses):
                body = {"data_port": 9, "mac": f"02:00:00:00:{i // 256:02x}:{i % 256:02x}"}
                try:
                    self.answers.append(request(source, self.port, "POST", "/api/register", body)[0])
                except OSError as e:
                    self.answers.append(str(e))
                if self.done.is_set():
                    return

    def _probe(self) -> None:
        while not self.done.is_set():
            start = time.monotonic()
            try:
                code, _ = request("127.0.0.1", self.port, "GET", "/api/status", timeout=10)
            except OSError as e:
                code = str(e)
            self.latencies.append((time.monotonic() - start, code))
            self.samples.append(self.watch.status())
            self.done.wait(0.2)


def test_a_round_of_8_finishes_among_10000_idle_connections_and_2000_registering_addresses(lab):
    need_open_files(IDLE + REGISTERING + 1000)
    began = time.monotonic()
    write_image(lab.images / "disk.img", 16 << 20)
    write_config(lab.images, HOSTS, settings="io_timeout = 60\n")  # the idle ones stay idle
    master = lab.start_master()
    watch = ProcessWatch(master.popen.pid)
    before = watch.status()
    cpu_before = watch.cpu_seconds()
    idle = []
    try:
        idle = [connect_from(a, lab.port) for a in sources(3, IDLE // 100) for _ in range(100)]
        lab.wait_for(lambda: watch.status()["open_files"] >= IDLE, 30,
                     "the master to accept the idle connections")
        held = watch.status()
        with Storm(lab.port, watch) as storm:
            lab.wait_for(lambda: len(storm.answers) >= REGISTERING, 60,
                         "every address to register once")
            clients = [lab.start_client(h) for h in HOSTS]
            before_round = len(storm.answers)
            lab.wait_for(lambda: (lab.round() or {}).get("phase") == "finished", 60,
                         "the round to finish")
            during_round = len(storm.answers) - before_round
            for c in clients:
                assert c.wait(30) == 0, lab.dump()
            round_ = lab.round()
            status = lab.status()
        assert round_["outcome"] == {h: "DONE" for h in HOSTS}, round_
        assert during_round > 0
    finally:
        for s in idle:
            s.close()
    cpu = watch.cpu_seconds() - cpu_before
    took = time.monotonic() - began
    slowest = max(t for t, _ in storm.latencies)
    peak = {k: max(s[k] for s in storm.samples) for k in ("VmRSS", "Threads", "open_files")}
    print(f"\nmaster before: {before}; with {len(idle)} idle connections: {held}; peak during "
          f"the storm: {peak}; CPU {cpu:.1f} s over {took:.1f} s; /api/status: "
          f"{len(storm.latencies)} calls, slowest {slowest:.3f} s, median "
          f"{sorted(t for t, _ in storm.latencies)[len(storm.latencies) // 2]:.3f} s; "
          f"registrations: {len(storm.answers)} ({during_round} during the round), "
          f"{storm.answers.count(200)} answered 200; "
          f"unassigned listed: {len(status['unassigned'])}")
    assert all(code == 200 for _, code in storm.latencies), storm.latencies
    assert slowest < STATUS_BOUND, sorted(storm.latencies)[-5:]
    assert storm.answers.count(200) == len(storm.answers), sorted(set(map(str, storm.answers)))
    assert len(status["unassigned"]) <= MAX_UNASSIGNED
    assert min(s["open_files"] for s in storm.samples) >= IDLE  # none of them had to go
    assert took < TOTAL_BOUND
    assert "Traceback" not in master.output(), master.output()[-3000:]
