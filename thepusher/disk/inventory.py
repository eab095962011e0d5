"""This machine's disks, read from /sys/block: what the master shows per host and what
`destination = "auto"` chooses from (choose.py).

Only the kernel's own files are read, no lsblk, udev or blkid: the netboot image has
none of them, and the kernel's view is the one the write goes through. What is not a
disk a machine is imaged onto is left out: RAM disks and zram, optical drives,
floppies, device-mapper and software RAID (their members are listed as the disks they
sit on), an eMMC's boot and RPMB areas, and anything without a medium (size 0, e.g.
an empty card reader or an unattached loop device), and loop devices with a mounted
filesystem: TinyCore has one per extension, part of the running system. Other loop
devices are listed, and choose.py takes one only when a hint names it.

A disk "holds the running system" when a filesystem on it, on one of its partitions
or on a device-mapper or RAID device built from them, is mounted (/proc/self/mounts):
the root filesystem of a Linux installed on it, a TinyCore boot stick mounted for its
tce directory, the disk holding the loop files of its extensions. Swap does not
count: TinyCore turns on every swap partition it finds, including the target's.
"""

import os
import re
from dataclasses import asdict, dataclass
from typing import Dict, Iterator, List, Optional, Set, Tuple

SECTOR = 512  # /sys/block/*/size counts 512-byte sectors whatever the disk's own sector size
# Kernel names that are never a disk to image, whatever their bus: optical, floppy, the
# boot and RPMB areas of an eMMC (written through their own interface, not a destination).
NOT_DISKS = re.compile(r"^(sr|fd)\d+$|^mmcblk\d+(boot\d+|rpmb)$")
# Bus by the device's place under /sys/devices, first match wins: a USB enclosure holds
# an ATA or NVMe disk, and it is the USB that makes it removable.
BUSES = (("/usb", "usb"), ("/nvme", "nvme"), ("/mmc_host/", "mmc"), ("/virtio", "virtio"),
         ("/ata", "sata"), ("/end_device-", "sas"), ("/session", "iscsi"), ("/host", "scsi"))


@dataclass(frozen=True)
class Disk:
    path: str  # where it is opened: /dev/sda
    size: int  # bytes
    logical_sector_size: int
    physical_sector_size: int
    model: str
    serial: str
    wwn: str  # as lsblk shows it: 0x5000c500a1b2c3d4, eui.0025388b71b0f2a2; "" if none
    rotational: bool
    removable: bool  # the kernel's flag, or an SD card; USB disks often lack it (choose.py counts the bus too)
    transport: str  # nvme, sata, usb, virtio, mmc, sas, scsi, iscsi, loop; "" if unknown
    read_only: bool
    boot: bool  # holds the running system or the boot medium: never chosen
    mounted: str  # a mount point that makes it so ("/" first), else ""

    def to_json(self) -> dict:
        return asdict(self)


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(4096).decode("utf-8", "replace").strip().strip("\0").strip()
    except OSError:
        return ""


def _number(path: str, default: int = 0) -> int:
    text = _read(path)
    return int(text) if text.isdigit() else default


def _serial(block: str) -> str:
    """NVMe and MMC say it in device/serial, virtio in serial; a SCSI, SATA or USB disk
    only in its VPD page 0x80 (4-byte header, then the serial number)."""
    for name in ("device/serial", "serial"):
        text = _read(os.path.join(block, name))
        if text:
            return text
    try:
        with open(os.path.join(block, "device/vpd_pg80"), "rb") as f:
            page = f.read(260)
    except OSError:
        return ""
    if len(page) < 4 or page[1] != 0x80:
        return ""
    length = int.from_bytes(page[2:4], "big")
    return page[4:4 + length].decode("ascii", "replace").strip().strip("\0").strip()


def _wwn(block: str) -> str:
    """The world wide name, spelt as lsblk and /dev/disk/by-id spell it. A t10 id is
    made up by the kernel from vendor and model, not a name the disk carries."""
    wwid = _read(os.path.join(block, "wwid")) or _read(os.path.join(block, "device/wwid"))
    kind, _, value = wwid.partition(".")
    if kind == "naa":
        return "0x" + value.lower()
    if kind in ("eui", "nvme") and value:
        return wwid.lower()
    return ""


def _device(block: str) -> str:
    """Where the disk hangs in /sys/devices ("/pci0000:00/.../ata1/.../block/sda"): its bus."""
    return "/" + os.path.realpath(block).partition("/devices/")[2]


def _transport(name: str, device: str) -> str:
    if name.startswith("loop"):
        return "loop"
    for marker, bus in BUSES:
        if marker in device:
            return bus
    return ""


