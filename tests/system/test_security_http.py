"""The master's doors, each tried as an attacker would: uploads from hosts outside
`put_allowed` or without the upload token, guessing tokens, /static/ traversal, and the
headers every answer carries. Real master processes; requests from real sockets bound
to 127.0.0.x source addresses. Each test fails if its door is open."""

import http.client
import json
import os
import socket
import subprocess
import time
from typing import Dict, Optional, Tuple

import pytest

from tests.support import browser
from tests.conftest import ENV, read_to_end, thepusher, write_config, write_image
from thepusher.master.guard import LIMIT, Throttle, peer_key

MiB = 1 << 20
ADMIN = "correct-horse-battery"
UPLOAD = "upload-staple-42-x"
OUTSIDER = "127.0.0.9"  # a host the tests' put_allowed does not list
SECRET = "the master's secret file"


def start(lab, settings: str = "", *extra: str):
    write_image(lab.images / "disk.img", MiB)
    write_config(lab.images, ["127.0.0.11"], settings=settings)
    lab.start_master(*extra)
    return lab


def request(lab, method: str, path: str, body: bytes = b"", headers: Optional[Dict[str, str]] = None,
            source: str = "127.0.0.1") -> Tuple[int, Dict[str, str], bytes]:
    """One request from `source`, path sent exactly as given (no normalising)."""
    conn = http.client.HTTPConnection("127.0.0.1", lab.port, timeout=20, source_address=(source, 0))
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def put_raw(lab, name: str, data: bytes, headers: Optional[Dict[str, str]] = None,
            source: str = "127.0.0.1") -> Tuple[int, Dict[str, str], dict, bytes]:
    """PUT /api/images/NAME with `Expect: 100-continue`, as put-image does: the body is
    sent only after 100 Continue. Returns the final status, headers, JSON body and
    what came before it (b"" when the master refused at once)."""
    sock = socket.create_connection(("127.0.0.1", lab.port), timeout=20, source_address=(source, 0))
    head = (f"PUT /api/images/{name} HTTP/1.1\r\nHost: master\r\nContent-Length: {len(data)}\r\n"
            "Expect: 100-continue\r\n" + "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
            + "\r\n")
    sock.sendall(head.encode())
    f = sock.makefile("rb")
    try:
        status_line = f.readline()
        before = b""
        if b" 100 " in status_line:
            before = status_line
            while f.readline() not in (b"\r\n", b""):
                pass
            sock.sendall(data)
            status_line = f.readline()
        fields = http.client.parse_headers(f)
        body = f.read(int(fields.get("Content-Length", "0")))
    finally:
        f.close()
        sock.close()
    return (int(status_line.split()[1]), {k.lower(): v for k, v in fields.items()},
            json.loads(body), before)


def image_dir(lab):
    return sorted(p.name for p in lab.images.iterdir())


def nothing_stored(lab, *names: str) -> bool:
    """None of `names` (nor their sidecars) in the image dir, and no hidden temp file."""
    return not [p for p in image_dir(lab) if p.startswith(".") or p.split(".digest")[0] in names]


