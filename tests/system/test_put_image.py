"""put-image and the master's image store: real master, real uploader processes, real
files (a pipe, a loop device, a tiny tmpfs), and hand-made requests for what a buggy or
hostile uploader sends. Whatever fails, nothing is left in the image directory.
Uploads come from 127.0.0.1, the master's own host, which may upload while the config
has no put_allowed; who else may (put_allowed, the upload token) is tried in
test_security_http.py."""

import bz2
import gzip
import hashlib
import json
import lzma
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import List, Tuple

import pytest

from tests.conftest import (
    ENV, Proc, free_port, read_to_end, thepusher, write_config, write_image,
)
from tests.support.fifo import open_fifo_writer
from thepusher.image.compress import ParallelCompressor
from thepusher.client.upload import LEVELS

MiB = 1 << 20
HINT = "add an image block"


def start(lab, settings: str = "", filename: str = "disk.img"):
    """A master whose config has one image (`filename`, present unless named 'later')."""
    if not filename.startswith("later"):
        write_image(lab.images / filename, MiB)
    write_config(lab.images, ["127.0.0.11"], filename=filename, settings=settings)
    lab.start_master()
    if not filename.startswith("later"):  # hashed, its sidecar written: the dir stays still
        lab.wait_for(lambda: lab.status()["images"][0]["state"] != "hashing", 30, "the image hashed")
    return lab


def put(lab, *args: str) -> subprocess.CompletedProcess:
    """`thepusher put-image ARGS -p MASTER`, as an admin runs it."""
    return subprocess.run(thepusher("put-image", *args, "-p", f"127.0.0.1:{lab.port}"), env=ENV,
                          capture_output=True, text=True, timeout=120)


