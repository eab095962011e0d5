"""`create-nbi`: TinyCore cache in, every file a PXE server or a USB stick needs out.

Order: (download) -> check inputs -> resolve extensions -> overlay -> boot configs.
Each input problem is found before anything is written to the output directory.
"""

import logging
import os
import shutil
from typing import List, Optional, Tuple

from thepusher.netboot import bootfiles, dnsmasq, efi, fetch, overlay, tcz
from thepusher.netboot.tcz import INITRD, KERNEL, NbiError

log = logging.getLogger("thepusher.nbi")

IPXE_DEFAULT = "/usr/lib/ipxe"  # Debian's `ipxe` package


def check_inputs(cache: str) -> Optional[str]:
    """Kernel and initrd are there and are what they claim; returns the kernel release."""
    hints = {KERNEL: "a bzImage", INITRD: "gzip-compressed"}
    for name in (KERNEL, INITRD):
        path = os.path.join(cache, name)
        if not os.path.isfile(path):
            raise NbiError(
                f"{name} is missing from {cache} (TinyCore's release/distribution_files/{name}; "
                f"or pass --download MIRROR/15.x/x86_64 to fetch it)")
        tcz.check_md5(path)
        with open(path, "rb") as f:
            head = f.read(0x210)
        ok = head[0x202:0x206] == b"HdrS" if name == KERNEL else head[:2] == b"\x1f\x8b"
        if not ok:
            raise NbiError(f"{path} is not {hints[name]}: is it really TinyCore's {name}?")
    return tcz.kernel_release(os.path.join(cache, KERNEL))


def create(cache: str, out: str, pyz: str, master: Optional[str] = None,
           download_url: Optional[str] = None, append: str = "",
           secret: str = "", ipxe_dir: Optional[str] = None) -> List[Tuple[str, str]]:
    """Build the netboot image; returns (file, what it is for) for the summary.

    `append`: more kernel command line words for every boot config, e.g.
    `console=ttyS0,115200` for machines watched over a serial console.
    `secret`: the master's `secret`, baked into the overlay only (never into the boot
    configs): clients then run only tasks the master signed with it.
    `ipxe_dir`: where snponly.efi, ipxe.efi and undionly.kpxe are (UEFI machines need
    them); None means Debian's /usr/lib/ipxe if it is there, a warning if not.
    """
    if master:
        overlay.check_master(master)
    if secret:
        overlay.check_secret(secret)
    append = bootfiles.check_append(append)
    if not os.path.isfile(pyz):
        raise NbiError(f"{pyz} does not exist (build it with `make`)")
    if download_url:
        fetch.download(download_url, cache)
    release = check_inputs(cache)
    ipxe = ipxe_binaries(ipxe_dir)
    extensions = tcz.resolve(cache, [tcz.PYTHON], release)
    for name in extensions:
        tcz.check_md5(os.path.join(cache, name))
    log.info("extensions (load order): %s", " ".join(extensions))

    os.makedirs(os.path.join(out, "pxelinux.cfg"), exist_ok=True)
    made: List[Tuple[str, str]] = []
    for name in (KERNEL, INITRD):
        shutil.copyfile(os.path.join(cache, name), os.path.join(out, name))
    made.append((KERNEL, "kernel (TinyCore's, unchanged)"))
    made.append((INITRD, "TinyCore's initrd, unchanged"))
    overlay.write(os.path.join(out, bootfiles.OVERLAY), pyz, cache, extensions, master, secret)
    made.append((bootfiles.OVERLAY, f"overlay: thepusher, boot script, {len(extensions)} extensions"
                 + ("; the secret (clients run only signed tasks)" if secret else "")))
    _concatenate(out, [INITRD, bootfiles.OVERLAY], bootfiles.COMBINED)
    made.append((bootfiles.COMBINED, f"{INITRD} + {bootfiles.OVERLAY}, for loaders taking one initrd"))

    _write(out, "pxelinux.cfg/default", bootfiles.pxelinux_cfg(master, append))
    made.append(("pxelinux.cfg/default", "PXELINUX config"))
    _write(out, "boot.ipxe", bootfiles.ipxe_script(master, append))
    made.append(("boot.ipxe", "iPXE script"))
    _write(out, bootfiles.CMDLINE, bootfiles.kernel_args(master, extra=append) + "\n")
    made.append((bootfiles.CMDLINE, "kernel command line, for the master's HTTP boot (master --boot)"))
    for path in ipxe:
        shutil.copyfile(path, os.path.join(out, os.path.basename(path)))
        made.append((os.path.basename(path), f"iPXE, from {path}"))
    tftp_root = os.path.abspath(out)
    _write(out, dnsmasq.PROXY, dnsmasq.proxy_conf(master, tftp_root, bool(ipxe)))
    made.append((dnsmasq.PROXY, "proxy-DHCP + TFTP example (beside the room's DHCP server)"))
    _write(out, dnsmasq.DHCP, dnsmasq.dhcp_conf(master, tftp_root, bool(ipxe)))
    made.append((dnsmasq.DHCP, "DHCP + TFTP example (dnsmasq hands out the addresses)"))
    binaries = bootfiles.pxelinux_binaries()
    if len(binaries) < len(bootfiles.PXELINUX_FILES):
        log.warning("pxelinux.0/ldlinux.c32 not copied: install pxelinux and syslinux-common, "
                    "or copy them into %s yourself", out)
    for path in binaries:
        shutil.copy(path, out)
        made.append((os.path.basename(path), f"from {path}"))

    missing = bootfiles.iso_tools_missing()
    if missing:
        log.warning("no ISO: install %s to get %s", " ".join(missing), bootfiles.ISO)
    else:
        no_uefi = efi.tools_missing()
        if no_uefi:
            log.warning("the ISO boots BIOS machines only: install %s for UEFI (GRUB's EFI "
                        "modules, grub-mkstandalone, mtools)", " ".join(no_uefi))
        bootfiles.make_iso(out, master, append, uefi=not no_uefi)
        made.append((bootfiles.ISO, "hybrid ISO for a CD or USB stick ("
                     + ("BIOS)" if no_uefi else "BIOS and UEFI)")))
    return made


