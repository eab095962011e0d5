"""Fixtures for the e2e tests: the netboot image, and a lab of VMs in a private network.

These tests boot real VMs and take about 35 s; `make test` does not collect them (see
`pytest_ignore_collect`), `make e2e` does.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

from tests.conftest import fast_tmp
from tests.e2e import debian_nbi
from tests.support.netlab import MASTER, Netns
from tests.e2e.qemu_vm import Vm

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BUILD = ROOT / "build" / "e2e"
TOOLS = ["qemu-system-x86_64", "dnsmasq", "unshare", "nsenter", "ip", "dpkg-deb", "ldd",
         "mksquashfs", "strip"]
# Console lines whose first appearance the tests time (seconds after the first VM started).
MILESTONES = {"python": "thepusher: python: ", "registered": " registered as "}


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> Optional[bool]:
    """Collect tests/e2e only when it is named on the command line (`make e2e` does)."""
    for arg in config.args:
        named = Path(arg.split("::")[0]).resolve()
        if named == HERE or HERE in named.parents:
            return None
    return True


def kernel_deb() -> Path:
    """The linux-image .deb that `make e2e` downloaded into build/e2e/debs."""
    debs = sorted((BUILD / "debs").glob("linux-image-*.deb"))
    if len(debs) != 1:
        pytest.fail(f"expected one linux-image-*.deb in {BUILD / 'debs'}, found {len(debs)}: "
                    "run `make e2e`, which downloads it")
    return debs[0]


@pytest.fixture(scope="session")
def stand_in() -> debian_nbi.StandIn:
    """The Debian stand-in for TinyCore's files (cached in build/e2e)."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run `make e2e`, which installs them")
    if not (ROOT / "thepusher.pyz").exists():
        pytest.fail("no thepusher.pyz: run `make e2e` (or `make`) first")
    start = time.monotonic()
    built = debian_nbi.build(kernel_deb(), BUILD)
    print(f"TinyCore stand-in ready in {time.monotonic() - start:.1f} s: {built.tinycore}")
    return built