def content(size: int) -> bytes:
    """Random data with a run of zeros, so compression has something to do."""
    return os.urandom(size // 2) + bytes(size // 4) + os.urandom(size - size // 2 - size // 4)


def source(lab, name: str, data: bytes) -> Path:
    path = lab.root / name
    path.write_bytes(data)
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(lab) -> List[str]:
    """Hidden files in the image dir: an upload's temp files and their sidecars."""
    return sorted(p.name for p in lab.images.iterdir() if p.name.startswith("."))


def assert_nothing_kept(lab, name: str) -> None:
    lab.wait_for(lambda: not leftovers(lab), 20, f"no temp files (found {leftovers(lab)})")
    assert not (lab.images / name).exists()
    assert not (lab.images / f"{name}.digest.json").exists()
    assert name not in [i["name"] for i in lab.status()["images"]]


def listed(lab, name: str) -> dict:
    return next(i for i in lab.status()["images"] if i["name"] == name)


def sidecar(lab, name: str) -> dict:
    return json.loads((lab.images / f"{name}.digest.json").read_text())


def raw_put(lab, path: str, headers: dict, body: bytes = b"") -> socket.socket:
    """Send a hand-made PUT request (head and `body`) and return the open socket."""
    sock = socket.create_connection(("127.0.0.1", lab.port), timeout=60)
    head = f"PUT {path} HTTP/1.1\r\nHost: master\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(head.encode() + body)
    return sock


def answer(sock: socket.socket) -> Tuple[int, dict]:
    """The master's answer; it closes upload connections, so read to the end."""
    data = read_to_end(sock)
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def chunked(*chunks: bytes, trailer: str = "") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + f"0\r\n{trailer}\r\n".encode()


def uploading(lab, least: int = 1) -> List[Path]:
    """Temp files of uploads under way that have received `least` bytes."""
    return [p for p in lab.images.iterdir() if ".upload-" in p.name and p.stat().st_size >= least]


# -- the admin's path --------------------------------------------------------------------


def test_upload_stores_identical_bytes_with_digest_listed_unconfigured_also_after_restart(lab):
    start(lab)
    data = os.urandom(9 * MiB + 123)  # not a whole number of blocks
    result = put(lab, "-i", str(source(lab, "sda", data)))
    assert result.returncode == 0, result.stderr
    assert "stored sda" in result.stdout and sha(data) in result.stdout and HINT in result.stdout
    assert (lab.images / "sda").read_bytes() == data
    facts = sidecar(lab, "sda")
    assert facts["sha256"] == sha(data) and facts["content_size"] == facts["stream_size"] == len(data)
    assert not leftovers(lab)
    for _ in range(2):  # before and after a master restart
        image = listed(lab, "sda")
        assert image["configured"] is False and 'filename = "sda"' in image["hint"]
        assert (image["state"], image["sha256"], image["size"]) == ("ready", sha(data), len(data))
        assert listed(lab, "img")["configured"] is True
        lab.procs[0].stop()
        lab.start_master()
    status = subprocess.run(thepusher("status", "-p", f"127.0.0.1:{lab.port}"), env=ENV,
                            capture_output=True, text=True, timeout=30)
    assert "sda" in status.stdout and "not configured" in status.stdout


@pytest.mark.parametrize("fmt, compression, decompress", [
    ("gz", "GZIP", gzip.decompress), ("bz2", "BZ2", bz2.decompress), ("xz", "XZ", lzma.decompress),
])
def test_compressed_upload_is_the_parallel_compressors_output_and_digest_is_of_the_content(
        lab, fmt, compression, decompress):
    start(lab)
    data = content(17 * MiB)  # more than one chunk of every format: several streams
    result = put(lab, "-i", str(source(lab, "disk2.img", data)), "--compress", fmt)
    assert result.returncode == 0, result.stderr
    name = f"disk2.img.{fmt}"
    stored = (lab.images / name).read_bytes()
    assert len(stored) < len(data) and decompress(stored) == data
    with ParallelCompressor(fmt, LEVELS.get(fmt)) as offline:
        assert stored == b"".join(list(offline.feed(data)) + list(offline.finish()))
        assert offline.streams > 1
    facts = sidecar(lab, name)
    assert facts["sha256"] == sha(data) and facts["content_size"] == len(data)
    assert facts["stream_size"] == len(stored)
    image = listed(lab, name)
    assert image["compression"] == compression and f'compression = "{compression}"' in image["hint"]


def test_taken_name_is_409_client_exits_1_telling_to_pass_n_and_original_is_untouched(lab):
    start(lab)
    first = os.urandom(2 * MiB)
    assert put(lab, "-i", str(source(lab, "a.img", first)), "-n", "room.img").returncode == 0
    before = (lab.images / "room.img.digest.json").read_text()
    for name in ("room.img", "disk.img"):  # an upload's, and the configured image's file
        original = (lab.images / name).read_bytes()
        result = put(lab, "-i", str(source(lab, "b.img", os.urandom(MiB))), "-n", name)
        assert result.returncode == 1
        for words in ("409", "already exists", "never overwritten", "-n NAME", "b.img",
                      f"127.0.0.1:{lab.port}", "at byte 0"):
            assert words in result.stderr
        assert (lab.images / name).read_bytes() == original
    assert (lab.images / "room.img.digest.json").read_text() == before
    assert put(lab, "-i", str(lab.root / "b.img"), "-n", "room2.img").returncode == 0
    assert not leftovers(lab)


def test_upload_of_the_file_a_configured_image_waits_for_makes_it_ready(lab):
    start(lab, filename="later.img")
    assert listed(lab, "img")["state"] == "error"
    data = os.urandom(3 * MiB)
    result = put(lab, "-i", str(source(lab, "x", data)), "-n", "later.img")
    assert result.returncode == 0 and "image img of the config uses it" in result.stdout
    image = listed(lab, "img")
    assert (image["state"], image["sha256"], image["configured"]) == ("ready", sha(data), True)
    assert [i["name"] for i in lab.status()["images"]] == ["img"]


def test_block_device_is_uploaded_whole_under_its_name(lab):
    if os.geteuid() != 0 or not shutil.which("losetup"):
        pytest.skip("needs root and losetup")
    start(lab)
    data = os.urandom(8 * MiB)
    backing = source(lab, "backing", data)
    dev = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True)
    if dev.returncode != 0:
        pytest.skip(f"no loop device available: {dev.stderr.strip()}")
    device = dev.stdout.strip()
    try:
        result = put(lab, "-i", device)
    finally:
        subprocess.run(["losetup", "-d", device], check=False)
    name = os.path.basename(device)
    assert result.returncode == 0, result.stderr
    assert (lab.images / name).read_bytes() == data and sidecar(lab, name)["sha256"] == sha(data)


