"""Whole rounds with real master and client processes on 127.0.0.x."""

import os
import signal
import socket
import time

import pytest

from tests.conftest import sha256_file, write_config, write_image
from tests.support.hosts import hosts

MiB = 1 << 20


def kill_mid_stream(lab, victim, frozen):
    """kill -9 `victim` mid-stream, every time: `frozen` (the last client) is stopped as
    soon as data reaches it, so backpressure stalls the whole chain until it resumes."""
    lab.wait_for(lambda: "receiving img" in frozen.output(), 60, "data reaching the last client")
    frozen.kill(signal.SIGSTOP)
    time.sleep(0.4)
    victim.kill(signal.SIGKILL)
    time.sleep(0.4)
    frozen.kill(signal.SIGCONT)


@pytest.mark.parametrize("n", [1, 3, 8])
def test_every_client_in_chain_gets_byte_identical_verified_copy(lab, n):
    image = lab.images / "disk.img"
    write_image(image, 96 * MiB)  # more than a forwarding hop holds (window + buffers)
    write_config(lab.images, hosts(n))
    lab.start_master()
    clients = [lab.start_client(h) for h in hosts(n)]
    for c in clients:
        assert c.wait(180) == 0, lab.dump()
    want = sha256_file(image)
    states = lab.clients()
    for h in hosts(n):
        assert sha256_file(lab.disks / f"{h}.img") == want
        assert states[h]["state"] == "DONE", states[h]
        assert states[h]["bytes_done"] == 96 * MiB
        assert states[h]["sha256"] == want
    history = lab.status()["history"]
    assert history[-1]["chain"] == hosts(n)
    assert set(history[-1]["outcome"].values()) == {"DONE"}


def test_group_waits_until_every_host_is_ready(lab):
    write_image(lab.images / "disk.img", 4 * MiB)
    write_config(lab.images, hosts(2))
    lab.start_master()
    first = lab.start_client(hosts(2)[0])
    lab.wait_for(lambda: lab.clients()[hosts(2)[0]]["state"] == "WAIT", 20, "first client WAIT")
    time.sleep(1.5)
    assert lab.clients()[hosts(2)[0]]["state"] == "WAIT"
    assert lab.status()["groups"][0]["round"] is None
    second = lab.start_client(hosts(2)[1])
    assert first.wait(60) == 0 and second.wait(60) == 0, lab.dump()


def test_killed_middle_client_is_skipped_and_the_rest_finish_verified(lab):
    """kill -9 the middle client mid-stream: the chain heals around it. The one before
    skips to the one after, which resumes from the first byte it lacks (from the
    sender's window or, for older bytes, from the master); both end DONE with the exact
    image, and the killed one ends ERROR with the reason."""
    image = lab.images / "disk.img"
    write_image(image, 256 * MiB)
    write_config(lab.images, hosts(3), settings="report_timeout = 5\n")
    lab.start_master()
    c1, c2, c3 = [lab.start_client(h) for h in hosts(3)]
    kill_mid_stream(lab, c2, frozen=c3)
    assert c3.wait(90) == 0, lab.dump()
    assert c1.wait(90) == 0, lab.dump()
    states = lab.wait_for(
        lambda: (s := lab.clients()) and s[hosts(3)[1]]["state"] == "ERROR" and s,
        60, "the killed client marked ERROR",
    )
    want = sha256_file(image)
    for h in (hosts(3)[0], hosts(3)[2]):
        assert states[h]["state"] == "DONE", states[h]
        assert sha256_file(lab.disks / f"{h}.img") == want
    assert "skipped by 127.0.0.11" in states[hosts(3)[1]]["error"]
    assert "continuing at byte" in c3.output()


def test_garbage_on_data_port_is_refused_and_round_still_verifies(lab):
    """An attacker queued on the client's data port before the round is answered with
    a refusal; the real stream that follows is the only thing written."""
    image = lab.images / "disk.img"
    write_image(image, 8 * MiB)
    write_config(lab.images, hosts(2))
    lab.start_master()
    from tests.conftest import free_port

    port = free_port(hosts(2)[0])
    first = lab.start_client(hosts(2)[0], None, "--data-port", str(port))
    lab.wait_for(lambda: lab.clients()[hosts(2)[0]]["state"] == "WAIT", 20, "client WAIT")
    attacker = socket.create_connection((hosts(2)[0], port), timeout=30)
    attacker.sendall(b"\xff" * 4096)
    second = lab.start_client(hosts(2)[1])
    assert first.wait(60) == 0 and second.wait(60) == 0, lab.dump()
    assert "refused data connection" in first.output()
    attacker.close()
    for h in hosts(2):
        assert sha256_file(lab.disks / f"{h}.img") == sha256_file(image)


