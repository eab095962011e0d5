"""Real processes on loopback: a master and clients started exactly as an admin would."""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

from thepusher.demo import make_image, sha256_file  # noqa: F401 - sha256_file is for the tests

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")


def thepusher(*args: str) -> List[str]:
    return [sys.executable, "-m", "thepusher", *args]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def write_image(path: Path, size: int) -> None:
    make_image(str(path), size)


def write_config(image_dir: Path, hosts: List[str], filename: str = "disk.img",
                 compression: str = "NONE", extra: str = "", settings: str = "",
                 group: str = "") -> Path:
    """`extra` goes into the image block, `group` into the clientgroup block."""
    quoted = ", ".join(f'"{h}"' for h in hosts)
    path = image_dir / "thePusher-config.hcl"
    path.write_text(
        settings + f'image "img" {{\n  filename = "{filename}"\n  destination = "/dev/null"\n'
        f'  compression = "{compression}"\n{extra}}}\n'
        f'clientgroup "room" {{\n  image = "img"\n  hosts = [{quoted}]\n{group}}}\n'
    )
    return path


def read_to_end(sock: socket.socket) -> bytes:
    """Everything a peer sends until it closes the connection."""
    data = b""
    while True:
        piece = sock.recv(65536)
        if not piece:
            return data
        data += piece


def _interruptible() -> None:
    """Ctrl-C works in a process the tests start even when the test run itself was
    started in the background (`cmd &` in a script: SIGINT ignored, and inherited)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Proc:
    """A thepusher process whose output goes to a log file we can show on failure."""

    def __init__(self, name: str, args: List[str], logdir: Path,
                 launcher: Optional[List[str]] = None) -> None:
        """`launcher`: what runs thepusher instead of `python3 -m thepusher`."""
        self.name = name
        self.log = logdir / f"{name}.log"
        self._logf = open(self.log, "wb")
        self.popen = subprocess.Popen(
            [*launcher, *args] if launcher else thepusher(*args), stdout=self._logf, stderr=subprocess.STDOUT, env=ENV,
            start_new_session=True, preexec_fn=_interruptible,
        )

    def output(self) -> str:
        self._logf.flush()
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout} s:\n{self.output()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    def stop(self) -> None:
        self.kill()
        self.popen.wait(10)
        self._logf.close()


class Lab:
    """A master plus clients for one test; everything is killed at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.images = root / "images"
        self.images.mkdir()
        self.disks = root / "disks"
        self.disks.mkdir()
        self.logs = root / "logs"
        self.logs.mkdir()
        self.procs: List[Proc] = []
        self.port = 0

    def start_master(self, *extra: str, launcher: Optional[List[str]] = None) -> Proc:
        self.port = self.port or free_port()
        p = Proc("master", ["-v", "master", "-S", str(self.images), "-l", f"127.0.0.1:{self.port}",
                            *extra], self.logs, launcher)
        self.procs.append(p)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if p.popen.poll() is not None:
                raise AssertionError(f"master exited:\n{p.output()}")
            try:
                self.status()
                return p
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"master did not answer:\n{p.output()}")

    def kill_master(self) -> None:
        """kill -9 the running master; its log stays in the dump."""
        master = next(p for p in self.procs if p.name == "master" and p.popen.poll() is None)
        master.kill()
        master.popen.wait(10)

    def restart_master(self) -> Proc:
        """kill -9 the running master and start a new one on the same image dir and port."""
        self.kill_master()
        return self.start_master()

    def start_client(self, host: str, destination: Optional[str] = None, *extra: str,
                     launcher: Optional[List[str]] = None) -> Proc:
        dest = destination or str(self.disks / f"{host}.img")
        p = Proc(f"client-{host}", ["-v", "client", "-p", f"127.0.0.1:{self.port}", "--bind", host,
                                    "--data-port", "0", "--destination", dest, *extra], self.logs,
                 launcher)
        self.procs.append(p)
        return p

    def status(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/status", timeout=5) as r:
            return json.load(r)

    def call(self, method: str, path: str, body: Optional[dict] = None,
             source: str = "127.0.0.1") -> Tuple[int, dict]:
        """One API call from `source`: how tests play a client that never does its part."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10,
                                          source_address=(source, 0))
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """`thepusher ARGS -p this master`, as an admin types it on the master's host."""
        return subprocess.run(thepusher(*args, "-p", f"127.0.0.1:{self.port}"), env=ENV,
                              capture_output=True, text=True, timeout=30)

    def round(self) -> Optional[dict]:
        return self.status()["groups"][0]["round"]

    def clients(self) -> dict:
        return {c["host"]: c for g in self.status()["groups"] for c in g["clients"]}

    def wait_for(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; logs:\n{self.dump()}")

    def dump(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.output()[-3000:]}" for p in self.procs)

    def close(self) -> None:
        for p in self.procs:
            p.stop()


def fast_tmp() -> str:
    """Disks on tmpfs when there is one: the tests check bytes, not the host's disk."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


@pytest.fixture
def lab():
    with tempfile.TemporaryDirectory(prefix="thepusher-test-", dir=fast_tmp()) as d:
        lab = Lab(Path(d))
        try:
            yield lab
        finally:
            lab.close()


@pytest.fixture
def loop_devices(tmp_path):
    """make(size, *losetup_options, under=DIR, sparse=False) -> (device, backing file): a
    real loop device over a file (in `under`, default tmp_path) full of old bytes
    (0xff), or sparse. Needs root and losetup, as CI has."""
    if os.geteuid() != 0 or not shutil.which("losetup"):
        pytest.skip("needs root and losetup for loop devices")
    made = []

    def make(size, *options, under: Optional[Path] = None, sparse: bool = False):
        backing = (under or tmp_path) / f"backing{len(made)}.img"
        with open(backing, "wb") as f:
            if sparse:
                f.truncate(size)
            else:
                f.write(b"\xff" * size)
        dev = subprocess.run(["losetup", "--find", "--show", *options, str(backing)],
                             capture_output=True, text=True)
        if dev.returncode != 0:
            pytest.skip(f"no loop device available: {dev.stderr.strip()}")
        made.append(dev.stdout.strip())
        return dev.stdout.strip(), backing

    yield make
    for dev in made:
        subprocess.run(["losetup", "-d", dev], check=False)


@pytest.fixture
def small_tmpfs(tmp_path):
    """make(size) -> a real tmpfs of `size` ("1m") mounted for this test only: a disk
    that fills up (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a filesystem needs root")
    mounted = []

    def make(size: str) -> Path:
        mnt = tmp_path / f"tmpfs{len(mounted)}"
        mnt.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount tmpfs: {r.stderr.strip()}")
        mounted.append(mnt)
        return mnt

    yield make
    for mnt in mounted:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def cpu_starved(tmp_path):
    """A cgroup (v1 cpu controller) that lets its processes use 3% of one CPU."""
    base = Path("/sys/fs/cgroup/cpu")
    if os.geteuid() != 0 or not (base / "cpu.cfs_quota_us").exists():
        pytest.skip("needs root and the cgroup v1 cpu controller")
    group = base / f"thepusher-test-{os.getpid()}"
    group.mkdir()
    (group / "cpu.cfs_period_us").write_text("100000")
    (group / "cpu.cfs_quota_us").write_text("3000")
    yield group
    (group / "cpu.cfs_quota_us").write_text("-1")
    for pid in (group / "cgroup.procs").read_text().split():
        (base / "cgroup.procs").write_text(pid)
    group.rmdir()
