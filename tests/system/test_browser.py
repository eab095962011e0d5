"""The status page in a real browser: headless Chromium, driven over the DevTools
protocol (tests/support/browser.py), against a real master and real client processes.

Screenshots go to tests/artifacts/ (ignored by git): look at them after a change to
the page.
"""

import json
import os
import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support import browser
from tests.conftest import write_config, write_image
from thepusher.master.limits import EVENT_STREAMS_PER_SOURCE

pytestmark = pytest.mark.skipif(
    browser.find_chromium() is None,
    reason="needs headless Chromium: Debian's chromium package (`make test` installs it)",
)

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
HOSTS = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
MANUAL = '  start = "manual"\n'

# What the page shows, read from its DOM.
ROWS = """[...document.querySelectorAll('#groups tr[data-host]')]
  .map(r => ({host: r.dataset.host, state: r.dataset.state, progress: +r.dataset.progress}))"""
LINK = "document.body.dataset.link"
BANNER = "document.getElementById('banner').hidden ? '' : document.getElementById('banner').textContent"
NOTICES = "[...document.querySelectorAll('#notices .notice')].map(n => n.className + ': ' + n.textContent)"
DIALOG_OPEN = "document.getElementById('token-dialog').open"


def click(group: str, action: str) -> str:
    return (f"document.querySelector('article[data-group=\"{group}\"] "
            f"button[data-action=\"{action}\"]').click()")


def states_are(hosts, state: str) -> str:
    """A JS expression: the page shows exactly these hosts, each in `state`."""
    want = json.dumps(sorted(hosts))
    return (f"(() => {{ const rows = {ROWS}; return JSON.stringify(rows.map(r => r.host).sort()) "
            f"=== JSON.stringify({want}) && rows.every(r => r.state === '{state}'); }})()")


@pytest.fixture
def page(lab):
    b = browser.Browser(lab.logs)
    try:
        yield b
    finally:
        b.close()


