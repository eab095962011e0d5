"""`chains = K`: a group's round split into K chains the master streams at once, each
healing, verifying and failing on its own. Real master and client processes on
127.0.0.x."""

import signal
import time

from tests.conftest import sha256_file, write_config, write_image
from tests.support.hosts import hosts

MiB = 1 << 20


def data_reached(lab, proc) -> None:
    lab.wait_for(lambda: "receiving img" in proc.output(), 60, f"data reaching {proc.name}")


def test_chains_run_at_once_each_heals_on_its_own_and_every_copy_is_verified(lab):
    """Six hosts in two chains, a-b-c and d-e-f. Chain 1 is held still (c stopped) and
    chain 2 still finishes: the master feeds both at once. Then b is killed mid-stream:
    a skips to c within chain 1, and chain 2's hosts are never touched."""
    a, b, c, d, e, f = hosts(6)
    image = lab.images / "disk.img"
    write_image(image, 256 * MiB)
    write_config(lab.images, hosts(6), group="  chains = 2\n")
    lab.start_master()
    procs = dict(zip(hosts(6), (lab.start_client(h) for h in hosts(6))))

    data_reached(lab, procs[c])
    procs[c].kill(signal.SIGSTOP)
    for h in (d, e, f):
        assert procs[h].wait(120) == 0, lab.dump()
    states = lab.clients()
    assert [states[h]["state"] for h in (a, b, c)] == ["BUSY"] * 3, lab.dump()
    r = lab.round()
    assert [x["hosts"] for x in r["chains"]] == [[a, b, c], [d, e, f]]
    assert r["chain"] == hosts(6)
    assert r["chains"][1]["bytes_sent"] == 256 * MiB
    assert r["chains"][0]["bytes_sent"] < 256 * MiB  # chain 1 is still held

    procs[b].kill(signal.SIGKILL)
    time.sleep(0.4)
    procs[c].kill(signal.SIGCONT)
    assert procs[a].wait(90) == 0 and procs[c].wait(90) == 0, lab.dump()

    want = sha256_file(image)
    states = lab.wait_for(lambda: (s := lab.clients()) and s[b]["state"] == "ERROR" and s,
                          60, "the killed client marked ERROR")
    assert f"skipped by {a}" in states[b]["error"], states[b]
    for h in (a, c, d, e, f):
        assert states[h]["state"] == "DONE", states[h]
        assert sha256_file(lab.disks / f"{h}.img") == want, h
    assert "position 1/3 of chain 2/2" in procs[d].output()
    finished = lab.wait_for(lambda: (x := lab.round()) and x["phase"] == "finished" and x,
                            30, "the round to finish")
    assert finished["outcome"] == {a: "DONE", b: "ERROR", c: "DONE", d: "DONE", e: "DONE", f: "DONE"}
    assert [x["error"] for x in finished["chains"]] == ["", ""]


def test_abort_stops_the_master_feeding_every_chain(lab):
    """Chain 2's head is stopped, so the master's send to it blocks: only the abort
    (not io_timeout, 300 s here) can end that stream, and the round finishes at once."""
    a, b, c, d = hosts(4)
    write_image(lab.images / "disk.img", 512 * MiB)
    write_config(lab.images, hosts(4), group="  chains = 2\n", settings="io_timeout = 300\n")
    lab.start_master()
    procs = dict(zip(hosts(4), (lab.start_client(h) for h in hosts(4))))
    data_reached(lab, procs[b])
    data_reached(lab, procs[d])
    procs[b].kill(signal.SIGSTOP)
    procs[c].kill(signal.SIGSTOP)
    try:
        r = lab.cli("abort", "room")
        assert r.returncode == 0, r.stderr
        finished = lab.wait_for(lambda: (x := lab.round()) and x["phase"] == "finished" and x,
                                20, "the round to finish while chain 2's head is stopped")
    finally:
        procs[b].kill(signal.SIGCONT)
        procs[c].kill(signal.SIGCONT)
    assert finished["aborted"] is True
    assert set(finished["outcome"].values()) == {"ERROR"}
    assert all(x["bytes_sent"] < 512 * MiB for x in finished["chains"])
    for p in procs.values():
        assert p.wait(60) == 1, lab.dump()


def test_a_round_with_fewer_ready_hosts_than_chains_gives_each_its_own_chain(lab):
    a, b, c = hosts(3)
    write_image(lab.images / "disk.img", 8 * MiB)
    write_config(lab.images, hosts(3), group='  chains = 3\n  start = "manual"\n')
    lab.start_master()
    first, second = lab.start_client(a), lab.start_client(c)
    lab.wait_for(lambda: (s := lab.clients()) and s[a]["state"] == s[c]["state"] == "WAIT",
                 30, "two hosts ready")
    r = lab.cli("start", "room")
    assert r.returncode == 0, r.stderr
    assert f"round 1 started, chains {a} | {c}; not ready, so not in it: {b}" in r.stdout
    assert first.wait(60) == 0 and second.wait(60) == 0, lab.dump()
    finished = lab.wait_for(lambda: (x := lab.round()) and x["phase"] == "finished" and x,
                            30, "the round to finish")
    assert [x["hosts"] for x in finished["chains"]] == [[a], [c]]
    assert finished["outcome"] == {a: "DONE", c: "DONE"}


def test_a_chain_whose_stream_is_over_is_repaired_while_another_is_still_fed(lab, cpu_starved):
    """Chain 1's last hop loses its upstream after the master has sent chain 1 all of
    it (a held it all, then was killed): the master feeds b again at once, while it is
    still streaming to chain 2, whose head may use 3% of a CPU."""
    a, b, c, d = hosts(4)
    image = lab.images / "disk.img"
    write_image(image, 256 * MiB)
    # a's replay window holds the whole image, so the master's stream to chain 1 ends
    # while b, stopped, has little of it.
    write_config(lab.images, hosts(4), group="  chains = 2\n",
                 settings="replay_window = 512\nio_timeout = 120\nreport_timeout = 5\n")
    master = lab.start_master()
    procs = dict(zip(hosts(4), (lab.start_client(h) for h in hosts(4))))
    (cpu_starved / "cgroup.procs").write_text(str(procs[c].popen.pid))
    data_reached(lab, procs[b])
    procs[b].kill(signal.SIGSTOP)
    lab.wait_for(lambda: "chain 1: master sent all" in master.output(), 60,
                 "the master's stream to chain 1 to end")
    procs[a].kill(signal.SIGKILL)
    procs[b].kill(signal.SIGCONT)
    lab.wait_for(lambda: lab.clients()[b]["state"] == "DONE", 60, "b fed again by the master")
    assert "chain 2: master sent all" not in master.output(), "chain 2 was no longer fed"
    assert "the master feeds it" in master.output()
    (cpu_starved / "cpu.cfs_quota_us").write_text("-1")
    for h in (b, c, d):
        assert procs[h].wait(120) == 0, lab.dump()
    want = sha256_file(image)
    for h in (b, c, d):
        assert sha256_file(lab.disks / f"{h}.img") == want, h
    lost = lab.wait_for(lambda: (s := lab.clients()[a]) and s["state"] == "ERROR" and s, 30,
                        "the killed client marked lost")
    assert "no report from the client" in lost["error"], lost
