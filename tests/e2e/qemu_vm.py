"""QEMU command lines for the e2e VMs: one vCPU, one virtio disk, one NIC on a tap.

KVM on the development machine is PVM and cannot run a stock kernel, so the VMs use
TCG (software emulation) unless /dev/kvm works for real; see docs/e2e.md.
"""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import List

OVMF = Path("/usr/share/OVMF")  # Debian's ovmf


@dataclass
class Vm:
    """VM number `n` (1, 2, ...): tap`n`, MAC 52:54:00:e2:e0:`n`, address 10.0.4.1`n`."""

    n: int
    disk: Path
    console: Path  # the serial console, i.e. everything the guest prints

    @property
    def name(self) -> str:
        return f"vm{self.n}"

    @property
    def mac(self) -> str:
        return f"52:54:00:e2:e0:{self.n:02x}"

    @property
    def ip(self) -> str:
        return f"10.0.4.{10 + self.n}"

    @property
    def dhcp_host(self) -> str:
        return f"{self.mac},{self.ip}"

    def _common(self) -> List[str]:
        return ["qemu-system-x86_64", *accel(), "-machine", "pc", "-smp", "1", "-m", "512",
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-serial", f"file:{self.console}",
                "-drive", f"file={self.disk},format=raw,if=virtio",
                "-netdev", f"tap,id=n0,ifname=tap{self.n},script=no,downscript=no"]

    def pxe(self) -> List[str]:
        """Boot from the network with the NIC's iPXE ROM, as a lab PC would."""
        return self._common() + [
            "-device", f"virtio-net-pci,netdev=n0,mac={self.mac},bootindex=1"]

    def uefi(self) -> List[str]:
        """A UEFI-only PC set to network boot first, then its disk: OVMF's own PXE (no
        option ROM: the firmware's network stack, as on a lab PC), IPv6 network boot off
        as on most PCs (else PXEv6 and HTTPv6 each wait a minute before the disk). Its
        variable store is kept across its boots, as a PC keeps its NVRAM."""
        variables = self.disk.with_suffix(".vars.fd")
        if not variables.exists():
            shutil.copyfile(OVMF / "OVMF_VARS_4M.fd", variables)
        return ["qemu-system-x86_64", *accel(), "-machine", "q35", "-smp", "1", "-m", "512",
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-fw_cfg", "name=opt/org.tianocore/IPv6Support,string=no",
                "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF / 'OVMF_CODE_4M.fd'}",
                "-drive", f"if=pflash,format=raw,file={variables}",
                "-serial", f"file:{self.console}",
                "-drive", f"file={self.disk},format=raw,if=none,id=d0",
                "-device", "virtio-blk-pci,drive=d0,bootindex=2",
                "-netdev", f"tap,id=n0,ifname=tap{self.n},script=no,downscript=no",
                "-device", f"virtio-net-pci,netdev=n0,mac={self.mac},romfile=,bootindex=1"]

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.console.read_text(errors="replace")
        except OSError:
            return "(no console output)"
        return "\n".join(text.splitlines()[-lines:])


def accel() -> List[str]:
    """KVM when it can run a normal guest (vmx/svm in cpuinfo), otherwise TCG."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        flags = ""
    if os.access("/dev/kvm", os.R_OK | os.W_OK) and (" vmx" in flags or " svm" in flags):
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg"]