def test_two_uploads_of_different_names_at_once_both_complete(lab):
    start(lab)
    pipes, procs, fds, data = [], [], [], []
    for i in range(2):
        pipes.append(lab.root / f"pipe{i}")
        os.mkfifo(pipes[i])
        procs.append(Proc(f"put{i}", ["put-image", "-p", f"127.0.0.1:{lab.port}", "-i", str(pipes[i]),
                                      "-n", f"up{i}.img"], lab.logs))
        lab.procs.append(procs[i])
        fds.append(open_fifo_writer(pipes[i]))
        data.append(os.urandom(4 * MiB))
    for i in range(2):
        os.write(fds[i], data[i][:MiB])
    lab.wait_for(lambda: len(uploading(lab)) == 2, 20, "both uploads under way")
    for i in range(2):
        os.write(fds[i], data[i][MiB:])
        os.close(fds[i])
    for i in range(2):
        assert procs[i].wait(60) == 0, procs[i].output()
        assert (lab.images / f"up{i}.img").read_bytes() == data[i]
    assert not leftovers(lab)


@pytest.mark.skipif(not shutil.which("curl"), reason="needs curl")
def test_curl_upload_with_content_length_is_stored_and_checked_against_a_digest_header(lab):
    start(lab)
    data = os.urandom(3 * MiB)  # over curl's 1 MiB threshold for Expect: 100-continue
    path = source(lab, "curl.img", data)
    url = f"http://127.0.0.1:{lab.port}/api/images/"
    ok = subprocess.run(["curl", "-sS", "-T", str(path), url], capture_output=True, text=True, timeout=60)
    assert json.loads(ok.stdout)["sha256"] == sha(data)  # curl -T DIR/ appends the file name
    assert (lab.images / "curl.img").read_bytes() == data
    bad = subprocess.run(["curl", "-sS", "-T", str(path), "-H", f"X-Content-SHA256: {'0' * 64}",
                          url + "curl2.img"], capture_output=True, text=True, timeout=60)
    assert "corrupted on the way" in json.loads(bad.stdout)["error"]
    assert_nothing_kept(lab, "curl2.img")


# -- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/api/images/../x", "/api/images/.hidden", "/api/images/a/b", "/api/images/",
    "/api/images/a%2Fb", "/api/images/a%20b", "/api/images/" + "a" * 129,
    "/api/images/thePusher-config.hcl", "/api/images/thepusher-history.json",
    "/api/images/x.digest.json", "/api/images/..", "/api/images/.", "/api/images/%2e%2e%2fx",
    "/api/images/..%2f..%2fetc%2fpasswd", "/api/images/%2fetc%2fpasswd", "/api/images/..%5cx",
    "/api/images/%252e%252e%252fx", "/api/images/x%00.img", "/api/images/-rf",
    "/api/images/--help.img",
])
def test_bad_name_is_400_with_the_rule_and_nothing_is_written(lab, path):
    start(lab)
    before = sorted(p.name for p in lab.images.iterdir())
    config = (lab.images / "thePusher-config.hcl").read_text()
    status, body = answer(raw_put(lab, path, {"Content-Length": "4"}, b"data"))
    assert status == 400 and "name" in body["error"]
    assert sorted(p.name for p in lab.images.iterdir()) == before
    assert (lab.images / "thePusher-config.hcl").read_text() == config


