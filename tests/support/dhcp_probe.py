"""A PXE client's DHCP requests, one at a time, for the dnsmasq config tests (run inside a
network namespace: it binds port 68 on one interface).

    dhcp_probe.py IFACE ARCH [--ipxe] [--to ADDR:PORT] [--ciaddr IP] [--boot-item TYPE]

Sends a DISCOVER (or, with --to, a REQUEST to that address, as a UEFI or BIOS PXE client
does on port 4011) carrying client-arch ARCH, the PXEClient vendor class and, with
--ipxe, the user class "iPXE"; prints the first answer as JSON: siaddr, file, yiaddr and
the PXE boot menu's first item type (option 43, sub-option 9), if any. Stdlib only.
"""

import argparse
import json
import os
import socket
import struct
import sys
import time

MAC = bytes.fromhex("525400e2e0aa")


def packet(arch: int, ipxe: bool, request: bool, ciaddr: str, boot_item: int) -> bytes:
    xid = os.urandom(4)
    head = struct.pack("!BBBB4sHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000,
                       socket.inet_aton(ciaddr), bytes(4), bytes(4), bytes(4),
                       MAC + bytes(10), bytes(64), bytes(128))
    vendor = f"PXEClient:Arch:{arch:05d}:UNDI:003016".encode()
    opts = [(53, bytes([3 if request else 1])), (93, struct.pack("!H", arch)), (60, vendor),
            (97, bytes(17)), (94, bytes([1, 3, 16])), (55, bytes([1, 3, 43, 60, 66, 67, 97]))]
    if ipxe:
        opts.append((77, b"iPXE"))
    if boot_item:
        opts.append((43, bytes([71, 4]) + struct.pack("!HH", boot_item, 0) + b"\xff"))
    body = b"".join(bytes([code, len(data)]) + data for code, data in opts)
    return head + b"\x63\x82\x53\x63" + body + b"\xff"


def options(data: bytes) -> dict:
    found, i = {}, 0
    while i < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        found[data[i]] = data[i + 2:i + 2 + data[i + 1]]
        i += 2 + data[i + 1]
    return found


def first_menu_item(opt43: bytes) -> int:
    menu = options(opt43).get(9, b"")
    return struct.unpack("!H", menu[:2])[0] if len(menu) >= 2 else 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("iface")
    p.add_argument("arch", type=int)
    p.add_argument("--ipxe", action="store_true")
    p.add_argument("--to", default="")
    p.add_argument("--ciaddr", default="0.0.0.0")
    p.add_argument("--boot-item", type=int, default=0)
    a = p.parse_args()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, a.iface.encode())
    s.bind(("0.0.0.0", 68))
    host, _, port = a.to.partition(":")
    dest = (host, int(port)) if a.to else ("255.255.255.255", 67)
    s.sendto(packet(a.arch, a.ipxe, bool(a.to), a.ciaddr, a.boot_item), dest)
    s.settimeout(5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        data = s.recv(4096)
        if data[0] != 2 or data[28:34] != MAC:
            continue
        opts = options(data[240:])
        print(json.dumps({
            "siaddr": socket.inet_ntoa(data[20:24]), "yiaddr": socket.inet_ntoa(data[16:20]),
            # the BOOTP file field, or option 67 when the client asked for it (PXE ROMs do)
            "file": (data[108:236].split(b"\0")[0] or opts.get(67, b"").rstrip(b"\0")).decode(),
            "menu_item": first_menu_item(opts.get(43, b"")),
            "type": opts.get(53, b"\0")[0]}))
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
