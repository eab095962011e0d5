"""A netboot image built from Debian packages, for the end-to-end test.

TinyCore cannot be downloaded here (docs/e2e.md), so the e2e test plays TinyCore's part
with Debian's: its kernel stands in for `vmlinuz64`; a base archive with busybox,
glibc, the virtio, loop and squashfs modules, an /init that boots like TinyCore's
(loading the extensions in /tmp/builtin, then running /opt/bootlocal.sh) and a udhcpc
hook stands in for `corepure64.gz`; and a real extension (squashfs) with pyenv's Python
3.9 laid out as TinyCore's stands in for `python3.9.tcz` (python_tcz.py). Everything
of ours on top comes from `thepusher create-nbi`, run on this stand-in exactly as on
TinyCore's files: the same overlay, boot script and boot configs. The stand-in is slow
to build (stdlib bytecode, squashfs, gzip) and cached under a key of its inputs.

    python3 tests/e2e/debian_nbi.py KERNEL_DEB OUT_DIR     # what the e2e fixture does
"""

import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Dict, Iterator, List, Set

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from thepusher.netboot import cpio  # noqa: E402
from tests.e2e import python_tcz  # noqa: E402

HERE = Path(__file__).resolve().parent
BUSYBOX = "/bin/busybox"  # from busybox-static: no libraries needed
LDCONFIG = "/sbin/ldconfig"  # glibc's, static; TinyCore's base has it too
BUILDER_FILES = ("debian_nbi.py", "python_tcz.py", "init.sh", "udhcpc.script")
# What init.sh modprobes: the VM's devices, and what loading a .tcz needs.
MODULES = ["virtio_pci", "virtio_net", "virtio_blk", "loop", "squashfs"]
DEBIAN_PACKAGES = ["busybox-static", "squashfs-tools", *python_tcz.DEBIAN_LIBS]
# The boot script must run under BusyBox's ash, as on TinyCore, which has neither.
NOT_IN_IMAGE = {"bash", "dash"}
# Debian is usr-merged: /bin, /lib, ... are links into /usr. The image is laid out the
# same way, and host paths are mapped onto it so that no entry goes through a link.
MERGED = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}


@dataclass
class StandIn:
    tinycore: Path  # a cache as create-nbi wants it: vmlinuz64, corepure64.gz, python3.9.tcz
    python_version: str  # of the clients' Python, "3.9.18"


def build(kernel_deb: Path, out: Path) -> StandIn:
    """The TinyCore stand-in in `out`, rebuilt only when its inputs changed.

    `create-nbi` then turns it into a netboot image exactly as it does TinyCore's files:
    Debian's bzImage plays `vmlinuz64`, the base archive plays `corepure64.gz`.
    """
    cache = out / "tinycore"
    cache.mkdir(parents=True, exist_ok=True)
    py = python_tcz.find_python39()
    key = base_key(kernel_deb, py)
    built = all((cache / f).exists() for f in ("corepure64.gz", python_tcz.NAME,
                                               python_tcz.NAME + ".md5.txt"))
    if _read(out / "base.key") != key or not built:
        with tempfile.TemporaryDirectory(prefix="e2e-nbi-", dir=out) as tmp:
            build_base(kernel_deb, py, Path(tmp), out)
        (out / "base.key").write_text(key)
    return StandIn(cache, py.version)


