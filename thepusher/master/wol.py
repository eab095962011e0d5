"""Wake-on-LAN: the magic packet a switched-off PC's network card listens for.

Six 0xFF bytes, then the card's MAC address sixteen times, sent as one UDP datagram
to a broadcast address (port 9, "discard", by convention), because a sleeping machine
has no IP address to send to.
"""

import re
import socket
from typing import Iterable, List, Tuple

MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}([:-]?)[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$")
DEFAULT_TARGET = ("255.255.255.255", 9)


def normalise_mac(text: str) -> str:
    """`aa:bb:cc:dd:ee:ff`, from any of the usual spellings; ValueError otherwise."""
    if not MAC_RE.match(text.strip()):
        raise ValueError(f"{text!r} is not a MAC address (like 52:54:00:12:34:56)")
    digits = re.sub(r"[:-]", "", text.strip()).lower()
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def magic_packet(mac: str) -> bytes:
    return b"\xff" * 6 + bytes.fromhex(normalise_mac(mac).replace(":", "")) * 16


def parse_target(text: str) -> Tuple[str, int]:
    """`ADDRESS[:PORT]` of the broadcast the packets go to (the `wake_address` setting)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, DEFAULT_TARGET[1]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: port {port!r} is not a UDP port")
    return host, int(port)


def wake(macs: Iterable[str], target: Tuple[str, int] = DEFAULT_TARGET) -> List[str]:
    """Send one magic packet per MAC, three times each (UDP may drop one); returns the MACs."""
    sent = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        for mac in macs:
            packet = magic_packet(mac)
            for _ in range(3):
                s.sendto(packet, target)
            sent.append(normalise_mac(mac))
    return sent
