"""The master's HTTP API against bad and good input: 4xx with a message, never a crash."""

import http.client
import json
import os

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
