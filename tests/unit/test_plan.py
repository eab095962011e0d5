"""The master -> client contract (plan.py): what goes on the wire is exactly the JSON of
docs/api.md (its bytes are signed), and a client refuses an answer that lacks a key or
holds one of another type, naming the key."""

import json

import pytest

from thepusher import signing
from thepusher.plan import PlanError, RoundFailed, Start, Task, Waiting, start_from_json

TASK = Task(group="room1", image="ubuntu", comment="", destination="/dev/sda", type="IMG",
            compression="NONE", verify="write", pre_image="", post_image="reboot")
START = Start(
    round=1, session="4be1", secret=bytes(range(32)), chain=1, chains=1, position=1,
    chain_length=3, downstream=(("10.0.0.12", 8081), ("10.0.0.13", 8081)), image="ubuntu",
    stream_size=268435456, content_size=268435456, sha256="9f" * 32, compression="NONE",
    record_size=1048576, verify="write", accept_timeout=60.0, io_timeout=30.0, window=50331648,
)
# The start as the master put it together before plan.py: the bytes must not change.
START_JSON = {
    "round": 1, "session": "4be1", "secret": bytes(range(32)).hex(), "chain": 1, "chains": 1,
    "position": 1, "chain_length": 3, "downstream": [("10.0.0.12", 8081), ("10.0.0.13", 8081)],
    "image": "ubuntu", "stream_size": 268435456, "content_size": 268435456, "sha256": "9f" * 32,
    "compression": "NONE", "record_size": 1048576, "verify": "write", "accept_timeout": 60.0,
    "io_timeout": 30.0, "window": 50331648, "action": "receive",
}
WIRE = json.loads(json.dumps(START_JSON))  # as a client reads it: lists, not tuples
TASK_JSON = {"group": "room1", "image": "ubuntu", "comment": "", "destination": "/dev/sda",
             "type": "IMG", "compression": "NONE", "verify": "write", "preImage": "",
             "postImage": "reboot", "grow": False, "hostname": "", "address": "", "mac": "",
             "vars": {}, "personalize": ""}
# What a task from an older master lacks, and what it then means (test_placeholders too).
OPTIONAL_TASK_KEYS = {"grow": False, "hostname": "", "address": "", "mac": "", "vars": {},
                      "personalize": ""}


# -- on the wire -----------------------------------------------------------------------


def test_start_json_is_byte_for_byte_what_the_master_sent_before():
    assert json.dumps(START.to_json()) == json.dumps(START_JSON)
    assert signing.canonical(START.to_json()) == signing.canonical(START_JSON)


def test_task_json_is_byte_for_byte_the_documented_task():
    assert json.dumps(TASK.to_json()) == json.dumps(TASK_JSON)


def test_error_and_wait_answers_keep_their_keys():
    assert RoundFailed("image img unusable").to_json() == {"action": "error",
                                                           "error": "image img unusable"}
    assert Waiting(True, "WAIT").to_json() == {"action": "wait", "state": "WAIT"}
    assert Waiting(False, "NONE").to_json() == {"action": "none", "state": "NONE"}


# -- round trips -----------------------------------------------------------------------


def test_start_round_trips_through_json_text():
    assert Start.from_json(json.loads(json.dumps(START.to_json()))) == START


def test_task_round_trips_through_json_text():
    assert Task.from_json(json.loads(json.dumps(TASK.to_json()))) == TASK


def test_a_task_carries_the_disk_hints_of_an_auto_destination_and_reads_them_back():
    task = Task(**dict(TASK.__dict__, destination="auto",
                       disk={"min_size": 100 << 30, "model": "Samsung*", "rotational": False}))
    wire = json.loads(json.dumps(task.to_json()))
    assert wire == dict(TASK_JSON, destination="auto",
                        disk={"min_size": 100 << 30, "model": "Samsung*", "rotational": False})
    assert Task.from_json(wire) == task


def test_a_task_carries_discard_only_when_set_and_a_task_without_it_does_not_discard():
    task = Task(**dict(TASK.__dict__, discard=True))
    wire = json.loads(json.dumps(task.to_json()))
    assert wire == dict(TASK_JSON, discard=True)
    assert Task.from_json(wire) == task
    assert "discard" not in TASK.to_json() and Task.from_json(TASK_JSON).discard is False
    with pytest.raises(PlanError, match="task has key 'discard' as str, not bool"):
        Task.from_json(dict(TASK_JSON, discard="yes"))


def test_a_task_from_an_older_master_without_disk_hints_has_none():
    assert "disk" not in TASK.to_json()
    assert Task.from_json(TASK_JSON).disk == {}


