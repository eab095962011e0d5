"""The round history survives the master: kill -9 it between rounds and mid-round."""

import json
import socket

import pytest

from tests.conftest import write_config, write_image

A = "127.0.0.11"


def history_file(lab) -> dict:
    return json.loads((lab.images / "thepusher-history.json").read_text())


def test_history_and_round_counter_survive_a_master_restart_between_rounds(lab):
    write_image(lab.images / "disk.img", 1 << 20)
    write_config(lab.images, [A])
    lab.start_master()
    assert lab.start_client(A).wait(30) == 0, lab.dump()
    lab.wait_for(lambda: lab.status()["history"], 20, "round 1 in the history")
    saved = history_file(lab)
    assert saved["round_counter"] == 1 and saved["rounds"][0]["outcome"] == {A: "DONE"}
    lab.restart_master()
    status = lab.status()
    assert [r["number"] for r in status["history"]] == [1]
    assert status["history"][0]["outcome"] == {A: "DONE"}
    assert lab.clients()[A]["state"] == "DONE"  # restored: a group does not wait for it
    assert lab.start_client(A).wait(30) == 0, lab.dump()
    rounds = lab.wait_for(lambda: len(h := lab.status()["history"]) == 2 and h, 20, "round 2")
    assert rounds[1]["number"] == 2 and rounds[1]["outcome"] == {A: "DONE"}


@pytest.mark.parametrize("phase", ["arming", "streaming"])
def test_round_interrupted_by_a_master_crash_is_failed_after_restart(lab, phase):
    """A round is on disk as running from its start; a master killed during it finds it
    there on restart, records it failed, and serves the next round normally.

    The test plays the client: it registers and says ready, and for "streaming" also
    takes the start, with a data port that accepts the master's connection and then
    says nothing, so the master is stuck streaming."""
    write_image(lab.images / "disk.img", 1 << 20)
    write_config(lab.images, [A])
    lab.start_master()
    with socket.create_server((A, 0)) as silent:
        lab.call("POST", "/api/register", {"data_port": silent.getsockname()[1]}, source=A)
        lab.call("POST", "/api/ready", {}, source=A)
        if phase == "streaming":
            start = lab.call("GET", "/api/next?wait=10", source=A)[1]
            lab.call("POST", "/api/report", {"state": "BUSY", "session": start["session"]}, source=A)
        lab.wait_for(lambda: (r := lab.round()) and r["phase"] == phase, 20, f"round 1 {phase}")
        assert history_file(lab)["rounds"][0]["phase"] != "finished"
        lab.restart_master()
    (r,) = lab.status()["history"]
    assert r["number"] == 1 and r["error"] == "master restarted during the round"
    assert r["outcome"] == {A: "ERROR"} and r["errors"][A] == "master restarted during the round"
    assert history_file(lab)["rounds"][0]["phase"] == "finished"
    assert lab.clients()[A]["state"] == "ERROR"
    assert lab.start_client(A).wait(30) == 0, lab.dump()
    rounds = lab.wait_for(lambda: len(h := lab.status()["history"]) == 2 and h, 20, "round 2")
    assert rounds[1]["number"] == 2 and rounds[1]["outcome"] == {A: "DONE"}


def test_unreadable_history_is_kept_aside_and_the_master_starts_afresh(lab):
    write_image(lab.images / "disk.img", 1 << 20)
    write_config(lab.images, [A])
    (lab.images / "thepusher-history.json").write_text("{not json")
    lab.start_master()
    assert lab.status()["history"] == []
    assert (lab.images / "thepusher-history.json.corrupt").read_text() == "{not json"
    assert "cannot read the round history" in lab.procs[0].output()


def test_client_started_before_the_master_keeps_registering_until_it_answers(lab):
    """Machines often boot before the master is up: the client retries with backoff,
    says so on its console, and takes part once the master answers."""
    from tests.conftest import free_port

    write_image(lab.images / "disk.img", 1 << 20)
    write_config(lab.images, ["127.0.0.11"])
    lab.port = free_port()
    client = lab.start_client("127.0.0.11")
    lab.wait_for(lambda: "cannot register" in client.output(), 20, "the client's retry message")
    lab.start_master()
    assert client.wait(60) == 0, lab.dump()
    assert "retrying in" in client.output()
