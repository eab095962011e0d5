"""Free ranges of compressed images (issue 20): a gz/bz2/xz of a raw image with the raw
image's bmap next to it (NAME.img.gz.bmap, or NAME.img.bmap as bmaptool also looks)
keeps its free map. The stream stays the compressed bytes, as version 2 with the free
map's figures; each client fetches the map from the master, believes it only for the
digest in its start, and skips the decoded bytes in the free ranges. The raw image holds
garbage there and every target starts full of 0xff, as in test_free_runs.py."""

import bz2
import dataclasses
import gzip
import hashlib
import http.client
import lzma
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import pytest

from tests.conftest import write_config
from tests.support.hops import RunningHop, send_stream
from tests.support.hosts import hosts
from tests.system.test_chain import kill_mid_stream
from tests.system.test_free_runs import (
    BLOCK, MiB, check_disks, check_done, defined_sha, free_image, old_client_in_the_middle,
    prefill,
)
from thepusher.chain import wire
from thepusher.image import freemap

COMPRESS = {
    "GZIP": ("gz", lambda data: gzip.compress(data, compresslevel=1)),
    "BZ2": ("bz2", lambda data: bz2.compress(data, 1)),
    "XZ": ("xz", lambda data: lzma.compress(data, preset=1)),
}


def compressed_image(lab, compression, size, seed=20, stripped=False, change=None):
    """disk.img.SUFFIX in the image dir, the bmap of its raw image beside it (named
    disk.img.bmap when `stripped`); `change(raw_path, mapped)` alters the raw image after
    its bmap was made. Returns the raw image's path, its mapped and its free runs, and
    the compressed image's file name."""
    raw = lab.root / "disk.img"
    mapped, free = free_image(raw, size, seed)
    if change is not None:
        change(raw, mapped)
    suffix, compress = COMPRESS[compression]
    filename = f"disk.img.{suffix}"
    (lab.images / filename).write_bytes(compress(raw.read_bytes()))
    os.rename(str(raw) + ".bmap", lab.images / ("disk.img.bmap" if stripped else filename + ".bmap"))
    return raw, mapped, free, filename


def image_error(lab):
    return lab.wait_for(lambda: next((i for i in lab.status()["images"]
                                      if i["state"] == "error"), None), 60, "the image's error")


@pytest.mark.parametrize("compression,stripped,verify", [("GZIP", False, "write"),
                                                         ("XZ", True, "readback")])
def test_a_compressed_image_keeps_its_free_ranges_untouched_on_three_clients(
        lab, compression, stripped, verify):
    raw, mapped, free, filename = compressed_image(lab, compression, 24 * MiB, stripped=stripped)
    write_config(lab.images, hosts(3), filename=filename, compression=compression,
                 extra=f'  verify = "{verify}"\n')
    prefill(lab, 3, 24 * MiB)
    lab.start_master()
    clients = [lab.start_client(h) for h in hosts(3)]
    for c in clients:
        assert c.wait(120) == 0, lab.dump()
    check_disks(raw, [lab.disks / f"{h}.img" for h in hosts(3)], mapped, free)
    img, sidecar = check_done(lab, hosts(3), verify, defined_sha(raw, free), free, filename)
    compressed = (lab.images / filename).read_bytes()
    assert sidecar["stream_sha256"] == hashlib.sha256(compressed).hexdigest()
    assert img["size"] == len(compressed)


def test_a_range_that_does_not_match_the_bmap_is_an_image_error_naming_it(lab):
    def damage(raw, mapped):
        with open(raw, "r+b") as f:
            f.seek(mapped[1][0])
            f.write(b"\x00\x01\x02")

    _, mapped, _, filename = compressed_image(lab, "GZIP", 4 * MiB, change=damage)
    write_config(lab.images, hosts(1), filename=filename, compression="GZIP")
    lab.start_master()
    img = image_error(lab)
    offset = mapped[1][0]
    assert "disk.img.gz.bmap: range" in img["error"], img
    assert f"range {offset // BLOCK}-" in img["error"] and f"(bytes {offset}-" in img["error"], img
    assert "hashes to" in img["error"], img


