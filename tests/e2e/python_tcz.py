"""python3.9.tcz of the e2e stand-in: a real TinyCore extension (a squashfs image).

TinyCore's python3.9.tcz installs /usr/local/bin/python3.9 (and python3) with its
stdlib in /usr/local/lib/python3.9; tce-load loop-mounts it under /tmp/tcloop/python3.9
and links its files into /. Ours holds the same paths, filled from the pyenv build of
Python 3.9 on this machine (a shared-library build: bin/python3.9 needs
lib/libpython3.9.so.1.0): the interpreter and libpython (stripped), the stdlib trimmed
and compiled, lib-dynload, and the libraries `ldd` finds for all of them apart from
glibc's, which the base archive holds, as TinyCore's does. The libraries go into
/usr/local/lib, where `ldconfig` (run by /init after loading extensions, as tce-setup
does) finds them: the binaries' RUNPATH names the pyenv directory, absent in the guest.
"""

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Set

NAME = "python3.9.tcz"
LIB = "usr/local/lib"
# Not needed to image a disk, and together more than half of the stdlib's size.
STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3",
               "pydoc_data", "distutils", "site-packages", "dist-packages", "__pycache__",
               "venv", "unittest", "sqlite3", "curses", "dbm"}
DYNLOAD_SKIP = re.compile(r"^(_test|_xxtest|xxlimited|_ctypes_test|_curses|readline|_dbm|"
                          r"_gdbm|_sqlite3|nis|ossaudiodev|_crypt|audioop|_tkinter|"
                          r"_xxsubinterpreters)")
# The Debian packages whose libraries end up in the extension or the base (base.key).
DEBIAN_LIBS = ["libc6", "libssl3", "libffi8", "libbz2-1.0", "liblzma5", "zlib1g",
               "libexpat1", "libuuid1"]


@dataclass
class Python39:
    home: Path  # $(pyenv root)/versions/3.9.N
    version: str  # "3.9.18", what `python3.9 --version` prints after "Python "

    @property
    def exe(self) -> Path:
        return self.home / "bin" / "python3.9"

    @property
    def stdlib(self) -> Path:
        return self.home / "lib" / "python3.9"

    def key(self) -> Dict[str, str]:
        """What identifies this interpreter: its version and the binaries' contents."""
        return {"version": self.version, "exe": _sha256_file(self.exe),
                "libpython": _sha256_file(self.home / "lib" / "libpython3.9.so.1.0")}


def find_python39() -> Python39:
    """The newest pyenv Python 3.9 (the Makefile's PY39 finds it the same way)."""
    root = os.environ.get("PYENV_ROOT") or _pyenv_root()
    homes = sorted(Path(root, "versions").glob("3.9.*"),
                   key=lambda p: [int(x) if x.isdigit() else 0 for x in p.name.split(".")])
    homes = [h for h in homes if (h / "bin" / "python3.9").exists()]
    if not homes:
        raise RuntimeError(f"no Python 3.9 under {root}/versions: pyenv install 3.9.18")
    home = homes[-1]
    out = subprocess.run([str(home / "bin" / "python3.9"), "--version"], capture_output=True,
                         text=True, check=True).stdout
    return Python39(home, out.split()[1])


def _pyenv_root() -> str:
    try:
        return subprocess.run(["pyenv", "root"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.path.expanduser("~/.pyenv")


def build(py: Python39, tmp: Path, dest: Path) -> List[str]:
    """Write the extension to `dest` (+ `.md5.txt`); return the glibc libraries it needs,
    which the base archive must hold."""
    tree = tmp / "tcz"
    stdlib = tree / LIB / "python3.9"
    shutil.copytree(py.stdlib, stdlib, symlinks=True, ignore=_stdlib_ignore(py.stdlib))
    # Hash-based .pyc that is never checked: the squashfs is built with all mtimes 0,
    # so timestamp-based bytecode would be stale and recompiled (in RAM) at every boot.
    subprocess.run([str(py.exe), "-m", "compileall", "-q", "-j0", "-d", "/" + LIB + "/python3.9",
                    "--invalidation-mode", "unchecked-hash", str(stdlib)], check=True)
    bindir = tree / "usr" / "local" / "bin"
    bindir.mkdir(parents=True)
    shutil.copy(py.exe, bindir / "python3.9")
    (bindir / "python3").symlink_to("python3.9")
    libpython = tree / LIB / "libpython3.9.so.1.0"
    shutil.copy(py.home / "lib" / "libpython3.9.so.1.0", libpython)
    dynload = sorted((stdlib / "lib-dynload").glob("*.so"))
    # pyenv's build keeps its symbols (libpython alone is 14 MB): TinyCore's is stripped.
    subprocess.run(["strip", "--strip-unneeded", str(bindir / "python3.9"), str(libpython),
                    *map(str, dynload)], check=True)
    # ldd of the pyenv originals: their RUNPATH finds libpython; the copies' would not.
    binaries = [py.exe, *(py.stdlib / "lib-dynload" / p.name for p in dynload)]
    glibc = []
    for lib in shared_libraries(binaries):
        if Path(lib).resolve().is_relative_to(py.home.resolve()):
            continue  # libpython, copied above
        if owner(lib) == "libc6":
            glibc.append(lib)
        else:
            shutil.copy(lib, tree / LIB / Path(lib).name)  # the file, under its soname
    for d in [tree, *(p for p in tree.rglob("*") if p.is_dir() and not p.is_symlink())]:
        d.chmod(0o755)  # tce-load's cp -a gives directories in / the extension's modes
    squash(tree, dest)
    return glibc


def squash(tree: Path, dest: Path) -> None:
    """`mksquashfs` as TinyCore's extensions are made (4 KiB blocks, no xattrs), owned by
    root and with every time 0, so the same tree gives the same bytes; plus .md5.txt."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    subprocess.run(["mksquashfs", str(tree), str(tmp), "-b", "4k", "-no-xattrs", "-noappend",
                    "-all-root", "-mkfs-time", "0", "-all-time", "0", "-quiet",
                    "-no-progress"], check=True, stdout=subprocess.DEVNULL)
    md5 = hashlib.md5(tmp.read_bytes()).hexdigest()  # noqa: S324 - TinyCore's sidecar format
    os.replace(tmp, dest)
    Path(f"{dest}.md5.txt").write_text(f"{md5}  {dest.name}\n")


def shared_libraries(binaries: List[Path]) -> List[str]:
    """The host libraries `ldd` resolves for these binaries, the loader included."""
    found: Set[str] = set()
    for binary in binaries:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True,
                             check=True).stdout
        for m in re.finditer(r"(/\S+) \(0x", out):
            found.add(m.group(1))
    return sorted(found)


def owner(path: str) -> str:
    """The Debian package that installed `path` ("" if none), architecture dropped."""
    done = subprocess.run(["dpkg-query", "-S", path], capture_output=True, text=True)
    return done.stdout.split(":", 1)[0] if done.returncode == 0 else ""


def _stdlib_ignore(top: Path):  # noqa: ANN202 - shutil.copytree's ignore callback
    def ignore(directory: str, names: List[str]) -> Set[str]:
        at_top = os.path.realpath(directory) == os.path.realpath(top)
        skip = {n for n in names if n in STDLIB_SKIP or (at_top and n.startswith("config-3"))}
        if os.path.basename(directory) == "lib-dynload":
            skip |= {n for n in names if DYNLOAD_SKIP.match(n)}
        return skip
    return ignore


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
