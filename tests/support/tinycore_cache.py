"""A stand-in for TinyCore's files, as create-nbi reads them (TinyCore itself cannot be
downloaded here): a bzImage-shaped kernel, a gzip'd newc initrd with TinyCore's top
directories, `.tcz` files with `.dep` chains and `.md5.txt` sums as the mirror publishes
them; and a zipapp of this tree. The fixtures are given to tests/system by its conftest.
"""

import gzip
import hashlib
import io
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from thepusher.netboot import cpio

RELEASE = "6.6.8-tinycore64"
DEPS = {
    "python3.9.tcz": ["openssl-1.1.1.tcz", "readline.tcz", "", "bzip2-lib"],
    "readline.tcz": ["ncursesw.tcz"],
    "ncursesw.tcz": [],
    "openssl-1.1.1.tcz": ["ca-certificates.tcz"],
    "ca-certificates.tcz": ["openssl-1.1.1.tcz"],  # a cycle, as real repos have
}
NO_DEP_FILE = ["bzip2-lib.tcz", "unrelated.tcz"]
LOAD_ORDER = ["ca-certificates.tcz", "openssl-1.1.1.tcz", "ncursesw.tcz", "readline.tcz",
              "bzip2-lib.tcz", "python3.9.tcz"]
TINYCORE_DIRS = {"bin": 0o755, "dev": 0o755, "etc": 0o755, "opt": 0o2775, "tmp": 0o1777,
                 "usr": 0o755, "usr/local": 0o755}


def fake_kernel(release: str = RELEASE) -> bytes:
    """Just enough of a bzImage: the setup header magic and the version-string pointer."""
    image = bytearray(0x800)
    image[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", image, 0x20E, 0x400 - 0x200)
    text = f"{release} (tc@box) #1 SMP".encode()
    image[0x400:0x400 + len(text)] = text
    return bytes(image)


def fake_initrd() -> bytes:
    raw = io.BytesIO()
    w = cpio.Writer(raw)
    for name, mode in TINYCORE_DIRS.items():
        w.directory(name, mode, 0, 50 if name == "opt" else 0)
    w.file("bin/busybox", b"\x7fELF busybox", 0o755)
    w.file("opt/bootlocal.sh", b"#!/bin/sh\n# put other system startup commands here\n", 0o775, 0, 50)
    w.file("etc/inittab", b"::sysinit:/etc/init.d/rcS\n")
    w.device("dev/console", 0o600, 5, 1)
    w.close()
    return gzip.compress(raw.getvalue(), mtime=0)


def write_with_md5(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    (path.parent / (path.name + ".md5.txt")).write_text(
        f"{hashlib.md5(data).hexdigest()}  {path.name}\n")


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    d = tmp_path / "tinycore"
    d.mkdir()
    write_with_md5(d / "vmlinuz64", fake_kernel())
    write_with_md5(d / "corepure64.gz", fake_initrd())
    for name in list(DEPS) + NO_DEP_FILE:
        write_with_md5(d / name, b"hsqs" + name.encode() * 1000)
    for name, deps in DEPS.items():
        (d / (name + ".dep")).write_text("".join(dep + "\n" for dep in deps))
    return d


@pytest.fixture(scope="module")
def pyz(tmp_path_factory) -> Path:
    """A zipapp of this source tree, built the way the Makefile builds it."""
    build = tmp_path_factory.mktemp("pyz")
    tree = build / "tree"
    shutil.copytree(ROOT / "thepusher", tree / "thepusher", symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "thepusher" / "__main__.py", tree / "__main__.py")
    out = build / "thepusher.pyz"
    subprocess.run([sys.executable, "-m", "zipapp", str(tree), "-o", str(out),
                    "-p", "/usr/bin/env python3"], check=True)
    return out
