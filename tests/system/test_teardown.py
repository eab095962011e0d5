"""No hung room: when a round cannot go on, every client hears so and ends at once.

Real master and client processes. The accept timeout is long here (60 s), so a client
that ends well before it shows that the rule that ended it is the one pinned: a chain
whose master died ends within one I/O timeout, and a client the master has given up on
ends as soon as it asks.
"""

import signal
import time

from tests.conftest import write_config, write_image

MiB = 1 << 20
HOSTS = ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"]
PATIENT = "io_timeout = 2\naccept_timeout = 60\nreport_timeout = 5\narm_timeout = 3\n"


def test_chain_ends_within_an_io_timeout_once_the_master_is_dead(lab):
    """The master is killed mid-stream. The first hop cannot reach it for an I/O timeout
    and gives up, and tells the hop after it, which ends at once, and so on down the
    chain: the room is free to register again long before any accept timeout."""
    write_image(lab.images / "disk.img", 256 * MiB)
    write_config(lab.images, HOSTS, settings=PATIENT)
    lab.start_master()
    clients = [lab.start_client(h) for h in HOSTS]
    lab.wait_for(lambda: "receiving img" in clients[-1].output(), 60, "data reaching the last client")
    clients[-1].kill(signal.SIGSTOP)
    time.sleep(0.3)
    lab.kill_master()
    clients[-1].kill(signal.SIGCONT)
    for c in clients:
        assert c.wait(40) == 1, lab.dump()
    first = clients[0].output()
    assert "the master has not answered for" in first, first[-2000:]
    for c in clients[1:]:
        assert "gave up" in c.output(), c.output()[-2000:]


def test_client_woken_after_its_round_ended_stops_at_once_with_the_masters_reason(lab):
    """A is stopped while it waits for the start; the round goes on without it and
    ends. Woken, A reads the start that waited for it in its socket, but the master
    tells it at its first report that the round is over for it."""
    a, b = HOSTS[:2]
    write_image(lab.images / "disk.img", 4 * MiB)
    write_config(lab.images, [a, b], settings=PATIENT)
    lab.start_master()
    first = lab.start_client(a)
    lab.wait_for(lambda: lab.clients()[a]["state"] == "WAIT", 20, "A waiting")
    time.sleep(0.3)  # A is in its long-poll now
    first.kill(signal.SIGSTOP)
    assert lab.start_client(b).wait(60) == 0, lab.dump()
    lab.wait_for(lambda: lab.round()["phase"] == "finished", 30, "the round to end")
    first.kill(signal.SIGCONT)
    assert first.wait(30) == 1, lab.dump()
    assert "did not take the start within 3 s" in first.output()