def ipxe_binaries(ipxe_dir: Optional[str]) -> List[str]:
    """The iPXE files to copy: all of them or none (the dnsmasq configs name all three).

    Asked for with --ipxe, a missing file is an error; the default directory missing is
    only a warning, since BIOS machines still boot PXELINUX without iPXE.
    """
    where = ipxe_dir or IPXE_DEFAULT
    paths = [os.path.join(where, name) for name in dnsmasq.IPXE_FILES]
    missing = [p for p in paths if not os.path.isfile(p)]
    if not missing:
        return paths
    if ipxe_dir is not None:
        raise NbiError(f"--ipxe {ipxe_dir}: {os.path.basename(missing[0])} is not there "
                       f"(the directory needs {', '.join(dnsmasq.IPXE_FILES)})")
    log.warning("no iPXE binaries in %s (%s missing): UEFI machines cannot netboot without them, "
                "BIOS machines still boot PXELINUX. Get them with `apt install ipxe` "
                "(/usr/lib/ipxe) or from https://boot.ipxe.org/ (snponly.efi, ipxe.efi, "
                "undionly.kpxe), then pass --ipxe DIR", IPXE_DEFAULT,
                ", ".join(os.path.basename(p) for p in missing))
    return []


def _write(out: str, rel: str, text: str) -> None:
    with open(os.path.join(out, rel), "w", encoding="utf-8") as f:
        f.write(text)


def _concatenate(out: str, parts: List[str], name: str) -> None:
    with open(os.path.join(out, name), "wb") as dest:
        for part in parts:
            with open(os.path.join(out, part), "rb") as src:
                shutil.copyfileobj(src, dest, 1 << 20)