def _unescape(field: str) -> str:
    """/proc/self/mounts writes a space as \\040 (and tab, newline, backslash alike)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mounts(mounts_file: str) -> Iterator[Tuple[str, str]]:
    try:
        with open(mounts_file, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0].startswith("/dev/"):
            yield _unescape(fields[0]), _unescape(fields[1])


class _Tree:
    """Which disk each block device name and device number belongs to: its own, its
    partitions', and those of the device-mapper or RAID devices stacked on them."""

    def __init__(self, sys_root: str, disks: List[str]) -> None:
        self.block = os.path.join(sys_root, "block")
        self.owners: Dict[str, Set[str]] = {}
        self.numbers: Dict[str, str] = {}  # "8:1" -> "sda1"
        for disk in disks:
            for name in self._stack(disk):
                self.owners.setdefault(name, set()).add(disk)

    def _stack(self, disk: str) -> Set[str]:
        base = os.path.join(self.block, disk)
        todo = [(disk, base)] + [(p, os.path.join(base, p)) for p in _partitions(base)]
        seen: Set[str] = set()
        while todo:
            name, path = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            number = _read(os.path.join(path, "dev"))
            if number:
                self.numbers[number] = name
            for holder in _listdir(os.path.join(path, "holders")):
                todo.append((holder, os.path.join(self.block, holder)))
        return seen

    def owner_of(self, source: str, mount_point: str, dev_root: str) -> Set[str]:
        """The disks under a mounted /dev path: by its name (through /dev/mapper's
        links), else by the device number of what is mounted (/dev/root has no node)."""
        node = os.path.realpath(os.path.join(dev_root, source[len("/dev/"):]))
        name = os.path.basename(node)
        if name in self.owners:
            return self.owners[name]
        try:
            st = os.stat(mount_point)
        except OSError:
            return set()
        name = self.numbers.get(f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}", "")
        return self.owners.get(name, set())


def _listdir(path: str) -> List[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _partitions(base: str) -> List[str]:
    return [p for p in _listdir(base) if os.path.exists(os.path.join(base, p, "partition"))]


def _is_disk(sys_root: str, name: str) -> bool:
    if NOT_DISKS.match(name):
        return False
    block = os.path.join(sys_root, "block", name)
    if _device(block).startswith("/virtual/") and not name.startswith("loop"):
        return False  # ram, zram, dm-N, mdN, nbd: made of other disks or of memory
    return _read(os.path.join(block, "hidden")) != "1" and _number(os.path.join(block, "size")) > 0


def inventory(sys_root: str = "/sys", dev_root: str = "/dev",
              mounts_file: str = "/proc/self/mounts") -> List[Disk]:
    """Every disk of this machine, in kernel name order; [] where there is no /sys
    (macOS), so that a client anywhere can register."""
    names = [n for n in _listdir(os.path.join(sys_root, "block")) if _is_disk(sys_root, n)]
    tree = _Tree(sys_root, names)
    mounted: Dict[str, str] = {}
    for source, point in _mounts(mounts_file):
        for disk in tree.owner_of(source, point, dev_root):
            if point == "/" or disk not in mounted:
                mounted[disk] = point
    # A mounted loop device is the running system's own (TinyCore has one per extension,
    # dozens): no target, and listing them would bury the disks on the status page.
    return [_disk(sys_root, dev_root, name, mounted.get(name)) for name in names
            if not (name.startswith("loop") and name in mounted)]


def _disk(sys_root: str, dev_root: str, name: str, mounted: Optional[str]) -> Disk:
    block = os.path.join(sys_root, "block", name)
    queue = os.path.join(block, "queue")
    logical = _number(os.path.join(queue, "logical_block_size"), SECTOR)
    return Disk(
        path=os.path.join(dev_root, name),
        size=_number(os.path.join(block, "size")) * SECTOR,
        logical_sector_size=logical,
        physical_sector_size=_number(os.path.join(queue, "physical_block_size"), logical),
        model=_read(os.path.join(block, "device/model")) or _read(os.path.join(block, "device/name")),
        serial=_serial(block),
        wwn=_wwn(block),
        rotational=_read(os.path.join(queue, "rotational")) == "1",
        # A card reader often says 0; its card is no less removable (eMMC says "MMC").
        removable=(_read(os.path.join(block, "removable")) == "1"
                   or _read(os.path.join(block, "device/type")) == "SD"),
        transport=_transport(name, _device(block)),
        read_only=_read(os.path.join(block, "ro")) == "1",
        boot=mounted is not None,
        mounted=mounted or "",
    )
