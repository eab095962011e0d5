"""`destination = "auto"` on a machine's disks (a fake /sys tree): the one disk that fits
is chosen; none or several is an error that lists every disk and says which hint to add;
the boot medium is never chosen; each hint narrows as documented."""

import pytest

from tests.support.fakesys import NVME, SATA, SATA2, USB, VIRTUAL, FakeSys, vpd_pg80
from thepusher.client.choose import NoDisk, choose, reasons
from thepusher.config.model import DiskHints
from thepusher.disk.inventory import inventory

GIB = 1 << 30


def disks_of(fake: FakeSys):
    return inventory(str(fake.sys), "/dev", str(fake.mounts))


@pytest.fixture
def fake(tmp_path):
    """A lab PC booted from its SATA disk's Linux, with an NVMe disk, a USB stick and a
    loop device of the netboot image."""
    fake = FakeSys(tmp_path)
    fake.disk("nvme0n1", NVME, 512 * GIB, attrs={"wwid": "eui.0025388b71b0f2a2"},
              device={"model": "Samsung SSD 970 EVO Plus", "serial": "S4EWNX0N123456"})
    fake.disk("sda", SATA, 1000 * GIB, rotational=True, partitions=[1, 2],
              device={"model": "WDC WD10EZEX", "wwid": "naa.50014ee2b5e5f3a1",
                      "vpd_pg80": vpd_pg80("WD-WCC6Y4ZZ1234")})
    fake.disk("sdb", USB, 16 * GIB, removable=True,
              device={"model": "Cruzer Blade", "vpd_pg80": vpd_pg80("4C530001230817")})
    fake.disk("loop0", VIRTUAL, 64 << 20)
    fake.mount("/dev/sda2", "/")
    return fake


def chosen(fake: FakeSys, **hints) -> str:
    return choose(disks_of(fake), DiskHints(**hints)).path


def refusal(fake: FakeSys, **hints) -> str:
    with pytest.raises(NoDisk) as info:
        choose(disks_of(fake), DiskHints(**hints))
    return str(info.value)


def test_the_only_fixed_disk_that_is_not_the_boot_medium_is_chosen(fake):
    assert chosen(fake) == "/dev/nvme0n1"


def test_two_fixed_disks_are_an_error_listing_both_and_a_hint_to_add(fake):
    fake.disk("sdc", SATA2, 2000 * GIB, rotational=True,
              device={"model": "ST2000DM008", "vpd_pg80": vpd_pg80("ZFL1ABCD")})
    message = refusal(fake)
    assert message.startswith('destination "auto": 2 disks fit, so none is written: '
                              "/dev/nvme0n1 (512.0 GiB, nvme, Samsung SSD 970 EVO Plus, serial "
                              "S4EWNX0N123456); /dev/sdc (2.0 TiB, sata, ST2000DM008, serial ZFL1ABCD). ")
    assert 'e.g. serial = "S4EWNX0N123456"' in message
    assert "/dev/sda (1000.0 GiB, sata, WDC WD10EZEX, serial WD-WCC6Y4ZZ1234): holds the " \
           "running system (/ is mounted from it)" in message
    assert "\n" not in message


def test_no_fixed_disk_is_an_error_listing_each_disk_and_why_and_how_to_name_one(fake):
    fake.mount("/dev/nvme0n1", "/home")
    message = refusal(fake)
    assert message.startswith('destination "auto": no disk fits, so none is written. Not taken: ')
    for why in ("/dev/nvme0n1 (512.0 GiB, nvme, Samsung SSD 970 EVO Plus, serial S4EWNX0N123456): "
                "holds the running system (/home is mounted from it)",
                "/dev/sdb (16.0 GiB, usb, Cruzer Blade, serial 4C530001230817): on USB: taken "
                "only when a path, serial or wwn hint names it",
                "/dev/loop0 (64.0 MiB, loop): a loop device: taken only when a path, serial or "
                "wwn hint names it"):
        assert why in message
    assert message.endswith('To write /dev/loop0 anyway, name it in the image\'s disk block, '
                            'e.g. path = "/dev/loop0"')


def test_a_machine_without_disks_says_so(tmp_path):
    assert refusal(FakeSys(tmp_path)) == ('destination "auto": this machine has no disk (none in '
                                          '/sys/block). Check that the target disk is connected '
                                          'and seen by the kernel')


