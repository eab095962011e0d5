"""What a machine that network-boots first boots next: the master decides at each boot.

iPXE (from dnsmasq, see docs/netboot.md) fetches `GET /boot.ipxe`, which chains
`/boot.ipxe?mac=...&platform=...`; the answer is an iPXE script that either boots
thepusher (kernel and initrds over HTTP from `master --boot DIR`) or goes on to the
machine's own disk. So PCs can stay set to network boot for good, and a room re-images
itself when the admin says so (FOG's most-used workflow), with no one at the machines.

A host is imaged when something is pending for it:
- the admin marked it (or its group) "re-image at next boot": the mark stays until a
  round ends DONE for it, so a failed or interrupted imaging is tried again at the next
  boot; or "upload at next boot" (put-image), which holds for one boot;
- its group's next round waits for it (start = "all": not DONE yet, retries left);
- its group's round is running with it (it rebooted mid-round: its client says so).
Otherwise it boots its disk. Machines the config does not know get `unknown_boot`.

The marks themselves are marks.py's.
"""

import ipaddress
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

from thepusher.config.model import normalize_host, normalize_mac
from thepusher.master import policy
from thepusher.master.errors import ApiError
from thepusher.master.marks import DEVICE_RE, IMAGE, PUT
from thepusher.master.state import State
from thepusher.netboot.bootfiles import CMDLINE, OVERLAY
from thepusher.netboot.tcz import INITRD, KERNEL

log = logging.getLogger("thepusher.boot")

# What may stand for the master in a script line: an address or a name, and a port.
MASTER_RE = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


@dataclass
class Decision:
    host: Optional[str]  # None: a machine the master does not know
    boot: str  # "image", "put" or "local"
    why: str
    device: str = ""  # for "put": the disk to upload
    blocked: bool = False  # it was due for thepusher, but the master has no kernel to send


def decide(st: State, host: Optional[str], unknown_boot: str, serving: bool = True) -> Decision:
    """The boot for `host` now (call with the state lock held). A put mark is used up.
    `serving`: the master has the kernel to send (--boot DIR); else pending work waits,
    and the machine is told why it boots its disk."""
    d = _decide(st, host, unknown_boot, serving)
    if d.boot != "local" and not serving:
        return Decision(host, "local", f"{d.why}, but the master has no --boot DIR to serve "
                                       "the kernel from", blocked=True)
    return d


def _decide(st: State, host: Optional[str], unknown_boot: str, serving: bool) -> Decision:
    # A marked host no group lists is known by its mark alone after a restart.
    c = st.client(host) if host and (host in st.clients or host in st.marks.marks) else None
    group = st.config.groups.get(c.group) if c is not None and c.group else None
    if c is not None and c.next_boot.startswith(PUT + ":"):
        device = c.next_boot[len(PUT) + 1:]
        if serving:
            st.set_mark(c, "")
        return Decision(host, PUT, f"marked: upload {device} at this boot (once)", device)
    if c is not None and c.next_boot == IMAGE:
        return Decision(host, IMAGE, "marked: re-image at next boot")
    if c is None or group is None:
        what = "a machine no group lists" if host else "an unknown MAC"
        return Decision(host, IMAGE if unknown_boot == IMAGE else "local",
                        f"{what}: unknown_boot = \"{unknown_boot}\"")
    r = st.active_round(host)
    if r is not None:
        return Decision(host, IMAGE, f"group {group.name}'s round {r.number} is running with it")
    if group.start != "manual" and host in policy.expected(group, st.clients):
        why = (f"group {group.name} waits for it to be imaged" if c.outcome != "ERROR" else
               f"its last round ended in ERROR; group {group.name} tries again")
        return Decision(host, IMAGE, why)
    if c.outcome == "DONE":
        return Decision(host, "local", "nothing pending: its last round ended DONE")
    if group.start == "manual":
        return Decision(host, "local", f"nothing pending: group {group.name} starts by hand "
                                       "(mark it to re-image at next boot)")
    return Decision(host, "local", f"nothing pending: out of retries in group {group.name}")


def find_host(st: State, macs: Dict[str, str], mac: str, address: str) -> Optional[str]:
    """The host a booting machine is: by its MAC (the config's `macs` and hosts file,
    then the MAC each host last registered with), else by the address it asks from."""
    for group in st.config.groups.values():
        for host, known in group.macs.items():
            if known == mac:
                return host
    for host, known in macs.copy().items():  # a copy: registrations add to it meanwhile
        if known == mac:
            return host
    host = normalize_host(address)
    c = st.clients.get(host)
    known = c is not None and (c.group or c.registered)
    return host if known or host in st.marks.marks else None


