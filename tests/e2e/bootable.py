"""A disk image that a UEFI PC boots, and that says so on its serial console.

GPT with an EFI system partition holding EFI/BOOT/BOOTX64.EFI, the removable-media
path every UEFI firmware boots: GRUB (Debian's grub-efi-amd64-bin, one standalone
binary with its config inside) that prints `marker` and powers the machine off, so a
test sees from the console that the firmware went on to the disk, and QEMU exits.
The rest of the disk is random, so a copy is checked byte for byte. Made without root:
sgdisk on the file, mtools for the FAT.
"""

import os
import subprocess
import tempfile
from pathlib import Path

MiB = 1 << 20
ESP_START = 1 * MiB
ESP_SIZE = 8 * MiB


def make(path: Path, size: int, marker: str) -> None:
    with open(path, "wb") as f:
        for _ in range(size // MiB):
            f.write(os.urandom(MiB))
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "grub.cfg"
        cfg.write_text(f'echo "{marker}"\nsleep 1\nhalt\n')
        loader = Path(tmp) / "bootx64.efi"
        _run("grub-mkstandalone", "-O", "x86_64-efi", "--modules=echo sleep halt",
             "--locales=", "--fonts=", "--themes=", "-o", str(loader), f"boot/grub/grub.cfg={cfg}")
        _run("sgdisk", "-Z", "-n", f"1:{ESP_START // 512}:+{ESP_SIZE // 1024}K", "-t", "1:ef00",
             str(path))
        fat = f"{path}@@{ESP_START}"
        _run("mformat", "-i", fat, "-T", str(ESP_SIZE // 512), "::")
        _run("mmd", "-i", fat, "::/EFI", "::/EFI/BOOT")
        _run("mcopy", "-i", fat, str(loader), "::/EFI/BOOT/BOOTX64.EFI")


def _run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stdout}{done.stderr}")