def create_nbi(stand_in: debian_nbi.StandIn, out: Path, *args: str) -> Path:
    """`thepusher.pyz create-nbi` on the stand-in, as an admin runs it on TinyCore's files."""
    done = subprocess.run([sys.executable, str(ROOT / "thepusher.pyz"), "create-nbi",
                           "--tinycore", str(stand_in.tinycore), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"create-nbi failed:\n{done.stdout}{done.stderr}"
    return out


class Lab:
    """A master, dnsmasq and VMs in one private network; logs kept for the failure report."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.images = root / "images"
        self.logs = root / "logs"
        for d in (self.images, self.logs):
            d.mkdir()
        self.ns = Netns(self.logs)
        self.vms: List[Vm] = []
        self.started = 0.0
        self.seen: Dict[Tuple[str, str], float] = {}  # (vm, milestone) -> s after start

    def make_vms(self, n: int, disk_size: int) -> List[Vm]:
        """`n` VMs with empty (sparse) disks of `disk_size` bytes, on a bridge of their own."""
        self.vms = [Vm(i, self.root / f"disk{i}.raw", self.logs / f"vm{i}.console")
                    for i in range(1, n + 1)]
        for vm in self.vms:
            with open(vm.disk, "wb") as f:
                f.truncate(disk_size)
        self.ns.bridge(n)
        return self.vms

    def start_master(self, static_dir: Optional[Path] = None, boot_dir: Optional[Path] = None) -> None:
        """`thepusher master` from the zipapp, inside the namespace, on the bridge address."""
        args = [sys.executable, str(ROOT / "thepusher.pyz"), "-v", "master",
                "-S", str(self.images), "-l", MASTER]
        if static_dir is not None:
            args += ["-s", str(static_dir)]
        if boot_dir is not None:
            args += ["--boot", str(boot_dir)]
        proc = self.ns.spawn("master", args)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"master exited:\n{self.ns.log('master')}")
            try:
                self.status()
                return
            except RuntimeError:
                time.sleep(0.2)
        raise AssertionError(f"master does not answer:\n{self.ns.log('master')}")

    def cli(self, *args: str) -> str:
        """`thepusher ARGS -p MASTER` inside the namespace, as an admin types it there."""
        return self.ns.run(sys.executable, str(ROOT / "thepusher.pyz"), *args, "-p", MASTER)

    def status(self) -> dict:
        """GET /api/status, asked from inside the namespace."""
        fetch = ("import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
                 "sys.argv[1], timeout=5).read().decode())")
        return json.loads(self.ns.run(sys.executable, "-c", fetch,
                                      f"http://{MASTER}/api/status"))

    def boot(self, vm: Vm, qemu_args: List[str]) -> subprocess.Popen:
        self.started = self.started or time.monotonic()
        return self.ns.spawn(vm.name, qemu_args)

    def python_line(self, version: str) -> str:
        """What the boot script prints when it runs the client on the stand-in's Python."""
        return f"{MILESTONES['python']}/usr/local/bin/python3.9 (Python {version})"

    def first(self, milestone: str) -> Optional[float]:
        """When the first VM's console showed `milestone` (MILESTONES), in s after boot."""
        times = [t for (_vm, m), t in self.seen.items() if m == milestone]
        return min(times) if times else None

    def _watch_consoles(self) -> None:
        now = time.monotonic() - self.started
        for vm in self.vms:
            todo = [m for m in MILESTONES if (vm.name, m) not in self.seen]
            if not todo:
                continue
            try:
                text = vm.console.read_text(errors="replace")
            except OSError:
                continue
            for m in todo:
                if MILESTONES[m] in text:
                    self.seen[(vm.name, m)] = now

    def wait_for_poweroff(self, qemus: List[subprocess.Popen], timeout: float) -> None:
        """Until every VM is off; fails at once when the master reports a client ERROR
        (its boot script would register again and again, and the VM never power off)."""
        deadline = time.monotonic() + timeout
        next_check = 0.0
        while not all(q.poll() is not None for q in qemus):
            now = time.monotonic()
            if now > deadline:
                raise AssertionError(self.report(f"VMs still running after {timeout} s"))
            if now >= next_check:  # every 2 s: each check is a process in the namespace
                next_check = now + 2
                try:
                    groups = self.status()["groups"]
                except RuntimeError as e:
                    raise AssertionError(self.report(f"master does not answer: {e}")) from None
                failed = {c["host"]: c.get("error") for g in groups for c in g["clients"]
                          if c["state"] == "ERROR"}
                if failed:
                    raise AssertionError(self.report(f"client ERROR: {failed}"))
            self._watch_consoles()
            time.sleep(0.1)

    def report(self, what: str) -> str:
        """What a failed test prints: every console's tail, the master's and dnsmasq's logs."""
        parts = [what]
        for vm in self.vms:
            parts.append(f"--- {vm.name} console ({vm.ip}) ---\n{vm.tail()}")
            qemu = self.ns.log(vm.name).strip()
            if qemu:
                parts.append(f"--- {vm.name} qemu ---\n{qemu[-2000:]}")
        for name in ("master", "dnsmasq"):
            parts.append(f"--- {name} ---\n{self.ns.log(name)[-4000:]}")
        return "\n".join(parts)

    def close(self) -> None:
        self.ns.close()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def sweep_stale_labs(tmp: str) -> None:
    """Remove lab dirs (VM disks: hundreds of MiB of tmpfs) left by a killed run."""
    for d in Path(tmp).glob("thepusher-e2e-*-*"):
        pid = d.name.split("-")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def lab() -> Iterator[Lab]:
    tmp = fast_tmp() or tempfile.gettempdir()
    sweep_stale_labs(tmp)
    # SIGTERM (a CI timeout) unwinds like Ctrl-C, so that the VMs are stopped and the
    # disks removed; SIGKILL leaves the dir to sweep_stale_labs (the processes die anyway).
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with tempfile.TemporaryDirectory(prefix=f"thepusher-e2e-{os.getpid()}-", dir=tmp) as d:
            lab = Lab(Path(d))
            try:
                yield lab
            finally:
                lab.close()
    finally:
        signal.signal(signal.SIGTERM, previous)