@pytest.mark.parametrize("headers, body, status, message", [
    ({}, b"", 411, "Content-Length"),
    ({"Transfer-Encoding": "gzip"}, b"", 400, "not supported"),
    ({"Content-Length": "4", "X-Compression": "GZIP"}, b"data", 400, "must end in .gz"),
    ({"Content-Length": "5", "X-Content-Size": "9"}, b"hello", 422, "uploader says 9"),
])
def test_request_the_master_cannot_take_as_an_image_is_refused_and_nothing_kept(
        lab, headers, body, status, message):
    start(lab)
    got, answer_body = answer(raw_put(lab, "/api/images/x.img", headers, body))
    assert got == status and message in answer_body["error"]
    assert_nothing_kept(lab, "x.img")


def test_data_that_is_not_what_the_name_says_is_400_and_nothing_kept(lab):
    start(lab)
    status, body = answer(raw_put(lab, "/api/images/x.img.gz", {"Content-Length": str(MiB)},
                                  os.urandom(MiB)))
    assert status == 400 and "GZIP data is corrupt" in body["error"]
    assert_nothing_kept(lab, "x.img.gz")


@pytest.mark.parametrize("body", [
    b"zz\r\nhello\r\n0\r\n\r\n",  # size not hexadecimal
    b"5\r\nhelloXX\r\n0\r\n\r\n",  # chunk longer than its size
    b"1" * 2000 + b"\r\n",  # endless size line
    b"5\r\nhello\r\n0\r\nno colon\r\n\r\n",  # bad trailer
])
def test_bad_chunk_framing_is_400_and_nothing_kept(lab, body):
    start(lab)
    status, answer_body = answer(raw_put(lab, "/api/images/x.img", {"Transfer-Encoding": "chunked"}, body))
    assert status == 400 and "bad chunked encoding" in answer_body["error"]
    assert_nothing_kept(lab, "x.img")
    assert lab.status()["images"]


def test_wrong_trailer_digest_is_422_and_nothing_kept_right_one_is_stored(lab):
    start(lab)
    head = {"Transfer-Encoding": "chunked", "Trailer": "X-Content-SHA256"}
    wrong = chunked(b"hello", b" world", trailer=f"X-Content-SHA256: {'0' * 64}\r\n")
    status, body = answer(raw_put(lab, "/api/images/x.img", head, wrong))
    assert status == 422 and sha(b"hello world") in body["error"]
    assert_nothing_kept(lab, "x.img")
    right = chunked(b"hello", b" world", trailer=f"X-Content-SHA256: {sha(b'hello world')}\r\n")
    status, body = answer(raw_put(lab, "/api/images/x.img", head, right))
    assert status == 201 and body["size"] == 11 and (lab.images / "x.img").read_bytes() == b"hello world"


def test_uploader_killed_mid_upload_leaves_nothing_and_master_serves_on(lab):
    start(lab)
    pipe = lab.root / "pipe"
    os.mkfifo(pipe)
    uploader = Proc("put", ["put-image", "-p", f"127.0.0.1:{lab.port}", "-i", str(pipe),
                            "-n", "pipe.img"], lab.logs)
    lab.procs.append(uploader)
    fd = open_fifo_writer(pipe)
    os.write(fd, os.urandom(4 * MiB))
    lab.wait_for(lambda: uploading(lab), 20, "the upload under way")
    uploader.kill(signal.SIGKILL)
    uploader.popen.wait(10)
    os.close(fd)
    assert_nothing_kept(lab, "pipe.img")
    assert put(lab, "-i", str(source(lab, "again", b"x" * MiB)), "-n", "pipe.img").returncode == 0


