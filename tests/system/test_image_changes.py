"""An image file replaced or changed between or during rounds never yields DONE with
other bytes: the facts a round announces are those of the very bytes it streams.

Real master and client processes on 127.0.0.x; the image is changed the way admins do
it, with cp and cp -p (which keeps the old mtime), while the master runs or while it is
down.
"""

import os
import signal
import subprocess
import time

from tests.conftest import sha256_file, write_config

MiB = 1 << 20
A, B = "127.0.0.11", "127.0.0.12"


def image_with_zero_run(size: int = 8 * MiB) -> bytearray:
    """Random bytes around a long run of zeros (the master sends it as a ZERO record)."""
    data = bytearray(os.urandom(size))
    data[2 * MiB : 6 * MiB] = bytes(4 * MiB)
    return data


def inside_the_old_zero_run(old: bytearray) -> bytearray:
    """Other content of the same size that differs from `old` only where `old` was zero:
    streamed with the old zero map, it would arrive as the old image exactly."""
    new = bytearray(old)
    new[3 * MiB : 3 * MiB + 4096] = os.urandom(4096)
    return new


def round_of(lab, hosts, timeout: float = 60) -> None:
    clients = [lab.start_client(h) for h in hosts]
    for c in clients:
        assert c.wait(timeout) == 0, lab.dump()


def test_image_replaced_by_cp_between_rounds_is_hashed_again_and_every_disk_gets_the_new_bytes(lab, tmp_path):
    image = lab.images / "disk.img"
    old = image_with_zero_run()
    image.write_bytes(old)
    write_config(lab.images, [A, B])
    lab.start_master()
    round_of(lab, [A, B])
    new_file = tmp_path / "new.img"
    new_file.write_bytes(inside_the_old_zero_run(old))
    subprocess.run(["cp", str(new_file), str(image)], check=True)
    round_of(lab, [A, B])
    for h in (A, B):
        assert sha256_file(lab.disks / f"{h}.img") == sha256_file(new_file)
    last = lab.status()["history"][-1]
    assert last["sha256"] == sha256_file(new_file) and last["outcome"] == {A: "DONE", B: "DONE"}
    assert "changed on disk since it was hashed" in lab.procs[0].output()


def test_image_replaced_by_cp_p_while_the_master_was_down_is_not_trusted_from_its_sidecar(lab, tmp_path):
    """cp -p keeps size and mtime: only the inode's ctime tells the sidecar is stale."""
    image = lab.images / "disk.img"
    old = image_with_zero_run()
    image.write_bytes(old)
    write_config(lab.images, [A])
    lab.start_master()
    round_of(lab, [A])
    assert (lab.images / "disk.img.digest.json").exists()
    lab.kill_master()
    new_file = tmp_path / "new.img"
    new_file.write_bytes(inside_the_old_zero_run(old))
    mtime = image.stat().st_mtime_ns
    os.utime(new_file, ns=(mtime, mtime))
    subprocess.run(["cp", "-p", str(new_file), str(image)], check=True)
    assert image.stat().st_mtime_ns == mtime and image.stat().st_size == len(old)
    lab.start_master()
    round_of(lab, [A])
    assert sha256_file(lab.disks / f"{A}.img") == sha256_file(new_file)


def test_image_of_another_size_between_rounds_is_streamed_whole(lab, tmp_path):
    image = lab.images / "disk.img"
    image.write_bytes(os.urandom(4 * MiB))
    write_config(lab.images, [A, B])
    lab.start_master()
    round_of(lab, [A, B])
    image.write_bytes(os.urandom(6 * MiB + 123))
    round_of(lab, [A, B])
    for h in (A, B):
        assert sha256_file(lab.disks / f"{h}.img") == sha256_file(image)


def held_round(lab):
    """A round of A and B with a 256 MiB image, the last client stopped as soon as data
    reaches it: backpressure holds the chain (and the master's stream) mid-image until
    it goes on. (image path, clients)"""
    image = lab.images / "disk.img"
    image.write_bytes(os.urandom(256 * MiB))
    write_config(lab.images, [A, B], settings="io_timeout = 10\n")
    lab.start_master()
    clients = [lab.start_client(h) for h in (A, B)]
    lab.wait_for(lambda: "receiving img" in clients[-1].output(), 60, "data reaching the last client")
    clients[-1].kill(signal.SIGSTOP)
    time.sleep(0.5)
    return image, clients


def ended_with_the_image_changed(lab, clients) -> dict:
    """Every client ended ERROR saying the image changed; the round's record."""
    for c in clients:
        assert c.wait(60) == 1, lab.dump()
        assert "image changed during the round" in c.output()
    return lab.wait_for(lambda: (r := lab.round()) and r["phase"] == "finished" and r, 30,
                        "the round to finish")


def test_image_shortened_during_the_round_ends_every_client_error_and_the_group_can_start_again(lab, tmp_path):
    """`cp shorter.img disk.img` while streaming: the master's next read finds the end of
    the file before the declared size. The round ends, every client says why, and the
    next round starts (no 409, no restart)."""
    image, clients = held_round(lab)
    shorter = tmp_path / "shorter.img"
    shorter.write_bytes(os.urandom(4 * MiB))
    subprocess.run(["cp", str(shorter), str(image)], check=True)
    clients[-1].kill(signal.SIGCONT)
    r = ended_with_the_image_changed(lab, clients)
    assert "ended at byte" in r["error"] and "image changed during the round" in r["error"]
    assert {c["state"] for c in lab.clients().values()} == {"ERROR"}
    again = [lab.start_client(h) for h in (A, B)]
    lab.wait_for(lambda: {c["state"] for c in lab.clients().values()} == {"WAIT"}, 30, "all WAIT")
    r = lab.cli("start", "room")  # not 409: the round is over
    assert r.returncode == 0, r.stderr
    for c in again:  # and it takes the shorter image
        assert c.wait(60) == 0, lab.dump()
    for h in (A, B):
        assert sha256_file(lab.disks / f"{h}.img") == sha256_file(shorter)


