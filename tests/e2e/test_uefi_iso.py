"""thepusher.iso boots on UEFI firmware (OVMF) as a USB stick written with dd.

create-nbi without -p: the boot script stops at once with `NO MASTER KNOWN`, before it
would wait for a network, so reaching that banner on the serial console proves the
whole chain: firmware -> the hybrid GPT's FAT partition (the same FAT image is the
CD's El Torito EFI entry: tests/system/test_nbi.py checks the catalog) -> GRUB ->
grub.cfg found the ISO's files -> kernel -> both initrds -> the overlay's boot script.
No network is needed (-nic none).
"""

import shutil
import time
from pathlib import Path
from typing import List

import pytest

from tests.e2e.conftest import create_nbi
from tests.e2e.qemu_vm import accel

OVMF = Path("/usr/share/OVMF")
BANNER = "NO MASTER KNOWN"
TIMEOUT = 240  # ~40 s here under TCG on 2 busy cores; room for a slow CI machine


def uefi_vm(root: Path, name: str, medium: List[str]) -> List[str]:
    """QEMU with OVMF (its own copy of the variable store), serial console to a file."""
    variables = root / f"{name}.vars.fd"
    shutil.copyfile(OVMF / "OVMF_VARS_4M.fd", variables)
    return ["qemu-system-x86_64", *accel(), "-machine", "q35", "-smp", "1", "-m", "512",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-nic", "none",
            "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF / 'OVMF_CODE_4M.fd'}",
            "-drive", f"if=pflash,format=raw,file={variables}",
            "-serial", f"file:{root / (name + '.console')}", *medium]


@pytest.fixture(scope="module")
def iso(stand_in, tmp_path_factory) -> Path:
    if not (OVMF / "OVMF_CODE_4M.fd").is_file():
        pytest.fail("no OVMF: run `make e2e`, which installs it")
    out = create_nbi(stand_in, tmp_path_factory.mktemp("uefi") / "nbi", "--append", "console=ttyS0")
    assert not (out / "cmdline.txt").read_text().count("thePusher=")
    return out / "thepusher.iso"


def boot_until_banner(lab, name: str, medium: List[str]) -> float:
    console = lab.root / f"{name}.console"
    start = time.monotonic()
    qemu = lab.ns.spawn(name, uefi_vm(lab.root, name, medium))
    try:
        while time.monotonic() - start < TIMEOUT:
            text = console.read_text(errors="replace") if console.exists() else ""
            if BANNER in text:
                return time.monotonic() - start
            if qemu.poll() is not None:
                break
            time.sleep(0.5)
        text = console.read_text(errors="replace") if console.exists() else "(no console)"
        pytest.fail(f"{name}: no '{BANNER}' after {time.monotonic() - start:.0f} s "
                    f"(qemu exit {qemu.poll()}):\n{text[-3000:]}\n{lab.ns.log(name)[-2000:]}")
    finally:
        qemu.kill()
        qemu.wait()


def test_iso_written_to_a_usb_stick_boots_on_uefi(lab, iso):
    stick = lab.root / "stick.raw"
    shutil.copyfile(iso, stick)  # what dd if=thepusher.iso of=/dev/sdX does
    seconds = boot_until_banner(lab, "uefi-stick", [
        "-device", "qemu-xhci", "-drive", f"file={stick},format=raw,if=none,id=stick",
        "-device", "usb-storage,drive=stick,bootindex=0"])
    print(f"\nUEFI USB stick boot to '{BANNER}' in {seconds:.1f} s")
