"""Naming the hop that holds the chain back, in a real round: a client starved of CPU
(the rules, from the figures hops report, are in tests/unit/test_bottleneck.py; a client
that stops reporting, on the page, in tests/system/test_browser.py)."""

import time

from tests.conftest import write_config, write_image

HOSTS = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]


def starved_and_ready(lab, cpu_starved, size: int):
    """Three clients ready (WAIT) in a manual group, the middle one starved of CPU (3%)."""
    write_image(lab.images / "disk.img", size)
    write_config(lab.images, HOSTS, group='  start = "manual"\n')
    lab.start_master()
    clients = [lab.start_client(h) for h in HOSTS]
    lab.wait_for(lambda: all(c["state"] == "WAIT" for c in lab.clients().values()), 30, "all WAIT")
    (cpu_starved / "cgroup.procs").write_text(str(clients[1].popen.pid))
    return clients


def bottlenecks(lab, watch: float, timeout: float = 60):
    """Every bottleneck /api/status names, from the first one for `watch` seconds (or
    until the round ends)."""
    named = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        group = lab.status()["groups"][0]
        if group["round"]["phase"] == "finished":
            break
        if group.get("bottleneck"):
            if not named:
                deadline = time.monotonic() + watch
            named.append(group["bottleneck"])
        time.sleep(0.2)
    return named


def test_status_names_the_cpu_starved_client_as_holding_the_chain_back(lab, cpu_starved):
    """A real slow hop: the middle client may use 3% of a CPU, and /api/status points at
    it all along: not at the last client (starved of data), nor at the first one, whose
    forwarder queue is full because the starved one reads slowly."""
    clients = starved_and_ready(lab, cpu_starved, 256 << 20)
    assert lab.call("POST", "/api/groups/room/start", {})[0] == 200
    named = bottlenecks(lab, 6)
    (cpu_starved / "cpu.cfs_quota_us").write_text("-1")  # let the round finish quickly
    assert named and {b["host"] for b in named} == {HOSTS[1]}, named
    for c in clients:
        assert c.wait(120) == 0, lab.dump()
