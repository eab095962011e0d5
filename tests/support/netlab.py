"""Network namespaces for the tests and the benches (Linux, root): a private network
for the e2e test's VMs (`Netns`), and the link bench's machines behind shaped links
(`LinkLab`).

Both start every process they run inside with `die_with_parent` (PR_SET_PDEATHSIG: it
gets SIGKILL when the test or bench process dies, however it dies) in a process group of
its own, and stop them by process group (`stop_process_groups`), so that nothing they
started outlives them.

`Netns` (tests/e2e): the namespace belongs to a holder process (`unshare --net sleep
infinity`); everything else enters it with nsenter. The namespace, which lives as long
as any process in it, disappears even when pytest itself is killed: nothing named,
nothing to clean up later, no way to touch the host's interfaces.

`LinkLab` (tests/bench/link.py): one named namespace per machine (up to 200 clients: set
up with a few `ip`/`tc -batch` processes per machine in about 2 s, removed in one
`ip -batch` after one pass over /proc kills what runs in them), `tpb<PID>-m` (the
master) and `tpb<PID>-c1` ... `-cN` (the clients), each with an `eth0` joined by a veth
pair to the bridge `br0` in the namespace `tpb<PID>-br`. Nothing is created in the
host's own namespace. Every veth is shaped with HTB on both of its ends, so each
machine's port is full duplex at the link rate in either direction (the data direction
master -> c1 -> c2 ... is shaped twice per hop: as it leaves the sender and as the
bridge hands it to the receiver). The master's port may have a rate of its own. An
optional one-way delay (netem, when the kernel has it) is added as packets leave each
machine, so a hop's round trip is twice it. The names make what a killed run left
behind findable: `remove_leftovers`.

The HTB rate is the nominal rate x 1514/1538: a real Ethernet frame of 1514 bytes takes
1538 bytes of wire time (preamble, SFD, FCS, inter-frame gap), so a shaped veth carries
what a real link would, 941 Mbit/s of TCP payload on a 1gbit link, whatever the size of
the (GSO) packets the veth hands to the qdisc.

Queues. A real sender's queue is kept short by its NIC (BQL) and TCP's small queues
(TSQ: a socket may have about 1 ms of its rate queued below it); a switch port holds
a few ms. Here HTB holds the packets a NIC would have sent, so TSQ sees a deep queue
drain slowly, and the HTB leaf (by default a pfifo of txqueuelen = 1000 packets) fills:
at 20 Mbit/s a round trip between two neighbours of a chain grew to 108 ms (median)
and 427 ms (max) over a minute, the sender's queue to 670 kB. So (issue 21):
- each HTB leaf is a bfifo of QUEUE_SECONDS (20 ms) at the port's rate, at least 3 GSO
  packets (a limit below one GSO packet drops it every time: a 64 KiB limit with 64
  KiB GSO packets stalled a round at 0.1 MB/s);
- each machine's TCP may keep TSQ_PACKETS (2) GSO packets queued below a socket
  (net.ipv4.tcp_limit_output_bytes, per namespace): the queue drains instead of
  overflowing, and no packet is dropped where a real NIC would have dropped none;
- the veths' GSO size is a third of the slowest port's queue, 16 to 64 KiB
  (gso_max_size), and TCP sends packets of that size (net.ipv4.tcp_min_tso_segs): at
  a few Mbit/s TCP would otherwise send 2-segment packets, and 200 machines' packet
  work (softirq) alone took 0.8 of this 2-CPU machine at 3 Mbit/s, 0.3 with 16 KiB.
At 1gbit this is a 2.5 MB bfifo and 64 KiB packets, as before (0.95 of the shaped rate,
no drops); at 20 Mbit/s a neighbours' round trip under load is about 20 ms (median).

Stdlib only; runs under Python 3.9.
"""

import contextlib
import ctypes
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Tuple

