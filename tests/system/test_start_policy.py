"""Start policies, late clients and follow-up rounds, with real master and client processes.

A host that "never boots" is simply never started. A host that registers and says
ready but never takes its start is played with two API calls from its address. A
failed copy is a destination in a directory that does not exist yet ("fixed" by
creating it); a client to be retried is a fresh client process, as the netboot
script restarts it.
"""

import time

from tests.conftest import write_config, write_image

MiB = 1 << 20
A, B, C = "127.0.0.11", "127.0.0.12", "127.0.0.13"


def setup(lab, hosts, group="", settings=""):
    write_image(lab.images / "disk.img", 1 * MiB)
    write_config(lab.images, hosts, group=group, settings=settings)
    lab.start_master()


def wait_state(lab, host, state, timeout=20):
    lab.wait_for(lambda: lab.clients()[host]["state"] == state, timeout, f"{host} {state}")


def fake_ready(lab, host):
    """A host that registers and is ready, but never takes a start."""
    assert lab.call("POST", "/api/register", {"data_port": 9}, source=host)[0] == 200
    assert lab.call("POST", "/api/ready", {}, source=host)[0] == 200


def finished_rounds(lab, n):
    return lab.wait_for(lambda: len(h := lab.status()["history"]) >= n and h, 60, f"{n} rounds")


def test_wait_policy_starts_after_wait_without_the_host_that_never_boots(lab):
    setup(lab, [A, B, C], group='  wait = "3s"\n  min_clients = 2\n')
    clients = [lab.start_client(A), lab.start_client(B)]
    wait_state(lab, A, "WAIT")
    wait_state(lab, B, "WAIT")
    first_ready = time.time()
    time.sleep(1)
    assert lab.round() is None, "started before the wait was over"
    for c in clients:
        assert c.wait(30) == 0, lab.dump()
    r = finished_rounds(lab, 1)[-1]
    assert r["chain"] == [A, B] and r["left_out"] == [C]
    assert r["started"] >= first_ready + 1.5
    assert lab.clients()[C]["state"] == "NONE"
    assert f"not in the round: {C}" in lab.procs[0].output()


def test_wait_policy_does_not_start_below_min_clients(lab):
    setup(lab, [A, B, C], group='  wait = "1s"\n  min_clients = 2\n')
    first = lab.start_client(A)
    wait_state(lab, A, "WAIT")
    time.sleep(2)
    assert lab.round() is None, "started with fewer than min_clients"
    second = lab.start_client(B)  # the wait is long over: the second ready host starts it
    assert first.wait(30) == 0 and second.wait(30) == 0, lab.dump()
    assert lab.status()["history"][-1]["chain"] == [A, B]


def test_manual_policy_starts_only_on_thepusher_start(lab):
    setup(lab, [A, B, C], group='  start = "manual"\n')
    clients = [lab.start_client(A), lab.start_client(B)]
    wait_state(lab, A, "WAIT")
    wait_state(lab, B, "WAIT")
    time.sleep(1.5)
    assert lab.round() is None
    r = lab.cli("start", "room")
    assert r.returncode == 0, r.stderr
    assert f"round 1 started, chain {A} -> {B}" in r.stdout and C in r.stdout
    for c in clients:
        assert c.wait(30) == 0, lab.dump()
    again = lab.cli("start", "room")
    assert again.returncode == 1 and "no host is ready" in again.stderr


def test_late_client_waits_for_the_next_round(lab):
    """B holds round 1 in its arming phase (it never takes the start); C comes meanwhile,
    stays WAIT, and gets round 2 on its own once round 1 is over."""
    setup(lab, [A, B, C], group='  wait = "1s"\n  min_clients = 2\n', settings="arm_timeout = 3\n")
    first = lab.start_client(A)
    fake_ready(lab, B)
    lab.wait_for(lambda: lab.round(), 20, "round 1")
    late = lab.start_client(C)
    wait_state(lab, C, "WAIT")
    r = lab.round()
    assert r["number"] == 1 and r["phase"] != "finished" and C not in r["chain"]
    assert first.wait(30) == 0 and late.wait(30) == 0, lab.dump()
    one, two = finished_rounds(lab, 2)
    assert one["chain"] == [A, B] and one["outcome"] == {A: "DONE", B: "ERROR"}
    assert "did not take the start" in one["errors"][B]
    assert one["left_out"] == [C]
    assert two["chain"] == [C] and two["outcome"] == {C: "DONE"}


def failing_first_round(lab, retries):
    """Round 1: A verified, B's destination directory missing, so B ends in ERROR."""
    setup(lab, [A, B], group=f"  retries = {retries}\n")
    broken = lab.disks / "missing" / "b.img"
    a, b = lab.start_client(A), lab.start_client(B, str(broken))
    assert a.wait(30) == 0 and b.wait(30) == 1, lab.dump()
    r = finished_rounds(lab, 1)[-1]
    assert r["outcome"] == {A: "DONE", B: "ERROR"} and "cannot open destination" in r["errors"][B]
    (lab.disks / "missing").mkdir()
    return broken


def test_retry_runs_a_follow_up_round_for_the_failed_client(lab):
    broken = failing_first_round(lab, retries=0)
    early = lab.cli("retry", "room")
    assert early.returncode == 1 and "no host that failed or came late is ready" in early.stderr
    again = lab.start_client(B, str(broken))
    wait_state(lab, B, "WAIT")
    time.sleep(1.5)
    assert lab.round()["number"] == 1, "retries = 0 must not start a follow-up on its own"
    r = lab.cli("retry", "room")
    assert r.returncode == 0 and f"round 2 started, chain {B}" in r.stdout, r.stderr
    assert again.wait(30) == 0, lab.dump()
    assert finished_rounds(lab, 2)[-1]["outcome"] == {B: "DONE"}
    assert lab.clients()[A]["state"] == lab.clients()[B]["state"] == "DONE"


def test_retries_1_runs_the_follow_up_round_automatically(lab):
    broken = failing_first_round(lab, retries=1)
    again = lab.start_client(B, str(broken))
    assert again.wait(30) == 0, lab.dump()
    two = finished_rounds(lab, 2)[-1]
    assert two["number"] == 2 and two["chain"] == [B] and two["outcome"] == {B: "DONE"}


def test_reimaging_a_done_room_waits_for_every_host_again(lab):
    """The room was imaged; the machines reboot into the netboot image one by one to
    be imaged again: the first one back must not start a round of its own."""
    hosts = ["127.0.0.11", "127.0.0.12"]
    write_image(lab.images / "disk.img", 1 << 20)
    write_config(lab.images, hosts)
    lab.start_master()
    for c in [lab.start_client(h) for h in hosts]:
        assert c.wait(60) == 0, lab.dump()
    again = lab.start_client(hosts[0])
    lab.wait_for(lambda: lab.clients()[hosts[0]]["state"] == "WAIT", 20, "first host back, WAIT")
    time.sleep(1.5)
    assert lab.clients()[hosts[0]]["state"] == "WAIT"
    assert len(lab.status()["history"]) == 1
    # ... and the room is told what it waits for, and nothing counts as failed
    assert lab.status()["groups"][0]["waiting_for"] == hosts[1:]
    r = lab.cli("status")
    assert r.returncode == 0, r.stdout + r.stderr
    assert ("next round waits for 127.0.0.12 (DONE before, not restarted) to be ready; "
            "thepusher start room starts it with the ready ones now") in r.stdout
    last = lab.start_client(hosts[1])
    assert again.wait(60) == 0 and last.wait(60) == 0, lab.dump()
    assert lab.status()["history"][-1]["chain"] == hosts
