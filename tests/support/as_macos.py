"""Run thepusher as a Mac's Python would run it on this machine.

`python3 -m tests.support.as_macos ARGS` is `python3 -m thepusher ARGS` with
sys.platform saying "darwin" and the Linux-only parts of the standard library gone
(what macOS's Python 3.9 lacks: MADV_REMOVE, O_DIRECT, posix_fadvise, preadv, epoll,
xattrs, ...), so that any call of one of them fails here as it would on a Mac. Run it
in a mount namespace with /sys and /proc covered (AS_MACOS below) and the client
cannot read them either. What this cannot show: the macOS kernel's answers (its disk
ioctls, raw devices); those paths are named in docs/macos.md.
"""

import mmap
import os
import select
import socket
import sys
from typing import Dict, List

LINUX_ONLY: Dict[object, List[str]] = {
    os: ["O_DIRECT", "O_PATH", "O_TMPFILE", "O_NOATIME", "posix_fadvise", "posix_fallocate",
         "preadv", "pwritev", "pipe2", "memfd_create", "eventfd", "splice", "copy_file_range",
         "sched_getaffinity", "sched_setaffinity", "getxattr", "setxattr", "listxattr",
         "removexattr", "getrandom"],
    mmap: ["MADV_REMOVE", "MADV_DONTFORK", "MADV_DOFORK", "MADV_HWPOISON", "MADV_MERGEABLE",
           "MADV_UNMERGEABLE", "MADV_HUGEPAGE", "MADV_NOHUGEPAGE", "MADV_DONTDUMP", "MADV_DODUMP",
           "MAP_POPULATE"],
    select: ["epoll"],
    socket: ["TCP_USER_TIMEOUT", "TCP_CORK", "TCP_QUICKACK", "TCP_CONGESTION", "SO_BINDTODEVICE",
             "SO_MARK", "MSG_MORE", "MSG_CONFIRM", "MSG_NOSIGNAL", "SOCK_CLOEXEC", "SOCK_NONBLOCK"],
}
PREFIXES = {os: ["POSIX_FADV_", "RWF_", "XATTR_", "MFD_", "GRND_", "SPLICE_", "EFD_"],
            select: ["EPOLL"]}

# A shell command prefix: a mount namespace of its own with /sys and /proc covered.
AS_MACOS = ["unshare", "--mount", "sh", "-c",
            "mount -t tmpfs none /sys && mount -t tmpfs none /proc && exec \"$@\"", "sh",
            sys.executable, "-m", "tests.support.as_macos"]


def hide_linux() -> None:
    for module, names in LINUX_ONLY.items():
        prefixes = tuple(PREFIXES.get(module, []))
        for name in [n for n in dir(module) if n in names or (prefixes and n.startswith(prefixes))]:
            delattr(module, name)
    sys.platform = "darwin"


if __name__ == "__main__":
    hide_linux()
    from thepusher.cli import main

    sys.exit(main())