PR_SET_PDEATHSIG = 1
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent() -> None:
    """In the child before exec: SIGKILL when the process that started it dies, however
    it dies."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def stop_process_groups(procs: List[subprocess.Popen], term_grace: float) -> None:
    """SIGTERM every process group of `procs` still running, SIGKILL what is left after
    `term_grace` seconds, then wait up to 5 s for them to end."""
    for sig, grace in ((signal.SIGTERM, term_grace), (signal.SIGKILL, 5.0)):
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
        deadline = time.monotonic() + grace
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))


# -- one anonymous namespace: a bridge and taps for the e2e test's VMs ------------------

BRIDGE = "br0"
HOST_IP = "10.0.4.1"
MASTER = f"{HOST_IP}:8080"  # where the master listens: thePusher=10.0.4.1 means port 8080
PREFIX = 24  # HOST_IP's network: HOST_IP/PREFIX
HOST_IP6 = "fd00:4::1"  # only so that dnsmasq can send router advertisements (iPXE)


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
                                preexec_fn=die_with_parent)
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
                boot_file: str = "", conf: Optional[Path] = None) -> subprocess.Popen:
        """DHCP on br0 with fixed addresses (`MAC,IP` each), optionally PXE over TFTP, or
        with `conf` (a config create-nbi wrote: its range, TFTP and boot files).

        The IPv6 router advertisements are for iPXE, which otherwise waits 16 s for
        IPv6 autoconfiguration before it fetches its boot file.
        """
        args = ["dnsmasq", "--no-daemon", f"--conf-file={conf or '/dev/null'}", "--port=0",
                f"--interface={BRIDGE}", "--bind-interfaces", "--log-facility=-",
                f"--dhcp-leasefile={self.logdir / 'dnsmasq.leases'}",
                "--enable-ra", f"--dhcp-range=::,constructor:{BRIDGE},ra-only"]
        if conf is None:
            args.append("--dhcp-range=10.0.4.100,10.0.4.200,1h")
        args += [f"--dhcp-host={h}" for h in hosts]
        if tftp_root is not None:
            args += ["--enable-tftp", f"--tftp-root={tftp_root}", f"--dhcp-boot={boot_file}"]
        return self.spawn("dnsmasq", args)

    def close(self) -> None:
        """SIGTERM every process group we started, SIGKILL what is left after 5 s."""
        stop_process_groups(self.procs, term_grace=5.0)
        for logf in self._logs:
            logf.close()


# -- a namespace per machine, shaped links: the link bench ------------------------------

SHM = "/dev/shm"
NAME_PREFIX = "tpb"  # namespaces tpb<PID>-br, tpb<PID>-m, tpb<PID>-c<i>; files /dev/shm/tpb<PID>-*
SUBNET = "10.99.0"
MASTER_IP = f"{SUBNET}.1"
MAX_CLIENTS = 200  # as bench.py's --clients: SUBNET.11 to SUBNET.210
# A 1514-byte frame (1500 MTU + Ethernet header, what the qdisc counts) takes 1538 bytes
# of wire time; TCP with timestamps carries 1448 payload bytes in it.
WIRE_FACTOR = 1514 / 1538
TCP_PAYLOAD = 1448 / 1538
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Each shaped port's queue (an HTB leaf): QUEUE_SECONDS at the port's rate, in bytes
# (bfifo), at least 3 GSO packets; the veths' largest GSO packet a third of the slowest
# port's queue, 16-64 KiB (see the module's docstring).
QUEUE_SECONDS = 0.02
MIN_GSO, MAX_GSO = 16 << 10, 64 << 10
TSQ_PACKETS = 2  # what one TCP socket may have queued below it: 2 GSO packets


class LabError(Exception):
    """Something broke (not a slow figure): the run stops with this message."""


_RATE_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
               "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9, "tbps": 8e12}


def rate_bits(text: str) -> float:
    """A tc rate ("1gbit", "100mbit", "10mbps" = megabytes/s as in tc) in bits per second."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", text)
    unit = (m.group(2).lower() or "bit") if m else ""
    if not m or unit not in _RATE_UNITS:
        raise ValueError(f"rate {text!r}: expected e.g. 1gbit, 100mbit (tc units)")
    value = float(m.group(1)) * _RATE_UNITS[unit]
    if value <= 0:
        raise ValueError(f"rate {text!r} must be positive")
    return value