@pytest.mark.parametrize("disk, problem", [
    ({"min_size": "100G"}, "task's disk has key 'min_size' as str, not int"),
    ({"rotational": "no"}, "task's disk has key 'rotational' as str, not bool"),
    ({"max_size": True}, "task's disk has key 'max_size' as bool, not int"),
    ({"vendor": "ATA"}, "task has an unknown disk hint 'vendor'"),
    (["path"], "task's disk is list, not a JSON object"),
])
def test_a_task_with_a_disk_hint_it_cannot_apply_is_refused_naming_it(disk, problem):
    with pytest.raises(PlanError) as info:
        Task.from_json(dict(TASK_JSON, disk=disk))
    assert str(info.value) == f"the master's {problem}"


def test_signed_answer_parses_with_its_extra_keys():
    answer = signing.sign("correct-horse-battery", signing.START,
                          dict(START.to_json(), host="10.0.0.11", nonce="n-1"))
    assert start_from_json(answer) == START


def test_whole_seconds_are_taken_as_float_timeouts():
    start = Start.from_json(dict(WIRE, accept_timeout=60, io_timeout=30))
    assert isinstance(start.accept_timeout, float) and start.accept_timeout == 60.0
    assert isinstance(start.io_timeout, float) and start.io_timeout == 30.0


def test_start_from_json_tells_a_start_from_a_failed_round():
    assert start_from_json(WIRE) == START
    assert start_from_json({"action": "error", "error": "boom"}) == RoundFailed("boom")


# -- refusals --------------------------------------------------------------------------


@pytest.mark.parametrize("key", [k for k in WIRE if k != "action"])
def test_start_without_a_key_is_refused_naming_it(key):
    d = dict(WIRE)
    del d[key]
    with pytest.raises(PlanError, match=f"start lacks key '{key}'"):
        Start.from_json(d)


@pytest.mark.parametrize("key", [k for k in TASK_JSON if k not in OPTIONAL_TASK_KEYS])
def test_task_without_a_key_is_refused_naming_it(key):
    d = dict(TASK_JSON)
    del d[key]
    with pytest.raises(PlanError, match=f"task lacks key '{key}'"):
        Task.from_json(d)


@pytest.mark.parametrize("key, value, kind", [
    ("position", "1", "str"),
    ("stream_size", True, "bool"),
    ("round", 1.0, "float"),
    ("session", 7, "int"),
    ("io_timeout", "30", "str"),
    ("downstream", "10.0.0.12:8081", "str"),
    ("secret", None, "NoneType"),
])
def test_start_with_a_key_of_another_type_is_refused_naming_it(key, value, kind):
    with pytest.raises(PlanError, match=f"key '{key}' as {kind}, not "):
        Start.from_json(dict(WIRE, **{key: value}))


def test_a_task_from_an_older_master_takes_the_defaults_of_the_keys_it_lacks():
    older = {k: v for k, v in TASK_JSON.items() if k not in OPTIONAL_TASK_KEYS}
    task = Task.from_json(older)
    assert {k: task.to_json()[k] for k in OPTIONAL_TASK_KEYS} == OPTIONAL_TASK_KEYS
    with pytest.raises(PlanError, match="task has key 'grow' as str, not bool"):
        Task.from_json(dict(TASK_JSON, grow="yes"))


def test_task_with_a_key_of_another_type_is_refused_naming_it():
    with pytest.raises(PlanError, match="key 'preImage' as list, not str"):
        Task.from_json(dict(TASK_JSON, preImage=["rm", "-rf", "/"]))


@pytest.mark.parametrize("downstream", [
    [["10.0.0.12"]], [["10.0.0.12", "8081"]], [[8081, "10.0.0.12"]], [["10.0.0.12", True]],
    ["10.0.0.12"],
])
def test_start_with_a_bad_downstream_hop_is_refused_naming_the_key(downstream):
    with pytest.raises(PlanError, match="key 'downstream' with .*not a \\[host, port\\] pair"):
        Start.from_json(dict(WIRE, downstream=downstream))


def test_start_with_a_secret_not_in_hex_is_refused_naming_the_key():
    with pytest.raises(PlanError, match="key 'secret' not in hex"):
        Start.from_json(dict(WIRE, secret="not hex"))


@pytest.mark.parametrize("answer, problem", [
    ({"action": "wait", "state": "WAIT"}, "action 'wait', not 'receive' or 'error'"),
    ({"action": "error"}, "start lacks key 'error'"),
    (["receive"], "start is list, not a JSON object"),
])
def test_answers_that_start_nothing_are_refused_saying_why(answer, problem):
    with pytest.raises(PlanError, match=problem):
        start_from_json(answer)
