"""Hosts in no group are kept for the page up to MAX_UNASSIGNED (master/state.py); past
that the least recently heard from go, and the master forgets their MACs."""

from thepusher.config.load import load
from thepusher.master.history import History
from thepusher.master.state import MAX_UNASSIGNED, State

GROUPED = ["10.0.0.1", "10.0.0.2"]


def make_state(tmp_path, forgotten: list) -> State:
    (tmp_path / "disk.img").write_bytes(b"\0" * 4096)
    path = tmp_path / "thePusher-config.hcl"
    path.write_text('image "img" {\n  filename = "disk.img"\n  destination = "/dev/null"\n}\n'
                    'clientgroup "room" {\n  image = "img"\n  hosts = ["10.0.0.1", "10.0.0.2"]\n}\n')
    config = load(str(path), str(tmp_path))
    return State(config, History(str(tmp_path / "history.json")), b"k" * 32, forget=forgotten.append)


def register(st: State, host: str, at: float) -> None:
    with st.lock:
        c = st.client(host)
        c.registered, c.last_seen = True, at


def unassigned(st: State) -> list:
    return [h for h, c in st.clients.items() if c.group is None]


def test_past_the_bound_the_least_recently_seen_unassigned_hosts_go(tmp_path):
    forgotten = []
    st = make_state(tmp_path, forgotten)
    hosts = [f"10.9.{i // 250}.{i % 250 + 1}" for i in range(MAX_UNASSIGNED + 500)]
    for i, host in enumerate(hosts):
        # the first one keeps coming back, as a real client does every 10 s
        register(st, hosts[0], at=float(i))
        register(st, host, at=float(i) + 0.5)
    kept = unassigned(st)
    assert len(kept) <= MAX_UNASSIGNED
    assert hosts[0] in kept and hosts[-1] in kept
    assert hosts[1] not in kept and hosts[1] in forgotten
    assert set(forgotten) == set(hosts) - set(kept)
    assert all(st.clients[h].group == "room" for h in GROUPED)  # group hosts always stay


def test_below_the_bound_nobody_goes(tmp_path):
    forgotten = []
    st = make_state(tmp_path, forgotten)
    for i in range(MAX_UNASSIGNED):
        register(st, f"10.9.{i // 250}.{i % 250 + 1}", at=float(i))
    assert len(unassigned(st)) == MAX_UNASSIGNED and forgotten == []