def test_connection_dropped_mid_body_leaves_nothing_and_the_name_stays_free(lab):
    start(lab)
    sock = raw_put(lab, "/api/images/x.img", {"Content-Length": str(4 * MiB)}, os.urandom(MiB))
    lab.wait_for(lambda: uploading(lab), 20, "the upload under way")
    sock.close()  # half the body, then gone
    assert_nothing_kept(lab, "x.img")
    assert "failed at byte" in lab.procs[0].output()
    status, body = answer(raw_put(lab, "/api/images/x.img", {"Content-Length": "2"}, b"ok"))
    assert status == 201 and (lab.images / "x.img").read_bytes() == b"ok"


def test_stalled_uploader_is_cut_off_after_io_timeout_and_leaves_nothing(lab):
    start(lab, settings="io_timeout = 1\n")
    sock = raw_put(lab, "/api/images/x.img", {"Transfer-Encoding": "chunked"},
                   b"100000\r\n" + os.urandom(1000))  # 1 MiB announced, then silence
    status, body = answer(sock)
    assert status == 408 and "no data for 1 s at byte 1000" in body["error"]
    assert_nothing_kept(lab, "x.img")


def test_second_upload_of_a_name_under_way_is_409_and_the_first_completes(lab):
    start(lab)
    first = raw_put(lab, "/api/images/x.img", {"Transfer-Encoding": "chunked"}, b"5\r\nhel")
    lab.wait_for(lambda: uploading(lab), 20, "the first upload under way")
    status, body = answer(raw_put(lab, "/api/images/x.img", {"Content-Length": "2"}, b"hi"))
    assert status == 409 and "under way" in body["error"]
    first.sendall(b"lo\r\n" + chunked(b" world"))
    status, body = answer(first)
    assert status == 201 and (lab.images / "x.img").read_bytes() == b"hello world"


def test_temp_files_of_a_dead_master_are_removed_at_start(lab):
    dead = subprocess.Popen(["true"])
    dead.wait()
    for leftover in (f".x.img.upload-{dead.pid}-1", f".x.img.upload-{dead.pid}-1.digest.json"):
        (lab.images / leftover).write_bytes(b"partial")
    start(lab)
    assert not leftovers(lab)


def test_uploader_that_cannot_start_exits_1_saying_why(lab):
    start(lab)
    missing = put(lab, "-i", "/nonexistent/disk")
    assert missing.returncode == 1
    assert "cannot read /nonexistent/disk: No such file or directory" in missing.stderr
    nobody = subprocess.run(
        thepusher("put-image", "-i", str(source(lab, "x", b"x")), "-p", f"127.0.0.1:{free_port()}"),
        env=ENV, capture_output=True, text=True, timeout=60,
    )
    assert nobody.returncode == 1 and "cannot reach the master" in nobody.stderr


# -- a full image directory -------------------------------------------------------------


@pytest.fixture
def small_image_dir(lab):
    """The lab's image dir on a real 96 MiB filesystem (tmpfs), mounted for this test:
    an upload must leave 64 MiB free, so 32 MiB fit."""
    if os.geteuid() != 0:
        pytest.skip("mounting a filesystem needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(lab.images)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {r.stderr.strip()}")
    yield lab
    lab.close()
    subprocess.run(["umount", "-l", str(lab.images)], check=False)


def test_upload_that_would_fill_the_disk_is_507_with_a_message_and_nothing_kept(small_image_dir):
    lab = start(small_image_dir)
    big = source(lab, "big.img", os.urandom(48 * MiB))
    result = put(lab, "-i", str(big))  # its size is known: refused before a byte is sent
    assert result.returncode == 1 and "507" in result.stderr and "not enough space" in result.stderr
    assert "at byte 0 of" in result.stderr
    assert_nothing_kept(lab, "big.img")
    result = put(lab, "-i", str(big), "--compress", "gz")  # size unknown: refused on the way
    assert result.returncode == 1 and "507" in result.stderr and "must stay free" in result.stderr
    assert_nothing_kept(lab, "big.img.gz")
    assert put(lab, "-i", str(source(lab, "small.img", os.urandom(4 * MiB)))).returncode == 0
