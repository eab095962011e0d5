"""What the master learns about hosts (master/hosts.py): a MAC after a quiet second is
saved at once, the others in batches, not by rewriting the whole file for each new one;
an admin's addition is saved at once; the file keeps its form."""

import json
import logging
import time

from thepusher.master import hosts
from thepusher.master.hosts import HostBook


def count_writes(monkeypatch) -> list:
    writes = []
    real = hosts.atomic_write

    def counted(path, text):
        writes.append(len(text))
        real(path, text)
    monkeypatch.setattr(hosts, "atomic_write", counted)
    return writes


def test_thousands_of_new_macs_cost_a_few_writes_and_all_are_saved_on_close(tmp_path, monkeypatch):
    writes = count_writes(monkeypatch)
    book = HostBook.load(str(tmp_path))
    start = time.monotonic()
    for i in range(3000):
        book.learn_mac(f"10.1.{i // 250}.{i % 250 + 1}", f"02:00:00:00:{i // 256:02x}:{i % 256:02x}")
    took = time.monotonic() - start
    book.close()
    # a write or two a second while learning, and the last one on close
    assert len(writes) <= 2 * (took / hosts.SAVE_EVERY + 1) + 1, (len(writes), took)
    again = HostBook.load(str(tmp_path))
    assert len(again.macs) == 3000
    assert again.macs["10.1.11.250"] == "02:00:00:00:0b:b7"


def test_a_first_mac_is_saved_at_once_and_the_next_ones_within_a_second_or_so(tmp_path):
    book = HostBook.load(str(tmp_path))
    path = tmp_path / hosts.FILENAME
    book.learn_mac("10.0.0.5", "02:00:00:00:00:05")
    assert json.loads(path.read_text())["macs"] == {"10.0.0.5": "02:00:00:00:00:05"}
    book.learn_mac("10.0.0.6", "02:00:00:00:00:06")
    deadline = time.monotonic() + 10 * hosts.SAVE_EVERY
    while "10.0.0.6" not in path.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(json.loads(path.read_text())["macs"]) == 2
    book.close()


def test_an_addition_is_saved_before_it_returns_and_a_forgotten_mac_goes(tmp_path):
    book = HostBook.load(str(tmp_path))
    book.learn_mac("10.0.0.5", "02:00:00:00:00:05")
    book.learn_mac("10.0.0.6", "02:00:00:00:00:06")
    book.forget("10.0.0.6")
    book.add("10.0.0.5", "room")
    data = json.loads((tmp_path / hosts.FILENAME).read_text())
    assert data["added"] == {"room": ["10.0.0.5"]}
    assert data["macs"] == {"10.0.0.5": "02:00:00:00:00:05"}
    book.close()


def test_a_failing_save_is_said_once_and_tried_again(tmp_path, monkeypatch, caplog):
    book = HostBook.load(str(tmp_path))
    real = hosts.atomic_write
    monkeypatch.setattr(hosts, "atomic_write", lambda path, text: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with caplog.at_level(logging.ERROR, logger="thepusher.master"):
        book.learn_mac("10.0.0.5", "02:00:00:00:00:05")
        book.flush()
        book.flush()
    assert caplog.text.count("cannot save") == 1 and "No space left" in caplog.text
    monkeypatch.setattr(hosts, "atomic_write", real)
    book.close()
    assert "10.0.0.5" in json.loads((tmp_path / hosts.FILENAME).read_text())["macs"]
