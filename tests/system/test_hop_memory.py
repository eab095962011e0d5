"""A client's memory holds to its budget whatever the image size (docs/protocol.md
"Memory"): what each role may peak at, as the client itself reports it (max_rss_kb,
getrusage), and the record size the master picks for a chain's depth."""

import pytest

from tests.conftest import write_config, write_image
from tests.support.hosts import hosts

MiB = 1 << 20
# docs/protocol.md "Memory": 16 MiB in flight + a 32 MiB replay window (forwarding
# only) + one spare record + 4 MiB gathering a block device's writes, over the ~26 MiB
# the interpreter and its modules take.
FORWARDING_BUDGET = 84 * MiB
LAST_HOP_BUDGET = 52 * MiB


def test_forwarding_and_last_hop_peak_within_their_memory_budgets(lab, loop_devices):
    """128 MiB of random data through a chain of 2 onto block devices, as in a room:
    far more than either hop may hold, so both fill everything they are allowed to
    (the window, the buffers, the gathered writes). The peak is the client's own
    (VmHWM), not that of the test process it was forked from (getrusage's)."""
    image = lab.images / "disk.img"
    write_image(image, 128 * MiB)
    write_config(lab.images, hosts(2))
    lab.start_master()
    disks = [loop_devices(160 * MiB)[0] for _ in range(2)]
    ballast = b"\x01" * (160 * MiB)  # this process is large when it starts the clients
    clients = [lab.start_client(h, d) for h, d in zip(hosts(2), disks)]
    del ballast
    for c in clients:
        assert c.wait(120) == 0, lab.dump()
    states = lab.clients()
    want = image.read_bytes()
    chain = lab.status()["history"][-1]["chain"]  # the order they made ready in
    first, last = (states[h] for h in chain)
    for h, disk in zip(hosts(2), disks):
        with open(disk, "rb") as f:
            assert states[h]["state"] == "DONE" and f.read(128 * MiB) == want
    assert first["max_rss_kb"] * 1024 <= FORWARDING_BUDGET, first
    assert last["max_rss_kb"] * 1024 <= LAST_HOP_BUDGET, last
    # Not vacuous: the forwarding hop did fill its replay window (26 MiB of interpreter
    # and 32 MiB of window at least).
    assert first["max_rss_kb"] * 1024 >= 56 * MiB, first


@pytest.mark.parametrize("n, size, record", [(2, 128 * MiB, 1024), (8, 16 * MiB, 64)])
def test_master_shrinks_records_for_a_deep_chain_of_a_small_image(lab, n, size, record):
    """Each hop forwards a record once it holds all of it, so a chain of N hops lags
    N records behind: the master keeps that lag under 1/64 of the stream, in records
    from 64 KiB to 1 MiB, and every hop says what it was sent."""
    write_image(lab.images / "disk.img", size)
    write_config(lab.images, hosts(n))
    lab.start_master()
    clients = [lab.start_client(h) for h in hosts(n)]
    for c in clients:
        assert c.wait(120) == 0, lab.dump()
    for c in clients:
        assert f"in records of {record} KiB" in c.output(), c.output()
    assert {s["state"] for s in lab.clients().values()} == {"DONE"}
