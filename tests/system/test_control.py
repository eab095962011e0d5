"""An admin steering the master: abort, wake, adding hosts to groups, the admin token,
the live event stream and /metrics. Real master and client processes on 127.0.0.x."""

import http.client
import json
import signal
import socket
import subprocess
import threading
import time

import pytest

from tests.conftest import ENV, sha256_file, thepusher, write_config, write_image

MiB = 1 << 20
A, B, C = "127.0.0.11", "127.0.0.12", "127.0.0.13"
TOKEN = "correct-horse-battery"


def call(lab, method, path, body=None, source="127.0.0.1", token=None):
    conn = http.client.HTTPConnection("127.0.0.1", lab.port, timeout=10, source_address=(source, 0))
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-Admin-Token"] = token
    try:
        conn.request(method, path, body=json.dumps(body if body is not None else {}).encode(),
                     headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def group(lab):
    return lab.status()["groups"][0]


# -- abort ---------------------------------------------------------------------------


def test_abort_stops_the_round_every_client_ends_error_and_the_group_waits_for_start(lab):
    write_image(lab.images / "disk.img", 512 * MiB)
    write_config(lab.images, [A, B, C])
    lab.start_master()
    clients = [lab.start_client(h) for h in (A, B, C)]
    # Hold the chain mid-stream: the last client stopped, backpressure stalls the rest.
    lab.wait_for(lambda: "receiving img" in clients[2].output(), 60, "data reaching the last client")
    clients[2].kill(signal.SIGSTOP)
    r = lab.cli("abort", "room")
    assert r.returncode == 0, r.stderr
    assert "round 1 aborted; the group starts again only with start or retry" in r.stdout
    clients[2].kill(signal.SIGCONT)
    for c in clients:
        assert c.wait(60) == 1, lab.dump()
        assert "aborted by the admin at 127.0.0.1" in c.output()
    lab.wait_for(lambda: group(lab)["round"]["phase"] == "finished", 30, "the round to finish")
    g = group(lab)
    assert g["round"]["aborted"] is True and g["held"] is True
    assert {c["state"] for c in g["clients"]} == {"ERROR"}
    assert all("round 1 aborted by the admin at 127.0.0.1" in c["error"] for c in g["clients"])
    assert g["round"]["bytes_sent"] < 512 * MiB

    # The clients come back: the group does not start again by itself ...
    again = [lab.start_client(h) for h in (A, B, C)]
    lab.wait_for(lambda: {c["state"] for c in group(lab)["clients"]} == {"WAIT"}, 30, "all WAIT")
    time.sleep(1.5)
    assert group(lab)["round"]["number"] == 1
    # ... until the admin says so.
    assert lab.cli("start", "room").returncode == 0
    for c in again:
        assert c.wait(120) == 0, lab.dump()
    assert sha256_file(lab.disks / f"{C}.img") == sha256_file(lab.images / "disk.img")
    assert group(lab)["held"] is False


@pytest.mark.parametrize("path, status, message", [
    ("/api/groups/room/abort", 409, "group room: no round is running"),
    ("/api/groups/nope/abort", 404, "no client group 'nope' (groups: room)"),
    ("/api/groups/room/explode", 404, "actions: start, retry, abort, wake"),
])
def test_abort_and_unknown_actions_answer_with_a_reason(lab, path, status, message):
    write_image(lab.images / "disk.img", MiB)
    write_config(lab.images, [A])
    lab.start_master()
    got, body = call(lab, "POST", path)
    assert got == status and message in body["error"]


# -- wake ----------------------------------------------------------------------------


def test_wake_sends_magic_packets_for_configured_and_registered_macs(lab):
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(5)
    port = listener.getsockname()[1]
    write_image(lab.images / "disk.img", MiB)
    write_config(lab.images, [A, B, C], settings=f'wake_address = "127.0.0.1:{port}"\n',
                 group=f'  macs = {{ "{A}" = "52-54-00-AA-00-01" }}\n')
    lab.start_master()
    call(lab, "POST", "/api/register", {"data_port": 9, "mac": "52:54:00:aa:00:02"}, source=B)
    call(lab, "POST", "/api/register", {"data_port": 9, "mac": "52:54:00:aa:00:02"}, source=B)
    r = lab.cli("wake", "room")
    assert r.returncode == 0, r.stderr
    assert f"woke 2 hosts; MAC unknown (add it to the group's macs): {C}" in r.stdout
    packets = [listener.recvfrom(1024)[0] for _ in range(6)]
    listener.close()
    expected = {b"\xff" * 6 + bytes.fromhex(mac) * 16 for mac in ("525400aa0001", "525400aa0002")}
    assert set(packets) == expected
    assert all(len(p) == 102 for p in packets)
    shown = {c["host"]: c["mac"] for c in group(lab)["clients"]}
    assert shown[A] == "52:54:00:aa:00:01" and shown[B] == "52:54:00:aa:00:02"


def test_registered_mac_is_remembered_across_a_master_restart(lab):
    write_image(lab.images / "disk.img", MiB)
    write_config(lab.images, [A])
    master = lab.start_master()
    call(lab, "POST", "/api/register", {"data_port": 9, "mac": "52:54:00:aa:00:07"}, source=A)
    master.stop()
    lab.start_master()
    assert group(lab)["clients"][0]["mac"] == "52:54:00:aa:00:07"


# -- unassigned hosts ----------------------------------------------------------------


def test_unassigned_client_added_from_the_api_is_imaged_and_stays_after_a_restart(lab):
    stray = "127.0.0.99"
    write_image(lab.images / "disk.img", 8 * MiB)
    write_config(lab.images, [A], group='  start = "manual"\n')
    master = lab.start_master()
    clients = [lab.start_client(A), lab.start_client(stray)]
    lab.wait_for(lambda: [c["host"] for c in lab.status()["unassigned"]] == [stray], 30,
                 "the stray client to register")
    status, body = call(lab, "POST", f"/api/hosts/{stray}/group", {"group": "room"})
    assert status == 200 and body["message"] == f"{stray} added to group room (position 2)"
    assert lab.status()["unassigned"] == []
    # Its client asks again within 10 s, gets the task and becomes ready.
    lab.wait_for(lambda: lab.clients().get(stray, {}).get("state") == "WAIT", 30, "stray WAIT")
    assert lab.cli("start", "room").returncode == 0
    for c in clients:
        assert c.wait(60) == 0, lab.dump()
    assert sha256_file(lab.disks / f"{stray}.img") == sha256_file(lab.images / "disk.img")
    master.stop()
    lab.start_master()
    assert [c["host"] for c in group(lab)["clients"]] == [A, stray]
    saved = json.loads((lab.images / "thepusher-hosts.json").read_text())
    assert saved["added"] == {"room": [stray]}


@pytest.mark.parametrize("host, body, status, message", [
    ("127.0.0.99", {"group": "nope"}, 404, "no client group 'nope'"),
    ("127.0.0.98", {"group": "room"}, 404, "127.0.0.98 has not registered with this master"),
    (A, {"group": "room"}, 409, f"{A} is already in group room"),
    ("127.0.0.99", {"grp": "room"}, 400, 'body must be {"group": "NAME"}'),
])
def test_adding_a_host_with_bad_input_is_refused_with_the_reason(lab, host, body, status, message):
    write_image(lab.images / "disk.img", MiB)
    write_config(lab.images, [A])
    lab.start_master()
    for source in (A, "127.0.0.99"):
        call(lab, "POST", "/api/register", {"data_port": 9}, source=source)
    got, answer = call(lab, "POST", f"/api/hosts/{host}/group", body)
    assert got == status and message in answer["error"]


# -- admin token ---------------------------------------------------------------------


@pytest.mark.parametrize("token, status, message", [
    (None, 401, "this master needs its admin token"),
    ("wrong-token-123", 401, "wrong admin token"),
    (TOKEN, 409, "group room: no host"),  # accepted: only nobody is ready
])
def test_with_admin_token_set_every_mutating_call_needs_it(lab, token, status, message):
    write_image(lab.images / "disk.img", MiB)
    write_config(lab.images, [A], settings=f'admin_token = "{TOKEN}"\n')
    lab.start_master()
    for path in ("/api/groups/room/start", "/api/groups/room/retry"):
        got, body = call(lab, "POST", path, token=token)
        assert got == status and message in body["error"]
    assert lab.status()["admin"] == {"token_required": True}


def test_cli_passes_the_admin_token_from_flag_or_environment(lab):
    write_image(lab.images / "disk.img", MiB)
    write_config(lab.images, [A], settings=f'admin_token = "{TOKEN}"\n')
    lab.start_master()
    r = lab.cli("wake", "room")
    assert r.returncode == 1 and "needs its admin token" in r.stderr
    r = lab.cli("wake", "room", "--token", TOKEN)
    assert r.returncode == 0 and "woke 0 hosts" in r.stdout, r.stderr
    r = subprocess.run(thepusher("wake", "room", "-p", f"127.0.0.1:{lab.port}"),
                       env=dict(ENV, THEPUSHER_ADMIN_TOKEN=TOKEN), capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr


# -- event stream and metrics --------------------------------------------------------


class EventReader:
    """`GET /api/events` on a raw socket: each `status` event's JSON, as it arrives."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
        self.file = self.sock.makefile("rb")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += self.file.readline()
        assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head

    def next_status(self) -> dict:
        event = None
        while True:
            line = self.file.readline().rstrip(b"\n")
            if line.startswith(b"event: "):
                event = line[7:]
            elif line.startswith(b"data: ") and event == b"status":
                return json.loads(line[6:])
            elif not line and self.file.closed:
                raise EOFError

    def close(self) -> None:
        """Shut the socket down first: that wakes a reader thread blocked in readline,
        which holds the file's lock (closing the file alone would wait for it)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.file.close()
        self.sock.close()


def test_event_stream_sends_the_status_at_once_and_again_on_each_change(lab):
    write_image(lab.images / "disk.img", MiB)
    write_config(lab.images, [A])
    lab.start_master()
    events = EventReader(lab.port)
    first = events.next_status()
    assert first["groups"][0]["clients"][0]["state"] == "NONE"
    call(lab, "POST", "/api/register", {"data_port": 9}, source=A)
    call(lab, "POST", "/api/ready", {}, source=A)
    seen = events.next_status()
    while seen["groups"][0]["clients"][0]["state"] == "NONE":
        seen = events.next_status()
    assert seen["version"] > first["version"]
    events.close()


def test_event_stream_coalesces_a_burst_of_changes_to_a_few_events_a_second(lab):
    write_image(lab.images / "disk.img", MiB)
    write_config(lab.images, [A])
    lab.start_master()
    events = EventReader(lab.port)
    events.next_status()
    received = []

    def read() -> None:
        try:
            while True:
                received.append(events.next_status())
        except (OSError, ValueError, EOFError):
            pass  # closed by the test

    threading.Thread(target=read, daemon=True).start()
    start = time.monotonic()
    for i in range(300):  # each registration of a new host is a change
        call(lab, "POST", "/api/register", {"data_port": 9}, source=f"127.0.{1 + i // 250}.{1 + i % 250}")
    elapsed = time.monotonic() - start
    time.sleep(0.6)
    count = len(received)
    events.close()
    assert 1 <= count <= elapsed / 0.25 + 3, (count, elapsed)
    assert len(received[-1]["unassigned"]) == 300


def test_metrics_show_client_state_bytes_and_rounds_by_outcome(lab):
    write_image(lab.images / "disk.img", 4 * MiB)
    write_config(lab.images, [A])
    lab.start_master()
    assert lab.start_client(A).wait(60) == 0, lab.dump()
    conn = http.client.HTTPConnection("127.0.0.1", lab.port, timeout=10)
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    text = resp.read().decode()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/plain; version=0.0.4")
    labels = f'group="room",host="{A}"'
    assert f'thepusher_client_state{{state="DONE",{labels}}} 1' in text
    assert f'thepusher_client_state{{state="ERROR",{labels}}} 0' in text
    assert f"thepusher_client_bytes_done{{{labels}}} {4 * MiB}" in text
    assert 'thepusher_rounds_total{outcome="done"} 1' in text
    assert 'thepusher_rounds_total{outcome="failed"} 0' in text
    assert "# TYPE thepusher_group_rate_bytes_per_second gauge" in text
