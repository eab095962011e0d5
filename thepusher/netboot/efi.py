"""The UEFI half of thepusher.iso: GRUB as EFI/BOOT/BOOTX64.EFI in a FAT image.

UEFI firmware boots a CD from an El Torito entry of platform 0xEF that points at a FAT
image, and a USB stick from a FAT partition; xorriso makes the one image serve both
(`-e` and `-isohybrid-gpt-basdat`), beside isolinux for BIOS, as Debian's ISOs do.
The FAT image is made with mtools because mkfs and mount would need root. GRUB comes
from Debian's packages; it is not signed for Secure Boot.
"""

import os
import shutil
import subprocess
from typing import Callable, List

from thepusher.netboot.tcz import INITRD, KERNEL, NbiError

GRUB_MODULES_DIR = "/usr/lib/grub/x86_64-efi"
EFI_IMAGE = "boot/grub/efi.img"  # inside the ISO tree
BOOT_EFI = "EFI/BOOT/BOOTX64.EFI"
# What the embedded grub.cfg needs: the ISO's file system on a CD or on a GPT/MBR stick,
# search --file, the Linux loader, the menu (normal) and the firmware's framebuffer.
GRUB_MODULES = ("part_gpt part_msdos iso9660 fat search search_fs_file linux normal echo "
                "efi_gop all_video")
MTOOLS = ("mformat", "mmd", "mcopy")


def tools_missing() -> List[str]:
    """What the UEFI half needs that this machine lacks, by Debian package name."""
    missing = []
    if not os.path.isfile(os.path.join(GRUB_MODULES_DIR, "linux.mod")):
        missing.append("grub-efi-amd64-bin")
    if shutil.which("grub-mkstandalone") is None:
        missing.append("grub-common")
    if any(shutil.which(tool) is None for tool in MTOOLS):
        missing.append("mtools")
    return missing


def grub_cfg(args: Callable[[bool], str], overlay: str) -> str:
    """The same two entries as isolinux: `thepusher` after 5 s, or `put`.

    `args(put)` gives the kernel command line of each. The ISO may be a CD or a whole
    stick, so the files are found by search (the overlay `overlay`, which only this
    image has), not by a fixed device name (cd0, hd0, ... depend on the firmware).
    """
    entry = ("menuentry '{title}' --id {id} {{\n"
             f"    linux /boot/{KERNEL} {{args}}\n"
             f"    initrd /boot/{INITRD} /boot/{overlay}\n"
             "}}\n")
    return (
        "# grub.cfg of thepusher.iso's UEFI boot, made by thepusher create-nbi.\n"
        f"search --no-floppy --set=root --file /boot/{overlay}\n"
        "set default=thepusher\nset timeout=5\n\n"
        + entry.format(title="thepusher: receive this machine's image", id="thepusher",
                       args=args(False))
        + "\n"
        + entry.format(title="put: upload this machine's disk to the master", id="put",
                       args=args(True))
    )


def make_image(tree: str, cfg_text: str, scratch: str) -> str:
    """GRUB with `cfg_text` embedded, in a FAT image at `tree`/EFI_IMAGE; returns its path
    relative to `tree` for xorriso."""
    cfg = os.path.join(scratch, "grub.cfg")
    with open(cfg, "w", encoding="utf-8") as f:
        f.write(cfg_text)
    efi = os.path.join(scratch, "BOOTX64.EFI")
    _run(["grub-mkstandalone", "-O", "x86_64-efi", "-d", GRUB_MODULES_DIR,
          "--modules", GRUB_MODULES, "--install-modules", GRUB_MODULES,
          "--locales=", "--themes=", "--fonts=", "-o", efi, f"boot/grub/grub.cfg={cfg}"])
    image = os.path.join(tree, EFI_IMAGE)
    os.makedirs(os.path.dirname(image), exist_ok=True)
    # The binary plus room for the FAT structures, in whole MiB (2048 sectors).
    sectors = -(-(os.path.getsize(efi) + (512 << 10)) // (1 << 20)) * 2048
    with open(image, "wb") as f:
        f.truncate(sectors * 512)
    _run(["mformat", "-i", image, "-T", str(sectors), "-h", "64", "-s", "32", "-v", "EFIBOOT", "::"])
    _run(["mmd", "-i", image, "::/EFI", "::/EFI/BOOT"])
    _run(["mcopy", "-i", image, efi, "::/" + BOOT_EFI])
    return EFI_IMAGE


def xorriso_args(image: str) -> List[str]:
    """After the BIOS entry: the EFI entry, also a GPT partition for a USB stick."""
    return ["-eltorito-alt-boot", "-e", image, "-no-emul-boot", "-isohybrid-gpt-basdat"]


def _run(command: List[str]) -> None:
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise NbiError(f"{command[0]} failed ({done.returncode}): {done.stderr.strip()}")