def test_bz2_image_is_restored_uncompressed_on_every_client(lab, tmp_path):
    import bz2

    raw = tmp_path / "raw.img"
    write_image(raw, 3 * MiB)
    data = raw.read_bytes() * 4
    (lab.images / "disk.img.bz2").write_bytes(bz2.compress(data))
    write_config(lab.images, hosts(2), filename="disk.img.bz2", compression="BZ2")
    lab.start_master()
    clients = [lab.start_client(h) for h in hosts(2)]
    for c in clients:
        assert c.wait(120) == 0, lab.dump()
    for h in hosts(2):
        assert (lab.disks / f"{h}.img").read_bytes() == data


def test_pre_and_post_image_scripts_run_with_master_substituted(lab):
    marks = lab.root / "marks"
    marks.mkdir()
    write_image(lab.images / "disk.img", 1 * MiB)
    write_config(
        lab.images, hosts(1),
        extra=f'  preImage = "echo pre #MASTER# > {marks}/pre"\n'
              f'  postImage = "echo post #MASTER# > {marks}/post"\n',
    )
    lab.start_master()
    assert lab.start_client(hosts(1)[0]).wait(60) == 0, lab.dump()
    assert (marks / "pre").read_text() == "pre 127.0.0.1\n"
    assert (marks / "post").read_text() == "post 127.0.0.1\n"


def test_failing_pre_image_script_is_error_and_writes_nothing(lab):
    write_image(lab.images / "disk.img", 1 * MiB)
    write_config(lab.images, hosts(1), extra='  preImage = "exit 3"\n')
    lab.start_master()
    assert lab.start_client(hosts(1)[0]).wait(60) == 1, lab.dump()
    client = lab.clients()[hosts(1)[0]]
    assert client["state"] == "ERROR" and "preImage exited with status 3" in client["error"]
    assert not (lab.disks / f"{hosts(1)[0]}.img").exists()


def test_master_skips_its_killed_first_hop_and_the_rest_finish_verified(lab):
    image = lab.images / "disk.img"
    write_image(image, 128 * MiB)
    write_config(lab.images, hosts(3), settings="report_timeout = 5\n")
    lab.start_master()
    c1, c2, c3 = [lab.start_client(h) for h in hosts(3)]
    kill_mid_stream(lab, c1, frozen=c3)
    assert c2.wait(90) == 0 and c3.wait(90) == 0, lab.dump()
    states = lab.wait_for(
        lambda: (s := lab.clients()) and s[hosts(3)[0]]["state"] == "ERROR" and s, 60,
        "the killed first client marked ERROR",
    )
    # Skipped by the master if it was still streaming; otherwise found lost by silence.
    error = states[hosts(3)[0]]["error"]
    assert "skipped by the master" in error or "no report from the client" in error
    for h in hosts(3)[1:]:
        assert states[h]["state"] == "DONE"
        assert sha256_file(lab.disks / f"{h}.img") == sha256_file(image)


def test_stopped_client_is_skipped_after_silence_and_probe(lab):
    """SIGSTOP, not kill: the client is stalled, its socket open. The hop before it
    notices no progress, probes it, gets no answer, and skips it."""
    image = lab.images / "disk.img"
    write_image(image, 128 * MiB)
    write_config(lab.images, hosts(3), settings="io_timeout = 2\nreport_timeout = 30\n")
    lab.start_master()
    c1, c2, c3 = [lab.start_client(h) for h in hosts(3)]
    lab.wait_for(lambda: "receiving img" in c2.output(), 60, "data reaching client 2")
    c2.kill(signal.SIGSTOP)
    try:
        assert c1.wait(90) == 0 and c3.wait(90) == 0, lab.dump()
        states = lab.clients()
        assert states[hosts(3)[1]]["state"] == "ERROR"
        assert "skipped by 127.0.0.11" in states[hosts(3)[1]]["error"]
        assert "no answer to a probe" in states[hosts(3)[1]]["error"] or \
            "could not take the stream" in states[hosts(3)[1]]["error"]
        for h in (hosts(3)[0], hosts(3)[2]):
            assert states[h]["state"] == "DONE"
            assert sha256_file(lab.disks / f"{h}.img") == sha256_file(image)
    finally:
        c2.kill(signal.SIGCONT)


def test_compressed_file_declared_raw_fails_the_round_with_the_reason_not_a_raw_copy(lab):
    import bz2

    (lab.images / "disk.img").write_bytes(bz2.compress(os.urandom(1 << 20)))
    write_config(lab.images, hosts(1))  # compression = "NONE": a forgotten declaration
    lab.start_master()
    assert lab.start_client(hosts(1)[0]).wait(60) == 1, lab.dump()
    image = lab.status()["images"][0]
    assert image["state"] == "error"
    assert 'starts like BZ2 data (42 5a 68' in image["error"]
    assert 'set compression = "BZ2"' in image["error"]
    client = lab.clients()[hosts(1)[0]]
    assert client["state"] == "ERROR" and "image img unusable: image file" in client["error"]
    assert not (lab.disks / f"{hosts(1)[0]}.img").exists() or \
        (lab.disks / f"{hosts(1)[0]}.img").stat().st_size == 0