def put(lab, *args: str, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    return subprocess.run(thepusher("put-image", *args, "-p", f"127.0.0.1:{lab.port}"),
                          env=env or ENV, capture_output=True, text=True, timeout=60)


# -- who may upload -----------------------------------------------------------------------


def test_upload_from_a_host_outside_put_allowed_is_403_before_the_body_naming_the_fix(lab):
    start(lab, 'put_allowed = ["127.0.0.16/28"]\n')
    status, _, body, continued = put_raw(lab, "evil.img", b"x" * MiB, source=OUTSIDER)
    assert status == 403 and continued == b"", "the master asked for the body of a refused upload"
    for words in (f"uploads from {OUTSIDER} are not allowed", "put_allowed lists 127.0.0.16/28",
                  "thePusher-config.hcl", 'put_allowed = ["127.0.0.0/24"]'):
        assert words in body["error"]
    assert nothing_stored(lab, "evil.img")  # no image, no temp file, no sidecar
    assert "receiving" not in lab.procs[0].output()
    assert f"from {OUTSIDER} refused: not in put_allowed" in lab.procs[0].output()


def test_with_put_allowed_set_even_the_masters_own_host_must_be_listed(lab):
    start(lab, 'put_allowed = ["10.0.0.0/24"]\n')
    status, _, body, _ = put_raw(lab, "x.img", b"data")
    assert status == 403 and "uploads from 127.0.0.1 are not allowed" in body["error"]
    assert not (lab.images / "x.img").exists()


def test_upload_from_a_host_in_an_allowed_network_is_stored(lab):
    start(lab, 'put_allowed = ["10.0.0.0/24", "127.0.0.8/29"]\n')
    status, _, body, continued = put_raw(lab, "ok.img", b"hello", source=OUTSIDER)
    assert status == 201 and b" 100 " in continued and body["size"] == 5
    assert (lab.images / "ok.img").read_bytes() == b"hello"


def test_put_image_refused_by_put_allowed_exits_1_showing_the_masters_reason(lab):
    start(lab, 'put_allowed = ["10.0.0.7"]\n')
    src = lab.root / "sda"
    src.write_bytes(os.urandom(MiB))
    r = put(lab, "-i", str(src))
    assert r.returncode == 1
    for words in ("403", "uploads from 127.0.0.1 are not allowed", "put_allowed lists 10.0.0.7/32",
                  "at byte 0"):
        assert words in r.stderr, r.stderr
    assert nothing_stored(lab, "sda")


# -- the upload token ---------------------------------------------------------------------


def test_upload_token_missing_or_wrong_is_401_and_nothing_kept_right_one_stores(lab):
    start(lab, f'upload_token = "{UPLOAD}"\n')
    src = lab.root / "sda"
    data = os.urandom(MiB)
    src.write_bytes(data)
    missing = put(lab, "-i", str(src))
    assert missing.returncode == 1
    assert "401" in missing.stderr and "--upload-token" in missing.stderr, missing.stderr
    wrong = put(lab, "-i", str(src), "--upload-token", "not-the-token-1")
    assert wrong.returncode == 1 and "wrong upload token" in wrong.stderr, wrong.stderr
    assert "wrong upload token from 127.0.0.1" in lab.procs[0].output()
    status, _, body, continued = put_raw(lab, "x.img", b"data", {"X-Upload-Token": ADMIN})
    assert (status, continued) == (401, b"") and body["error"] == "wrong upload token"
    assert nothing_stored(lab, "sda", "x.img")
    ok = put(lab, "-i", str(src), "--upload-token", UPLOAD)
    assert ok.returncode == 0, ok.stderr
    assert (lab.images / "sda").read_bytes() == data
    from_env = put(lab, "-i", str(src), "-n", "sdb", env=dict(ENV, THEPUSHER_UPLOAD_TOKEN=UPLOAD))
    assert from_env.returncode == 0, from_env.stderr
    status, _, body, _ = put_raw(lab, "sdc", b"abc", {"Authorization": f"Bearer {UPLOAD}"})
    assert status == 201 and (lab.images / "sdc").read_bytes() == b"abc"


def test_upload_token_does_not_open_the_door_for_a_host_outside_put_allowed(lab):
    start(lab, f'put_allowed = ["127.0.0.1"]\nupload_token = "{UPLOAD}"\n')
    status, _, body, _ = put_raw(lab, "x.img", b"data", {"X-Upload-Token": UPLOAD}, source=OUTSIDER)
    assert status == 403 and not (lab.images / "x.img").exists()


# -- guessing tokens ----------------------------------------------------------------------


def admin_call(lab, token: str, source: str) -> Tuple[int, Dict[str, str], dict]:
    status, headers, body = request(lab, "POST", "/api/groups/room/wake", b"{}",
                                    {"X-Admin-Token": token}, source=source)
    return status, headers, json.loads(body)


def test_sixth_wrong_admin_token_within_a_minute_is_429_even_when_right_others_unaffected(lab):
    start(lab, f'admin_token = "{ADMIN}"\n')
    guesser, admin = "127.0.0.21", "127.0.0.22"
    for i in range(LIMIT):
        status, _, body = admin_call(lab, f"guess-number-{i}", guesser)
        assert (status, body["error"]) == (401, "wrong admin token")
    for token in ("guess-number-x", ADMIN):  # blocked: the token is not even looked at
        status, headers, body = admin_call(lab, token, guesser)
        assert status == 429 and "too many wrong tokens" in body["error"]
        assert 1 <= int(headers["retry-after"]) <= 60
    status, _, body = admin_call(lab, ADMIN, admin)
    assert status == 200 and "woke" in body["message"]
    assert f"{guesser} sent {LIMIT} wrong tokens" in lab.procs[0].output()


def test_wrong_upload_tokens_are_rate_limited_too_and_a_blocked_upload_stores_nothing(lab):
    start(lab, f'put_allowed = ["127.0.0.0/8"]\nupload_token = "{UPLOAD}"\n')
    guesser = "127.0.0.23"
    for i in range(LIMIT):
        status, _, _, _ = put_raw(lab, "x.img", b"data", {"X-Upload-Token": f"guess-{i}"}, guesser)
        assert status == 401
    status, headers, body, continued = put_raw(lab, "x.img", b"data", {"X-Upload-Token": UPLOAD},
                                               guesser)
    assert (status, continued) == (429, b"") and int(headers["retry-after"]) >= 1
    assert nothing_stored(lab, "x.img")
    status, _, _, _ = put_raw(lab, "x.img", b"data", {"X-Upload-Token": UPLOAD}, "127.0.0.24")
    assert status == 201


def test_throttle_blocks_for_the_rest_of_the_minute_then_allows_again_and_forgets_old_peers():
    now = [1000.0]
    t = Throttle(limit=5, window=60.0, max_peers=3, clock=lambda: now[0])
    for _ in range(4):
        t.wrong("10.0.0.1")
        now[0] += 1
    assert t.blocked("10.0.0.1") == 0
    t.wrong("10.0.0.1")  # the 5th within a minute (at 1004; the first was at 1000)
    assert t.blocked("10.0.0.1") == 56 and t.blocked("10.0.0.2") == 0
    now[0] = 1059.5
    assert t.blocked("10.0.0.1") == 1
    now[0] = 1060.0
    assert t.blocked("10.0.0.1") == 0  # the first has aged out: one more try ...
    t.wrong("10.0.0.1")
    assert t.blocked("10.0.0.1") == 1  # ... and blocked again until the second ages out
    for i in range(10):  # bounded: at most max_peers remembered
        t.wrong(f"10.0.1.{i}")
    assert len(t) == 3
    now[0] += 61
    assert t.blocked("10.0.1.9") == 0 and len(t) == 0
    assert peer_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert peer_key("fd00::1") == peer_key("fd00::2") == "fd00::/64"


# -- headers ------------------------------------------------------------------------------


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/", 200), ("GET", "/app.js", 200), ("GET", "/api/status", 200),
    ("GET", "/metrics", 200), ("GET", "/nope", 404), ("DELETE", "/api/status", 405),
    ("BREW", "/api/status", 501), ("POST", "/api/groups/room/wake", 200),
])
def test_every_answer_forbids_sniffing_and_framing_and_api_answers_are_not_cached(
        lab, method, path, status):
    start(lab)
    got, headers, _ = request(lab, method, path, b"{}" if method == "POST" else b"")
    assert got == status
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"  # http.server's own refusals too (501)


