"""thepusher against UDPcast on the same namespaces and links (issue 21, point 2).

`python3 tests/bench/link.py --mode udpcast [--clients 1,2,4,8] [--size 256M] [--rate 1gbit]
[--repeat 3] [--udpcast-args ARGS] [--udpcast-receiver-args ARGS]`: link.py's options; this
module holds the mode. Root and Linux only; stdlib only; runs under Python 3.9.

UDPcast (Debian's package `udpcast`, 20120424: udp-sender and udp-receiver; `make
bench-debs` installs it) is the multicast engine behind Clonezilla SE. The sender sends
each block once to a multicast group, the network (here the bridge, as a switch would)
copies it to every port, and receivers acknowledge each slice (up to 1024 blocks of 1456
bytes) and ask for what they missed. thepusher sends a TCP stream along a chain, master
-> c1 -> ... -> cN, each hop forwarding what it receives.

The setup, the same LinkLab (tests/support/netlab.py) for both tools, rounds alternating
(thepusher then UDPcast, then UDPcast then thepusher, ...) so that the machine's noise
hits both:

- Multicast on the lab: the bridge floods it to every port (IGMP snooping off; Linux's
  bridge floods with snooping on too while it has seen no IGMP querier, and the lab has
  none), so each N gets a lab of exactly N clients, every port a receiver's, as a
  switch with IGMP snooping would deliver; thepusher's rounds run in the same lab. Each
  namespace has a route 224.0.0.0/4 dev eth0 (there is no default route; UDPcast, which
  names its interface, works without it, checked). What UDPcast does need is a
  broadcast address on eth0 (its rendezvous goes to it): LinkLab gives each eth0 one,
  10.99.0.255.
- Receivers: `udp-receiver --nokbd --interface eth0` in each client's namespace, started
  first, each writing to the client's disk file in /dev/shm (LinkLab.disks, the same
  file thepusher's client writes): its stdout is that file, opened for writing without
  truncating it. (`--file` would open it with O_TRUNC, freeing its tmpfs pages and
  allocating fresh ones during the transfer, a kernel cost the disks are there to keep
  out of thepusher's rounds too; the bytes land in the same place either way.)
- Sender: `udp-sender --file IMAGE --min-receivers N --nokbd --interface eth0` in the
  master's namespace, once every receiver has said it listens; nothing else by default
  (its defaults: full duplex, as it detects on eth0; with one receiver it sends point to
  point, unicast), and the link's rate is left to the shaping, as for thepusher: no
  `--max-bitrate`. `--udpcast-args` adds flags (e.g. "--rexmit-hello-interval 100", or
  "--max-bitrate 900m"), `--udpcast-receiver-args` the receivers' (e.g. "--rcvbuf 4194304").

What is timed:

- thepusher: wall = the master's round, from the start (POST /api/groups/room/start,
  every client registered and WAIT) to the master's `finished` (every client DONE, each
  having checked the SHA-256 of what it wrote); start = wall - stream s (link.py's
  stream s: the round's phase seen 'streaming' -> finished).
- UDPcast: wall = from starting udp-sender (every receiver already running and
  listening) to its exit, which comes once every receiver has acknowledged the last
  slice: it includes the rendezvous (the sender's HELLO, each receiver's connect request
  and the sender's reply) and the sender's wait before it starts: with --min-receivers it
  starts the transfer on the first 2 s without news after the N-th receiver connected
  (udps-negotiate.c: a 2 s select timeout; `--rexmit-hello-interval MS` shortens it to
  MS). start = until "Starting transfer" appears on the sender's output; transfer = the
  rest. Receivers linger --exit-wait (500 ms) after the last acknowledgement, in case it
  was lost, before they exit: not in the wall (the per-round line shows it).

CPU: each client's, the whole process (thepusher: cpu_seconds with DONE, as link.py
reports it, which includes the Python start-up and registration before the round;
udp-receiver: utime + stime from wait4's rusage), over the image's GB; and "in round",
less what /proc showed when the round (or the sender) was started. The sender's:
thepusher's master from /proc at the round's start and end (its start-up and the image's
hashing are before), udp-sender from its rusage. The kernel's work for veths, bridge and
HTB is charged to whichever process runs when it happens, mostly the sending one.

Every copy is checked by this script after each round: the SHA-256 of each client's disk
file (all of it, the image's size) against the image's. The disk files are overwritten
with zeros before every round, so an earlier round's copy cannot pass for this one's. A
mismatch is printed at once (COPY MISMATCH) and counted in the table; so is a receiver
that exits non-zero (NOT DELIVERED: udp-sender drops a receiver that stops answering).
A bad copy of thepusher's makes the run exit 1 (a bug); UDPcast's are figures. UDPcast
itself checks nothing end to end: its blocks carry no checksum beyond UDP's 16-bit one,
and a receiver that wrote wrong bytes (a disk error, a bug) still ends with "Transfer
complete"; each thepusher client hashes what it wrote against the image's SHA-256 from
the master.
"""

