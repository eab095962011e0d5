"""A client's disks as it reads them from /sys/block (a fake tree here): what is listed,
what each field says, and which disk holds the running system."""

import os

from tests.support.fakesys import MMC, NVME, SATA, SATA2, USB, VIRTIO, VIRTUAL, FakeSys, vpd_pg80
from thepusher.disk.inventory import Disk, inventory

GIB = 1 << 30


def listed(fake: FakeSys) -> dict:
    return {os.path.basename(d.path): d for d in
            inventory(str(fake.sys), str(fake.dev), str(fake.mounts))}


def room_pc(tmp_path) -> FakeSys:
    """NVMe, a SATA disk with Linux on it, a USB stick, a loop device, and what is no disk."""
    fake = FakeSys(tmp_path)
    fake.disk("nvme0n1", NVME, 512 * GIB, logical=512, physical=4096,
              attrs={"wwid": "eui.0025388B71B0F2A2"},
              device={"model": "Samsung SSD 970 EVO Plus 500GB          ", "serial": "S4EWNX0N123456  "})
    fake.disk("sda", SATA, 1000 * GIB, rotational=True, partitions=[1, 2],
              device={"model": "WDC WD10EZEX-08W", "vendor": "ATA     ",
                      "wwid": "naa.50014EE2B5E5F3A1", "vpd_pg80": vpd_pg80("WD-WCC6Y4ZZ1234")})
    fake.disk("sdb", USB, 16 * GIB, removable=True,
              device={"model": "Cruzer Blade", "wwid": "t10.SanDisk Cruzer Blade 4C53000",
                      "vpd_pg80": vpd_pg80("4C530001230817")})
    fake.disk("loop0", VIRTUAL, 20 << 20, attrs={"loop/backing_file": "/tmp/disk.img"})
    fake.mount("/dev/sda2", "/")
    fake.disk("loop7", VIRTUAL, 30 << 20)  # a TinyCore extension: mounted, part of the system
    fake.mount("/dev/loop7", "/tmp/tcloop/python3.9")
    for name, size in (("loop1", 0), ("zram0", GIB), ("ram0", 64 << 20), ("dm-0", GIB), ("md0", GIB)):
        fake.disk(name, VIRTUAL, size)
    fake.disk("sr0", SATA2, 700 << 20, removable=True)
    fake.disk("mmcblk0", MMC, 32 * GIB, device={"name": "DA4032", "serial": "0x9ba1c2d3", "type": "MMC"})
    fake.disk("mmcblk0boot0", MMC, 4 << 20)
    fake.disk("mmcblk0rpmb", MMC, 4 << 20)
    return fake


def test_only_disks_with_a_medium_are_listed_loop_devices_included(tmp_path):
    assert list(listed(room_pc(tmp_path))) == ["loop0", "mmcblk0", "nvme0n1", "sda", "sdb"]


def test_each_disk_says_its_size_sectors_model_serial_wwn_bus_and_kind(tmp_path):
    fake = room_pc(tmp_path)
    disks = listed(fake)
    assert disks["nvme0n1"] == Disk(
        path=str(fake.dev / "nvme0n1"), size=512 * GIB, logical_sector_size=512,
        physical_sector_size=4096, model="Samsung SSD 970 EVO Plus 500GB", serial="S4EWNX0N123456",
        wwn="eui.0025388b71b0f2a2", rotational=False, removable=False, transport="nvme",
        read_only=False, boot=False, mounted="")
    sda = disks["sda"]
    assert (sda.model, sda.serial, sda.wwn, sda.rotational, sda.transport) == (
        "WDC WD10EZEX-08W", "WD-WCC6Y4ZZ1234", "0x50014ee2b5e5f3a1", True, "sata")
    sdb = disks["sdb"]
    assert (sdb.serial, sdb.wwn, sdb.removable, sdb.transport) == ("4C530001230817", "", True, "usb")
    assert (disks["mmcblk0"].model, disks["mmcblk0"].serial, disks["mmcblk0"].transport) == (
        "DA4032", "0x9ba1c2d3", "mmc")
    assert disks["loop0"].transport == "loop"
    assert disks["mmcblk0"].removable is False  # eMMC soldered on the board


def test_an_sd_card_is_removable_even_when_its_reader_says_not(tmp_path):
    fake = FakeSys(tmp_path)
    fake.disk("mmcblk1", MMC.replace("mmc0", "mmc1"), 64 * GIB, device={"type": "SD", "name": "SD64G"})
    assert listed(fake)["mmcblk1"].removable is True


def test_a_virtio_disk_has_its_serial_beside_it_and_a_read_only_one_says_so(tmp_path):
    fake = FakeSys(tmp_path)
    fake.disk("vda", VIRTIO, 8 * GIB, ro=True, attrs={"serial": "overlayblk"}, device={})
    vda = listed(fake)["vda"]
    assert (vda.transport, vda.serial, vda.read_only, vda.model) == ("virtio", "overlayblk", True, "")


def test_the_disk_whose_partition_is_mounted_on_root_holds_the_running_system(tmp_path):
    disks = listed(room_pc(tmp_path))
    assert (disks["sda"].boot, disks["sda"].mounted) == (True, "/")
    assert [name for name, d in disks.items() if d.boot] == ["sda"]


def test_a_boot_stick_mounted_for_its_tce_directory_is_the_boot_medium(tmp_path):
    fake = room_pc(tmp_path)
    fake.mount("/dev/sdb1", "/mnt/sdb1")
    fake.partition("sdb", 1)
    assert (listed(fake)["sdb"].boot, listed(fake)["sdb"].mounted) == (True, "/mnt/sdb1")


def test_a_whole_disk_mounted_without_partitions_is_in_use(tmp_path):
    fake = FakeSys(tmp_path)
    fake.disk("sdc", SATA, 4 * GIB)
    fake.mount("/dev/sdc", "/mnt/data\\040disk")
    assert listed(fake)["sdc"].mounted == "/mnt/data disk"


def test_root_on_lvm_or_raid_marks_every_disk_underneath(tmp_path):
    fake = FakeSys(tmp_path)
    fake.disk("sda", SATA, 100 * GIB)
    fake.disk("sdb", SATA2, 100 * GIB)
    fake.disk("nvme0n1", NVME, 100 * GIB)
    fake.stack("md0", [fake.partition("sda", 1), fake.partition("sdb", 1)])
    fake.stack("dm-0", [(fake.sys / "block" / "md0").resolve()])
    (fake.dev / "mapper").mkdir()
    os.symlink("../dm-0", fake.dev / "mapper" / "vg-root")
    fake.mount("/dev/mapper/vg-root", "/")
    disks = listed(fake)
    assert sorted(disks) == ["nvme0n1", "sda", "sdb"]  # md0, dm-0 are not disks
    assert [n for n, d in disks.items() if d.boot] == ["sda", "sdb"]


def test_a_root_mounted_as_dev_root_is_found_by_its_device_number(tmp_path):
    fake = FakeSys(tmp_path)
    st = os.stat(tmp_path)
    fake.disk("sda", SATA, 100 * GIB)
    fake.disk("sdb", SATA2, 100 * GIB, dev=f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
    fake.mount("/dev/root", str(tmp_path))
    assert [n for n, d in listed(fake).items() if d.boot] == ["sdb"]


def test_a_machine_without_sys_block_has_no_disks_and_no_error(tmp_path):
    assert inventory(str(tmp_path / "nothing"), "/dev", str(tmp_path / "no-mounts")) == []
