"""The master's HTTP API against bad and good input: 4xx with a message, never a crash."""

import http.client
import json
import os
import socket

import pytest

from tests.conftest import write_config, write_image
from thepusher.master.access import is_own_host


@pytest.fixture
def master(lab, tmp_path):
    write_image(lab.images / "disk.img", 1 << 20)
    write_config(lab.images, ["127.0.0.11"])
    static = tmp_path / "static"
    static.mkdir()
    (static / "pre.sh").write_text("echo hi\n")
    (tmp_path / "secret.txt").write_text("do not serve")
    lab.start_master("-s", str(static))
    return lab


def call(lab, method, path, body=None, source="127.0.0.1", raw=None):
    conn = http.client.HTTPConnection("127.0.0.1", lab.port, timeout=10, source_address=(source, 0))
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    ctype = resp.getheader("Content-Type", "")
    return resp.status, (json.loads(payload) if "json" in ctype else payload)


def test_status_lists_groups_clients_and_images(master):
    status, body = call(master, "GET", "/api/status")
    assert status == 200
    client = body["groups"][0]["clients"][0]
    for key in ("host", "state", "bytes_done", "bytes_total", "rate", "error"):
        assert key in client
    assert client["state"] == "NONE" and body["images"][0]["name"] == "img"


def test_unknown_endpoint_is_404_with_message(master):
    status, body = call(master, "GET", "/api/nothing")
    assert status == 404 and "no such endpoint" in body["error"]


@pytest.mark.parametrize("raw, message", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"data_port": "x"}', "must be int"),
    (b'{"data_port": 70000}', "not a TCP port"),
    (b"{}", "missing field 'data_port'"),
])
def test_register_with_bad_body_is_400_and_server_lives_on(master, raw, message):
    status, body = call(master, "POST", "/api/register", raw=raw, source="127.0.0.11")
    assert status == 400 and message in body["error"]
    assert call(master, "GET", "/api/status")[0] == 200


def test_calls_before_registering_are_409(master):
    assert call(master, "POST", "/api/ready", {}, source="127.0.0.11")[0] == 409
    assert call(master, "GET", "/api/next?wait=0", source="127.0.0.11")[0] == 409


def test_report_for_unknown_session_is_ignored_not_applied(master):
    call(master, "POST", "/api/register", {"data_port": 9}, source="127.0.0.11")
    status, body = call(master, "POST", "/api/report",
                        {"state": "DONE", "session": "forged", "sha256": "0" * 64},
                        source="127.0.0.11")
    assert status == 200 and body["ok"] is False
    assert call(master, "GET", "/api/status")[1]["groups"][0]["clients"][0]["state"] == "NONE"


def test_host_in_no_group_registers_without_task_and_is_listed(master):
    status, body = call(master, "POST", "/api/register", {"data_port": 9, "mac": "aa:bb"},
                        source="127.0.0.99")
    assert status == 200 and body["task"] is None and body["host"] == "127.0.0.99"
    unassigned = call(master, "GET", "/api/status")[1]["unassigned"]
    assert [c["host"] for c in unassigned] == ["127.0.0.99"]


def test_registered_host_gets_its_task(master):
    status, body = call(master, "POST", "/api/register", {"data_port": 9}, source="127.0.0.11")
    assert status == 200
    assert body["task"]["image"] == "img" and body["task"]["group"] == "room"


def test_static_serves_files_inside_its_dir_only(master):
    status, body = call(master, "GET", "/static/pre.sh")
    assert status == 200 and body == b"echo hi\n"
    for path in ("/static/../secret.txt", "/static/%2e%2e/secret.txt", "/static/..%2fsecret.txt"):
        status, _ = call(master, "GET", path)
        assert status == 404, path


def test_static_symlink_escaping_the_dir_is_404(master, tmp_path):
    os.symlink(tmp_path / "secret.txt", tmp_path / "static" / "link.txt")
    assert call(master, "GET", "/static/link.txt")[0] == 404


def test_status_page_is_served_with_no_cache(master):
    conn = http.client.HTTPConnection("127.0.0.1", master.port, timeout=10)
    conn.request("GET", "/")
    resp = conn.getresponse()
    assert resp.status == 200 and b"<title>thepusher</title>" in resp.read()
    assert resp.getheader("Cache-Control") == "no-store"
    assert resp.getheader("X-Content-Type-Options") == "nosniff"


@pytest.mark.parametrize("action", ["start", "retry"])
def test_start_or_retry_of_unknown_group_is_404_naming_the_groups(master, action):
    status, body = call(master, "POST", f"/api/groups/nope/{action}", {})
    assert status == 404 and body["error"] == "no client group 'nope' (groups: room)"


def test_unknown_group_action_is_404(master):
    status, body = call(master, "POST", "/api/groups/room/explode", {})
    assert status == 404 and "no such endpoint" in body["error"]


@pytest.mark.parametrize("action, message", [
    ("start", "group room: no host is ready (WAIT)"),
    ("retry", "group room: no host that failed or came late is ready (WAIT)"),
])
def test_start_or_retry_with_no_host_ready_is_409(master, action, message):
    status, body = call(master, "POST", f"/api/groups/room/{action}", {})
    assert status == 409 and body["error"].startswith(message)


