"""What a client tells the master about its machine: the MAC that wakes it, the size of
the disk it writes. Both are best effort: a machine that cannot say still gets imaged."""

import os
import uuid
from typing import Optional

from thepusher import syscalls


def local_mac() -> str:
    """The MAC of the first physical interface (what Wake-on-LAN needs); zeros if none.

    Where there is no /sys (macOS), the one the standard library finds (uuid.getnode:
    the system's UUID generator or ifconfig); "" when it found none and made one up."""
    try:
        names = sorted(os.listdir("/sys/class/net"))
    except OSError:
        node = uuid.getnode()
        if node >> 40 & 1:  # the multicast bit: a random number, no interface's address
            return ""
        return ":".join(f"{node >> shift & 0xFF:02x}" for shift in range(40, -8, -8))
    for name in names:
        if os.path.exists(f"/sys/class/net/{name}/device"):
            try:
                with open(f"/sys/class/net/{name}/address") as f:
                    return f.read().strip()
            except OSError:
                continue
    return "00:00:00:00:00:00"


def disk_size(path: str) -> Optional[int]:
    """The destination disk's size for the master's page; None for a file or when unknown."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return syscalls.device_size(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
