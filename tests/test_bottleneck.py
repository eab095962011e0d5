"""Naming the hop that holds the chain back, from the queue figures hops report."""

from thepusher.master import bottleneck


def hop(host, writer, forwarder, decode=0.0, write=1.0, state="BUSY", capacity=32):
    return {"host": host, "state": state, "queues": {
        "capacity": capacity, "write_queue": writer, "forward_queue": forwarder,
        "decode_seconds": decode, "write_seconds": write}}


def test_slow_disk_is_the_last_full_hop_with_a_full_writer_queue():
    chain = [hop("a", 2, 31), hop("b", 3, 30), hop("c", 32, 0), hop("d", 0, 0)]
    assert bottleneck.find(chain)["host"] == "c"
    assert bottleneck.find(chain)["cause"] == "disk"


def test_slow_decompression_is_named_when_the_writer_mostly_decodes():
    chain = [hop("a", 1, 30), hop("b", 30, 0, decode=5.0, write=0.5)]
    assert bottleneck.find(chain) == {
        "host": "b", "cause": "decompression", "write_queue": 30, "forward_queue": 0,
        "capacity": 32}


def test_slow_link_is_a_full_forwarder_queue_before_a_starved_hop():
    chain = [hop("a", 0, 31), hop("b", 0, 1), hop("c", 0, 0)]
    assert bottleneck.find(chain)["host"] == "a" and bottleneck.find(chain)["cause"] == "link"


def test_no_full_queue_means_no_bottleneck_and_finished_hops_are_ignored():
    assert bottleneck.find([hop("a", 3, 4), hop("b", 1, 0)]) is None
    assert bottleneck.find([hop("a", 32, 0, state="DONE")]) is None