@pytest.mark.parametrize("hints", [{"path": "/dev/sda"}, {"serial": "WD-*"}, {"rotational": True},
                                   {"min_size": 900 * GIB}])
def test_the_boot_medium_is_never_chosen_even_when_the_hints_point_at_it(fake, hints):
    assert "/dev/sda (1000.0 GiB, sata, WDC WD10EZEX, serial WD-WCC6Y4ZZ1234): holds the running " \
           "system" in refusal(fake, **hints)


@pytest.mark.parametrize("hints, path", [
    ({"path": "/dev/loop*"}, "/dev/loop0"),
    ({"serial": "4c53*"}, "/dev/sdb"),
    ({"path": "/dev/sd[b-z]"}, "/dev/sdb"),
])
def test_a_loop_or_usb_disk_is_chosen_when_a_naming_hint_matches_it(fake, hints, path):
    assert chosen(fake, **hints) == path


def test_a_size_or_model_hint_does_not_let_a_usb_stick_in(fake):
    assert "/dev/sdb (16.0 GiB, usb, Cruzer Blade, serial 4C530001230817): on USB" in \
        refusal(fake, max_size=32 * GIB, model="Cruzer*")


def test_a_removable_disk_on_no_usb_bus_is_left_out_too(fake):
    fake.disk("sdc", SATA2, 256 * GIB, removable=True)
    assert chosen(fake) == "/dev/nvme0n1"


def test_a_read_only_disk_is_never_chosen(fake):
    fake.disk("sdc", SATA2, 256 * GIB, ro=True)
    assert chosen(fake) == "/dev/nvme0n1"
    assert "read-only" in refusal(fake, path="/dev/sdc")


@pytest.fixture
def two(fake):
    """Two fixed disks to choose between: the NVMe SSD and a 2 TB spinning disk."""
    fake.disk("sdc", SATA2, 2 * 10 ** 12, rotational=True,
              device={"model": "ST2000DM008-2FR102", "wwid": "naa.5000c500b1a2c3d4",
                      "vpd_pg80": vpd_pg80("ZFL1ABCD")})
    return fake


@pytest.mark.parametrize("hints, path", [
    ({"min_size": 1000 * GIB}, "/dev/sdc"),
    ({"max_size": 600 * GIB}, "/dev/nvme0n1"),
    ({"min_size": 512 * GIB, "max_size": 512 * GIB}, "/dev/nvme0n1"),
    ({"model": "Samsung*"}, "/dev/nvme0n1"),
    ({"model": "st2000dm008-2fr102"}, "/dev/sdc"),  # case does not matter
    ({"serial": "ZFL1ABCD"}, "/dev/sdc"),
    ({"wwn": "0x5000C500*"}, "/dev/sdc"),
    ({"wwn": "eui.0025388b71b0f2a2"}, "/dev/nvme0n1"),
    ({"rotational": False}, "/dev/nvme0n1"),
    ({"rotational": True}, "/dev/sdc"),
    ({"path": "/dev/nvme*"}, "/dev/nvme0n1"),
])
def test_each_hint_picks_its_disk_out_of_two(two, hints, path):
    assert chosen(two, **hints) == path


@pytest.mark.parametrize("hints, why", [
    ({"min_size": 600 * GIB}, "smaller than min_size 600.0 GiB"),
    ({"max_size": 100 * GIB}, "larger than max_size 100.0 GiB"),
    ({"model": "Intel*"}, 'model is not "Intel*"'),
    ({"serial": "X*"}, 'serial is not "X*"'),
    ({"wwn": "0x5000*"}, 'wwn is not "0x5000*"'),
    ({"rotational": True}, "not a spinning disk (rotational = true)"),
    ({"path": "/dev/NVME0N1"}, 'path is not "/dev/NVME0N1"'),  # a path's case does matter
])
def test_each_hint_that_does_not_match_says_so(fake, hints, why):
    nvme = next(d for d in disks_of(fake) if d.path == "/dev/nvme0n1")
    assert reasons(nvme, DiskHints(**hints)) == [why]
    assert f"/dev/nvme0n1 (512.0 GiB, nvme, Samsung SSD 970 EVO Plus, serial S4EWNX0N123456): " \
           f"{why}" in refusal(fake, **hints)


def test_hints_that_leave_nothing_say_to_loosen_them(fake):
    assert refusal(fake, min_size=600 * GIB).endswith(
        "Loosen the image's disk hints, or check that the target disk is connected")
