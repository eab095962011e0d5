"""A fake /sys/block (and /proc/self/mounts) in a temporary directory, laid out as the
kernel lays out the real one: /sys/block/NAME is a link into /sys/devices/<bus path>,
whose `device` link leads to the bus device holding model, serial and wwid."""

import os
from pathlib import Path
from typing import Dict, Iterable, Optional

SATA = "pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0"
SATA2 = "pci0000:00/0000:00:17.0/ata2/host1/target1:0:0/1:0:0:0"
NVME = "pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0"
USB = "pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0"
VIRTIO = "pci0000:00/0000:00:02.0/virtio1"
MMC = "pci0000:00/0000:00:1a.0/mmc_host/mmc0/mmc0:0001"
VIRTUAL = "virtual"


class FakeSys:
    def __init__(self, root: Path) -> None:
        self.sys = root / "sys"
        self.dev = root / "dev"
        self.mounts = root / "mounts"
        (self.sys / "block").mkdir(parents=True)
        self.dev.mkdir()
        self.mounts.write_text("proc /proc proc rw 0 0\ntmpfs / tmpfs rw 0 0\n")
        self._next_minor = 0

    def disk(self, name: str, bus: str, size: int, *, rotational: bool = False,
             removable: bool = False, ro: bool = False, logical: int = 512,
             physical: Optional[int] = None, attrs: Optional[Dict[str, object]] = None,
             device: Optional[Dict[str, object]] = None, partitions: Iterable[int] = (),
             dev: Optional[str] = None) -> Path:
        """A disk of `size` bytes; `attrs` are more files in its block directory,
        `device` files of its bus device (model, serial, wwid, vpd_pg80 as bytes)."""
        busdir = self.sys / "devices" / bus
        block = busdir / "block" / name
        self._files(block, {
            "size": str(size // 512), "removable": str(int(removable)), "ro": str(int(ro)),
            "dev": dev or self._number(), "queue/rotational": str(int(rotational)),
            "queue/logical_block_size": str(logical),
            "queue/physical_block_size": str(physical or logical), **(attrs or {}),
        })
        if device is not None:
            self._files(busdir, device)
            os.symlink(os.path.relpath(busdir, block), block / "device")
        os.symlink(os.path.relpath(block, self.sys / "block"), self.sys / "block" / name)
        for n in partitions:
            self.partition(name, n)
        return block

    def partition(self, disk: str, n: int) -> Path:
        name = f"{disk}p{n}" if disk[-1].isdigit() else f"{disk}{n}"
        part = (self.sys / "block" / disk).resolve() / name
        self._files(part, {"partition": str(n), "dev": self._number()})
        return part

    def stack(self, name: str, on: Iterable[Path], size: int = 1 << 30) -> None:
        """A device-mapper or md device `name` built from the block directories `on`."""
        self.disk(name, VIRTUAL, size)
        for below in on:
            (below / "holders").mkdir(exist_ok=True)
            (below / "holders" / name).write_text("")

    def mount(self, source: str, point: str) -> None:
        with open(self.mounts, "a") as f:
            f.write(f"{source} {point} ext4 rw,relatime 0 0\n")

    def _number(self) -> str:
        self._next_minor += 1
        return f"259:{self._next_minor}"

    @staticmethod
    def _files(base: Path, files: Dict[str, object]) -> None:
        for rel, value in files.items():
            path = base / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(value, bytes):
                path.write_bytes(value)
            else:
                path.write_text(f"{value}\n")


def vpd_pg80(serial: str) -> bytes:
    """A SCSI Unit Serial Number page as the kernel exposes it (device/vpd_pg80)."""
    data = serial.encode().rjust(20)
    return bytes([0, 0x80]) + len(data).to_bytes(2, "big") + data
