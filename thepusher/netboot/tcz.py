"""TinyCore's own inputs in a cache directory: the kernel, its initrd, and extensions.

An extension `x.tcz` may come with `x.tcz.dep` (one extension per line, what
`tce-load` loads first) and `x.tcz.md5.txt` (`md5sum` output). We resolve the
dependency closure from those files rather than from a list of our own, because the
chain behind `python3.9.tcz` differs between TinyCore releases.
"""

import hashlib
import os
import re
import struct
from typing import Dict, List, Optional, Tuple

KERNEL = "vmlinuz64"
INITRD = "corepure64.gz"
PYTHON = "python3.9.tcz"
KERNEL_SUFFIX = "-KERNEL.tcz"


class NbiError(Exception):
    """Something `create-nbi` needs is missing or wrong; the message says what and where."""


def kernel_release(path: str) -> Optional[str]:
    """`uname -r` of a bzImage, from the version string its setup header points to.

    Needed because `.dep` files name kernel modules as `foo-KERNEL.tcz`, which
    tce-load replaces with the running kernel's release.
    """
    with open(path, "rb") as f:
        head = f.read(0x10000)
    if len(head) < 0x210 or head[0x202:0x206] != b"HdrS":
        return None
    (pointer,) = struct.unpack_from("<H", head, 0x20E)
    start = pointer + 0x200
    end = head.find(b"\0", start)
    if not pointer or end < 0:
        return None
    words = head[start:end].decode("ascii", "replace").split()
    return words[0] if words else None


def read_deps(cache: str, name: str, release: Optional[str]) -> List[Tuple[str, int]]:
    """(dependency, line number) pairs from `name.dep`; none when the file is absent."""
    deps = []
    try:
        with open(os.path.join(cache, name + ".dep"), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return deps
    for number, line in enumerate(lines, 1):
        dep = line.strip()
        if not dep or dep.startswith("#"):
            continue
        if not dep.endswith(".tcz"):
            dep += ".tcz"
        if dep.endswith(KERNEL_SUFFIX):
            if release is None:
                raise NbiError(
                    f"{name}.dep line {number} names {dep}, which depends on the kernel "
                    f"release, but {KERNEL} has no readable version string")
            dep = dep[: -len(KERNEL_SUFFIX)] + f"-{release}.tcz"
        deps.append((dep, number))
    return deps


def resolve(cache: str, roots: List[str], release: Optional[str]) -> List[str]:
    """Every extension `roots` need, dependencies before their users, each once.

    A missing file is reported with the chain that asked for it, so the admin knows
    which `.tcz` to fetch and why.
    """
    order: List[str] = []
    state: Dict[str, str] = {}  # name -> "visiting" | "done"

    def visit(name: str, chain: List[str]) -> None:
        if name in state:
            return  # a cycle is harmless: tce-load also loads each extension once
        if not os.path.isfile(os.path.join(cache, name)):
            why = " <- ".join(reversed(chain)) if chain else "the netboot image"
            raise NbiError(f"{name} is missing from {cache} (needed by {why})")
        state[name] = "visiting"
        for dep, number in read_deps(cache, name, release):
            visit(dep, chain + [f"{name}.dep line {number}"])
        state[name] = "done"
        order.append(name)

    for root in roots:
        visit(root, [])
    return order


def md5_of(path: str) -> str:
    h = hashlib.md5()  # noqa: S324 - TinyCore publishes md5 sums; this is a transfer check
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def expected_md5(path: str) -> Optional[str]:
    """The sum from `path.md5.txt`, or None when there is no such file."""
    try:
        with open(path + ".md5.txt", encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    match = re.match(r"\s*([0-9a-fA-F]{32})\b", text)
    if not match:
        raise NbiError(f"{path}.md5.txt does not start with an md5 sum")
    return match.group(1).lower()


def check_md5(path: str) -> None:
    """Refuse a cached file whose published sum does not match (a truncated download)."""
    want = expected_md5(path)
    if want is None:
        return
    got = md5_of(path)
    if got != want:
        raise NbiError(f"{path}: md5 {got} does not match {path}.md5.txt ({want}); "
                       f"delete it and download it again")
