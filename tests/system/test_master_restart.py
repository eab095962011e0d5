"""A master restarted during a round keeps every verified disk DONE.

kill -9 of a real master process, a new one on the same image directory, real clients
that go on meanwhile: a DONE the old master accepted is not lost, a DONE it never heard
reaches the new one, and the start policy then waits only for hosts that still need
the image.
"""

import json
import signal
import subprocess

from tests.conftest import ENV, sha256_file, thepusher, write_config, write_image

MiB = 1 << 20
# The first client's replay window and buffers (64 + 16 MiB) hold all of a 64 MiB image
# while the last one is stopped: the master sends everything and may die.
HOLDS_THE_IMAGE = "io_timeout = 30\nreplay_window = 64\n"
A, B, C = "127.0.0.11", "127.0.0.12", "127.0.0.13"


def status_exit(lab) -> int:
    return subprocess.run(thepusher("status", "-p", f"127.0.0.1:{lab.port}"), env=ENV,
                          capture_output=True, text=True, timeout=30).returncode


def restart_after_the_stream(lab, master, clients) -> None:
    """Stop the last client as soon as data reaches it (the one before holds the rest of
    the image in its buffers), kill the master once it sent everything, start a new one,
    let the client go on; every client ends DONE."""
    lab.wait_for(lambda: "receiving img" in clients[-1].output(), 30, "data reaching the last client")
    clients[-1].kill(signal.SIGSTOP)
    lab.wait_for(lambda: "master sent all" in master.output(), 30, "the master's stream to end")
    lab.restart_master()
    clients[-1].kill(signal.SIGCONT)
    for c in clients:
        assert c.wait(60) == 0, lab.dump()


def test_master_killed_after_the_stream_records_the_late_done_reports(lab):
    """The master sends the whole image and dies before any client is DONE: the last
    client is stopped early, so the first one holds the rest of the image in its
    buffers and still forwards. The new master accepts their DONE reports against the
    round's recorded digest."""
    write_image(lab.images / "disk.img", 64 * MiB)
    write_config(lab.images, [A, B], settings=HOLDS_THE_IMAGE)
    master = lab.start_master()
    restart_after_the_stream(lab, master, [lab.start_client(h) for h in (A, B)])
    states = lab.wait_for(lambda: (s := lab.clients()) and s[B]["state"] == "DONE" and s, 20,
                          "B's late report")
    assert states[A]["state"] == "DONE", states[A]
    (r,) = lab.status()["history"]
    assert r["outcome"] == {A: "DONE", B: "DONE"} and r["interrupted"] is True
    assert status_exit(lab) == 0
    lab.restart_master()  # the late outcomes were journaled: they survive another crash
    assert lab.status()["history"][0]["outcome"] == {A: "DONE", B: "DONE"}
    saved = json.loads((lab.images / "thepusher-history.json").read_text())["rounds"][0]
    assert saved["outcome"] == {A: "DONE", B: "DONE"} and saved["verified_by"] == {A: "write", B: "write"}
    for h in (A, B):
        assert sha256_file(lab.disks / f"{h}.img") == sha256_file(lab.images / "disk.img")


def test_done_the_old_master_accepted_survives_its_crash(lab):
    """Two chains: A is DONE while B's chain is held; the master dies. A stays DONE (the
    master wrote it down before it answered); B, whose stream died with the master, ends
    ERROR with its own reason."""
    write_image(lab.images / "disk.img", 64 * MiB)
    write_config(lab.images, [A, B], settings="io_timeout = 8\naccept_timeout = 60\n",
                 group="  chains = 2\n")
    lab.start_master()
    a, b = lab.start_client(A), lab.start_client(B)
    lab.wait_for(lambda: "receiving img" in b.output(), 30, "data reaching B")
    b.kill(signal.SIGSTOP)
    assert a.wait(60) == 0, lab.dump()
    lab.wait_for(lambda: lab.clients()[A]["state"] == "DONE", 10, "A DONE")
    lab.restart_master()
    b.kill(signal.SIGCONT)
    assert b.wait(60) == 1, lab.dump()
    states = lab.wait_for(lambda: (s := lab.clients()) and s[B]["error"] != s[A]["error"] and s,
                          20, "B's own reason")
    assert states[A]["state"] == "DONE"
    assert states[B]["state"] == "ERROR" and states[B]["error"] != "master restarted during the round"
    assert "holds no stream for this round: giving up" in states[B]["error"]
    (r,) = lab.status()["history"]
    assert r["outcome"] == {A: "DONE", B: "ERROR"}


def test_after_a_restart_the_straggler_alone_starts_the_follow_up_round(lab):
    """start = "all": once A and B are DONE (late, after the restart), the group waits
    only for C, and C's arrival starts the follow-up round by itself."""
    write_image(lab.images / "disk.img", 64 * MiB)
    write_config(lab.images, [A, B, C], settings=HOLDS_THE_IMAGE)
    master = lab.start_master()
    clients = [lab.start_client(h) for h in (A, B)]
    lab.wait_for(lambda: all(lab.clients()[h]["state"] == "WAIT" for h in (A, B)), 30, "A, B WAIT")
    assert lab.cli("start", "room").returncode == 0
    restart_after_the_stream(lab, master, clients)
    lab.wait_for(lambda: all(lab.clients()[h]["state"] == "DONE" for h in (A, B)), 20, "A, B DONE")
    assert lab.start_client(C).wait(60) == 0, lab.dump()
    rounds = lab.wait_for(lambda: len(h := lab.status()["history"]) == 2 and h, 20, "round 2")
    assert rounds[1]["chain"] == [C] and rounds[1]["outcome"] == {C: "DONE"}


def test_after_a_restart_finished_hosts_show_the_size_they_wrote(lab):
    """The new master knows the hosts are DONE from the history, and their sizes too:
    the page and `thepusher status` show what they wrote, not 0 B."""
    write_image(lab.images / "disk.img", 3 * MiB)
    write_config(lab.images, [A, B])
    lab.start_master()
    for c in [lab.start_client(h) for h in (A, B)]:
        assert c.wait(60) == 0, lab.dump()
    lab.restart_master()
    group = lab.status()["groups"][0]
    for c in group["clients"]:
        assert (c["state"], c["bytes_done"], c["bytes_total"]) == ("DONE", 3 * MiB, 3 * MiB), c
    assert (group["totals"]["bytes_done"], group["totals"]["bytes_total"]) == (6 * MiB, 6 * MiB)