class Pulse:
    """A slow client, for real: its process is stopped and continued over and over, so
    the whole chain slows down (backpressure) and a round lasts long enough to watch."""

    def __init__(self, pid: int, stopped: float = 0.3, running: float = 0.02) -> None:
        self.pid, self.stopped, self.running = pid, stopped, running
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.is_set():
            os.kill(self.pid, signal.SIGSTOP)
            self.done.wait(self.stopped)
            os.kill(self.pid, signal.SIGCONT)
            self.done.wait(self.running)

    def __enter__(self) -> "Pulse":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()
        try:
            os.kill(self.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def open_page(lab, page) -> None:
    """The status page of the lab's master, with its script and stylesheet running."""
    page.open(f"http://127.0.0.1:{lab.port}/")
    page.wait_for("!!document.body.dataset.link", 10, "the page's script (app.js) to run")
    assert page.evaluate("getComputedStyle(document.querySelector('header')).display") == "flex", \
        "the page's stylesheet (style.css) is not applied"


def test_page_shows_a_live_round_rising_until_every_client_is_done(lab, page):
    write_image(lab.images / "disk.img", 256 << 20)
    write_config(lab.images, HOSTS, group=MANUAL)
    lab.start_master()
    clients = [lab.start_client(h) for h in HOSTS]
    open_page(lab, page)
    page.wait_for(states_are(HOSTS, "WAIT"), 60, "every client WAIT on the page")
    assert page.evaluate(LINK) == "live"  # fed by /api/events, not polling

    page.evaluate(click("room", "start"))
    page.wait_for(f"{NOTICES}.some(n => n.includes('round 1 started'))", 30,
                  "the master's answer to Start on the page")
    samples = []  # the page's summed progress of the 3 clients, each time it changed
    shot = False
    with Pulse(clients[-1].popen.pid):
        deadline = time.monotonic() + 180
        while True:
            rows = page.evaluate(ROWS)
            total = round(sum(r["progress"] for r in rows), 4)
            if not samples or total != samples[-1]:
                samples.append(total)
            if all(r["state"] == "DONE" for r in rows):
                break
            if not shot and 0.9 < total < 2.1:
                page.screenshot(ARTIFACTS / "status-page-running.png", 1280, 900)
                page.screenshot(ARTIFACTS / "status-page-running-phone.png", 390, 844, mobile=True)
                shot = True
            assert time.monotonic() < deadline, f"the page never showed DONE for all: {rows}\n{lab.dump()}"
            time.sleep(0.1)

    rising = [s for s in samples if 0 < s < len(HOSTS)]
    assert len(rising) >= 2, f"the page showed no progress between start and DONE: {samples}"
    assert samples == sorted(samples), f"the page's progress went back: {samples}"
    page.wait_for("!!document.querySelector('#history tr[data-round=\"1\"]')", 10,
                  "round 1 in the page's recent rounds")
    assert page.evaluate("document.querySelector('#history tr[data-round=\"1\"]').textContent"
                         ).count("DONE") == len(HOSTS)
    page.screenshot(ARTIFACTS / "status-page.png", 1280, 900)
    page.screenshot(ARTIFACTS / "status-page-phone.png", 390, 844, mobile=True)
    for c in clients:
        assert c.wait(60) == 0, lab.dump()
    assert page.errors == []


def test_page_says_it_is_disconnected_while_the_master_is_down_and_recovers_by_itself(lab, page):
    write_image(lab.images / "disk.img", 1 << 20)
    write_config(lab.images, HOSTS[:1], group=MANUAL)
    master = lab.start_master()
    open_page(lab, page)
    page.wait_for(f"{LINK} === 'live'", 30, "the page live")
    assert page.evaluate(BANNER) == ""

    master.kill()
    master.popen.wait(10)
    page.wait_for(f"{LINK} === 'down'", 30, "the page to notice the master is gone")
    assert "reconnecting" in page.evaluate(BANNER)

    lab.start_master()  # same port
    page.wait_for(f"{LINK} === 'live'", 60, "the page to reconnect to the new master")
    assert page.evaluate(BANNER) == ""
    lab.start_client(HOSTS[0])  # and what the new master knows reaches the page
    page.wait_for(states_are(HOSTS[:1], "WAIT"), 60, "the client WAIT on the page")
    assert page.errors == []


def test_page_polls_while_the_masters_event_streams_are_all_taken_and_goes_live_again(lab, page):
    write_image(lab.images / "disk.img", 1 << 20)
    write_config(lab.images, HOSTS[:1], group=MANUAL)
    lab.start_master()
    taken = []  # every event stream the browser's address may have (it is 127.0.0.1)
    try:
        for _ in range(EVENT_STREAMS_PER_SOURCE):
            s = socket.create_connection(("127.0.0.1", lab.port), timeout=10)
            taken.append(s)
            s.sendall(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200 ")
        open_page(lab, page)
        page.wait_for(f"{LINK} === 'polling'", 30, "the page to poll /api/status (events: 503)")
        lab.start_client(HOSTS[0])
        page.wait_for(states_are(HOSTS[:1], "WAIT"), 60, "the client WAIT on the polling page")
    finally:
        for s in taken:
            s.close()
    page.wait_for(f"{LINK} === 'live'", 60, "the page back on an event stream once one is free")
    assert page.errors == []


def test_page_asks_for_the_admin_token_once_and_adds_a_stray_client_to_a_group(lab, page):
    token = "page-test-token-0123"
    stray = "127.0.0.14"
    write_image(lab.images / "disk.img", 4 << 20)
    write_config(lab.images, HOSTS[:2], group=MANUAL, settings=f'admin_token = "{token}"\n')
    lab.start_master()
    clients = [lab.start_client(h) for h in [*HOSTS[:2], stray]]
    open_page(lab, page)
    page.wait_for(f"!!document.querySelector('#unassigned tr[data-unassigned=\"{stray}\"] button')",
                  60, "the stray client listed as in no group")

    page.evaluate(f"document.querySelector('#unassigned tr[data-unassigned=\"{stray}\"] button').click()")
    page.wait_for(DIALOG_OPEN, 10, "the page to ask for the admin token")
    page.evaluate(f"document.getElementById('token-input').value = '{token}'; "
                  "document.getElementById('token-form').requestSubmit()")
    page.wait_for(f"{NOTICES}.some(n => n.includes('{stray} added to group room'))", 30,
                  "the master's answer to Add")
    page.wait_for(f"!!document.querySelector('#groups tr[data-host=\"{stray}\"]')", 30,
                  "the stray client in the group")
    assert page.evaluate("sessionStorage.getItem('thepusher.admin-token')") == token
    assert not page.evaluate(f"!!document.querySelector('#unassigned tr[data-unassigned=\"{stray}\"]')")
    page.wait_for(states_are([*HOSTS[:2], stray], "WAIT"), 60, "all three WAIT")

    page.evaluate(click("room", "start"))  # the token is kept: no second question
    page.wait_for(f"{NOTICES}.some(n => n.includes('round 1 started'))", 30,
                  "the master's answer to Start")
    assert not page.evaluate(DIALOG_OPEN)
    page.wait_for(states_are([*HOSTS[:2], stray], "DONE"), 120, "all three DONE")
    notices = page.evaluate(NOTICES)
    assert not any(n.startswith("notice error") for n in notices), notices
    for c in clients:
        assert c.wait(60) == 0, lab.dump()
    assert page.errors == []


def test_abort_on_the_page_stops_the_round_after_asking_and_holds_the_group(lab, page):
    write_image(lab.images / "disk.img", 256 << 20)
    write_config(lab.images, HOSTS)  # starts by itself once all are ready
    lab.start_master()
    clients = [lab.start_client(h) for h in HOSTS]
    open_page(lab, page)
    with Pulse(clients[-1].popen.pid):
        page.wait_for(states_are(HOSTS, "BUSY"), 60, "the round running on the page")
        page.evaluate(click("room", "abort"))
        page.wait_for(f"{NOTICES}.some(n => n.includes('round 1 aborted'))", 30,
                      "the master's answer to Abort")
    assert page.dialogs and "Abort" in page.dialogs[0], page.dialogs
    page.wait_for(f"{ROWS}.every(r => r.state === 'DONE' || r.state === 'ERROR')", 60,
                  "every client's round over on the page")
    shown = {r["host"]: r["state"] for r in page.evaluate(ROWS)}
    assert shown == {h: c["state"] for h, c in lab.clients().items()}
    assert shown[HOSTS[-1]] == "ERROR", shown  # the slow last one cannot have finished
    text = page.text()
    assert "aborted by the admin" in text and "held" in text, text
    # The round ends a moment after its clients are ERROR (its stream stops): the page
    # hears of it with the next status event.
    page.wait_for("document.querySelector('article[data-group=\"room\"] "
                  "button[data-action=\"abort\"]').disabled", 10, "Abort disabled: the round is over")
    assert page.errors == []


def test_page_says_which_host_a_re_imaging_waits_for(lab, page):
    hosts = HOSTS[:2]
    write_image(lab.images / "disk.img", 1 << 20)
    write_config(lab.images, hosts)
    lab.start_master()
    for c in [lab.start_client(h) for h in hosts]:
        assert c.wait(30) == 0, lab.dump()
    lab.start_client(hosts[0])  # restarted for the next imaging; the other one is not
    open_page(lab, page)
    page.wait_for(f"document.body.innerText.includes('next round waits for {hosts[1]} to be ready')",
                  20, "the group head naming the host it waits for")
    assert page.errors == []


def test_page_draws_each_chain_of_a_round_from_the_master(lab, page):
    hosts = HOSTS + ["127.0.0.14", "127.0.0.15"]
    write_image(lab.images / "disk.img", 4 << 20)
    write_config(lab.images, hosts, group="  chains = 2\n")
    lab.start_master()
    clients = [lab.start_client(h) for h in hosts]
    for c in clients:
        assert c.wait(60) == 0, lab.dump()
    open_page(lab, page)
    page.wait_for(states_are(hosts, "DONE"), 30, "every client DONE on the page")
    drawn = page.evaluate("""[...document.querySelectorAll('.chain[data-chain]')].map(row => ({
        label: row.querySelector('.hop.master').textContent,
        hops: [...row.querySelectorAll('[data-hop]')].map(hop => hop.dataset.hop)}))""")
    assert drawn == [{"label": "masterchain 1", "hops": hosts[:3]},
                     {"label": "masterchain 2", "hops": hosts[3:]}]
    page.screenshot(ARTIFACTS / "status-page-chains.png", 1280, 700)
    assert page.errors == []


def test_page_shows_each_hosts_disks_and_marks_the_one_it_writes(lab, page):
    write_image(lab.images / "disk.img", 1 << 20)
    write_config(lab.images, HOSTS[:1], group=MANUAL)
    lab.start_master()
    disks = [
        {"path": "/dev/nvme0n1", "size": 512110190592, "model": "Samsung SSD 970", "serial": "S4EW",
         "transport": "nvme", "rotational": False},
        {"path": "/dev/sda", "size": 1000204886016, "transport": "sata", "rotational": True,
         "boot": True, "mounted": "/"},
    ]
    assert lab.call("POST", "/api/register", {"data_port": 9, "disks": disks}, HOSTS[0])[0] == 200
    assert lab.call("POST", "/api/ready", {"destination": "/dev/nvme0n1"}, HOSTS[0])[0] == 200
    open_page(lab, page)
    line = f"#groups tr[data-host='{HOSTS[0]}'] .disks"
    page.wait_for(f"!!document.querySelector(\"{line}\")", 10, "the host's disk line")
    assert page.evaluate(f"document.querySelector(\"{line}\").textContent") == \
        "→ nvme0n1 476.9 GiB nvme SSD · sda 931.5 GiB sata HDD boot"
    tooltip = page.evaluate(f"document.querySelector(\"{line} .target\").title")
    assert tooltip.startswith("/dev/nvme0n1 · Samsung SSD 970 · serial S4EW")
    page.screenshot(ARTIFACTS / "status-page-disks.png", 1280, 600)
    assert page.errors == []


def test_page_marks_a_group_for_re_imaging_and_shows_each_hosts_last_network_boot(lab, page, tmp_path):
    nbi = tmp_path / "nbi"
    nbi.mkdir()
    for name in ("vmlinuz64", "corepure64.gz", "thepusher.gz", "cmdline.txt"):
        (nbi / name).write_text("x\n")
    write_image(lab.images / "disk.img", 1 << 20)
    write_config(lab.images, HOSTS[:2], group=MANUAL + f'  macs = {{ "{HOSTS[0]}" = "52:54:00:00:00:11" }}\n')
    lab.start_master("--boot", str(nbi))
    conn_boot = f"http://127.0.0.1:{lab.port}/boot.ipxe?mac=52-54-00-00-00-11&platform=efi"
    with urllib.request.urlopen(conn_boot, timeout=5) as r:
        assert b"exit 1" in r.read()  # a manual group, no mark: its disk
    open_page(lab, page)
    boot = f"#groups tr[data-host='{HOSTS[0]}'] .boot"
    page.wait_for(f"!!document.querySelector(\"{boot}\")", 10, "the host's last network boot")
    assert "its disk (nothing pending: group room starts by hand" in \
        page.evaluate(f"document.querySelector(\"{boot}\").textContent")
    page.evaluate(click("room", "reimage"))
    assert page.dialogs[-1].startswith("Image every host of group room at its next network boot?")
    page.wait_for("document.querySelectorAll(\"#groups [data-next-boot='image']\").length === 2", 10,
                  "both hosts marked to re-image at next boot")
    assert lab.clients()[HOSTS[1]]["next_boot"] == "image"
    with urllib.request.urlopen(conn_boot, timeout=5) as r:
        assert b"kernel /boot/vmlinuz64" in r.read()
    page.evaluate(f"document.querySelector(\"{boot} button[data-action='mark']\").click()")
    page.wait_for(f"document.querySelector(\"{boot}\").dataset.nextBoot === ''", 10, "the mark cleared")
    assert lab.clients()[HOSTS[0]]["next_boot"] == ""
    assert page.errors == []


def test_page_shows_the_free_bytes_of_an_image_with_a_bmap_and_of_each_client(lab, page):
    from tests.system.test_free_runs import free_image, prefill

    size = 8 << 20
    _, free = free_image(lab.images / "disk.img", size)
    free_bytes = sum(n for _, n in free)
    prefill(lab, 2, size)
    write_config(lab.images, HOSTS[:2])
    lab.start_master()
    clients = [lab.start_client(h) for h in HOSTS[:2]]
    for c in clients:
        assert c.wait(60) == 0, lab.dump()
    open_page(lab, page)
    page.wait_for(states_are(HOSTS[:2], "DONE"), 30, "every client DONE on the page")
    shown = page.evaluate("""document.querySelector("#images tr[data-image='img'] .free").textContent""")
    skipped = page.evaluate("""[...document.querySelectorAll('#groups tr[data-host] .free')]
        .map(e => e.textContent)""")
    mib = f"{free_bytes / (1 << 20):.1f} MiB"
    assert shown == f"{mib} free, not sent"
    assert skipped == [f"{mib} free, skipped"] * 2
    page.screenshot(ARTIFACTS / "status-page-free.png", 1280, 600)
    assert page.errors == []