def rate_text(bps: float) -> str:
    """tc's notation, the largest unit that keeps it whole: 4000000000 -> '4gbit'."""
    for unit in ("tbit", "gbit", "mbit", "kbit"):
        if bps >= _RATE_UNITS[unit] and bps % _RATE_UNITS[unit] == 0:
            return f"{int(bps // _RATE_UNITS[unit])}{unit}"
    return f"{int(bps)}bit"


def link_queue(bps: float) -> Tuple[int, int]:
    """(GSO size, queue bytes) for a port of `bps`: the queue is QUEUE_SECONDS at the
    rate, at least 3 GSO packets; the GSO size a third of it, from MIN_GSO to MAX_GSO.
    1gbit: 64 KiB and 2.5 MB (20 ms); 20mbit: 16 KiB and 50 kB; 4mbit: 16 KiB and 48 KiB."""
    queue = int(bps / 8 * QUEUE_SECONDS)
    gso = max(MIN_GSO, min(MAX_GSO, queue // 3))
    return gso, max(queue, 3 * gso)


def delay_ms(text: Optional[str]) -> float:
    """"5ms", "0.5ms", "200us", "1s", "0" -> milliseconds."""
    if not text:
        return 0.0
    m = re.fullmatch(r"\s*([0-9.]+)\s*(us|ms|s|)\s*", text.lower())
    if not m:
        raise ValueError(f"delay {text!r}: expected e.g. 0ms, 2ms, 500us")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "": 1.0}[m.group(2)]


def sh(argv: List[str], check: bool = True, timeout: float = 30) -> str:
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)
    if check and r.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def batch(argv: List[str], lines: List[str], check: bool = True, timeout: float = 120) -> str:
    """Many `ip` or `tc` commands in one process: `argv` + ["-batch", "-"], `lines` on
    its stdin (one command each, without the program's name)."""
    if not lines:
        return ""
    r = subprocess.run(argv + ["-batch", "-"], input="\n".join(lines) + "\n",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise LabError(f"{' '.join(argv)} -batch failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def list_netns() -> List[str]:
    return [line.split()[0] for line in sh(["ip", "netns", "list"]).splitlines() if line.strip()]


@contextlib.contextmanager
def in_netns(ns: str):
    """This thread inside namespace `ns` for the `with` block, then back in its own.

    setns(2) moves only the calling thread; signals are blocked meanwhile so that no
    Python handler runs while this thread is in the other namespace.
    """
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if _libc.setns(target, CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, f"setns({ns}): {os.strerror(e)}")
            try:
                yield
            finally:
                if _libc.setns(own, CLONE_NEWNET) != 0:  # cannot happen; never go on there
                    os.write(2, b"bench_link: cannot return to our own network namespace\n")
                    os._exit(70)
        finally:
            os.close(target)
    finally:
        os.close(own)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def socket_in(ns: str, family: int = socket.AF_INET,
              kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket created inside namespace `ns` (it stays there; this thread does not)."""
    with in_netns(ns):
        return socket.socket(family, kind)


def sysctl_in(ns: str, name: str, value: int) -> None:
    """Set a network sysctl (net.ipv4....) inside namespace `ns`: /proc/sys/net is the
    calling thread's namespace's."""
    with in_netns(ns), open("/proc/sys/" + name.replace(".", "/"), "w") as f:
        f.write(str(value))


def _pid_is_live_bench(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"python" in f.read()
    except OSError:
        return False


def _kill_ns_processes(names: List[str]) -> None:
    """SIGKILL every process inside these named namespaces (as `ip netns pids`, for all of
    them in one pass over /proc instead of one `ip` per namespace)."""
    inodes = set()
    for ns in names:
        with contextlib.suppress(OSError):
            st = os.stat(f"/run/netns/{ns}")
            inodes.add((st.st_dev, st.st_ino))
    if not inodes:
        return
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in inodes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), signal.SIGKILL)


def delete_netns(names: List[str]) -> None:
    """Kill what runs in these namespaces, then delete them (one `ip -batch`)."""
    if not names:
        return
    _kill_ns_processes(names)
    batch(["ip", "-force"], [f"netns delete {ns}" for ns in names], check=False)


def remove_leftovers() -> List[str]:
    """Namespaces and /dev/shm files of earlier runs whose process is gone. Names removed."""
    removed = []
    pat = re.compile(rf"^{NAME_PREFIX}(\d+)-")
    for ns in list_netns():
        m = pat.match(ns)
        if not m or int(m.group(1)) == os.getpid() or _pid_is_live_bench(int(m.group(1))):
            continue
        removed.append(ns)
    delete_netns(removed)
    if os.path.isdir(SHM):
        for name in os.listdir(SHM):
            m = pat.match(name)
            if m and int(m.group(1)) != os.getpid() and not _pid_is_live_bench(int(m.group(1))):
                path = os.path.join(SHM, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                removed.append(path)
    return removed


class Interrupted(KeyboardInterrupt):
    """SIGTERM/SIGHUP, raised like Ctrl-C so that every finally runs."""


def raise_interrupt(signum, frame):
    raise Interrupted(f"signal {signum}")


class LinkLab:
    """The master's and N clients' namespaces on one bridge, every link shaped.

    with LinkLab(4, rate="1gbit") as lab:
        lab.master_ns, lab.master_ip, lab.client_ns[i], lab.client_ips[i]
        lab.popen(ns, argv, log=path)     # argv run inside ns (ip netns exec)
        lab.socket(ns)                    # a socket inside ns (to reach the master's API)
        lab.link_check()                  # TCP payload Mbit/s master -> c1
        lab.set_master_rate("80mbit")     # between rounds (K chains: K x the rate)
        lab.rtt_probe(i, j).start()       # UDP round trips machine i -> j (-1: master)
        lab.setup_s, lab.teardown_s       # how long building and removing it took

    `rate` is every client port's rate, `master_rate` the master's (default `rate`),
    `delay` a one-way delay added as packets leave each machine (netem), e.g. "2ms".
    """

    def __init__(self, clients: int, rate: str = "1gbit", master_rate: Optional[str] = None,
                 delay: Optional[str] = None) -> None:
        if not 1 <= clients <= MAX_CLIENTS:
            raise ValueError(f"clients must be from 1 to {MAX_CLIENTS}")
        self.n = clients
        self.rate = rate
        self.master_rate = master_rate or rate
        self.rate_bps = rate_bits(rate)
        self.master_rate_bps = rate_bits(self.master_rate)
        self.delay = delay if delay_ms(delay) > 0 else None
        self.prefix = f"{NAME_PREFIX}{os.getpid()}-"
        self.disk_dir = os.path.join(SHM, self.prefix + "disks")
        self.bridge_ns = self.prefix + "br"
        self.master_ns = self.prefix + "m"
        self.client_ns = [f"{self.prefix}c{i + 1}" for i in range(clients)]
        self.master_ip = MASTER_IP
        self.client_ips = [f"{SUBNET}.{11 + i}" for i in range(clients)]
        self.procs: List[subprocess.Popen] = []
        self._logs: list = []
        self._old_handlers: Dict[int, object] = {}
        self.leftovers: List[str] = []
        self.setup_s = 0.0  # seconds _build took
        self.teardown_s = 0.0  # seconds the last close took

    # setup / teardown

    def __enter__(self) -> "LinkLab":
        self._install_handlers()
        try:
            self.leftovers = remove_leftovers()
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _install_handlers(self) -> None:
        """SIGTERM/SIGHUP raise like Ctrl-C while the lab exists (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                self._old_handlers[sig] = signal.signal(sig, raise_interrupt)

    def _build(self) -> None:
        """The namespaces, the bridge and a veth per machine, shaped: a few `ip`/`tc`
        processes per machine (`-batch`), machines configured 4 at a time."""
        started = time.monotonic()
        br = self.bridge_ns
        machines = [("vm", self.master_ns, self.master_ip, self.master_rate_bps)] + [
            (f"vc{i + 1}", ns, addr, self.rate_bps)
            for i, (ns, addr) in enumerate(zip(self.client_ns, self.client_ips))]
        batch(["ip"], [f"netns add {ns}" for ns in [br] + [m[1] for m in machines]])
        # no iptables on bridged frames in this namespace (there are no rules; saves CPU)
        for key in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables",
                    "bridge-nf-call-arptables"):
            sh(["ip", "netns", "exec", br, "sh", "-c",
                 f"echo 0 > /proc/sys/net/bridge/{key}"], check=False)
        gso = self.gso_max_size
        lines = ["link set lo up", "link add br0 type bridge", "link set br0 up"]
        for port, ns, _, _ in machines:
            lines += [f"link add name {port} type veth peer name eth0 netns {ns}",
                      f"link set dev {port} gso_max_size {gso} master br0 up"]
        batch(["ip", "-n", br], lines)
        # the bridge's port of each machine: towards the machine
        batch(["tc", "-n", br], [line for port, _, _, bps in machines
                                 for line in self._shape_lines(port, bps, None)])

        def machine(m: Tuple[str, str, str, float]) -> None:
            _, ns, addr, bps = m
            batch(["ip", "-n", ns], ["link set lo up", f"addr add {addr}/24 brd + dev eth0",
                                     f"link set dev eth0 gso_max_size {gso} up"])
            # TCP's own queue limits, as a NIC's would have them (see the docstring)
            sysctl_in(ns, "net.ipv4.tcp_limit_output_bytes", TSQ_PACKETS * gso)
            sysctl_in(ns, "net.ipv4.tcp_min_tso_segs", max(2, gso // 1514))
            lines = self._shape_lines("eth0", bps, self.delay)  # the machine's port: from it
            try:
                batch(["tc", "-n", ns], lines)
            except LabError as e:
                if self.delay and "netem" in str(e).lower():
                    raise LabError(f"cannot add a {self.delay} delay on {ns}/eth0: {e} (this "
                                   "kernel may have no sch_netem: CONFIG_NET_SCH_NETEM; run "
                                   "without --delay)") from None
                raise

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(machine, machines))
        self.setup_s = time.monotonic() - started

    @property
    def gso_max_size(self) -> int:
        """One GSO size for every veth of the lab, from its slowest port (link_queue)."""
        return link_queue(min(self.rate_bps, self.master_rate_bps))[0]

    def _shape_lines(self, dev: str, bps: float, delay: Optional[str],
                     verb: str = "add") -> List[str]:
        """tc -batch lines: HTB at the rate x 1514/1538, a leaf queue of QUEUE_SECONDS at
        the rate (bfifo), or netem with `delay`. `verb` "change" re-rates them."""
        rate = f"{max(1, int(bps * WIRE_FACTOR))}bit"
        gso = self.gso_max_size
        limit = max(link_queue(bps)[1], 3 * gso)
        burst = max(gso + 2048, int(bps / 8 / 1000))  # >= one GSO packet, ~1 ms at the rate
        lines = [] if verb == "change" else [f"qdisc add dev {dev} root handle 1: htb default 10"]
        lines.append(f"class {verb} dev {dev} parent 1: classid 1:10 htb rate {rate} ceil {rate} "
                     f"burst {burst} cburst {burst} quantum 60000")
        if delay:
            lines.append(f"qdisc {verb} dev {dev} parent 1:10 handle 10: netem delay {delay} "
                         "limit 100000")
        else:
            lines.append(f"qdisc {verb} dev {dev} parent 1:10 handle 10: bfifo limit {limit}")
        return lines

    def set_master_rate(self, rate: str) -> None:
        """Give the master's port another rate (both ends of its veth), between rounds."""
        bps = rate_bits(rate)
        if link_queue(bps)[0] < self.gso_max_size:
            raise ValueError(f"master rate {rate} is below the clients' {self.rate}")
        batch(["tc", "-n", self.bridge_ns], self._shape_lines("vm", bps, None, "change"))
        batch(["tc", "-n", self.master_ns],
              self._shape_lines("eth0", bps, self.delay, "change"))
        self.master_rate, self.master_rate_bps = rate, bps

    def close(self) -> None:
        """Kill our processes, delete our namespaces (with their veths and bridge).

        Safe to call twice; signals are ignored meanwhile so a second Ctrl-C cannot cut it
        short.
        """
        main = threading.current_thread() is threading.main_thread()
        saved = {}
        if main:
            for sig in SIGNALS:
                saved[sig] = signal.signal(sig, signal.SIG_IGN)
        try:
            started = time.monotonic()
            stop_process_groups(self.procs, term_grace=3.0)
            self.procs = []
            for f in self._logs:
                f.close()
            self._logs = []
            delete_netns([ns for ns in list_netns() if ns.startswith(self.prefix)])
            shutil.rmtree(self.disk_dir, ignore_errors=True)
            left = [ns for ns in list_netns() if ns.startswith(self.prefix)]
            if left:
                print(f"bench_link: WARNING: could not delete {left}", file=sys.stderr)
            self.teardown_s = time.monotonic() - started
        finally:
            if main:
                for sig, handler in saved.items():
                    signal.signal(sig, handler)
                for sig, handler in self._old_handlers.items():
                    signal.signal(sig, handler)
                self._old_handlers = {}

    # use

    def disks(self, n: int, size: int) -> List[str]:
        """Destination files for the first `n` clients, each at least `size` bytes of
        zeros before the round: a round writes over a disk that is there, as in a room,
        instead of allocating fresh tmpfs pages (a kernel cost, about 1 s/GB on this VM,
        that a disk does not have). Kept across rounds; removed with the lab."""
        os.makedirs(self.disk_dir, exist_ok=True)
        paths = [os.path.join(self.disk_dir, f"disk-c{i + 1}.img") for i in range(n)]
        zeros = bytes(4 << 20)
        for path in paths:
            with open(path, "ab") as f:
                while f.tell() < size:
                    f.write(zeros[: min(len(zeros), size - f.tell())])
        return paths

    def popen(self, ns: str, argv: List[str], log: Optional[str] = None,
              env: Optional[dict] = None, **kw) -> subprocess.Popen:
        """Start `argv` inside namespace `ns`, in its own process group; it dies with us.

        Output goes to the file `log` (default: discarded). `ip netns exec` execs the
        command in place, so the Popen's pid is the command's.
        """
        out = subprocess.DEVNULL
        if log is not None:
            out = open(log, "ab")
            self._logs.append(out)
        kw.setdefault("stdout", out)
        kw.setdefault("stderr", subprocess.STDOUT)
        p = subprocess.Popen(["ip", "netns", "exec", ns] + list(argv), stdin=subprocess.DEVNULL,
                             env=env, start_new_session=True, preexec_fn=die_with_parent, **kw)
        self.procs.append(p)
        return p

    def run(self, ns: str, argv: List[str], timeout: float = 30) -> str:
        """A short command inside `ns`; its stdout."""
        return sh(["ip", "netns", "exec", ns] + list(argv), timeout=timeout)

    def socket(self, ns: str) -> socket.socket:
        return socket_in(ns)

    def http(self, ns: str, method: str, host: str, port: int, path: str,
             body: Optional[dict] = None, timeout: float = 10) -> Tuple[int, dict]:
        """One JSON API call made from inside `ns`."""
        conn = _NsHTTPConnection(ns, host, port, timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
            try:
                return resp.status, json.loads(raw or b"null")
            except ValueError:
                return resp.status, {"error": raw.decode(errors="replace")}
        finally:
            conn.close()

    def link_check(self, seconds: float = 3.0, port: int = 5201) -> float:
        """TCP payload throughput master -> c1 (Mbit/s, 10^6 bit), measured by the receiver
        from its first byte to the sender's close: one plain TCP stream, 1 MiB writes."""
        srv = socket_in(self.client_ns[0])
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((self.client_ips[0], port))
        srv.listen(1)
        srv.settimeout(10)
        result: Dict[str, float] = {}

        def receive() -> None:
            try:
                conn, _ = srv.accept()
            except OSError as e:
                result["error"] = e  # type: ignore[assignment]
                return
            with conn:
                buf = bytearray(1 << 20)
                total, first = 0, None
                while True:
                    n = conn.recv_into(buf)
                    if not n:
                        break
                    if first is None:
                        first = time.monotonic()
                    total += n
                result["bytes"] = total
                result["seconds"] = time.monotonic() - (first or time.monotonic())

        t = threading.Thread(target=receive, daemon=True)
        t.start()
        cli = socket_in(self.master_ns)
        try:
            cli.settimeout(10)
            cli.connect((self.client_ips[0], port))
            chunk = os.urandom(1 << 20)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                cli.sendall(chunk)
        finally:
            cli.close()
        t.join(30)
        srv.close()
        if "bytes" not in result or not result.get("seconds"):
            raise LabError(f"link check failed: {result.get('error', 'no data received')}")
        return result["bytes"] * 8 / result["seconds"] / 1e6

    def rtt_probe(self, a: int, b: int, interval: float = 0.2,
                  port: int = 5202) -> "RttProbe":
        """Round trips of small UDP datagrams from machine `a` to machine `b` and back
        (indices into client_ns, -1 for the master), one every `interval` s until
        stopped: what the queues on that path add while a round flows. Start with
        .start(), end with .stop()."""
        def where(i: int) -> Tuple[str, str]:
            return (self.master_ns, self.master_ip) if i < 0 else \
                (self.client_ns[i], self.client_ips[i])
        return RttProbe(*where(a), *where(b), interval, port)

    def tc_drops(self) -> int:
        """Packets the shaping queues dropped so far, over every port."""
        total = 0
        for ns, dev in [(self.master_ns, "eth0")] + [(ns, "eth0") for ns in self.client_ns] + \
                [(self.bridge_ns, p) for p in ["vm"] + [f"vc{i + 1}" for i in range(self.n)]]:
            out = sh(["tc", "-n", ns, "-s", "qdisc", "show", "dev", dev], check=False)
            for m in re.finditer(r"dropped (\d+)", out):
                total += int(m.group(1))
        return total


class RttProbe:
    """A UDP echo in one namespace and a sender in another (LinkLab.rtt_probe): each
    datagram carries its send time; `samples` holds the round trips in ms. A lost
    datagram is counted in `lost` (one not back within 5 s)."""

    def __init__(self, a_ns: str, a_ip: str, b_ns: str, b_ip: str, interval: float,
                 port: int) -> None:
        self.interval = interval
        self.samples: List[float] = []
        self.sent = 0
        self._stop = threading.Event()
        self._echo = socket_in(b_ns, kind=socket.SOCK_DGRAM)
        self._echo.bind((b_ip, port))
        self._echo.settimeout(0.2)
        self._out = socket_in(a_ns, kind=socket.SOCK_DGRAM)
        self._out.bind((a_ip, 0))
        self._out.connect((b_ip, port))
        self._out.settimeout(0.2)
        self._threads = [threading.Thread(target=f, daemon=True)
                         for f in (self._serve, self._send, self._receive)]

    @property
    def lost(self) -> int:
        return max(0, self.sent - len(self.samples) - 1)

    def start(self) -> "RttProbe":
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> List[float]:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        self._echo.close()
        self._out.close()
        return self.samples

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._echo.recvfrom(64)
                self._echo.sendto(data, peer)
            except socket.timeout:
                continue
            except OSError:
                return

    def _send(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(OSError):
                self._out.send(repr(time.monotonic()).encode())
                self.sent += 1

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._out.recv(64)
            except socket.timeout:
                continue
            except OSError:
                return
            with contextlib.suppress(ValueError):
                rtt = (time.monotonic() - float(data.decode())) * 1e3
                if rtt < 5000:
                    self.samples.append(rtt)


class _NsHTTPConnection(http.client.HTTPConnection):
    """HTTP from inside a namespace: the socket is made there, the rest as usual."""

    def __init__(self, ns: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ns = ns

    def connect(self) -> None:
        self.sock = socket_in(self._ns)
        self.sock.settimeout(self.timeout)
        self.sock.connect((self.host, self.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