import contextlib
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import cpu_ticks, median, tail_of  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from tests.support.netlab import NAME_PREFIX, SHM, LabError, LinkLab, sh  # noqa: E402

SENDER = "udp-sender"
RECEIVER = "udp-receiver"
DEFAULT_CLIENTS = [1, 2, 4, 8]
DEFAULT_SIZE = 256 << 20
READY_MARK = b"UDP receiver for"     # a receiver's second line: its socket is bound
START_MARK = b"Starting transfer"    # the sender's, once it starts sending data
REXMIT = re.compile(rb"re-xmits=\s*(\d+)\s*\(\s*([0-9.]+)%\)")


def require_udpcast() -> str:
    """The udpcast package's version; LabError (link.py's BenchError) when its programs are
    missing."""
    missing = [p for p in (SENDER, RECEIVER) if shutil.which(p) is None]
    if missing:
        raise LabError(f"{' and '.join(missing)} not found (Debian package udpcast): run "
                       "`make bench-debs`")
    version = sh(["dpkg-query", "-W", "-f", "${Version}", "udpcast"], check=False).strip()
    return version or "version unknown"


def enable_multicast(lab: LinkLab) -> None:
    """The bridge floods multicast (no IGMP snooping); every machine routes it to eth0."""
    sh(["ip", "-n", lab.bridge_ns, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0"])
    for ns in [lab.master_ns] + lab.client_ns:
        sh(["ip", "-n", ns, "route", "replace", "224.0.0.0/4", "dev", "eth0"])


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(4 << 20)
            if not chunk:
                return h.hexdigest()
            h.update(chunk)


def blank(paths: List[str], size: int) -> None:
    """Zeros over the first `size` bytes of each disk file, in place (its pages stay)."""
    zeros = bytes(4 << 20)
    for path in paths:
        fd = os.open(path, os.O_WRONLY)
        try:
            done = 0
            while done < size:
                done += os.pwrite(fd, zeros[: min(len(zeros), size - done)], done)
        finally:
            os.close(fd)


def check_copies(paths: List[str], size: int, digest: str) -> List[str]:
    """What is wrong with each copy ('' when it is the image), by SHA-256 and size."""
    problems = []
    for path in paths:
        try:
            have = os.path.getsize(path)
            if have != size:
                problems.append(f"{path}: {have} bytes, the image has {size}")
            elif sha256_of(path) != digest:
                problems.append(f"{path}: SHA-256 differs from the image's")
            else:
                problems.append("")
        except OSError as e:
            problems.append(f"{path}: {e}")
    return problems


def udpcast_round(lab: LinkLab, image: str, n: int, sender_args: List[str],
                  receiver_args: List[str], timeout: Optional[float] = None) -> dict:
    """One transfer of `image` to the first `n` clients' disk files. Raises LabError
    unless every process exits 0 in time. Returns: wall_s, start_s, transfer_s,
    receivers_exit_s (sender start -> last receiver's exit), sender_cpu_s, cpu_s and
    cpu_start_s (each receiver's that finished, at its exit and when the sender was
    started), failed ({index: why} of the receivers that exited non-zero: dropped by the
    sender, or failed), rexmit_pct (the sender's last re-xmits figure), disks."""
    size = os.path.getsize(image)
    disks = lab.disks(n, size)
    work = tempfile.mkdtemp(prefix=f"{NAME_PREFIX}{os.getpid()}-udpcast-", dir=SHM)
    procs: List[Tuple[str, subprocess.Popen, str]] = []
    usage: Dict[int, Tuple[int, float, float]] = {}  # pid: exit code, CPU s, exit time

    def logs() -> str:
        return "".join(f"\n--- {name} ({path}) ---\n{tail_of(path, 1500)}"
                       for name, _, path in procs)

    try:
        for i in range(n):
            path = os.path.join(work, f"receiver-c{i + 1}.log")
            disk = os.open(disks[i], os.O_WRONLY)  # no O_TRUNC: written over, as a disk is
            try:
                with open(path, "ab") as log:
                    p = lab.popen(lab.client_ns[i], [RECEIVER, "--nokbd", "--interface", "eth0"]
                                  + receiver_args, stdout=disk, stderr=log)
            finally:
                os.close(disk)
            procs.append((f"udp-receiver c{i + 1}", p, path))
        deadline = time.monotonic() + 10
        waiting = list(procs)
        while waiting:
            for name, p, path in list(waiting):
                if p.poll() is not None:
                    raise LabError(f"{name} exited ({p.returncode}) before the transfer" + logs())
                if READY_MARK.decode() in tail_of(path, 4000):
                    waiting.remove((name, p, path))
            if waiting and time.monotonic() > deadline:
                raise LabError(f"{len(waiting)} receiver(s) not listening after 10 s" + logs())
            time.sleep(0.005)
        cpu_start = [cpu_ticks(p.pid) for _, p, _ in procs]

        sender_log = os.path.join(work, "sender.log")
        marks: Dict[bytes, float] = {}
        t0 = time.monotonic()
        sender = lab.popen(lab.master_ns, [SENDER, "--file", image, "--min-receivers", str(n),
                                           "--nokbd", "--interface", "eth0"] + sender_args,
                           stdout=subprocess.PIPE)
        procs.insert(0, ("udp-sender", sender, sender_log))
        reader = threading.Thread(target=_read_marks, args=(sender, sender_log, marks),
                                  daemon=True)
        reader.start()

        if timeout is None:  # 10x the time at the link rate, at least 2 minutes
            timeout = 120 + 10 * size * 8 / lab.rate_bps
        deadline = t0 + timeout
        pending = {p.pid: (name, p) for name, p, _ in procs}
        while pending:
            for pid, (name, p) in list(pending.items()):
                got, status, ru = os.wait4(pid, os.WNOHANG)
                if got == 0:
                    continue
                p.returncode = os.waitstatus_to_exitcode(status)
                usage[pid] = (p.returncode, ru.ru_utime + ru.ru_stime, time.monotonic())
                del pending[pid]
                if p.returncode != 0 and p is sender:
                    reader.join(5)
                    raise LabError(f"{name} exited with {p.returncode}" + logs())
            if pending and time.monotonic() > deadline:
                reader.join(1)
                raise LabError(f"UDPcast to {n} receiver(s) not done after {timeout:.0f} s: "
                               f"{', '.join(name for name, _ in pending.values())} still "
                               "running" + logs())
            time.sleep(0.005)
        reader.join(10)
        _, sender_cpu, sender_end = usage[sender.pid]
        started = marks.get(START_MARK)
        if started is None:
            raise LabError("udp-sender exited without 'Starting transfer'" + logs())
        with open(sender_log, "rb") as f:
            rexmit = REXMIT.findall(f.read())
        receivers = [usage[p.pid] for _, p, _ in procs[1:]]
        # A receiver that exits non-zero was dropped by the sender (it stopped answering
        # for --retries-until-drop requests: a starved CPU does it) or failed: counted.
        failed = {i: f"udp-receiver c{i + 1} exited with {code}: "
                     f"{_last_words(procs[1 + i][2])}"
                  for i, (code, _, _) in enumerate(receivers) if code != 0}
        if len(failed) == n:
            raise LabError("udp-sender finished, but no receiver did" + logs())
        return {
            "n": n,
            "wall_s": sender_end - t0,
            "start_s": started - t0,
            "transfer_s": sender_end - started,
            "receivers_exit_s": max(end for _, _, end in receivers) - t0,
            "sender_cpu_s": sender_cpu,
            "failed": failed,
            # the CPU figures of the receivers that finished
            "cpu_s": [cpu for i, (_, cpu, _) in enumerate(receivers) if i not in failed],
            "cpu_start_s": [c for i, c in enumerate(cpu_start) if i not in failed],
            "rexmit_pct": float(rexmit[-1][1]) if rexmit else float("nan"),
            "disks": disks,
        }
    finally:
        for _, p, _ in procs:
            if p.returncode is None and p.pid not in usage:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        for _, p, _ in procs:
            if p.returncode is None and p.pid not in usage:
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(p.pid, signal.SIGKILL)
                    p.wait(5)
            if p.stdout is not None:
                p.stdout.close()
            with contextlib.suppress(ValueError):
                lab.procs.remove(p)
        shutil.rmtree(work, ignore_errors=True)


def _last_words(log_path: str) -> str:
    """The lines of a receiver's log after its last progress figure."""
    lines = [line.strip() for line in tail_of(log_path, 600).replace("\r", "\n").splitlines()]
    lines = [line for line in lines if line]
    end = len(lines)
    while end and not lines[end - 1].startswith("bytes="):
        end -= 1
    return "; ".join(lines[end:]) or (lines[-1] if lines else "(no output)")


def _read_marks(proc: subprocess.Popen, log_path: str, marks: Dict[bytes, float]) -> None:
    """Copy the sender's output to its log, noting when each mark first appears."""
    tail = b""
    with open(log_path, "ab") as log:
        while True:
            try:
                chunk = os.read(proc.stdout.fileno(), 65536)
            except (OSError, ValueError):
                return
            if not chunk:
                return
            now = time.monotonic()
            log.write(chunk)
            log.flush()
            tail = (tail + chunk)[-256:]
            if START_MARK not in marks and START_MARK in tail:
                marks[START_MARK] = now


# -- the mode ---------------------------------------------------------------------------


def mode_udpcast(args, run_round, random_image, print_header) -> Tuple[int, int]:
    """--repeat rounds of each tool for each N of --clients, alternating, in a lab of N
    clients; prints the table and the ratios. Returns the number of thepusher's copies
    that were not the image (a bug: the caller exits 1; UDPcast's failed copies are
    counted and shown) and the packets the shaping queues dropped."""
    version = require_udpcast()
    sender_args = shlex.split(args.udpcast_args or "")
    receiver_args = shlex.split(args.udpcast_receiver_args or "")
    size = args.size
    rows: List[dict] = []
    drops = 0
    with random_image(size) as image:
        digest = sha256_of(image)
        for number, n in enumerate(args.clients):
            with LinkLab(n, args.rate, args.master_rate, args.delay) as lab:
                if number == 0:
                    print_header(args, lab)
                    _print_setup(version, sender_args, receiver_args)
                enable_multicast(lab)
                by_tool = _rounds(args, lab, image, digest, n, sender_args, receiver_args,
                                  run_round)
                drops += lab.tc_drops()
            for tool, rounds in by_tool.items():
                rows.append(_row(tool, n, rounds, size))
    _print_table(args, rows, size, sender_args, receiver_args)
    return (sum(row["of"] - row["copies"] for row in rows if row["tool"] == "thepusher"),
            drops)


def _print_setup(version: str, sender_args: List[str], receiver_args: List[str]) -> None:
    print(f"udpcast {version}: udp-receiver --nokbd --interface eth0 "
          f"{' '.join(receiver_args)}> DISK in each client's namespace; udp-sender --file "
          f"IMAGE --min-receivers N --nokbd --interface eth0 {' '.join(sender_args)}".rstrip()
          + " in the master's; a lab of exactly N clients for each N (the bridge floods "
          "multicast to every port)")
    print("thepusher wall = the master's round (start -> every client DONE); udpcast wall = "
          "udp-sender's start (receivers listening) -> its exit (every receiver acknowledged "
          "the end), rendezvous included; start = until streaming / 'Starting transfer'; "
          "MB/s/client = image MB / wall s")
    print("client CPU = each receiver's whole process (thepusher: cpu_seconds with DONE; "
          "udp-receiver: rusage); 'in round' less its CPU when the round/sender started; "
          "sender = master (/proc, over the round) / udp-sender (rusage)")
    print("every copy: SHA-256 of each client's disk file, checked by this script after each "
          "round (zeroed before it); UDPcast itself verifies nothing end to end", flush=True)


def _rounds(args, lab: LinkLab, image: str, digest: str, n: int, sender_args: List[str],
            receiver_args: List[str], run_round) -> Dict[str, List[dict]]:
    """--repeat rounds of each tool, alternating which goes first; each copy checked."""
    size = args.size
    by_tool: Dict[str, List[dict]] = {"thepusher": [], "udpcast": []}
    for i in range(args.repeat):
        order = ("thepusher", "udpcast") if i % 2 == 0 else ("udpcast", "thepusher")
        for tool in order:
            blank(lab.disks(n, size), size)
            if tool == "thepusher":
                r = _thepusher_figures(run_round(lab, image, "NONE", clients=n, dest="shm",
                                                 pyz=args.pyz))
                disks = lab.disks(n, size)
            else:
                r = _udpcast_figures(udpcast_round(lab, image, n, sender_args, receiver_args))
                disks = r["disks"]
            problems = check_copies(disks, size, digest)
            failed = r.get("failed", {})
            r["copies_ok"] = sum(1 for k, p in enumerate(problems) if not p and k not in failed)
            r["dropped"] = len(failed)
            r["wrong"] = sum(1 for k, p in enumerate(problems) if p and k not in failed)
            by_tool[tool].append(r)
            _print_round(tool, n, i, args.repeat, r, size)
            for k, problem in enumerate(problems):
                if k in failed:
                    print(f"  !!! NOT DELIVERED ({tool}, N={n}, round {i + 1}): {failed[k]}",
                          flush=True)
                elif problem:
                    print(f"  !!! COPY MISMATCH ({tool}, N={n}, round {i + 1}): {problem}",
                          flush=True)
    return by_tool


def _thepusher_figures(r: dict) -> dict:
    in_round = [c - (s or 0.0) for c, s in zip(r["cpu_s"], r["cpu_start_s"])]
    return {"wall_s": r["wall_s"], "start_s": r["wall_s"] - r["stream_s"],
            "transfer_s": r["stream_s"], "cpu_s": r["cpu_s"], "cpu_round_s": in_round,
            "sender_cpu_s": r["master_cpu_s"], "rexmit_pct": None}


def _udpcast_figures(r: dict) -> dict:
    r = dict(r)
    r["cpu_round_s"] = [c - (s or 0.0) for c, s in zip(r["cpu_s"], r["cpu_start_s"])]
    return r


def _print_round(tool: str, n: int, i: int, repeat: int, r: dict, size: int) -> None:
    gb = size / 1e9
    cpu = [c / gb for c in r["cpu_s"]]
    sender = ("?" if r["sender_cpu_s"] is None else f"{r['sender_cpu_s'] / gb:.2f}")
    extra = ""
    if tool == "udpcast":
        extra = (f", {r['rexmit_pct']:.1f} % re-sent, receivers exited "
                 f"{r['receivers_exit_s']:.2f} s after the start")
    print(f"  [N={n}, round {i + 1}/{repeat}, {tool}] wall {r['wall_s']:.2f} s (start "
          f"{r['start_s']:.2f} + transfer {r['transfer_s']:.2f}), "
          f"{size / r['wall_s'] / 1e6:.1f} MB/s per client, client CPU "
          f"{median(cpu):.2f}/{max(cpu):.2f} s/GB med/max, sender {sender} s/GB{extra}, "
          f"{r['copies_ok']}/{n} copies match{_failures(r['dropped'], r['wrong'])}", flush=True)


def _failures(dropped: int, wrong: int) -> str:
    return ((f" ({dropped} NOT DELIVERED)" if dropped else "")
            + (f" ({wrong} WRONG)" if wrong else ""))


def _row(tool: str, n: int, rounds: List[dict], size: int) -> dict:
    gb = size / 1e9

    def med(values: List[float]) -> float:  # nan: not seen (a round too short for the poll)
        values = [v for v in values if v == v]
        return median(values) if values else float("nan")

    senders = [r["sender_cpu_s"] for r in rounds if r["sender_cpu_s"] is not None]
    rexmit = [r["rexmit_pct"] for r in rounds if r["rexmit_pct"] is not None]
    return {
        "tool": tool, "n": n,
        "wall": med([r["wall_s"] for r in rounds]),
        "start": med([r["start_s"] for r in rounds]),
        "transfer": med([r["transfer_s"] for r in rounds]),
        "cpu_med": med([median(r["cpu_s"]) / gb for r in rounds]),
        "cpu_max": med([max(r["cpu_s"]) / gb for r in rounds]),
        "cpu_round": med([median(r["cpu_round_s"]) / gb for r in rounds]),
        "sender": med([s / gb for s in senders]),
        "rexmit": med(rexmit) if rexmit else None,
        "copies": sum(r["copies_ok"] for r in rounds), "of": n * len(rounds),
        "dropped": sum(r["dropped"] for r in rounds), "wrong": sum(r["wrong"] for r in rounds),
    }


def _print_table(args, rows: List[dict], size: int, sender_args: List[str],
                 receiver_args: List[str]) -> None:
    flags = " ".join(sender_args + (["/ receivers:"] + receiver_args if receiver_args else []))
    master = f" (master {args.master_rate})" if args.master_rate else ""
    print()
    print(f"thepusher (a chain) against UDPcast (multicast): {size >> 20} MiB random raw image, "
          f"links {args.rate}{master}, medians of {args.repeat}; udpcast flags: "
          f"{flags or 'its defaults'}")
    head = (f"{'N':>3} {'tool':<10} {'wall s':>7} {'start s':>8} {'transfer s':>11} "
            f"{'MB/s/client':>12} {'client CPU s/GB med':>20} {'max':>5} {'in round':>9} "
            f"{'sender CPU s/GB':>16} {'re-sent':>8} {'copies OK':>10}")
    print(head)
    print("-" * len(head))
    for row in rows:
        resent = "-" if row["rexmit"] is None else f"{row['rexmit']:.1f}%"
        copies = f"{row['copies']}/{row['of']}" + _failures(row["dropped"], row["wrong"])
        print(f"{row['n']:>3} {row['tool']:<10} {row['wall']:>7.2f} {row['start']:>8.2f} "
              f"{row['transfer']:>11.2f} {size / row['wall'] / 1e6:>12.1f} "
              f"{row['cpu_med']:>20.2f} {row['cpu_max']:>5.2f} {row['cpu_round']:>9.2f} "
              f"{row['sender']:>16.2f} {resent:>8} {copies:>10}")
    print()
    print("thepusher / udpcast (below 1: thepusher takes less)")
    head = (f"{'N':>3} {'wall':>6} {'transfer':>9} {'client CPU/GB':>14} {'in round':>9} "
            f"{'sender CPU/GB':>14}")
    print(head)
    print("-" * len(head))
    by = {(row["tool"], row["n"]): row for row in rows}
    for n in args.clients:
        tp, uc = by[("thepusher", n)], by[("udpcast", n)]
        print(f"{n:>3} {tp['wall'] / uc['wall']:>6.2f} {tp['transfer'] / uc['transfer']:>9.2f} "
              f"{tp['cpu_med'] / uc['cpu_med']:>14.2f} "
              f"{tp['cpu_round'] / uc['cpu_round']:>9.2f} {tp['sender'] / uc['sender']:>14.2f}")
    print()
    for tool in ("thepusher", "udpcast"):
        mine = [row for row in rows if row["tool"] == tool]
        ok, of = sum(row["copies"] for row in mine), sum(row["of"] for row in mine)
        dropped, wrong = sum(row["dropped"] for row in mine), sum(row["wrong"] for row in mine)
        line = f"{tool}: {ok} of {of} copies match the image's SHA-256 (checked by this script)"
        if dropped:
            line += (f"; !!! {dropped} NOT DELIVERED: the receiver exited non-zero, dropped by "
                     "udp-sender (see the lines above)")
        if wrong:
            line += f"; !!! {wrong} WRONG: size or SHA-256 differ (see the lines above)"
        print(line)
    print("(UDPcast verifies nothing end to end; each thepusher client hashes what it writes "
          "against the image's SHA-256 from the master)")
