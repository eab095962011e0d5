"""The master's record size for a chain's depth (wire.record_size_for)."""

from hypothesis import given
from hypothesis import strategies as st

from thepusher.chain import wire

MiB = 1 << 20


def test_shallow_chains_and_large_images_keep_1_mib_records():
    assert wire.record_size_for(20_000 * MiB, 200) == MiB
    assert wire.record_size_for(64 * MiB, 1) == MiB
    assert wire.record_size_for(0, 1) == wire.MIN_RECORD


def test_a_deep_chain_of_a_small_image_gets_records_down_to_64_kib():
    assert wire.record_size_for(256 * MiB, 200) == 64 << 10
    assert wire.record_size_for(20_000 * MiB, 500) == 512 << 10


@given(st.integers(0, 1 << 44), st.integers(0, 1000))
def test_record_size_is_a_power_of_two_that_keeps_the_fill_lag_within_its_share(size, depth):
    record = wire.record_size_for(size, depth)
    assert wire.MIN_RECORD <= record <= wire.DEFAULT_RECORD_SIZE
    assert record & (record - 1) == 0
    lag = max(depth, 1) * record
    assert record == wire.MIN_RECORD or lag * wire.FILL_SHARE <= size
    assert record == wire.DEFAULT_RECORD_SIZE or 2 * lag * wire.FILL_SHARE > size
