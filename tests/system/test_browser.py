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

from tests.support import browser, room
from tests.conftest import sha256_file, write_config, write_image
from tests.system.test_bottleneck_starved import starved_and_ready
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


# The grid of a room, read from the DOM: every tile, the ones a filter or search shows.
GRID = "article[data-group='room']"


def find(selector: str) -> str:
    """A JS expression: the first element the CSS selector matches inside the room's card."""
    return f"document.querySelector({json.dumps(f'{GRID} {selector}')})"


TILES = f"[...document.querySelectorAll({json.dumps(f'{GRID} .tile')})]"
SHOWN = f"{TILES}.filter(t => !t.hidden).map(t => t.dataset.host)"
CHIPS = f"""Object.fromEntries([...document.querySelectorAll({json.dumps(f'{GRID} .chip')})]
  .map(c => [c.dataset.filter, +c.dataset.count]))"""


def chip(state: str) -> str:
    return find(f".chip[data-filter='{state}']") + ".click()"


def search(text: str) -> str:
    return (f"(() => {{ const box = {find('.grid-search')}; "
            f"box.value = {json.dumps(text)}; box.dispatchEvent(new Event('input')); }})()")


def tile(host: str, what: str) -> str:
    return find(f".tile[data-host='{host}']") + f".{what}"


# A copy of the last status with one host changed, drawn: the hosts whose tiles changed.
ONE_CHANGED = f"""(() => {{
  const st = JSON.parse(JSON.stringify(page.status));
  const c = st.groups[0].clients.find(c => c.host === '127.0.1.100');
  Object.assign(c, {{state: 'ERROR', error: 'disk gone'}});
  const seen = new MutationObserver(() => {{}});
  seen.observe({find('.grid')}, {{subtree: true, attributes: true,
    childList: true, characterData: true}});
  render(st);
  const touched = seen.takeRecords().map(r => {{
    const el = r.target.nodeType === 1 ? r.target : r.target.parentElement;
    const t = el.closest('.tile');
    return t ? t.dataset.host : el.className;
  }});
  seen.disconnect();
  return [...new Set(touched)];
}})()"""


def test_page_shows_a_room_of_200_as_a_grid_with_state_filters_and_search(lab, page):
    """200 hosts (played through the real API, tests/support/room.py) in a running round:
    one tile each, chips that count and filter the states, a search box for names,
    addresses and MACs, details on a tap, the silent host named as the bottleneck."""
    hosts = room.room(200)
    size = 64 << 20
    write_image(lab.images / "disk.img", size)
    write_config(lab.images, hosts, group=MANUAL,
                 settings='io_timeout = 120\nhost "127.0.1.7" {\n  name = "pc-007"\n}\n')
    lab.start_master()
    with room.Room(lab, size, sha256_file(lab.images / "disk.img")) as r:
        r.register(hosts[:170])
        r.register(hosts[170:185], ready=False)
        assert lab.call("POST", "/api/groups/room/start", {})[0] == 200
        r.arm(hosts[:170])
        for host in hosts[:40]:
            r.done(host)
        for host in hosts[40:50]:
            r.fail(host, "disk /dev/sda: Input/output error at byte 22020096")
        for i, host in enumerate(hosts[50:170]):
            r.progress(host, i / 120)
        r.register(hosts[185:195])  # ready while the round runs: WAIT for the next one
        r.silent(hosts[60])

        open_page(lab, page)
        page.wait_for(f"{TILES}.length === 200", 20, "a tile for each of the 200 hosts")
        assert not page.evaluate("!!document.querySelector('#groups tr[data-host]')")
        assert page.evaluate(CHIPS) == {"": 200, "NONE": 20, "WAIT": 10, "BUSY": 120, "DONE": 40,
                                        "ERROR": 10}
        assert "room" in page.evaluate("document.getElementById('overall').textContent")
        note = find(".bottleneck-note")
        page.wait_for(f"{note}?.dataset.bottleneck === '{hosts[60]}'", 15,
                      "the host that stopped reporting named")
        assert "no report for" in page.evaluate(f"{note}.textContent")
        assert page.evaluate(tile(hosts[60], "classList.contains('silent')"))
        assert "no report for" in page.evaluate(tile(hosts[60], "title"))
        page.screenshot(ARTIFACTS / "status-page-200.png", 1280, 900)

        page.evaluate(chip("ERROR"))
        assert page.evaluate(SHOWN) == hosts[40:50]
        page.evaluate(search("127.0.1.4"))  # and the search: of the ERROR hosts, 127.0.1.4x
        assert page.evaluate(SHOWN) == hosts[40:49]
        page.evaluate(chip(""))
        assert page.evaluate(SHOWN) == [hosts[3], *hosts[39:49]]
        page.evaluate(search("pc-007"))
        assert page.evaluate(SHOWN) == [hosts[6]]
        page.evaluate(search(room.mac(hosts[141]).upper().replace(":", "-")))
        assert page.evaluate(SHOWN) == [hosts[141]]
        page.evaluate(search(""))
        assert len(page.evaluate(SHOWN)) == 200

        page.evaluate(tile(hosts[45], "click()"))
        detail = page.evaluate(f"{find('.tile-detail')}.textContent")
        for word in (hosts[45], room.mac(hosts[45]), "ERROR", "Input/output error", "33%"):
            assert word in detail, detail
        assert "BUSY" in page.evaluate(tile(hosts[150], "title"))
        page.screenshot(ARTIFACTS / "status-page-200-phone.png", 390, 844, mobile=True)
        assert page.evaluate(ONE_CHANGED) == ["127.0.1.100"], "a change redraws its own tile only"
    assert page.errors == []



