"""The overlay initrd `thepusher.gz`: our files on top of TinyCore's unchanged initrd.

The kernel unpacks several concatenated archives into one root, later ones winning,
so we never unpack or repack TinyCore's initrd (that would need root to keep its
owners and device nodes). The kernel chowns and chmods every directory entry even when
the directory exists, so the overlay names only directories TinyCore does not have;
`/opt` and `/tmp` keep their own owners and modes.
"""

import gzip
import os
import pkgutil
import re
import shlex
from typing import List, Optional

from thepusher import signing
from thepusher.netboot import cpio, tcz

TC_UID = 1001  # TinyCore's user `tc`, which runs tce-load on /tmp/builtin
STAFF_GID = 50
BUILTIN = "tmp/builtin"
MASTER_RE = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


def asset(name: str) -> bytes:
    """A file from `tinycore/`, read the same way from a source tree and from the zipapp."""
    data = pkgutil.get_data("thepusher.netboot", f"tinycore/{name}")
    if data is None:
        raise tcz.NbiError(f"tinycore/{name} is missing from this thepusher build")
    return data


def check_master(master: str) -> str:
    """Baked into a shell-sourced file, so only host names, addresses and a port."""
    if not MASTER_RE.match(master):
        raise tcz.NbiError(f"master {master!r} is not a host name or IP address (with optional :PORT)")
    return master


def check_secret(secret: str) -> str:
    try:
        return signing.check_secret(secret)
    except ValueError as e:
        raise tcz.NbiError(str(e)) from None


def env_file(master: Optional[str], secret: str) -> bytes:
    """/opt/thepusher.env, sourced by the boot script: the secret quoted for the shell."""
    lines = []
    if master:
        lines.append(f"THEPUSHER_MASTER={check_master(master)}\n")
    if secret:
        lines.append(f"THEPUSHER_SECRET={shlex.quote(check_secret(secret))}\n")
    return "".join(lines).encode()


def write(out_path: str, pyz: str, cache: str, extensions: List[str],
          master: Optional[str], secret: str = "") -> None:
    """Write the overlay atomically; mtime 0 everywhere, so the same inputs give the same bytes."""
    tmp = out_path + ".part"
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        w = cpio.Writer(gz)
        w.file("opt/bootlocal.sh", asset("bootlocal.sh"), 0o775, 0, STAFF_GID)
        w.file("opt/thepusher-boot.sh", asset("thepusher-boot.sh"), 0o755)
        w.file_from("opt/thepusher.pyz", pyz, 0o644)
        if master or secret:  # only root may read a secret on the booted machine
            w.file("opt/thepusher.env", env_file(master, secret), 0o600 if secret else 0o644)
        w.directory(BUILTIN, 0o755, TC_UID, STAFF_GID)
        w.directory(f"{BUILTIN}/optional", 0o755, TC_UID, STAFF_GID)
        for name in extensions:
            for suffix in ("", ".dep", ".md5.txt"):
                source = os.path.join(cache, name + suffix)
                if suffix and not os.path.isfile(source):
                    continue
                w.file_from(f"{BUILTIN}/optional/{name}{suffix}", source, 0o644, TC_UID, STAFF_GID)
        w.file(f"{BUILTIN}/onboot.lst", f"{tcz.PYTHON}\n".encode(), 0o644, TC_UID, STAFF_GID)
        w.close()
    os.replace(tmp, out_path)