def test_page_has_a_content_security_policy_allowing_only_its_own_origin(lab):
    start(lab)
    _, headers, _ = request(lab, "GET", "/")
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp


def test_event_stream_is_not_cached_and_not_sniffed(lab):
    start(lab)
    with socket.create_connection(("127.0.0.1", lab.port), timeout=10) as sock:
        sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
    head = head.lower()
    assert b"cache-control: no-store" in head and b"x-content-type-options: nosniff" in head


@pytest.mark.skipif(browser.find_chromium() is None, reason="needs headless Chromium")
def test_page_runs_under_its_content_security_policy_without_a_violation(lab):
    start(lab)
    page = browser.Browser(lab.logs)
    try:
        page.call("Page.addScriptToEvaluateOnNewDocument", source=(
            "window.cspViolations = [];"
            "document.addEventListener('securitypolicyviolation',"
            " e => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"))
        page.open(f"http://127.0.0.1:{lab.port}/")
        page.wait_for("!!document.body.dataset.link", 10, "the page's script to run")
        assert page.evaluate("getComputedStyle(document.querySelector('header')).display") == "flex"
        page.wait_for("document.querySelectorAll('#groups tr[data-host]').length === 1", 10,
                      "the group's host drawn")
        time.sleep(1)  # a few more status updates drawn
        assert page.evaluate("window.cspViolations") == [] and page.errors == []
    finally:
        page.close()


# -- /static/ -----------------------------------------------------------------------------


@pytest.fixture
def static_master(lab):
    static = lab.root / "static"
    (static / "sub").mkdir(parents=True)
    (static / "boot.ipxe").write_text("#!ipxe\n")
    (lab.root / "secret.txt").write_text(SECRET)
    os.symlink(lab.root / "secret.txt", static / "out.txt")  # leads out
    os.symlink(lab.root, static / "up")  # a directory link that leads out
    os.symlink("../boot.ipxe", static / "sub" / "in.ipxe")  # stays inside
    return start(lab, "", "-s", str(static))


@pytest.mark.parametrize("path", [
    "/static/../secret.txt",
    "/static/sub/../../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E%2Fsecret.txt",
    "/static/..%2fsecret.txt",
    "/static/%252e%252e%252fsecret.txt",  # double-encoded
    "/static/..%5csecret.txt",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/out.txt",  # symlink to a file outside
    "/static/up/secret.txt",  # through a symlinked directory outside
    "/static/%2e%2e/static/../secret.txt",
    "/static/secret.txt%00",
    "/static/",
    "/static/sub",
])
def test_static_never_serves_anything_outside_its_directory(static_master, path):
    status, headers, body = request(static_master, "GET", path)
    assert status in (403, 404), (path, status)
    assert SECRET.encode() not in body and b"root:" not in body
    assert headers["x-content-type-options"] == "nosniff"


def test_static_serves_a_symlink_that_stays_inside_its_directory(static_master):
    status, _, body = request(static_master, "GET", "/static/sub/in.ipxe")
    assert (status, body) == (200, b"#!ipxe\n")


def test_static_path_as_sent_by_a_raw_client_cannot_climb_out(static_master):
    """No client library in the way: the request line as an attacker types it."""
    for target in (b"/static/../../../../etc/passwd", b"/static/..%2f..%2f..%2fetc%2fpasswd",
                   b"/static/../secret.txt"):
        with socket.create_connection(("127.0.0.1", static_master.port), timeout=10) as sock:
            sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = read_to_end(sock)
        assert data.split()[1] in (b"403", b"404"), (target, data[:200])
        assert SECRET.encode() not in data and b"root:" not in data