@contextmanager
def replacing(dest: Path) -> Iterator[BinaryIO]:
    """A file written next to `dest` and renamed over it when complete, so that a
    crashed or concurrent build never leaves a half-written file under the real name."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        os.unlink(tmp)
        raise


def base_key(kernel_deb: Path, py: "python_tcz.Python39") -> str:
    """Changes when anything that goes into the base archive or the extension may have
    changed: the kernel, the Debian packages, the Python 3.9 build, the builder."""
    query = subprocess.run(["dpkg-query", "-W", *DEBIAN_PACKAGES], capture_output=True,
                           text=True)
    facts = {"deb": kernel_deb.name, "deb_size": kernel_deb.stat().st_size,
             "packages": query.stdout + query.stderr, "python": py.key(),
             "builder": [_sha256((HERE / f).read_bytes()) for f in BUILDER_FILES]}
    return _sha256(json.dumps(facts, sort_keys=True).encode())


def build_base(kernel_deb: Path, py: "python_tcz.Python39", tmp: Path, out: Path) -> None:
    """Unpack the kernel package; write python3.9.tcz, corepure64.gz, vmlinuz64."""
    subprocess.run(["dpkg-deb", "-x", str(kernel_deb), str(tmp / "deb")], check=True)
    vmlinuz = next((tmp / "deb" / "boot").glob("vmlinuz-*"))
    kver = vmlinuz.name[len("vmlinuz-"):]
    with replacing(out / "tinycore" / "vmlinuz64") as f:
        f.write(vmlinuz.read_bytes())
    glibc = python_tcz.build(py, tmp, out / "tinycore" / python_tcz.NAME)

    with replacing(out / "tinycore" / "corepure64.gz") as raw, \
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as gz:
        w = Tree(cpio.Writer(gz))
        for link, target in MERGED.items():
            w.symlink(link, target)
        w.device("dev/console", 0o600, 5, 1)
        w.device("dev/null", 0o666, 1, 3)
        for d in ("proc", "sys", "tmp", "run", "etc", "opt", "root", "var/run", "usr/local"):
            w.directory(d)
        w.file_from("init", str(HERE / "init.sh"), 0o755)
        w.file_from("etc/udhcpc.script", str(HERE / "udhcpc.script"), 0o755)
        w.file_from("usr/bin/busybox", BUSYBOX, 0o755)
        for applet in busybox_applets():
            w.symlink(applet, "/usr/bin/busybox")
        # glibc as in TinyCore's base: what the extension's binaries need of it, and
        # ldconfig, which makes /usr/local/lib (listed in ld.so.conf) known to the loader.
        for lib in glibc:
            w.file_from(host_path(lib), lib, 0o755)
        w.file_from(host_path(LDCONFIG), LDCONFIG, 0o755)
        w.file("etc/ld.so.conf", b"/usr/local/lib\n")
        moddir = tmp / "deb" / "lib" / "modules" / kver
        modules = module_closure(moddir, MODULES)
        for rel in modules.values():
            w.file_from(f"usr/lib/modules/{kver}/{rel}", str(moddir / rel), 0o644)
        w.file(f"usr/lib/modules/{kver}/modules.dep", modules_dep(moddir, modules).encode())
        w.close()


class Tree:
    """A cpio writer that adds each parent directory once, before its first child."""

    def __init__(self, writer: "cpio.Writer") -> None:
        self.w = writer
        self.dirs: Set[str] = set(MERGED)
        self.names: Set[str] = set()

    def _parents(self, path: str) -> bool:
        """False if `path` is already in the archive (a busybox applet we shadow)."""
        if path in self.names:
            return False
        self.names.add(path)
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.dirs:
                self.dirs.add(d)
                self.w.directory(d)
        return True

    def directory(self, path: str) -> None:
        if path not in self.dirs and self._parents(path):
            self.dirs.add(path)
            self.w.directory(path)

    def file(self, path: str, data: bytes) -> None:
        if self._parents(path):
            self.w.file(path, data)

    def file_from(self, path: str, source: str, mode: int) -> None:
        if self._parents(path):
            self.w.file_from(path, source, mode)

    def symlink(self, path: str, target: str) -> None:
        if self._parents(path):
            self.w.symlink(path, target)

    def device(self, path: str, mode: int, major: int, minor: int) -> None:
        if self._parents(path):
            self.w.device(path, mode, major, minor)

    def close(self) -> None:
        self.w.close()


def host_path(path: str) -> str:
    """Where a host file goes in the usr-merged image: /lib/x.so -> usr/lib/x.so."""
    rel = path.lstrip("/")
    top, _, rest = rel.partition("/")
    return f"{MERGED[top]}/{rest}" if top in MERGED else rel


def busybox_applets() -> Iterator[str]:
    """Every applet as a link, at the path busybox itself names (bin/sh, sbin/ip, ...)."""
    listing = subprocess.run([BUSYBOX, "--list-full"], capture_output=True, text=True,
                             check=True).stdout
    for line in listing.split():
        if os.path.basename(line) in NOT_IN_IMAGE:
            raise RuntimeError(f"busybox provides {line}: the boot script must run under ash")
        if line != "bin/busybox":
            yield host_path(line)


def module_closure(moddir: Path, wanted: List[str]) -> Dict[str, str]:
    """Module name -> path under `moddir`, for `wanted` and everything they depend on."""
    paths = {_modname(p.name): str(p.relative_to(moddir))
             for p in (moddir / "kernel").rglob("*.ko")}
    chosen: Dict[str, str] = {}
    todo = [_modname(m) for m in wanted]
    while todo:
        name = todo.pop()
        if name not in chosen:
            chosen[name] = paths[name]
            todo.extend(_depends(moddir / paths[name]))
    return chosen


def modules_dep(moddir: Path, modules: Dict[str, str]) -> str:
    """modules.dep as depmod writes it: each module's dependencies, load-last first."""
    lines = []
    for name, rel in sorted(modules.items()):
        order: List[str] = []

        def visit(m: str) -> None:
            for dep in _depends(moddir / modules[m]):
                if dep not in order:
                    visit(dep)
                    order.append(dep)
        visit(name)
        lines.append(f"{rel}: " + " ".join(modules[d] for d in reversed(order)))
    return "\n".join(lines) + "\n"


def _depends(ko: Path) -> List[str]:
    """The `depends=` field of a module's .modinfo section."""
    m = re.search(rb"\0depends=([^\0]*)\0", ko.read_bytes())
    return [_modname(d) for d in m.group(1).decode().split(",") if d] if m else []


def _modname(name: str) -> str:
    return name[:-3].replace("-", "_") if name.endswith(".ko") else name.replace("-", "_")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


if __name__ == "__main__":
    built = build(Path(sys.argv[1]), Path(sys.argv[2]))
    for f in sorted(built.tinycore.iterdir()):
        print(f"{f} {f.stat().st_size} bytes")
