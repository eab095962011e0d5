"""Members of a round are not trusted with each other's disks or fates.

Every member of a round holds its data-plane secret (and anyone sniffing /api/next on the
LAN can learn it). Such an insider must not be able to make a hop write-and-bless an
image the master did not sign for it, nor mark other hosts ERROR. The insiders here are
the test itself, speaking HTTP and the wire format from a member's address; the hops
they attack are real client processes.
"""

import hashlib
import os
import socket
import threading

import pytest

from tests.conftest import sha256_file, write_config, write_image
from tests.support.members import Member
from thepusher.chain import wire

MiB = 1 << 20
A, B, C = "127.0.0.11", "127.0.0.12", "127.0.0.13"


def states(lab) -> dict:
    return {h: (c["state"], c["error"]) for h, c in lab.clients().items()}


@pytest.mark.parametrize("forged_facts", [True, False], ids=["forged-facts", "true-facts-forged-bytes"])
def test_insider_feeding_a_waiting_hop_gets_no_disk_blessed(lab, forged_facts):
    """The first member feeds the hop after it, before the master streams, with a header
    signed with the round's secret. With forged facts (another image and its digest) the
    hop refuses it and takes the master's stream; with the true facts and other bytes the
    hop may write them but never calls them verified."""
    image = lab.images / "disk.img"
    write_image(image, 4 * MiB)
    write_config(lab.images, [A, B, C], settings="arm_timeout = 20\n")
    lab.start_master()
    insider = Member(lab, A, swallow=False)
    insider.join()
    b, c = lab.start_client(B), lab.start_client(C)
    start = insider.take_start()
    lab.wait_for(lambda: all(states(lab)[h][0] == "BUSY" for h in (B, C)), 30, "B and C armed")
    forged = os.urandom(4 * MiB)
    header = wire.StreamHeader(
        session=start["session"], image="img", stream_size=len(forged), content_size=len(forged),
        content_sha256=hashlib.sha256(forged).hexdigest() if forged_facts else start["sha256"],
        sender=1, record_size=start["record_size"],
    )
    secret = bytes.fromhex(start["secret"])
    try:
        sock, _ = wire.connect(tuple(start["downstream"][0]), header, secret, timeout=5)
    except wire.ProtocolError as e:
        refused = str(e)
    else:
        refused = ""
        with sock:
            step = start["record_size"]
            for pos in range(0, len(forged), step):
                sock.sendall(wire.pack_head(wire.DATA, step, pos) + forged[pos:pos + step])
            sock.sendall(wire.end_record(len(forged), header.content_sha256, len(forged)))
            sock.shutdown(socket.SHUT_WR)
            sock.recv(1)
    insider.report("BUSY")  # armed: the master streams, skipping the insider's closed port
    if forged_facts:
        assert "differ from the master's start" in refused
        assert b.wait(60) == 0 and c.wait(60) == 0, lab.dump()
        for h in (B, C):
            assert sha256_file(lab.disks / f"{h}.img") == sha256_file(image)
    else:
        assert b.wait(90) == 1 and c.wait(90) == 1, lab.dump()
        assert "DONE" not in {states(lab)[h][0] for h in (B, C)}


def test_only_the_host_directly_upstream_may_report_a_skip(lab):
    """A member's `skipped` list marks a host ERROR only if that member sits directly
    before it in the chain (hosts between them already out of the round); a member
    naming a host before itself, or one further on, changes nothing."""
    write_image(lab.images / "disk.img", MiB)
    write_config(lab.images, [A, B, C], settings="report_timeout = 60\n")
    lab.start_master()
    members = {h: Member(lab, h) for h in (A, B, C)}
    for m in members.values():
        m.join()
    for m in members.values():
        m.take_start()
        m.report("BUSY")
    lab.wait_for(lambda: lab.round()["phase"] in ("streaming", "settling"), 20, "the stream")

    members[C].report(skipped=[[A, "C lies about A"]])  # A is before C
    members[A].report(skipped=[[C, "A lies about C"]])  # B, still in, sits between them
    members[B].report(skipped=[[B, "B lies about itself"]])
    assert {h: s[0] for h, s in states(lab).items()} == {A: "BUSY", B: "BUSY", C: "BUSY"}

    members[A].report(skipped=[[B, "B died"]])  # A sits directly before B
    assert states(lab)[B] == ("ERROR", f"skipped by {A}: B died")
    members[A].report(skipped=[[B, "B died"], [C, "C died too"]])  # B is out: C is next
    assert states(lab)[C] == ("ERROR", f"skipped by {A}: C died too")
    assert states(lab)[A][0] == "BUSY"


def test_a_host_given_up_on_that_proves_its_copy_is_done_and_a_bare_claim_changes_nothing(lab):
    """A is declared lost (silent past report_timeout) while B keeps the round going. A
    DONE without the round's proof changes nothing; one signed with the round's secret,
    for the round's digest and size, makes A DONE after all."""
    image = lab.images / "disk.img"
    write_image(image, MiB)
    write_config(lab.images, [A, B], settings="report_timeout = 1\n")
    lab.start_master()
    a, b = Member(lab, A), Member(lab, B)
    for m in (a, b):
        m.join()
    for m in (a, b):
        m.take_start()
        m.report("BUSY")
    b_reports = threading.Event()

    def keep_b_alive() -> None:
        while not b_reports.wait(0.2):
            b.report("BUSY")

    threading.Thread(target=keep_b_alive, daemon=True).start()
    lab.wait_for(lambda: states(lab)[A][0] == "ERROR", 20, "A declared lost")
    assert "(lost)" in states(lab)[A][1]
    digest, size = sha256_file(image), MiB
    claim = {"sha256": digest, "bytes_done": size, "bytes_total": size}
    answer = a.report("DONE", **claim, auth="0" * 64)
    assert answer["ok"] is False and "(lost)" in answer["reason"]
    assert states(lab)[A][0] == "ERROR"
    proof = wire.report_mac(bytes.fromhex(a.start["secret"]), a.start["session"], "DONE", digest, size)
    answer = a.report("DONE", **claim, auth=proof)
    assert answer["ok"] is True and states(lab)[A] == ("DONE", "")
    b_reports.set()
    b.report("ERROR", error="gave up")
    r = lab.wait_for(lambda: (r := lab.round()) and r["phase"] == "finished" and r, 20, "the end")
    assert r["outcome"] == {A: "DONE", B: "ERROR"}
