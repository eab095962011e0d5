"""Signed tasks (the config's `secret`): a client that knows the secret runs no script and
writes no byte for anyone but the master holding it.

Real master and client processes on 127.0.0.x. The attackers are real too: a second
thepusher master with another secret (or none), and small HTTP servers written here
that replay answers recorded from the real master, or relay the client's requests to
it and rewrite what comes back.
"""

import http.client
import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, List, Tuple

import pytest

from tests.conftest import ENV, Proc, sha256_file, thepusher, write_config, write_image
from thepusher import signing

MiB = 1 << 20
A = "127.0.0.21"
SECRET = "correct-horse-battery-A"
OTHER = "another-masters-secret-B"
REFUSED_TASK = "task not signed by the master holding the secret: refusing to run it"
REFUSED_START = "start not signed by the master holding the secret: refusing to act on it"


def setup(lab, master_secret: str) -> Path:
    """An image, a one-host group whose scripts leave marks, and the master running."""
    marks = lab.root / "marks"
    marks.mkdir()
    write_image(lab.images / "disk.img", 4 * MiB)
    write_config(lab.images, [A], settings=f'secret = "{master_secret}"\n' if master_secret else "",
                 extra=f'  preImage = "touch {marks}/pre-ran"\n'
                       f'  postImage = "touch {marks}/post-ran"\n')
    lab.start_master()
    return marks


def client_with_secret(lab, monkeypatch, port: int, secret: str = SECRET) -> Proc:
    """`thepusher client`, the secret in its environment as the boot script gives it."""
    monkeypatch.setitem(ENV, "THEPUSHER_SECRET", secret)
    p = Proc(f"client-{A}", ["-v", "client", "-p", f"127.0.0.1:{port}", "--bind", A,
                             "--data-port", "0", "--destination", str(lab.disks / "a.img")], lab.logs)
    lab.procs.append(p)
    return p


class Attacker:
    """A real HTTP server on the LAN answering clients: `answer(method, path, body, host)`
    returns (status, JSON) for each request."""

    def __init__(self, answer: Callable[[str, str, dict, str], Tuple[int, dict]]) -> None:
        self.seen: List[Tuple[str, str, dict]] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw else {}
                seen.append((self.command, self.path, body))
                status, reply = answer(self.command, self.path, body, self.client_address[0])
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def attackers():
    made: List[Attacker] = []
    yield lambda answer: made.append(Attacker(answer)) or made[-1]
    for a in made:
        a.close()


def relay(lab, method: str, path: str, body: dict, host: str) -> Tuple[int, dict]:
    """Pass a client's request on to the real master, from the client's own address."""
    conn = http.client.HTTPConnection("127.0.0.1", lab.port, timeout=30, source_address=(host, 0))
    try:
        conn.request(method, path, body=json.dumps(body).encode() if method == "POST" else None)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def refused(lab, client: Proc, line: str) -> str:
    """Wait for the client's refusal; what it logged."""
    lab.wait_for(lambda: line in client.output(), 30, f"the client to log {line!r}")
    return client.output()


# -- the real master -----------------------------------------------------------------


def test_client_with_the_masters_secret_runs_the_signed_task_and_ends_done(lab, monkeypatch):
    marks = setup(lab, SECRET)
    client = client_with_secret(lab, monkeypatch, lab.port)
    assert client.wait(60) == 0, lab.dump()
    assert (marks / "pre-ran").exists() and (marks / "post-ran").exists()
    assert sha256_file(lab.disks / "a.img") == sha256_file(lab.images / "disk.img")
    assert "not signed" not in client.output()
    for p in lab.procs:  # the secret is never logged
        assert SECRET not in p.output(), p.name


def test_master_with_a_secret_signs_tasks_and_starts_over_the_registration_nonce(lab):
    setup(lab, SECRET)
    status, task = lab.call("POST", "/api/register", {"data_port": 9, "nonce": "n-1"}, source=A)
    assert status == 200 and task["nonce"] == "n-1" and task["host"] == A
    assert signing.problem(SECRET, signing.TASK, task, "n-1", A) is None
    assert signing.problem(OTHER, signing.TASK, task, "n-1", A) is not None
    assert lab.call("POST", "/api/ready", {}, source=A)[0] == 200
    status, start = lab.call("GET", "/api/next?wait=20", source=A)
    assert start["action"] == "receive" and start["nonce"] == "n-1"
    assert signing.problem(SECRET, signing.START, start, "n-1", A) is None
    # a task answer is not a start, and the other way round
    assert signing.problem(SECRET, signing.START, task, "n-1", A) is not None