def test_a_bmap_of_another_size_is_an_image_error_saying_what_it_decompresses_to(lab):
    def grow(raw, mapped):
        with open(raw, "ab") as f:
            f.write(b"\x01" * BLOCK)

    _, _, _, filename = compressed_image(lab, "XZ", 4 * MiB, change=grow)
    write_config(lab.images, hosts(1), filename=filename, compression="XZ")
    lab.start_master()
    img = image_error(lab)
    assert "disk.img.xz.bmap is for an image of 4194304 bytes" in img["error"], img
    assert "decompresses to 4198400" in img["error"], img


def test_a_client_that_predates_free_records_refuses_the_compressed_version_2_stream(
        lab, old_client):
    raw, mapped, free, filename = compressed_image(lab, "GZIP", 8 * MiB)
    write_config(lab.images, hosts(3), filename=filename, compression="GZIP",
                 settings="io_timeout = 3\naccept_timeout = 6\n")
    prefill(lab, 3, 8 * MiB)
    old_client_in_the_middle(lab, old_client, 8 * MiB)
    check_disks(raw, [lab.disks / f"{h}.img" for h in (hosts(3)[0], hosts(3)[2])], mapped, free)


class Relay:
    """A real HTTP server between one client and the master: passes every request on
    from the client's own address (the master knows clients by it) and hands back the
    answer, with the free map's bytes changed by `tamper`."""

    def __init__(self, master_port, tamper):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self._relay()

            def do_POST(self):
                self._relay()

            def _relay(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conn = http.client.HTTPConnection("127.0.0.1", master_port, timeout=60,
                                                  source_address=(self.client_address[0], 0))
                headers = {k: v for k, v in self.headers.items()
                           if k in ("Content-Type", "X-Thepusher-Auth")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if self.path.startswith("/api/free-map") and resp.status == 200:
                    data = tamper(data)
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.getheader("Content-Type", ""))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_tampered_free_map_is_refused_and_that_client_writes_nothing_but_forwards(lab):
    """The map served to the first client lacks its first run: taken, the client would
    write the image's garbage over that range. Its start's digest says no; it writes
    not a byte, ends ERROR naming the refusal, and the client after it is DONE."""
    raw, mapped, free, filename = compressed_image(lab, "GZIP", 8 * MiB)
    prefill(lab, 2, 8 * MiB)
    write_config(lab.images, hosts(2), filename=filename, compression="GZIP")
    lab.start_master()
    relay = Relay(lab.port, lambda data: data[freemap.RUN_SIZE:])
    try:
        first = lab.start_client(hosts(2)[0], None, "-p", f"127.0.0.1:{relay.port}")
        second = lab.start_client(hosts(2)[1])
        assert second.wait(60) == 0, lab.dump()
        assert first.wait(60) != 0, lab.dump()
    finally:
        relay.close()
    assert "free map refused" in first.output(), first.output()
    assert (lab.disks / f"{hosts(2)[0]}.img").read_bytes() == b"\xff" * (8 * MiB)
    states = lab.clients()
    assert states[hosts(2)[0]]["state"] == "ERROR" and "free map" in states[hosts(2)[0]]["error"]
    assert states[hosts(2)[1]]["state"] == "DONE", states[hosts(2)[1]]
    check_disks(raw, [lab.disks / f"{hosts(2)[1]}.img"], mapped, free)


def test_killed_middle_client_heals_and_what_the_master_resends_is_the_compressed_stream(lab):
    """The hop after the killed one gets what it lacks from the master: by a gap fill
    (records=1: DATA only, the free map names decoded bytes) or fed by the master itself
    once the others are done, whichever comes first; either way the stream's own bytes,
    never FREE records at offsets of the decoded image."""
    raw, mapped, free, filename = compressed_image(lab, "GZIP", 160 * MiB, seed=7)
    write_config(lab.images, hosts(3), filename=filename, compression="GZIP",
                 settings="report_timeout = 5\nreplay_window = 1\n")
    prefill(lab, 3, 160 * MiB)
    master = lab.start_master()
    c1, c2, c3 = [lab.start_client(h) for h in hosts(3)]
    kill_mid_stream(lab, victim=c2, frozen=c3)
    assert c3.wait(120) == 0, lab.dump()
    assert c1.wait(120) == 0, lab.dump()
    assert "fetching stream bytes" in c3.output() or "the master feeds it" in master.output()
    states = lab.wait_for(lambda: (s := lab.clients()) and s[hosts(3)[1]]["state"] == "ERROR"
                          and s, 60, "the killed client marked ERROR")
    for h in (hosts(3)[0], hosts(3)[2]):
        assert states[h]["state"] == "DONE", states[h]
        assert states[h]["free_bytes"] == sum(n for _, n in free)
    check_disks(raw, [lab.disks / f"{h}.img" for h in (hosts(3)[0], hosts(3)[2])], mapped, free)


def fetch(lab, path, mac):
    conn = http.client.HTTPConnection("127.0.0.1", lab.port, timeout=10)
    try:
        conn.request("GET", path, headers={"X-Thepusher-Auth": mac})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_a_compressed_rounds_gap_fill_records_are_its_bytes_and_its_free_map_is_served(lab):
    """The test plays the round's one client, for its start (session and secret)."""
    _, _, free, filename = compressed_image(lab, "GZIP", 4 * MiB)
    write_config(lab.images, hosts(1), filename=filename, compression="GZIP")
    lab.start_master()
    host = hosts(1)[0]
    lab.call("POST", "/api/register", {"data_port": 9}, host)
    lab.call("POST", "/api/ready", {}, host)
    _, start = lab.call("GET", "/api/next?wait=20", None, host)
    assert start.get("free_map_sha256") == freemap.digest(free), start
    session, secret = start["session"], bytes.fromhex(start["secret"])
    data = (lab.images / filename).read_bytes()
    query = f"/api/range?session={session}&offset=0&length={len(data)}&records=1"
    status, body = fetch(lab, query, wire.range_mac(secret, session, 0, len(data)))
    assert status == 200
    got, pos = b"", 0
    while pos < len(body):
        kind, length, offset = wire.unpack_head(body[pos : pos + wire.HEAD_SIZE])
        assert (kind, offset) == (wire.DATA, len(got))
        got += body[pos + wire.HEAD_SIZE : pos + wire.HEAD_SIZE + length]
        pos += wire.HEAD_SIZE + length
    assert got == data
    status, body = fetch(lab, f"/api/free-map?session={session}", wire.free_map_mac(secret, session))
    assert status == 200 and body == freemap.encode(free)
    assert hashlib.sha256(body).hexdigest() == start["free_map_sha256"]
    status, _ = fetch(lab, f"/api/free-map?session={session}", wire.free_map_mac(b"x" * 32, session))
    assert status == 403


# -- one hop, in this process ------------------------------------------------------------


def hop_case(tmp_path, compression="BZ2"):
    """A compressed stream of content whose middle is free (garbage in the stream), the
    header the master would sign for it, and a destination full of 0xff."""
    content = os.urandom(1000) + b"\xa5" * (3 << 20) + os.urandom(7)
    free = [(1000, 3 << 20)]
    defined = content[:1000] + bytes(3 << 20) + content[-7:]
    data = COMPRESS[compression][1](content)
    header = dataclasses.replace(
        wire.StreamHeader(session="sess1", image="test", stream_size=len(data),
                          content_size=len(content),
                          content_sha256=hashlib.sha256(defined).hexdigest(),
                          compression=compression, record_size=64 * 1024),
        version=wire.FREE_VERSION, free_bytes=3 << 20, free_map_sha256=freemap.digest(free))
    dest = tmp_path / "disk"
    dest.write_bytes(b"\xff" * len(content))
    return content, free, data, header, dest


def test_a_hop_skips_the_decoded_bytes_its_free_map_names(tmp_path):
    content, free, data, header, dest = hop_case(tmp_path)
    h = RunningHop(dest, header=header, free_runs=free)
    send_stream(h.address, data, header=header)
    hop = h.wait()
    assert hop.verified, hop.error
    assert hop.free_bytes == 3 << 20
    assert dest.read_bytes() == content[:1000] + b"\xff" * (3 << 20) + content[-7:]


def test_a_hop_without_its_free_map_writes_nothing_and_says_why(tmp_path):
    _, _, data, header, dest = hop_case(tmp_path, "GZIP")
    h = RunningHop(dest, header=header, free_map_error="master refused the free map: 404")
    send_stream(h.address, data, header=header)
    hop = h.wait()
    assert not hop.verified
    assert "no free map (master refused the free map: 404)" in hop.error, hop.error
    assert dest.read_bytes() == b"\xff" * header.content_size