@pytest.mark.parametrize("action", ["start", "retry"])
def test_start_or_retry_while_a_round_runs_is_409(master, action):
    call(master, "POST", "/api/register", {"data_port": 9}, source="127.0.0.11")
    call(master, "POST", "/api/ready", {}, source="127.0.0.11")  # starts round 1 (arming)
    master.wait_for(lambda: master.round(), 10, "round 1")
    status, body = call(master, "POST", f"/api/groups/room/{action}", {})
    assert status == 409 and body["error"] == "group room: round 1 is still running"


@pytest.mark.parametrize("peer, local, allowed", [
    ("127.0.0.1", "127.0.0.1", True),
    ("127.0.0.42", "10.0.0.1", True),  # all of 127/8 is this machine
    ("::1", "::1", True),
    ("::ffff:127.0.0.1", "::", True),
    ("10.0.0.1", "10.0.0.1", True),  # the master's own address
    ("::ffff:10.0.0.1", "10.0.0.1", True),
    ("10.0.0.7", "10.0.0.1", False),
    ("fd00::7", "fd00::1", False),
])
def test_mutating_calls_are_taken_only_from_the_masters_own_host(peer, local, allowed):
    assert is_own_host(peer, local) is allowed


def exchange(lab, data: bytes) -> bytes:
    """Send raw bytes on one connection and read until the master closes it. A master
    that keeps the connection open fails the test (after 10 s) instead of hanging it."""
    with socket.create_connection(("127.0.0.1", lab.port), timeout=10) as sock:
        sock.sendall(data)
        got = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return got
                got += chunk
        except socket.timeout:
            raise AssertionError(f"the master kept the connection open after {got[:300]!r}")


def answers(raw: bytes):
    """The (status, headers, JSON body) of each HTTP answer in `raw`, in order."""
    found = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
        length = int(headers.get("content-length", "0"))
        found.append((int(lines[0].split()[1]), headers, json.loads(rest[:length] or b"null")))
        raw = rest[length:]
    return found


HIDDEN = b"GET /api/hidden HTTP/1.1\r\nHost: m\r\n\r\n"


def test_a_chunked_json_body_is_refused_411_and_a_request_hidden_in_it_never_runs(master):
    body = b"2\r\n{}\r\n0\r\n\r\n" + HIDDEN
    got = answers(exchange(master, b"POST /api/register HTTP/1.1\r\nHost: m\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n" + body))
    assert [status for status, _, _ in got] == [411]
    assert "Content-Length" in got[0][2]["error"]


def test_an_oversized_body_is_refused_413_and_its_unread_rest_is_never_parsed(master):
    body = b" " * (64 * 1024 + 1)
    got = answers(exchange(master, b"POST /api/report HTTP/1.1\r\nHost: m\r\n"
                                   b"Content-Length: %d\r\n\r\n" % (len(body) + len(HIDDEN))
                                   + HIDDEN + body))
    assert [status for status, _, _ in got] == [413]


def test_a_body_on_a_route_that_reads_none_closes_the_connection_after_the_answer(master):
    got = answers(exchange(master, b"GET /api/status HTTP/1.1\r\nHost: m\r\n"
                                   b"Content-Length: %d\r\n\r\n" % len(HIDDEN) + HIDDEN))
    assert [status for status, _, _ in got] == [200]


@pytest.mark.parametrize("method, path, allow", [
    ("DELETE", "/api/status", "GET"),
    ("PUT", "/api/status", "GET"),
    ("GET", "/api/report", "POST"),
    ("PATCH", "/api/register", "POST"),
    ("DELETE", "/api/images/disk.img", "PUT"),
    ("GET", "/api/groups/room/start", "POST"),
])
def test_a_known_path_with_the_wrong_method_is_405_in_json_naming_the_allowed_one(
        master, method, path, allow):
    conn = http.client.HTTPConnection("127.0.0.1", master.port, timeout=10)
    conn.request(method, path)
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    assert resp.status == 405 and resp.getheader("Allow") == allow
    assert resp.getheader("Content-Type") == "application/json"
    assert body["error"] == f"{method} is not allowed on {path}: use {allow}"


@pytest.mark.parametrize("request_line, status, message", [
    (b"GARBAGE\r\n", 400, "Bad request syntax"),
    (b"GET /api/status HTTP/9.9\r\n", 505, "Invalid HTTP version"),
    (b"BREW /api/status HTTP/1.1\r\n", 501, "Unsupported method ('BREW')"),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n", 414, "URI Too Long"),
], ids=["garbage", "version", "method", "too-long"])
def test_requests_http_server_refuses_itself_get_a_json_error_too(master, request_line, status,
                                                                  message):
    got = answers(exchange(master, request_line + b"Host: m\r\n\r\n"))
    assert len(got) == 1
    code, headers, body = got[0]
    assert code == status and headers["content-type"] == "application/json"
    assert message in body["error"] and headers["x-content-type-options"] == "nosniff"
