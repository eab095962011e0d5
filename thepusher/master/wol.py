"""Wake-on-LAN: the magic packet a switched-off PC's network card listens for.

Six 0xFF bytes, then the card's MAC address sixteen times, sent as one UDP datagram
to a broadcast address (port 9, "discard", by convention), because a sleeping machine
has no IP address to send to.
"""

import socket
from typing import Iterable, Tuple

PORT = 9


def magic_packet(mac: str) -> bytes:
    """For a MAC in config.normalize_mac's form, `aa:bb:cc:dd:ee:ff`."""
    return b"\xff" * 6 + bytes.fromhex(mac.replace(":", "")) * 16


def parse_target(text: str) -> Tuple[str, int]:
    """The `wake_address` setting, `ADDRESS[:PORT]` (checked when the config loads)."""
    host, sep, port = text.rpartition(":")
    return (host, int(port)) if sep else (text, PORT)


def wake(macs: Iterable[str], target: Tuple[str, int]) -> None:
    """One magic packet per MAC, sent three times: UDP may drop one, and waking twice
    does no harm."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        for mac in macs:
            packet = magic_packet(mac)
            for _ in range(3):
                s.sendto(packet, target)