def test_image_rewritten_in_place_during_the_round_ends_every_client_error_with_the_reason(lab):
    """Same size, other bytes, written into the file while the master streams it: what
    the master sent does not hash to what the round announced, so no client is DONE."""
    image, clients = held_round(lab)
    with open(image, "r+b") as f:
        f.seek(200 * MiB)
        f.write(os.urandom(MiB))
    clients[-1].kill(signal.SIGCONT)
    r = ended_with_the_image_changed(lab, clients)
    assert "image changed during the round" in r["error"]
    assert set(r["outcome"].values()) == {"ERROR"}


def test_image_renamed_over_during_the_round_leaves_the_round_on_the_file_it_started_with(lab, tmp_path):
    """rsync and most copy tools write a new file and rename it over the old one: the
    round keeps streaming the file it opened, verified, and the next round takes the
    new one."""
    image, clients = held_round(lab)
    first = sha256_file(image)
    fresh = lab.images / ".disk.img.new"
    fresh.write_bytes(os.urandom(4 * MiB))
    os.replace(fresh, image)
    clients[-1].kill(signal.SIGCONT)
    for c in clients:
        assert c.wait(60) == 0, lab.dump()
    for h in (A, B):
        assert sha256_file(lab.disks / f"{h}.img") == first
    round_of(lab, [A, B])
    for h in (A, B):
        assert sha256_file(lab.disks / f"{h}.img") == sha256_file(image)


# -- an empty image is no image ------------------------------------------------------------


def test_empty_image_is_refused_by_check_config_with_file_and_line(lab):
    from tests.conftest import ENV, thepusher

    (lab.images / "disk.img").write_bytes(b"")
    config = write_config(lab.images, [A])
    r = subprocess.run(thepusher("check-config", str(config)), env=ENV, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1
    assert f"{config}:1: image 'img': file {lab.images / 'disk.img'} is empty (0 bytes)" in r.stderr


def test_empty_image_is_unusable_at_the_master_and_no_disk_is_touched(lab):
    (lab.images / "disk.img").write_bytes(b"")
    write_config(lab.images, [A])
    lab.start_master()
    lab.wait_for(lambda: lab.status()["images"][0]["state"] == "error", 20, "the image refused")
    assert "is empty (0 bytes)" in lab.status()["images"][0]["error"]
    disk = lab.disks / f"{A}.img"
    disk.write_bytes(b"old data")
    client = lab.start_client(A)
    assert client.wait(30) == 1, lab.dump()
    assert "is empty (0 bytes)" in client.output()
    assert disk.read_bytes() == b"old data"


def test_empty_upload_is_refused_by_put_image_and_by_the_master(lab):
    import socket as socket_module

    from tests.conftest import ENV, read_to_end, thepusher, write_image

    write_image(lab.images / "disk.img", MiB)
    write_config(lab.images, [A])
    lab.start_master()
    empty = lab.root / "empty.img"
    empty.write_bytes(b"")
    r = subprocess.run(thepusher("put-image", "-i", str(empty), "-p", f"127.0.0.1:{lab.port}"),
                       env=ENV, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "is empty (0 bytes): nothing to upload" in r.stderr
    for framing in ({"Content-Length": "0"}, {"Transfer-Encoding": "chunked"}):
        sock = socket_module.create_connection(("127.0.0.1", lab.port), timeout=30)
        head = "PUT /api/images/empty.img HTTP/1.1\r\nHost: m\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in framing.items()) + "\r\n"
        body = b"0\r\n\r\n" if "Transfer-Encoding" in framing else b""
        sock.sendall(head.encode() + body)
        answer = read_to_end(sock).decode()
        sock.close()
        assert answer.startswith("HTTP/1.1 400") and "empty (0 bytes)" in answer, answer
    assert not (lab.images / "empty.img").exists()


def test_abort_ends_a_round_still_hashing_its_changed_image_at_once(lab, cpu_starved):
    """A round hashes a changed image before it tells any client anything; on a slow
    master and a big image that takes long, and an abort must not wait for it. The
    image: 8 GiB, nearly all of it a hole (hashing its zeros costs CPU, no disk); the
    master: a tenth of a CPU once the round starts, so hashing it again takes a minute
    or so."""
    image = lab.images / "disk.img"
    with open(image, "wb") as f:
        f.write(os.urandom(MiB))
        f.truncate(8 << 30)
    write_config(lab.images, [A], group='  start = "manual"\n')
    master = lab.start_master()
    lab.wait_for(lambda: lab.status()["images"][0]["state"] == "ready", 60, "the image hashed")
    client = lab.start_client(A)
    lab.wait_for(lambda: lab.clients()[A]["state"] == "WAIT", 20, "A waiting")
    with open(image, "r+b") as f:
        f.write(b"changed")
    (cpu_starved / "cpu.cfs_quota_us").write_text("10000")
    (cpu_starved / "cgroup.procs").write_text(str(master.popen.pid))
    assert lab.cli("start", "room").returncode == 0
    lab.wait_for(lambda: lab.round()["phase"] == "preparing", 10, "the round hashing")
    time.sleep(1)
    assert lab.round()["phase"] == "preparing"  # still hashing
    assert lab.cli("abort", "room").returncode == 0
    lab.wait_for(lambda: lab.round()["phase"] == "finished", 15, "the aborted round to end")
    assert client.wait(30) == 1, lab.dump()
    assert "aborted by the admin" in client.output()
    assert lab.status()["images"][0]["state"] == "hashing"  # not "error": nothing is wrong with it