NOTE = "document.querySelector('.bottleneck-note')"
# What the page says holds the chain back: the host its note names, the rows it marks.
NAMED = f"""(() => ({{note: {NOTE} && {NOTE}.dataset.bottleneck,
  text: {NOTE} && {NOTE}.textContent,
  rows: [...document.querySelectorAll('#groups tr.is-bottleneck')].map(r => r.dataset.host)}}))()"""


def test_page_names_the_cpu_starved_client_and_never_its_upstream(lab, page, cpu_starved):
    """The middle client may use 3% of a CPU: all the while it holds the chain back, the
    page names it and marks its row, and never the first client, whose forwarder queue
    is full because the starved one reads slowly."""
    clients = starved_and_ready(lab, cpu_starved, 256 << 20)
    open_page(lab, page)
    assert lab.call("POST", "/api/groups/room/start", {})[0] == 200
    page.wait_for(f"!!{NOTE}", 60, "the page to name a bottleneck")
    page.screenshot(ARTIFACTS / "status-page-starved.png", 1280, 700)
    seen = []
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline and lab.round()["phase"] == "streaming":
        seen.append(page.evaluate(NAMED))
        time.sleep(0.2)
    (cpu_starved / "cpu.cfs_quota_us").write_text("-1")  # let the round finish quickly
    named = [s for s in seen if s["note"]]
    assert named and all(s["note"] == HOSTS[1] and s["rows"] == [HOSTS[1]] for s in named), seen
    assert "short of CPU" in named[0]["text"], named[0]
    for c in clients:
        assert c.wait(120) == 0, lab.dump()
    assert page.errors == []


def test_page_names_a_client_that_stopped_reporting_and_says_for_how_long(lab, page):
    """The middle client is frozen (SIGSTOP) mid-round: it reports nothing any more, the
    first client's forwarder fills and the last one starves. The page names it, with
    how long it has been silent, on its row too; once it goes on, the round ends well."""
    write_image(lab.images / "disk.img", 256 << 20)
    write_config(lab.images, HOSTS)
    lab.start_master()
    clients = [lab.start_client(h) for h in HOSTS]
    open_page(lab, page)
    lab.wait_for(lambda: "receiving img" in clients[1].output(), 30, "data reaching the middle client")
    clients[1].kill(signal.SIGSTOP)
    try:
        page.wait_for(f"{NOTE} && {NOTE}.dataset.bottleneck === '{HOSTS[1]}'", 20,
                      "the page to name the stopped client")
        shown = page.evaluate(NAMED)
        assert shown["rows"] == [HOSTS[1]] and "no report for" in shown["text"], shown
        row = page.evaluate(f"document.querySelector(\"#groups tr[data-host='{HOSTS[1]}']\").textContent")
        assert "no report for" in row, row
        assert lab.status()["groups"][0]["bottleneck"]["cause"] == "silent"
        page.screenshot(ARTIFACTS / "status-page-stopped.png", 1280, 700)
    finally:
        clients[1].kill(signal.SIGCONT)
    for c in clients:
        assert c.wait(60) == 0, lab.dump()
    assert page.errors == []