def mark(st: State, targets: List[str], what: str, device: str, serving: bool) -> dict:
    """`POST /api/next-boot`: mark hosts and groups (by name) for their next boot.
    `serving`: the master has a --boot DIR (else the marks wait for one)."""
    if what not in (IMAGE, PUT, "clear"):
        raise ApiError(400, 'boot must be "image", "put" or "clear"')
    if what == PUT and not DEVICE_RE.match(device or ""):
        raise ApiError(400, 'put needs a device: "auto" or a /dev/ path')
    if not targets or not all(isinstance(t, str) and t for t in targets):
        raise ApiError(400, 'targets must be a list of group names and host addresses')
    value = {IMAGE: IMAGE, PUT: f"{PUT}:{device}", "clear": ""}[what]
    hosts: List[str] = []
    with st.lock:
        for target in targets:
            group = st.config.groups.get(target)
            if group is not None:
                hosts += [h for h in group.hosts if h not in hosts]
                continue
            host = normalize_host(target)
            if host not in st.clients and host not in st.marks.marks and not _is_address(host):
                raise ApiError(404, f"{target} is neither a group nor a host address")
            if host not in hosts:
                hosts.append(host)
        try:
            for host in hosts:
                st.set_mark(st.client(host), value)
        except OSError as e:
            raise ApiError(500, f"cannot save the marks: {e.strerror or e}") from None
    told = {IMAGE: "re-image at next boot", PUT: f"upload {device} at next boot",
            "clear": "no mark: the master decides at each boot"}[what]
    message = f"{', '.join(hosts)}: {told}"
    if not serving and what != "clear":
        message += " (this master has no --boot DIR yet: restart it with --boot for this to work)"
    log.info("next boot: %s", message)
    return {"hosts": hosts, "next_boot": value, "message": message}


class BootDesk:
    """`GET /boot.ipxe`: decides, remembers and logs each machine's boot, and writes the
    iPXE script for it. `boot_dir` is create-nbi's output (master --boot DIR)."""

    def __init__(self, st: State, macs: Dict[str, str], boot_dir: Optional[str]) -> None:
        self.state = st
        self.macs = macs  # host -> MAC it registered with (hosts.HostBook.macs, live)
        self.boot_dir = boot_dir

    def script(self, mac_text: str, platform: str, address: str, master: str) -> str:
        _check_master(master)
        mac = normalize_mac(mac_text)
        if mac is None:
            raise ApiError(400, f"mac {mac_text[:40]!r} is not a MAC address")
        platform = platform if platform in ("efi", "pcbios") else "pcbios"
        st = self.state
        with st.lock:
            host = find_host(st, self.macs, mac, address)
            d = decide(st, host, st.config.settings.unknown_boot, self.boot_dir is not None)
            c = st.clients.get(host) if host else None
            if c is not None:
                c.last_boot = {"at": time.time(), "boot": d.boot, "why": d.why,
                               "platform": platform}
                st.touch()
        log.log(logging.WARNING if d.blocked else logging.INFO, "boot %s (mac %s, %s, from %s): %s: %s", host or "?", mac, platform,
                address, d.boot, d.why)
        if d.boot == "local":
            return local_script(d, platform)
        return image_script(d, self._cmdline(), master)

    def _cmdline(self) -> str:
        with open(os.path.join(self.boot_dir or "", CMDLINE), encoding="utf-8") as f:
            return " ".join(f.read().split())


def check_boot_dir(path: str) -> None:
    """`master --boot DIR` must be create-nbi's output: refuse anything else at start."""
    missing = [n for n in (KERNEL, INITRD, OVERLAY, CMDLINE)
               if not os.path.isfile(os.path.join(path, n))]
    if missing:
        raise ValueError(f"boot directory {path} lacks {', '.join(missing)}: give it the "
                         "directory create-nbi wrote (its --out)")


def chain_script(master: str) -> str:
    """The answer without a MAC: ask again, saying which machine and firmware this is.
    `hexhyp` spells the MAC with hyphens: iPXE takes a colon in a URL for a scheme."""
    _check_master(master)
    return ("#!ipxe\n"
            f"chain http://{master}/boot.ipxe?mac=${{netX/mac:hexhyp}}&platform=${{platform}} "
            "|| exit 1\n")


def _is_address(text: str) -> bool:
    """A machine the master has not met yet may be marked by its (DHCP) address: a
    capture station, say, told to upload its disk at its first boot."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _check_master(master: str) -> None:
    if not MASTER_RE.match(master):
        raise ApiError(400, f"Host header {master[:100]!r} is not an address to boot from")


def _comment(text: str) -> str:
    """Text for an `echo` line: one line, and no `$`, which iPXE would expand."""
    return "".join(c if c.isprintable() and c != "$" else "?" for c in text)


def image_script(d: Decision, cmdline: str, master: str) -> str:
    """`master`: the Host iPXE sent, so the address it reached the master at; without a
    port that is HTTP's 80, which thePusher= must then say (its default is 8080)."""
    if not re.search(r":[0-9]+$", master):
        master += ":80"
    words = f"{cmdline} thePusher={master}"
    if d.boot == PUT:
        words += f" putImage={d.device}"
    return (
        "#!ipxe\n"
        f"echo thepusher: {_comment(d.host or 'this machine')}: {d.boot}: {_comment(d.why)}\n"
        f"kernel /boot/{KERNEL} initrd={INITRD} initrd={OVERLAY} {words}\n"
        f"initrd /boot/{INITRD}\n"
        f"initrd /boot/{OVERLAY}\n"
        "boot\n"
    )


def local_script(d: Decision, platform: str) -> str:
    """UEFI: leave iPXE with an error, so the firmware goes on to its next boot entry
    (on success it would show its boot menu instead). BIOS: boot the first disk."""
    head = (f"#!ipxe\necho thepusher: {_comment(d.host or 'this machine')}: "
            f"boot the local disk: {_comment(d.why)}\n")
    if platform == "efi":
        return head + "exit 1\n"
    return head + "sanboot --no-describe --drive 0x80 || exit 1\n"
