"""The master's check of a client's disk list (master/disks.py): whatever JSON a client
sends as `disks`, the master keeps only well-typed, bounded disks, or answers 400."""

from hypothesis import given, settings
from hypothesis import strategies as st

from thepusher.disk.inventory import Disk
from thepusher.master.disks import FIELDS, MAX_DISKS, MAX_TEXT, disks_field
from thepusher.master.errors import ApiError

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
# Mostly well-formed disks with one field of any JSON value: what a broken client sends.
DISK = st.fixed_dictionaries({"path": st.just("/dev/sda"), "size": st.just(1 << 40)}).flatmap(
    lambda d: st.dictionaries(st.sampled_from(list(FIELDS) + ["extra"]), JSON, max_size=3)
    .map(lambda more: dict(d, **more)))


@settings(max_examples=60, deadline=None)  # large recursive JSON: 150 took 12 s
@given(st.lists(DISK | JSON, max_size=5) | JSON)
def test_any_disk_list_is_kept_well_typed_and_bounded_or_refused_with_a_400(disks):
    try:
        kept = disks_field({"disks": disks})
    except ApiError as e:
        assert e.status == 400 and e.message.startswith("field 'disks'")
        return
    assert len(kept) <= MAX_DISKS
    for disk in kept:
        assert list(disk) == list(FIELDS)
        for key, (kind, _) in FIELDS.items():
            assert type(disk[key]) is kind
            assert kind is not str or len(disk[key]) <= MAX_TEXT
            assert kind is not int or disk[key] >= 0


def test_what_a_client_lists_is_kept_field_for_field():
    disk = Disk(path="/dev/nvme0n1", size=512110190592, logical_sector_size=512,
                physical_sector_size=4096, model="Samsung SSD 970", serial="S4EW", wwn="eui.0025",
                rotational=False, removable=False, transport="nvme", read_only=False, boot=False,
                mounted="")
    assert disks_field({"disks": [disk.to_json()]}) == [disk.to_json()]
    assert list(FIELDS) == list(disk.to_json())
