"""What boots the netboot image: PXELINUX and iPXE configs and the ISO (dnsmasq.py: DHCP).

All of them pass the same kernel command line. `base norestore noswap` keep TinyCore
away from the disk we are about to overwrite: no extensions or saved settings loaded
from it, no swap partition activated on it.
"""

import os
import shutil
import subprocess
import tempfile
from typing import List, Optional

from thepusher.netboot import efi
from thepusher.netboot.tcz import INITRD, KERNEL, NbiError

OVERLAY = "thepusher.gz"
COMBINED = "thepusher-core.gz"
ISO = "thepusher.iso"
CMDLINE = "cmdline.txt"  # the kernel command line words, for the master's HTTP boot
BOOT_CODES = "loglevel=3 base norestore noswap"
PUT_DEVICE = "/dev/sda"

PXELINUX_FILES = ("/usr/lib/PXELINUX/pxelinux.0", "/usr/lib/syslinux/modules/bios/ldlinux.c32")
ISOLINUX_BIN = "/usr/lib/ISOLINUX/isolinux.bin"
ISOHDPFX = "/usr/lib/ISOLINUX/isohdpfx.bin"
LDLINUX = "/usr/lib/syslinux/modules/bios/ldlinux.c32"


def kernel_args(master: Optional[str], put: bool = False, extra: str = "") -> str:
    args = BOOT_CODES
    if extra:
        args += f" {extra}"
    if master:
        args += f" thePusher={master}"
    if put:
        args += f" putImage={PUT_DEVICE}"
    return args


def _master_note(master: Optional[str]) -> str:
    if master:
        return f"# Master {master} is also baked into {OVERLAY}; thePusher= here wins.\n"
    return ("# No master was given to create-nbi: add thePusher=MASTER_IP to both APPEND\n"
            "# lines, or clients stop at boot with 'NO MASTER KNOWN'.\n")


def pxelinux_cfg(master: Optional[str], extra: str = "") -> str:
    """`pxelinux.cfg/default`: boots straight into imaging, no prompt, no delay.

    PROMPT 0 still shows the boot: prompt when Shift or Alt is held, so someone at a
    machine can type `put` to upload its disk instead (PXELINUX documents this).
    """
    return (
        "# pxelinux.cfg/default, made by thepusher create-nbi. TFTP root: pxelinux.0,\n"
        f"# ldlinux.c32, {KERNEL}, {INITRD}, {OVERLAY} and this directory.\n"
        + _master_note(master)
        + "DEFAULT thepusher\nPROMPT 0\nTIMEOUT 0\n\n"
        "# Receive the image of this machine's group.\n"
        f"LABEL thepusher\n  KERNEL {KERNEL}\n  INITRD {INITRD},{OVERLAY}\n"
        f"  APPEND {kernel_args(master, extra=extra)}\n\n"
        f"# Upload this machine's {PUT_DEVICE} to the master (hold Shift at boot, type: put).\n"
        f"LABEL put\n  KERNEL {KERNEL}\n  INITRD {INITRD},{OVERLAY}\n"
        f"  APPEND {kernel_args(master, put=True, extra=extra)}\n"
    )


def ipxe_script(master: Optional[str], extra: str = "") -> str:
    """Relative names: iPXE fetches them from wherever it fetched this script (TFTP or HTTP)."""
    note = "" if master else "# No master baked in: add thePusher=MASTER_IP to the kernel line.\n"
    return (
        "#!ipxe\n"
        "# boot.ipxe, made by thepusher create-nbi. Keep it beside the kernel and initrds:\n"
        "# iPXE loads them relative to this script's own URL.\n"
        + note
        + f"kernel {KERNEL} initrd={INITRD} initrd={OVERLAY} {kernel_args(master, extra=extra)}\n"
        f"initrd {INITRD}\ninitrd {OVERLAY}\nboot\n"
    )


