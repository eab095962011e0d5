"""A private network for one e2e test: a namespace with a bridge, taps and processes.

The namespace belongs to a holder process (`unshare --net sleep infinity`); everything
else enters it with nsenter. Every process we start dies with the test process
(PR_SET_PDEATHSIG) and is killed by process group in `close()`, so the namespace, which
lives as long as any process in it, disappears even when pytest itself is killed:
nothing named, nothing to clean up later, no way to touch the host's interfaces.
"""

import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import List, Optional

BRIDGE = "br0"
HOST_IP = "10.0.4.1"
MASTER = f"{HOST_IP}:8080"  # where the master listens: thePusher=10.0.4.1 means port 8080
PREFIX = 24
HOST_IP6 = "fd00:4::1"  # only so that dnsmasq can send router advertisements (iPXE)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test process dies, however it dies."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Netns:
    """A throwaway network namespace with bridge br0 (10.0.4.1/24) and tap devices."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: List[subprocess.Popen] = []
        self._logs: List = []
        holder = self.spawn("netns-holder", ["unshare", "--net", "--", "sleep", "infinity"],
                            enter=False)
        ours = os.readlink("/proc/self/ns/net")
        path = f"/proc/{holder.pid}/ns/net"
        deadline = time.monotonic() + 10
        # Until unshare has run, that path is *our* namespace: never configure it.
        while os.readlink(path) == ours:
            if holder.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"unshare --net failed: {self.log('netns-holder')}")
            time.sleep(0.01)
        self.enter = ["nsenter", f"--net={path}", "--"]

    def log(self, name: str) -> str:
        try:
            return (self.logdir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def spawn(self, name: str, args: List[str], enter: bool = True) -> subprocess.Popen:
        """Start `args` inside the namespace, output to LOGDIR/NAME.log, own process group."""
        logf = open(self.logdir / f"{name}.log", "ab")
        self._logs.append(logf)
        proc = subprocess.Popen((self.enter if enter else []) + args, stdin=subprocess.DEVNULL,
                                stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent)
        self.procs.append(proc)
        return proc

    def run(self, *args: str, timeout: float = 30) -> str:
        """A short command inside the namespace; its stdout, or an error with its output."""
        result = subprocess.run(self.enter + list(args), capture_output=True, text=True,
                                timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n"
                               f"{result.stdout}{result.stderr}")
        return result.stdout

    def bridge(self, taps: int) -> List[str]:
        """br0 with the host address, and `taps` tap devices on it: tap1, tap2, ..."""
        self.run("ip", "link", "set", "lo", "up")
        self.run("ip", "link", "add", BRIDGE, "type", "bridge")
        self.run("ip", "addr", "add", f"{HOST_IP}/{PREFIX}", "dev", BRIDGE)
        self.run("ip", "addr", "add", f"{HOST_IP6}/64", "dev", BRIDGE, "nodad")
        self.run("ip", "link", "set", BRIDGE, "up")
        names = [f"tap{i}" for i in range(1, taps + 1)]
        for tap in names:
            self.run("ip", "tuntap", "add", "dev", tap, "mode", "tap")
            self.run("ip", "link", "set", tap, "master", BRIDGE, "up")
        return names

    def dnsmasq(self, hosts: List[str], tftp_root: Optional[Path] = None,
                boot_file: str = "") -> subprocess.Popen:
        """DHCP on br0 with fixed addresses (`MAC,IP` each), optionally PXE over TFTP.

        The IPv6 router advertisements are for iPXE, which otherwise waits 16 s for
        IPv6 autoconfiguration before it fetches its boot file.
        """
        args = ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
                f"--interface={BRIDGE}", "--bind-interfaces", "--log-facility=-",
                f"--dhcp-leasefile={self.logdir / 'dnsmasq.leases'}",
                "--dhcp-range=10.0.4.100,10.0.4.200,1h",
                "--enable-ra", f"--dhcp-range=::,constructor:{BRIDGE},ra-only"]
        args += [f"--dhcp-host={h}" for h in hosts]
        if tftp_root is not None:
            args += ["--enable-tftp", f"--tftp-root={tftp_root}", f"--dhcp-boot={boot_file}"]
        return self.spawn("dnsmasq", args)

    def close(self) -> None:
        """SIGTERM every process group we started, SIGKILL what is left after 5 s."""
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            for proc in self.procs:
                if proc.poll() is None:
                    try:
                        os.killpg(proc.pid, sig)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + grace
            for proc in self.procs:
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        for logf in self._logs:
            logf.close()
