"""The master's limits on what the network may take (master/limits.py): places per
address and in all, quiet logging under a flood, the open-file limit."""

import logging
import resource

import pytest

from thepusher.master import limits


def test_slots_per_address_then_in_all_and_given_back():
    slots = limits.Slots(total=3, per_source=2, what="event streams")
    assert slots.take("10.0.0.1") == slots.take("10.0.0.1") == ""
    assert slots.take("10.0.0.1") == "too many event streams from 10.0.0.1: 2 open, at most 2 per address"
    assert slots.take("10.0.0.2") == ""
    assert slots.take("10.0.0.3") == "too many event streams: 3 open, at most 3"
    slots.release("10.0.0.1")
    assert slots.take("10.0.0.3") == ""
    assert slots.in_use == 3


def test_slots_count_an_ipv6_machine_by_its_64():
    slots = limits.Slots(total=10, per_source=1, what="event streams")
    assert slots.take("2001:db8::1") == ""
    assert "2001:db8::/64" in slots.take("2001:db8::2")
    assert slots.take("2001:db8:0:1::1") == ""


def test_every_says_yes_once_per_interval_and_counts_the_rest():
    now = [0.0]
    every = limits.Every(10.0, clock=lambda: now[0])
    assert every.due() == 0
    assert every.due() is None and every.due() is None
    now[0] = 10.0
    assert every.due() == 2
    assert every.due() is None


def test_the_connection_budget_keeps_files_for_the_master_itself():
    assert limits.connection_budget(1024) == 1024 - limits.RESERVE_FILES
    assert limits.connection_budget(300) == 150  # at least half of a tiny limit
    assert limits.connection_budget(1 << 20) == (1 << 20) - limits.RESERVE_FILES


def test_the_soft_open_file_limit_is_raised_to_the_hard_one(caplog):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 512:
        pytest.skip(f"needs a finite hard open-file limit of at least 512 (it is {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        with caplog.at_level(logging.INFO, logger="thepusher.master"):
            assert limits.raise_open_files() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
        assert f"open files: at most {hard}" in caplog.text
        if hard < limits.LOW_OPEN_FILES:
            assert "ulimit -Hn" in caplog.text
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 256), hard))