def test_client_without_a_secret_takes_signed_tasks_as_before(lab):
    marks = setup(lab, SECRET)
    client = lab.start_client(A)
    assert client.wait(60) == 0, lab.dump()
    assert (marks / "pre-ran").exists()


# -- attacks -------------------------------------------------------------------------


@pytest.mark.parametrize("rogue_secret, why", [
    (OTHER, "its signature is not made with this client's secret"),
    ("", "it carries no signature"),
], ids=["other-secret", "no-secret"])
def test_rogue_master_gets_no_script_run_and_no_disk_written(lab, monkeypatch, rogue_secret, why):
    marks = setup(lab, rogue_secret)  # a real thepusher master, just not ours
    client = client_with_secret(lab, monkeypatch, lab.port)
    out = refused(lab, client, REFUSED_TASK)
    assert why in out
    assert "Nothing was run or written. Still asking the master." in out
    assert client.popen.poll() is None  # it keeps asking, for the real master to reach it
    assert not (marks / "pre-ran").exists()
    assert not (lab.disks / "a.img").exists()
    assert lab.clients()[A]["state"] == "NONE"  # never said it was ready
    assert SECRET not in out


def test_replayed_task_recorded_from_the_real_master_is_refused_for_its_old_nonce(
        lab, monkeypatch, attackers):
    marks = setup(lab, SECRET)
    status, recorded = lab.call("POST", "/api/register", {"data_port": 9, "nonce": "n-old"}, source=A)
    assert signing.problem(SECRET, signing.TASK, recorded, "n-old", A) is None  # genuine
    rogue = attackers(lambda method, path, body, host: (200, recorded))
    client = client_with_secret(lab, monkeypatch, rogue.port)
    out = refused(lab, client, REFUSED_TASK)
    assert "it was signed for an earlier request (a replayed answer)" in out
    assert rogue.seen[0][2]["nonce"] != "n-old"
    assert not (marks / "pre-ran").exists()
    assert not (lab.disks / "a.img").exists()


def test_relayed_genuine_task_with_a_rewritten_script_is_refused(lab, monkeypatch, attackers):
    marks = setup(lab, SECRET)

    def rewrite(method, path, body, host):
        status, answer = relay(lab, method, path, body, host)
        if path == "/api/register":
            answer["task"]["preImage"] = f"touch {marks}/evil"
        return status, answer

    client = client_with_secret(lab, monkeypatch, attackers(rewrite).port)
    out = refused(lab, client, REFUSED_TASK)
    assert "its signature is not made with this client's secret" in out
    assert not (marks / "evil").exists() and not (marks / "pre-ran").exists()
    assert not (lab.disks / "a.img").exists()


def test_replayed_start_from_an_earlier_registration_is_refused_and_nothing_is_written(
        lab, monkeypatch, attackers):
    marks = setup(lab, SECRET)
    # Recorded from the real master: a start for this host's earlier registration.
    lab.call("POST", "/api/register", {"data_port": 9, "nonce": "n-old"}, source=A)
    lab.call("POST", "/api/ready", {}, source=A)
    status, old_start = lab.call("GET", "/api/next?wait=20", source=A)
    assert old_start["action"] == "receive"
    assert signing.problem(SECRET, signing.START, old_start, "n-old", A) is None  # genuine

    def replay(method, path, body, host):
        if path == "/api/register":  # the genuine, fresh task: relayed
            return relay(lab, method, path, body, host)
        if path.startswith("/api/next"):
            return 200, old_start
        return 200, {"state": "WAIT"}

    client = client_with_secret(lab, monkeypatch, attackers(replay).port)
    out = refused(lab, client, REFUSED_START)
    assert "it was signed for an earlier request (a replayed answer)" in out
    assert (marks / "pre-ran").exists()  # the genuine task's script: that one was signed
    assert not (lab.disks / "a.img").exists()
    assert "round 1: position" not in out
    assert client.popen.poll() is None


def test_client_refuses_a_secret_no_master_could_hold():
    done = subprocess.run(thepusher("client", "-p", "127.0.0.1:9", "--secret", "short"), env=ENV,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "at least 12 printable characters without spaces" in done.stderr