def isolinux_cfg(master: Optional[str], extra: str = "") -> str:
    return (
        "DEFAULT thepusher\nPROMPT 1\nTIMEOUT 50\nDISPLAY boot.msg\n\n"
        f"LABEL thepusher\n  KERNEL /boot/{KERNEL}\n  INITRD /boot/{INITRD},/boot/{OVERLAY}\n"
        f"  APPEND {kernel_args(master, extra=extra)}\n\n"
        f"LABEL put\n  KERNEL /boot/{KERNEL}\n  INITRD /boot/{INITRD},/boot/{OVERLAY}\n"
        f"  APPEND {kernel_args(master, put=True, extra=extra)}\n"
    )


def boot_msg(master: Optional[str]) -> str:
    where = f"master {master}" if master else "no master built in: add thePusher=MASTER_IP"
    return (
        f"\nthepusher netboot image ({where})\n\n"
        "  Enter, or wait 5 s          receive this machine's image\n"
        "  thepusher thePusher=IP      same, from the master at IP\n"
        f"  put                         upload {PUT_DEVICE} to the master\n"
        "  put putImage=/dev/nvme0n1   upload another disk\n\n"
    )


def check_append(words: str) -> str:
    """Extra kernel words go into several config files: one line, printable, no quotes."""
    if any(c in words for c in "\"'\\") or not words.isprintable():
        raise NbiError(f"--append {words!r}: only plain words (no quotes, no control characters)")
    return " ".join(words.split())


def pxelinux_binaries() -> List[str]:
    return [p for p in PXELINUX_FILES if os.path.isfile(p)]


def iso_tools_missing() -> List[str]:
    """What `make_iso` needs that this machine lacks, by Debian package name."""
    missing = []
    if shutil.which("xorriso") is None:
        missing.append("xorriso")
    if not (os.path.isfile(ISOLINUX_BIN) and os.path.isfile(ISOHDPFX)):
        missing.append("isolinux")
    if not os.path.isfile(LDLINUX):
        missing.append("syslinux-common")
    return missing


def make_iso(out_dir: str, master: Optional[str], extra: str = "", uefi: bool = True) -> str:
    """A hybrid ISO (CD or USB stick) carrying the same kernel and initrds: isolinux for
    BIOS and, with `uefi`, GRUB for UEFI (efi.py), in one file as Debian's ISOs are."""
    iso = os.path.join(out_dir, ISO)
    with tempfile.TemporaryDirectory(prefix="thepusher-iso-") as scratch:
        tree = os.path.join(scratch, "tree")
        isolinux = os.path.join(tree, "boot", "isolinux")
        os.makedirs(isolinux)
        shutil.copy(ISOLINUX_BIN, isolinux)
        shutil.copy(LDLINUX, isolinux)
        for name in (KERNEL, INITRD, OVERLAY):
            shutil.copy(os.path.join(out_dir, name), os.path.join(tree, "boot"))
        with open(os.path.join(isolinux, "isolinux.cfg"), "w") as f:
            f.write(isolinux_cfg(master, extra))
        with open(os.path.join(isolinux, "boot.msg"), "w") as f:
            f.write(boot_msg(master))
        uefi_args: List[str] = []
        if uefi:
            cfg = efi.grub_cfg(lambda put: kernel_args(master, put=put, extra=extra), OVERLAY)
            uefi_args = efi.xorriso_args(efi.make_image(tree, cfg, scratch))
        command = [
            "xorriso", "-as", "mkisofs", "-quiet", "-l", "-J", "-R", "-V", "THEPUSHER",
            "-o", iso + ".part", "-isohybrid-mbr", ISOHDPFX,
            "-c", "boot/isolinux/boot.cat", "-b", "boot/isolinux/isolinux.bin",
            "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", *uefi_args, tree,
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise NbiError(f"xorriso failed ({done.returncode}): {done.stderr.strip()}")
    os.replace(iso + ".part", iso)
    return iso
