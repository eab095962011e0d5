"""Naming the hop that holds the chain back, from the queue figures hops report."""

from thepusher.master import bottleneck


def hop(host, writer, forwarder, decode=0.0, write=1.0, state="BUSY", capacity=32, unread=0.0,
        bytes_done=1 << 20, age=0.5):
    return {"host": host, "state": state, "bytes_done": bytes_done, "last_report_age": age,
            "queues": {"capacity": capacity, "write_queue": writer, "forward_queue": forwarder,
                       "decode_seconds": decode, "write_seconds": write, "unread": unread}}


def test_slow_disk_is_the_last_full_hop_with_a_full_writer_queue():
    chain = [hop("a", 2, 31), hop("b", 3, 30), hop("c", 32, 0), hop("d", 0, 0)]
    assert bottleneck.find(chain)["host"] == "c"
    assert bottleneck.find(chain)["cause"] == "disk"


def test_slow_decompression_is_named_when_the_writer_mostly_decodes():
    chain = [hop("a", 1, 30), hop("b", 30, 0, decode=5.0, write=0.5)]
    assert bottleneck.find(chain) == {
        "host": "b", "cause": "decompression", "write_queue": 30, "forward_queue": 0,
        "capacity": 32}


def test_slow_link_is_a_full_forwarder_queue_before_a_hop_that_reads_all_it_gets():
    chain = [hop("a", 0, 31), hop("b", 0, 1, unread=0.01), hop("c", 0, 0)]
    found = bottleneck.find(chain)
    assert (found["host"], found["cause"], found["next"]) == ("a", "link", "b")


def test_a_hop_that_reads_slowly_is_named_and_not_its_upstream():
    """A CPU-starved hop reads as slowly as it writes, so its own queues stay short; but
    what its upstream sent it waits unread in its socket: it is the one, not the link."""
    chain = [hop("a", 0, 31), hop("b", 5, 0, unread=0.9), hop("c", 0, 0, unread=0.0)]
    assert bottleneck.find(chain) == {
        "host": "b", "cause": "cpu", "write_queue": 5, "forward_queue": 0, "capacity": 32,
        "unread": 0.9}


def test_no_verdict_on_a_full_forwarder_while_the_next_hop_has_reported_no_data_yet():
    """Its figures are from before the stream reached it: they say nothing of the link."""
    chain = [hop("a", 0, 31), hop("b", 0, 0, unread=None, bytes_done=0), hop("c", 0, 0)]
    assert bottleneck.find(chain) is None


def test_a_hop_of_an_older_client_that_reports_no_socket_fill_leaves_the_link_named():
    old = hop("b", 0, 1)
    del old["queues"]["unread"]
    found = bottleneck.find([hop("a", 0, 31), old])
    assert (found["host"], found["cause"], found["next"]) == ("a", "link", "b")


def test_a_busy_hop_that_stopped_reporting_is_named_before_any_queue():
    """A frozen hop (SIGSTOP, a hung machine) sends no figures at all: its upstream's
    queues fill and the hops after it starve, while its own last figures look fine."""
    chain = [hop("a", 0, 31), hop("b", 0, 0, age=bottleneck.SILENT + 2.5), hop("c", 0, 0),
             hop("d", 0, 0, age=bottleneck.SILENT + 9)]
    assert bottleneck.find(chain) == {
        "host": "b", "cause": "silent", "last_report_age": bottleneck.SILENT + 2.5,
        "write_queue": 0, "forward_queue": 0, "capacity": 32}
    assert bottleneck.find([hop("a", 0, 31), hop("b", 0, 0, age=bottleneck.SILENT + 1, state="DONE")]) \
        is not None  # a finished hop has nothing more to report
    assert bottleneck.find([hop("a", 0, 31), hop("b", 0, 0, age=None)])["cause"] == "link"


def test_no_full_queue_means_no_bottleneck_and_finished_hops_are_ignored():
    assert bottleneck.find([hop("a", 3, 4), hop("b", 1, 0)]) is None
    assert bottleneck.find([hop("a", 32, 0, state="DONE")]) is None


def test_with_several_chains_the_round_bottleneck_is_the_one_of_the_chain_furthest_behind():
    ahead = [hop("a", 32, 0, bytes_done=900), hop("b", 0, 0, bytes_done=800)]
    behind = [hop("c", 0, 31, bytes_done=500), hop("d", 0, 0, bytes_done=400)]
    assert bottleneck.of_round([ahead, behind])["host"] == "c"
    assert bottleneck.of_round([behind, ahead])["host"] == "c"
    assert bottleneck.of_round([ahead])["host"] == "a"
    assert bottleneck.of_round([]) is None


def test_a_silent_hop_is_named_whichever_chain_it_is_in():
    ahead = [hop("a", 0, 0, bytes_done=900), hop("b", 0, 0, bytes_done=800, age=bottleneck.SILENT)]
    behind = [hop("c", 0, 31, bytes_done=500), hop("d", 0, 0, bytes_done=400)]
    assert bottleneck.of_round([behind, ahead])["host"] == "b"
