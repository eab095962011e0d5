"""The start rules as pure functions: who a group waits for, when, and who goes in."""

from thepusher.config.model import ClientGroup
from thepusher.master import policy
from thepusher.master.state import Client

HOSTS = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def room(states, **policy_keys):
    """A group of HOSTS whose clients are in `states` ("WAIT@5" = ready since t=5;
    "ERROR*2" = ended in ERROR two rounds in a row)."""
    group = ClientGroup("g", "img", HOSTS, 1, **policy_keys)
    clients = {}
    for host, text in zip(HOSTS, states):
        state, _, since = text.partition("@")
        state, _, failures = state.partition("*")
        clients[host] = Client(host, "g", state, ready_at=float(since or 0),
                               failures=int(failures or 0), outcome="ERROR" if failures else "")
    return group, clients


def test_all_waits_for_every_host_then_takes_them_in_hosts_order():
    assert policy.due(*room(["WAIT", "WAIT", "NONE"]), now=100) == ([], None)
    assert policy.due(*room(["WAIT", "WAIT", "WAIT"]), now=100) == (HOSTS, None)


def test_done_hosts_are_not_waited_for():
    assert policy.due(*room(["DONE", "WAIT", "DONE"]), now=0) == ([HOSTS[1]], None)


def test_a_host_out_of_retries_is_not_waited_for_nor_taken():
    group, clients = room(["DONE", "ERROR*1", "WAIT"])
    assert policy.due(group, clients, now=0) == ([HOSTS[2]], None)
    clients[HOSTS[1]].state = "WAIT"  # registered again: still out of automatic retries
    assert policy.due(group, clients, now=0) == ([HOSTS[2]], None)
    assert policy.for_retry(group, clients) == [HOSTS[1], HOSTS[2]]


def test_a_host_that_cannot_take_part_is_not_waited_for_until_it_registers_again():
    group, clients = room(["WAIT", "ERROR", "WAIT"])
    assert policy.due(group, clients, now=0) == ([], None)  # an ERROR it may recover from
    clients[HOSTS[1]].unready = True  # its preImage failed, or the image does not fit
    assert policy.due(group, clients, now=0) == ([HOSTS[0], HOSTS[2]], None)
    assert policy.waiting_for(group, clients) == []


def test_a_host_within_retries_is_waited_for():
    assert policy.due(*room(["DONE", "ERROR*1", "WAIT"], retries=1), now=0) == ([], None)
    assert policy.due(*room(["DONE", "WAIT*1", "WAIT"], retries=1), now=0) == (HOSTS[1:], None)


def test_wait_counts_from_the_first_ready_host_and_needs_min_clients():
    group, clients = room(["WAIT@10", "WAIT@12", "NONE"], wait=30.0, min_clients=2)
    assert policy.due(group, clients, now=20) == ([], 40.0)
    assert policy.due(group, clients, now=40) == (HOSTS[:2], None)
    group, clients = room(["WAIT@10", "NONE", "NONE"], wait=30.0, min_clients=2)
    assert policy.due(group, clients, now=50) == ([], None)  # the next ready host decides


def test_manual_never_starts_on_its_own():
    group, clients = room(["WAIT", "WAIT", "WAIT"], start="manual")
    assert policy.due(group, clients, now=0) == ([], None)
    assert policy.for_start(group, clients) == HOSTS


def test_retry_takes_ready_hosts_that_failed_or_came_late_not_the_ones_done_before():
    group, clients = room(["WAIT", "WAIT", "WAIT"], start="manual")
    clients[HOSTS[0]].outcome = "DONE"  # re-registered after a verified copy
    clients[HOSTS[1]].outcome = "ERROR"
    assert policy.for_retry(group, clients) == HOSTS[1:]


def test_a_host_back_after_done_starts_a_new_deployment_of_the_whole_group():
    group, clients = room(["WAIT", "DONE", "DONE"])
    clients[HOSTS[0]].outcome = "DONE"  # rebooted into the netboot image for a re-image
    assert policy.due(group, clients, now=0) == ([], None)
    for host in HOSTS:
        clients[host].state, clients[host].outcome = "WAIT", "DONE"
    assert policy.due(group, clients, now=0) == (HOSTS, None)


def test_a_re_imaging_names_the_done_hosts_not_restarted_as_what_it_waits_for():
    group, clients = room(["DONE", "DONE", "DONE"])
    for c in clients.values():
        c.outcome = "DONE"
    assert policy.waiting_for(group, clients) == []  # imaged, and nobody back: idle
    clients[HOSTS[0]].state = "WAIT"  # one PC restarted for a new image
    assert policy.due(group, clients, now=0) == ([], None)
    assert policy.waiting_for(group, clients) == HOSTS[1:]


def test_a_group_waits_for_nothing_while_no_host_is_ready_or_when_it_starts_by_hand():
    assert policy.waiting_for(*room(["NONE", "NONE", "NONE"])) == []
    assert policy.waiting_for(*room(["WAIT", "NONE", "BUSY"])) == HOSTS[1:]
    assert policy.waiting_for(*room(["WAIT", "NONE", "NONE"], start="manual")) == []
