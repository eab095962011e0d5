"""Naming the hop that holds the chain back, in a real round: a client starved of CPU
(the rules, from the queue figures hops report, are in tests/unit/test_bottleneck.py)."""

from tests.conftest import write_config, write_image


def test_status_names_the_cpu_starved_client_as_holding_the_chain_back(lab, cpu_starved):
    """A real slow hop: the middle client may use 3% of a CPU, and /api/status points
    at it (and not at the last client, which is starved of data)."""
    hosts = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
    write_image(lab.images / "disk.img", 256 << 20)
    write_config(lab.images, hosts)
    lab.start_master()
    clients = [lab.start_client(h) for h in hosts]
    (cpu_starved / "cgroup.procs").write_text(str(clients[1].popen.pid))
    named = lab.wait_for(lambda: lab.status()["groups"][0].get("bottleneck"), 60,
                         "a bottleneck named during the round")
    (cpu_starved / "cpu.cfs_quota_us").write_text("-1")  # let the round finish quickly
    # Starved, it reads as slowly as it writes: either it is named with its writer
    # backed up, or the hop before it is named with a full link to it.
    assert named["host"] == "127.0.0.12" or named == dict(named, host="127.0.0.11", cause="link",
                                                          next="127.0.0.12"), named
    for c in clients:
        assert c.wait(120) == 0, lab.dump()
