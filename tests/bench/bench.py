#!/usr/bin/env python3
"""Benchmark thepusher on one machine: chain scaling, relay speed, CPU, memory, healing.

A script, not a pytest test (`make bench`, or `python3 tests/bench/bench.py [--quick]`).
It starts a real master and real client processes on loopback (127.0.0.11, .12, ...)
exactly as tests/conftest.py does, runs whole rounds and reads every figure from the
master's /api/status:

* round wall time: history[-1]["finished"] - history[-1]["started"] (the master's own
  round duration: arming + streaming + the final reports);
* stream time: from the moment this script sees the round's phase turn "streaming"
  (polled every 20 ms) to "finished", i.e. the round without the arm phase;
* per hop: cpu_seconds (user + system of the whole client process) and max_rss_kb as
  each client reported them with DONE;
* fault: pairs of rounds of 8 clients, one without a fault and one where client 4 is
  kill -9'ed once it has written half the image; the time until the last client that
  can finish is DONE (all 8, or the 7 survivors) and the ratio of the two. The
  survivors' copies are re-hashed here too.

The group is `start = "manual"`: the bench starts each round itself once all its
clients are WAIT, and checks that the round's chain is the whole list of hosts.

Units: MB = 10^6 bytes, GB = 10^9 bytes, MiB = 2^20 bytes.
Stdlib only; runs under Python 3.9. Exit status 0 unless something broke (a target
that is missed is reported, not failed).
"""

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
sys.path.insert(0, ROOT)
from thepusher import units  # noqa: E402

RECORD_SIZE = 1 << 20  # wire default record size
RSS_ALLOWANCE = 8 << 20  # threads, queues, JSON/HTTP objects on top of the pool

TARGET_RELAY_GBS = 2.0
TARGET_CPU_S_PER_GB = 0.3
TARGET_FAULT_RATIO = 1.2

class BenchError(Exception):
    """Something broke (not a missed target): the run is aborted with this message."""


def parse_size(text: str) -> int:
    try:
        value = units.parse_size(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected e.g. 256M or 1G") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size {text!r} must be positive")
    return value


MAX_CLIENTS = 200


def parse_clients(text: str) -> List[int]:
    """An argparse type: a list of counts such as 1,2,4,8 (argparse names the option)."""
    try:
        counts = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected counts such as 1,2,4,8") from None
    if not counts or counts[0] < 1 or counts[-1] > MAX_CLIENTS:
        raise argparse.ArgumentTypeError(f"{text!r}: counts from 1 to {MAX_CLIENTS}")
    return counts


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def hosts_for(n: int) -> List[str]:
    return [f"127.0.0.{11 + i}" for i in range(n)]


def fast_dir() -> Optional[str]:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def median(values: List[float]) -> float:
    return statistics.median(values)


def cpu_ticks(pid: int) -> Optional[float]:
    """utime + stime of a live process in seconds (Linux /proc), None if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


# -- files ---------------------------------------------------------------------------


def write_random(path: str, size: int) -> None:
    """Like thepusher.demo.make_image, which this process must not import: every module
    it loads raises the RSS floor that the clients it starts inherit (own_peak_rss_kb)."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 4 << 20)
            f.write(os.urandom(n))
            left -= n


def write_zeros(path: str, size: int, in_place: bool = False) -> None:
    """Really write the pages (not a sparse ftruncate), so a round only overwrites them;
    `in_place` rewrites an existing file's pages without truncating (no new pages)."""
    zeros = bytes(4 << 20)
    with open(path, "r+b" if in_place else "wb") as f:
        left = size
        while left:
            n = min(left, len(zeros))
            f.write(zeros[:n])
            left -= n


def tail_of(path: str, chars: int = 2500) -> str:
    """The last `chars` characters of a log file, "" if it cannot be read."""
    try:
        with open(path, errors="replace") as f:
            return f.read()[-chars:]
    except OSError:
        return ""


def sha256_file(path: str) -> str:
    """Through one reused 1 MiB buffer: this process must stay small, see own_peak_rss_kb."""
    sha = hashlib.sha256()
    buf = bytearray(RECORD_SIZE)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                return sha.hexdigest()
            sha.update(view[:n])


def write_config(image_dir: str, hosts: List[str], settings: str = "", image_extra: str = "",
                 filename: str = "disk.img") -> None:
    """As tests/conftest.write_config: one image, one group with these hosts in order;
    `image_extra` goes into the image block.

    `start = "manual"`: the bench starts every round itself (POST /api/groups/room/start)
    once all its clients are WAIT. With the default policy a host that ended DONE is no
    longer waited for, so a repeated round would start with whichever client registered
    first instead of the whole chain.
    """
    quoted = ", ".join(f'"{h}"' for h in hosts)
    with open(os.path.join(image_dir, "thePusher-config.hcl"), "w") as f:
        f.write(
            settings + f'image "img" {{\n  filename = "{filename}"\n  destination = "/dev/null"\n'
            f'  compression = "NONE"\n{image_extra}}}\n'
            f'clientgroup "room" {{\n  image = "img"\n  hosts = [{quoted}]\n'
            '  start = "manual"\n}\n'
        )


# -- processes -----------------------------------------------------------------------


class Proc:
    def __init__(self, name: str, args: List[str], logdir: str) -> None:
        self.name = name
        self.log = os.path.join(logdir, f"{name}.log")
        self._logf = open(self.log, "wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "thepusher", *args],
            stdout=self._logf, stderr=subprocess.STDOUT, env=ENV, start_new_session=True,
        )

    def tail(self, chars: int = 2500) -> str:
        self._logf.flush()
        with open(self.log, errors="replace") as f:
            return f.read()[-chars:]

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                os.kill(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._logf.close()


class Lab:
    """Every process this script starts is in `procs` and is killed by close()."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.logs = os.path.join(workdir, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.procs: List[Proc] = []
        self.master: Optional[Proc] = None
        self.port = 0
        self.serial = 0

    def spawn(self, name: str, args: List[str]) -> Proc:
        self.serial += 1
        p = Proc(f"{self.serial:03d}-{name}", args, self.logs)
        self.procs.append(p)
        return p

    def status(self) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/status"
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)

    def post(self, path: str) -> dict:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=b"{}", method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            raise BenchError(f"POST {path}: {e.code} {e.read().decode(errors='replace')}") from None

    def start_master(self, image_dir: str, hosts: List[str], settings: str = "",
                     image_extra: str = "", filename: str = "disk.img", ready: bool = True,
                     timeout: float = 120) -> None:
        """A master on image_dir; `ready`: wait until its image is hashed (`timeout`
        includes hashing it the first time), else only until the API answers (a master
        for uploads, whose image is not there yet)."""
        self.stop_master()
        write_config(image_dir, hosts, settings, image_extra, filename)
        self.port = free_port()
        self.master = self.spawn("master", [
            "-v", "master", "-S", image_dir, "-l", f"127.0.0.1:{self.port}",
        ])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.master.popen.poll() is not None:
                raise BenchError(f"the master exited:\n{self.master.tail()}")
            try:
                images = self.status().get("images", [])
            except OSError:
                time.sleep(0.1)
                continue
            states = [i.get("state") for i in images]
            if not ready or (states and all(s == "ready" for s in states)):
                return
            if "error" in states:
                raise BenchError(f"the master cannot use the image: {images}")
            time.sleep(0.1)
        raise BenchError(f"the master was not ready within {timeout:.0f} s:\n{self.master.tail()}")

    def stop_master(self) -> None:
        if self.master is not None:
            self.master.stop()
            self.master = None

    def close(self) -> None:
        for p in self.procs:
            p.stop()
        self.procs = []
        self.master = None


def start_round(lab: Lab, hosts: List[str], dests: List[str]) -> Tuple[List[Proc], int]:
    """Fresh client processes; once every one is WAIT, start the round. (clients, round number)"""
    clients = [
        lab.spawn(f"client-{h}", [
            "-v", "client", "-p", f"127.0.0.1:{lab.port}", "--bind", h,
            "--data-port", "0", "--destination", d,
        ])
        for h, d in zip(hosts, dests)
    ]
    deadline = time.monotonic() + 60
    while True:
        if time.monotonic() > deadline:
            raise BenchError(f"{len(hosts)} clients not all WAIT after 60 s"
                             + logs_of([lab.master] + clients))
        for p in [lab.master] + clients:
            if p.popen.poll() is not None:
                raise BenchError(f"{p.name} exited before the round started" + logs_of([p]))
        states = {c["host"]: c["state"] for c in lab.status()["groups"][0]["clients"]}
        if all(states.get(h) == "WAIT" for h in hosts):
            break
        time.sleep(0.02)
    answer = lab.post("/api/groups/room/start")
    if answer.get("chain") != hosts:
        raise BenchError(f"round {answer.get('round')} started with chain {answer.get('chain')}, "
                         f"expected {hosts}")
    return clients, answer["round"]


def run_round(lab: Lab, hosts: List[str], dests: List[str], size: int) -> dict:
    """One round with fresh client processes; returns the round's figures."""
    master_cpu0: Optional[float] = None
    clients, number = start_round(lab, hosts, dests)
    last = number - 1
    timeout = 120 + len(hosts) * size / 20e6
    deadline = time.monotonic() + timeout
    seen_streaming: Optional[float] = None
    while True:
        if time.monotonic() > deadline:
            raise BenchError(f"round with {len(hosts)} clients not finished after {timeout:.0f} s"
                             + logs_of([lab.master] + clients))
        if lab.master.popen.poll() is not None:
            raise BenchError("the master died during a round" + logs_of([lab.master]))
        st = lab.status()
        if st["history"] and st["history"][-1]["number"] > last:
            break
        r = st["groups"][0]["round"]
        if seen_streaming is None and r and r["number"] > last and r["phase"] == "streaming":
            seen_streaming = time.time()
            master_cpu0 = cpu_ticks(lab.master.popen.pid)
        time.sleep(0.02 if seen_streaming is None else 0.2)
    master_cpu1 = cpu_ticks(lab.master.popen.pid)
    rnd = st["history"][-1]
    by_host = {c["host"]: c for c in st["groups"][0]["clients"]}
    bad = [h for h in hosts if by_host[h]["state"] != "DONE"]
    if bad:
        reasons = "; ".join(f"{h}: {by_host[h]['state']} {by_host[h]['error']}" for h in bad)
        raise BenchError(f"round {rnd['number']} with {len(hosts)} clients did not end with "
                         f"every client DONE: {reasons}" + logs_of([lab.master] + clients))
    usage = [reap(p) for p in clients]
    wall = rnd["finished"] - rnd["started"]
    stream = rnd["finished"] - seen_streaming if seen_streaming else float("nan")
    cpu = [by_host[h]["cpu_seconds"] for h in hosts]
    rss = [by_host[h]["max_rss_kb"] for h in hosts]
    if None in cpu or None in rss:
        raise BenchError(f"a client reported no cpu_seconds/max_rss_kb: {by_host}")
    return {
        "wall": wall,
        "stream": stream,
        "cpu": cpu,
        "rss_kb": rss,
        "sys": [u.ru_stime for u in usage],
        "master_cpu": (master_cpu1 - master_cpu0)
        if master_cpu0 is not None and master_cpu1 is not None else float("nan"),
    }


def reap(p: Proc, timeout: float = 30.0):
    """Wait for a client to exit and return its rusage (user/sys split, which the status lacks)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(p.popen.pid, os.WNOHANG)
        if pid:
            p.popen.returncode = os.waitstatus_to_exitcode(status)
            if p.popen.returncode != 0:
                raise BenchError(f"{p.name} exited with {p.popen.returncode} after DONE"
                                 + logs_of([p]))
            return usage
        if time.monotonic() > deadline:
            raise BenchError(f"{p.name} still running {timeout:.0f} s after its DONE" + logs_of([p]))
        time.sleep(0.02)


def logs_of(procs: List[Proc]) -> str:
    return "".join(f"\n--- {p.name} ({p.log}) ---\n{p.tail()}" for p in procs)


def measure(lab: Lab, image_dir: str, hosts: List[str], dests: List[str], size: int,
            repeat: int, label: str) -> dict:
    lab.start_master(image_dir, hosts)
    rounds = []
    for i in range(repeat):
        r = run_round(lab, hosts, dests, size)
        rounds.append(r)
        gb = size / 1e9
        print(f"  [{label}, round {i + 1}/{repeat}] wall {r['wall']:.2f} s, stream "
              f"{r['stream']:.2f} s, hop CPU {max(r['cpu']) / gb:.2f} s/GB max", flush=True)
    lab.stop_master()
    gb = size / 1e9
    return {
        "n": len(hosts),
        "wall": median([r["wall"] for r in rounds]),
        "stream": median([r["stream"] for r in rounds]),
        # per round: median and max over hops; then the median over rounds
        "cpu_med": median([median(r["cpu"]) / gb for r in rounds]),
        "cpu_max": median([max(r["cpu"]) / gb for r in rounds]),
        "sys_med": median([median(r["sys"]) / gb for r in rounds]),
        "rss_kb": max(max(r["rss_kb"]) for r in rounds),
        "master_cpu": median([r["master_cpu"] / gb for r in rounds]),
        "walls": [r["wall"] for r in rounds],
    }


# -- fault: one client killed mid-image --------------------------------------------------

FAULT_SETTINGS = "report_timeout = 5\n"  # top-level: a lost client is declared ERROR after 5 s
FAULT_POLL = 0.05  # status polls during a fault-section round (both kinds, so both pay the same)


def fault_round(lab: Lab, hosts: List[str], dests: List[str], size: int,
                victim: Optional[int]) -> dict:
    """One round, polling /api/status every FAULT_POLL s; with `victim` (an index into
    hosts), kill -9 that client once it has written half the image.

    "Written half": the victim's destination (zeroed before the round; the image is
    random) holds data in the 4 KiB at the image's midpoint; a hop writes in order.
    Checked every 5 ms. Neither the master's bytes_sent (it runs ahead of a middle hop
    by the buffers and replay windows of the hops before it, hundreds of MiB) nor the
    victim's own bytes_done (reported once a second) would place the kill as well.

    Returns when each host was first seen DONE (and the victim ERROR), relative to the
    round's start (the master's `started`), plus the master's own round duration.
    """
    if victim is not None and dests[victim] == "/dev/null":
        raise BenchError("the fault section needs file destinations")
    for d in dests:  # so that only this round's writes can make a copy verify
        if d != "/dev/null":
            write_zeros(d, size, in_place=True)
    probe = os.open(dests[victim], os.O_RDONLY) if victim is not None else None
    try:
        clients, number = start_round(lab, hosts, dests)
        return _watch_fault_round(lab, hosts, dests, size, victim, probe, clients, number)
    finally:
        if probe is not None:
            os.close(probe)


def _watch_fault_round(lab: Lab, hosts: List[str], dests: List[str], size: int,
                       victim: Optional[int], probe: Optional[int], clients: List[Proc],
                       number: int) -> dict:
    timeout = 120 + len(hosts) * size / 20e6
    deadline = time.monotonic() + timeout
    seen: Dict[str, float] = {}  # host -> time.time() first seen DONE or ERROR
    killed: Optional[dict] = None
    mid = (size // 2) & ~4095
    next_status = 0.0
    while True:
        if probe is not None and killed is None and os.pread(probe, 4096, mid).strip(b"\0"):
            os.kill(clients[victim].popen.pid, signal.SIGKILL)
            killed = {"at": time.time()}
            next_status = 0.0  # the master's progress at the kill, right away
        if time.monotonic() < next_status:
            time.sleep(0.005 if probe is not None and killed is None else FAULT_POLL / 5)
            continue
        next_status = time.monotonic() + FAULT_POLL
        if time.monotonic() > deadline:
            raise BenchError(f"fault round {number} not finished after {timeout:.0f} s"
                             + logs_of([lab.master] + clients))
        if lab.master.popen.poll() is not None:
            raise BenchError("the master died during a round" + logs_of([lab.master]))
        st = lab.status()
        now = time.time()
        group = st["groups"][0]
        r = group["round"]
        if not r or r["number"] != number:
            raise BenchError(f"expected round {number} in the status, got {r}")
        by_host = {c["host"]: c for c in group["clients"]}
        for h in hosts:
            if h not in seen and by_host[h]["state"] in ("DONE", "ERROR"):
                seen[h] = now
        if victim is not None:
            if killed is None and hosts[victim] in seen:
                raise BenchError(f"{hosts[victim]} ended {by_host[hosts[victim]]['state']} "
                                 "before it could be killed")
            if killed is not None and "sent" not in killed:
                killed["sent"] = r["bytes_sent"]
        if r["phase"] == "finished":
            break
    if victim is not None and killed is None:
        raise BenchError(f"fault round {number} finished before the victim wrote half the image")
    started = r["started"]
    survivors = [h for i, h in enumerate(hosts) if i != victim]
    bad = [h for h in survivors if by_host[h]["state"] != "DONE"]
    if victim is not None and by_host[hosts[victim]]["state"] != "ERROR":
        bad.append(hosts[victim])
    if bad:
        reasons = "; ".join(f"{h}: {by_host[h]['state']} {by_host[h]['error']}" for h in bad)
        raise BenchError(f"fault round {number}: expected the survivors DONE and the killed client "
                         f"ERROR: {reasons}" + logs_of([lab.master] + clients))
    for i, p in enumerate(clients):
        if i == victim:
            p.popen.wait(10)
        else:
            reap(p)
    out = {
        "number": number,
        "wall": r["finished"] - started,
        "done": max(seen[h] for h in survivors) - started,  # the last survivor DONE
        "verified": 0,
    }
    if victim is not None:
        host = hosts[victim]
        want = st["images"][0]["sha256"]
        for h, d in zip(hosts, dests):
            if h != host:
                if sha256_file(d) != want:
                    raise BenchError(f"fault round {number}: {h} is DONE but {d} does not hold "
                                     "the image" + logs_of([lab.master] + clients))
                out["verified"] += 1
        out.update(
            killed=host,
            kill_at=killed["at"] - started,
            kill_sent=killed["sent"],
            error_at=seen[host] - started,
            error=by_host[host]["error"],
            heal=heal_summary(clients[victim - 1] if victim else None,
                              clients[victim + 1] if victim + 1 < len(clients) else None),
            refused_wait=refused_wait(clients[victim - 1]) if victim else 0.0,
        )
    return out


def refused_wait(prev: Proc) -> float:
    """Seconds the hop before the killed one slept because the next hop refused it."""
    return sum(float(line.rsplit("asking again in", 1)[1].split()[0])
               for line in prev.tail(200000).splitlines() if "asking again in" in line)


def heal_summary(prev: Optional[Proc], nxt: Optional[Proc]) -> str:
    """How the chain healed, from the logs: how long the hop before the killed one was
    told to ask again (the next hop still trusted its dead upstream), and how the hop
    after it got its missing bytes."""
    how = []
    if prev is not None:
        wait = refused_wait(prev)
        how.append(f"refused by the next live hop, slept {wait:.0f} s before asking again"
                   if wait else "taken by the next live hop at the first try")
    if nxt is None:
        how.append("the killed client was the last")
        return "; ".join(how)
    text = nxt.tail(200000)
    resumed = [line for line in text.splitlines() if "continuing at byte" in line]
    gaps = [line for line in text.splitlines() if "fetching stream bytes" in line]
    if not resumed:
        how.append("no resume in the next client's log")
        return "; ".join(how)
    at = resumed[0].split("continuing at byte", 1)[1].split()[0]
    if gaps:
        a, b = gaps[0].split("fetching stream bytes", 1)[1].split()[0].split("-")
        how.append(f"next resumed at byte {at}, {(int(b) - int(a)) / (1 << 20):.0f} MiB "
                   "gap-filled from the master")
    else:
        how.append(f"next resumed at byte {at} (replay from the sender's window)")
    return "; ".join(how)


def measure_fault(lab: Lab, image_dir: str, n: int, dests: List[str], size: int,
                  repeat: int) -> dict:
    """`repeat` sets of three rounds on one master: all n clients without a fault; all n
    with the middle one killed at mid-image; the n - 1 others alone without a fault (the
    survivors' chain, to tell the cost of healing from the CPU the killed hop frees)."""
    hosts = hosts_for(n)
    victim = (n - 1) // 2  # client 4 of 8, 2 of 3: in the middle
    others = [h for i, h in enumerate(hosts) if i != victim]
    other_dests = [d for i, d in enumerate(dests[:n]) if i != victim]
    lab.start_master(image_dir, hosts, FAULT_SETTINGS)
    normal, faulty, fewer = [], [], []
    tag = "  [fault, round {}/{}]".format
    for i in range(repeat):
        a = fault_round(lab, hosts, dests[:n], size, None)
        normal.append(a)
        print(f"{tag(i + 1, repeat)} no fault: all {n} DONE at +{a['done']:.2f} s "
              f"(round wall {a['wall']:.2f} s)", flush=True)
        b = fault_round(lab, hosts, dests[:n], size, victim)
        faulty.append(b)
        print(f"{tag(i + 1, repeat)} client {victim + 1} ({b['killed']}) killed at "
              f"+{b['kill_at']:.2f} s, on writing byte {size // 2} (master had sent "
              f"{b['kill_sent'] / (1 << 20):.0f} MiB): {n - 1} survivors DONE at "
              f"+{b['done']:.2f} s (ratio {b['done'] / a['done']:.2f}), {b['verified']} copies "
              f"re-hashed OK; killed one ERROR at +{b['error_at']:.2f} s; round wall "
              f"{b['wall']:.2f} s; client {victim}: {b['heal']}", flush=True)
        c = fault_round(lab, others, other_dests, size, None)
        fewer.append(c)
        print(f"{tag(i + 1, repeat)} no fault, the {n - 1} survivors alone: all DONE at "
              f"+{c['done']:.2f} s (round wall {c['wall']:.2f} s)", flush=True)
    lab.stop_master()
    return {
        "n": n,
        "victim": victim,
        "host": hosts[victim],
        "normal_done": median([a["done"] for a in normal]),
        "normal_wall": median([a["wall"] for a in normal]),
        "faulty_done": median([b["done"] for b in faulty]),
        "faulty_wall": median([b["wall"] for b in faulty]),
        "fewer_done": median([c["done"] for c in fewer]),
        "fewer_wall": median([c["wall"] for c in fewer]),
        "error_at": median([b["error_at"] for b in faulty]),
        "kill_at": median([b["kill_at"] for b in faulty]),
        "kill_sent": median([b["kill_sent"] for b in faulty]),
        "ratios": [b["done"] / a["done"] for a, b in zip(normal, faulty)],
        "errors": [b["error"] for b in faulty],
        "heals": [b["heal"] for b in faulty],
        "refused": sum(1 for b in faulty if b["refused_wait"]),
        "verified": min(b["verified"] for b in faulty),
    }


# -- reference figures -----------------------------------------------------------------


def sha256_seconds_per_gb(total: int = 1 << 30) -> float:
    """CPU seconds hashlib.sha256 needs per GB, fed 1 MiB pieces like a hop's writer.

    A small block hashed over and over: this process must stay small, see own_peak_rss_kb.
    """
    block = os.urandom(8 << 20)
    view = memoryview(block)
    sha = hashlib.sha256()
    done = 0
    t0 = time.process_time()
    while done < total:
        for i in range(0, len(block), RECORD_SIZE):
            sha.update(view[i : i + RECORD_SIZE])
        done += len(block)
    return (time.process_time() - t0) / (done / 1e9)


def floors_per_gb(where: str, total: int = 1 << 30) -> dict:
    """CPU seconds per GB of what a hop cannot avoid besides SHA-256, each alone in this
    process: receiving and sending over TCP on loopback (one thread each, RUSAGE_THREAD),
    and writing fresh pages of a new file in `where` in 1 MiB writes, as a hop does."""
    import resource
    import threading

    def thread_cpu() -> float:
        u = resource.getrusage(resource.RUSAGE_THREAD)
        return u.ru_utime + u.ru_stime

    block = bytearray(os.urandom(RECORD_SIZE))
    out = {}
    listener = socket.create_server(("127.0.0.1", 0))
    sender = socket.create_connection(listener.getsockname())
    receiver, _ = listener.accept()
    listener.close()

    def send() -> None:
        t0 = thread_cpu()
        for _ in range(total // RECORD_SIZE):
            sender.sendall(block)
        out["send"] = thread_cpu() - t0
        sender.close()

    thread = threading.Thread(target=send)
    t0 = thread_cpu()
    thread.start()
    view = memoryview(bytearray(RECORD_SIZE))
    while receiver.recv_into(view):
        pass
    out["recv"] = thread_cpu() - t0
    thread.join()
    receiver.close()
    path = os.path.join(where, "floor-write.tmp")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        t0 = thread_cpu()
        for _ in range(total // RECORD_SIZE):
            os.write(fd, block)
        out["write"] = thread_cpu() - t0
    finally:
        os.close(fd)
        os.unlink(path)
    return {k: v / (total / 1e9) for k, v in out.items()}


def idle_client_baseline() -> dict:
    """Peak RSS and CPU of a Python that merely imports the client: a hop at rest; and the
    hop's buffer defaults (HopConfig.buffers, .window), read there so this script stays small.

    VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec, so a child's
    ru_maxrss is never below its parent's peak (see own_peak_rss_kb).
    """
    code = (
        "import resource, thepusher.cli, thepusher.client.agent, thepusher.chain.hop, thepusher.chain.wire;"
        "u = resource.getrusage(resource.RUSAGE_SELF);"
        "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')];"
        "c = thepusher.chain.hop.HopConfig('', b'', thepusher.chain.wire.Expected('', 0, 0, ''));"
        "print(hwm[0] if hwm else u.ru_maxrss, u.ru_utime + u.ru_stime,"
        " c.buffers, getattr(c, 'window', 0))"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], env=ENV, check=True,
                             stdout=subprocess.PIPE, universal_newlines=True).stdout.split()
    except subprocess.CalledProcessError as e:
        raise BenchError(f"cannot import thepusher from {ROOT}: {e}") from None
    buffers, window = int(out[2]), int(out[3])
    window_records = -(-window // RECORD_SIZE)
    return {
        "rss_kb": int(out[0]),
        "cpu": float(out[1]),
        "buffers": buffers,
        "window_records": window_records,
        # BufferPool of a forwarding hop: buffers + replay window + 1 (hop.Hop.run)
        "pool_bytes": (buffers + window_records + 1) * (RECORD_SIZE + 16),
    }


def machine_cpu() -> Optional[dict]:
    """Busy and stolen CPU seconds of the whole machine so far (/proc/stat), None if unknown."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return {"busy": (user + nice + system + irq + softirq) / tick, "steal": steal / tick}


def cpu_report(cpu0: dict, cpu1: dict) -> str:
    """The machine's CPU between two machine_cpu() readings, and how much of it was ours."""
    busy, ours = cpu1["busy"] - cpu0["busy"], own_cpu()
    return (f"machine CPU busy {busy:.0f} s during the run, {ours:.0f} s of it in the "
            f"benchmark's processes, {max(busy - ours, 0):.0f} s elsewhere (other processes, "
            f"softirq); {cpu1['steal'] - cpu0['steal']:.1f} s stolen by the hypervisor")


def own_cpu() -> float:
    """CPU seconds of this script and every child it has reaped (master, clients, helpers)."""
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        u = resource.getrusage(who)
        total += u.ru_utime + u.ru_stime
    return total


def own_peak_rss_kb() -> int:
    """This script's peak RSS: the floor under every max_rss_kb its children report."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# -- report ------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_report(args, size: int, chain: List[dict], relay: List[dict], fault: Optional[dict],
                 sha_s: float, floors: dict, base: dict, where: str, load: float) -> None:
    gb = size / 1e9
    mib = 1 << 20
    line = "=" * 112
    print()
    print(line)
    print(f"thepusher benchmark: {os.cpu_count()} CPUs ({cpu_model()}), Python "
          f"{platform.python_version()}, {platform.system()} {platform.release()}; "
          f"load average {load:.2f} before the run")
    print(f"image: {size / mib:.0f} MiB of random data in {where}; every figure is the median "
          f"of {args.repeat} round(s); MB = 1e6 B, GB = 1e9 B")
    print("destinations: each file was pre-created at the image's size (zeros written once) "
          "before the measured rounds, so")
    print("  a round overwrites existing tmpfs pages instead of allocating fresh ones "
          "(a kernel cost real disks do not have)")
    print("wall   = the master's round duration, history[-1] finished - started "
          "(arm + stream + final reports)")
    print("stream = from the round's phase turning 'streaming' (polled every 20 ms) to finished")
    print("hop CPU s/GB = cpu_seconds each client reported (user+sys of the whole process, "
          f"incl. ~{base['cpu']:.2f} s start-up) / image GB;")
    print("  med/max over the hops of a round, sys = kernel part (median hop, from wait4); "
          "master = master CPU during the stream phase")
    print()
    print("1. chain scaling: master -> c1 -> ... -> cN on loopback (127.0.0.11, ...), "
          "every client writes a file")
    head = (f"{'N':>3} {'wall s':>7} {'stream s':>9} {'MB/s/client':>12} {'(stream)':>9} "
            f"{'T(N)/T(1)':>10} {'(stream)':>9} {'hop CPU s/GB med':>17} {'max':>5} {'sys':>5} "
            f"{'peak RSS MiB':>13} {'master s/GB':>12}")
    print(head)
    print("-" * len(head))
    first = chain[0] if chain else None
    for row in chain:
        print(f"{row['n']:>3} {row['wall']:>7.2f} {row['stream']:>9.2f} "
              f"{size / row['wall'] / 1e6:>12.0f} {size / row['stream'] / 1e6:>9.0f} "
              f"{row['wall'] / first['wall']:>10.2f} {row['stream'] / first['stream']:>9.2f} "
              f"{row['cpu_med']:>17.2f} {row['cpu_max']:>5.2f} {row['sys_med']:>5.2f} "
              f"{row['rss_kb'] / 1024:>13.1f} {row['master_cpu']:>12.2f}")
    if first and first["n"] != 1:
        print(f"(T(N)/T(1) is relative to N={first['n']}, the smallest N measured)")
    print()
    print("2. relay: every hop writes /dev/null (the data plane alone: receive, hash, forward)")
    head = (f"{'N':>3} {'wall s':>7} {'stream s':>9} {'GB/s (wall)':>12} {'(stream)':>9} "
            f"{'hop CPU s/GB med':>17} {'max':>5} {'sys':>5} {'peak RSS MiB':>13} "
            f"{'master s/GB':>12}")
    print(head)
    print("-" * len(head))
    for row in relay:
        print(f"{row['n']:>3} {row['wall']:>7.2f} {row['stream']:>9.2f} {gb / row['wall']:>12.2f} "
              f"{gb / row['stream']:>9.2f} {row['cpu_med']:>17.2f} {row['cpu_max']:>5.2f} "
              f"{row['sys_med']:>5.2f} {row['rss_kb'] / 1024:>13.1f} {row['master_cpu']:>12.2f}")
    print(f"reference: hashlib.sha256 alone takes {sha_s:.2f} CPU s/GB here (1 MiB pieces); "
          "every hop hashes all it writes,")
    print("  so that is a floor on a hop's CPU per GB. The other floors, each alone: TCP "
          f"receive {floors['recv']:.2f}, send {floors['send']:.2f}, writing fresh "
          f"tmpfs pages {floors['write']:.2f}:")
    print(f"  a middle hop writing a file cannot go below "
          f"{sha_s + floors['recv'] + floors['send'] + floors['write']:.2f} CPU s/GB, "
          f"the last one {sha_s + floors['recv'] + floors['write']:.2f}; relaying to /dev/null "
          f"{sha_s + floors['recv'] + floors['send']:.2f} and {sha_s + floors['recv']:.2f}")
    print()
    if fault:
        print_fault(fault, size)
        print()
    print("4. targets")
    rows = chain + relay
    one = relay[0] if relay else None
    if one:
        relay_gbs = gb / one["stream"]
        print(f"  relay >= {TARGET_RELAY_GBS:.1f} GB/s to /dev/null (one hop, stream phase): "
              f"{relay_gbs:.2f} GB/s (whole round incl. arming: {gb / one['wall']:.2f})"
              f"  {verdict(relay_gbs >= TARGET_RELAY_GBS)}")
    worst_cpu = max(r["cpu_max"] for r in rows)
    best_cpu = min(r["cpu_med"] for r in rows)
    print(f"  CPU per hop <= {TARGET_CPU_S_PER_GB:.1f} s/GB: {best_cpu:.2f} (best median) to "
          f"{worst_cpu:.2f} (worst hop); SHA-256 alone is {sha_s:.2f}"
          f"  {verdict(worst_cpu <= TARGET_CPU_S_PER_GB)}")
    peak = max(r["rss_kb"] for r in rows) * 1024
    pool = base["pool_bytes"]
    budget = base["rss_kb"] * 1024 + pool + RSS_ALLOWANCE
    print(f"  memory bounded by the buffer pool ({base['buffers']} in flight + "
          f"{base['window_records']} replay window + 1, x 1 MiB): peak RSS {peak / mib:.1f} MiB")
    print(f"    <= idle client {base['rss_kb'] / 1024:.1f} + pool {pool / mib:.0f} + "
          f"{RSS_ALLOWANCE / mib:.0f} allowance = {budget / mib:.1f} MiB"
          f"  {verdict(peak <= budget)}")
    if fault:
        ratio = fault["faulty_done"] / fault["normal_done"]
        print(f"  1 of {fault['n']} clients killed at mid-image: the other {fault['n'] - 1} DONE in "
              f"<= {TARGET_FAULT_RATIO:.1f}x the time of a round without faults: "
              f"{fault['faulty_done']:.2f} s / {fault['normal_done']:.2f} s = {ratio:.2f}"
              f"  {verdict(ratio <= TARGET_FAULT_RATIO)}")
    own = own_peak_rss_kb()
    note = "" if own * 1024 < peak else " -- at or above the hops' figure, so RSS is not measurable!"
    print(f"  (this script's own peak RSS is {own / 1024:.1f} MiB: Linux carries ru_maxrss across "
          f"exec, so no hop can report less{note})")
    print(line)


def print_fault(f: dict, size: int) -> None:
    n, mib = f["n"], 1 << 20
    print(f"3. fault: 1 of {n} clients killed at mid-image (client {f['victim'] + 1}, {f['host']}, "
          "kill -9 as soon as its destination")
    print(f"   held data at the image's midpoint, checked every 5 ms; the master had sent "
          f"{f['kill_sent'] / mib:.0f} of {size / mib:.0f} MiB then, median).")
    print(f"   Master with report_timeout = 5; {len(f['ratios'])} set(s) of three rounds: no "
          f"fault, the kill, and the {n - 1} survivors alone.")
    print("   'all DONE' = from the round's start (the master's 'started') until the last client "
          "that can finish was seen")
    print(f"   DONE (status polled every {FAULT_POLL * 1000:.0f} ms in every kind of round). "
          "'round wall' = the master's finished - started:")
    print("   with the kill it also waits for the killed client's ERROR (which here comes with the "
          "skipping hop's next report).")
    head = (f"{'round':<24} {'all DONE s':>11} {'round wall s':>13} {'killed ERROR at s':>18} "
            f"{'ratio':>6}")
    print("   " + head)
    print("   " + "-" * len(head))
    rows = [
        (f"{n} clients, no fault", f["normal_done"], f["normal_wall"], "-"),
        (f"{n} clients, 1 killed", f["faulty_done"], f["faulty_wall"], f"{f['error_at']:.2f}"),
        (f"{n - 1} clients, no fault", f["fewer_done"], f["fewer_wall"], "-"),
    ]
    for name, done, wall, err in rows:
        print(f"   {name:<24} {done:>11.2f} {wall:>13.2f} {err:>18} "
              f"{done / f['normal_done']:>6.2f}")
    print(f"   per set: ratio {', '.join(f'{r:.2f}' for r in f['ratios'])}; healing cost over the "
          f"{n - 1}-client round: {f['faulty_done'] - f['fewer_done']:+.2f} s (medians)")
    print(f"   every survivor's copy re-hashed by the bench: {f['verified']}/{n - 1} match the "
          "image (destinations zeroed before each round)")
    print(f"   the hop before the killed one was refused by the next live hop (which had not yet "
          f"seen its dead upstream's EOF) and slept before asking again in {f['refused']} of "
          f"{len(f['ratios'])} killed round(s)")
    print(f"   killed client's reason (set 1): {f['errors'][0]}")
    for i, h in enumerate(f["heals"]):
        print(f"   set {i + 1}: client {f['victim']}: {h}")


# -- main --------------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=None,
                        help="image size, e.g. 256M, 1G (default 1G; 256M with --quick)")
    parser.add_argument("--clients", type=parse_clients, default=[1, 2, 4, 8],
                        help="chain lengths to measure (default 1,2,4,8)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="rounds per chain length; medians are quoted (default 3; 1 with --quick)")
    parser.add_argument("--fault-clients", type=int, default=8, metavar="N",
                        help="chain length of the fault section: N clients, a middle one killed "
                             "at mid-image (default 8; 0 skips the section)")
    parser.add_argument("--quick", action="store_true", help="fast check: --size 256M --repeat 1")
    args = parser.parse_args(argv)
    if args.fault_clients and not 3 <= args.fault_clients <= 200:
        parser.error("--fault-clients must be 0 or from 3 to 200")
    size = args.size or ((256 << 20) if args.quick else (1 << 30))
    args.repeat = args.repeat or (1 if args.quick else 3)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)

    base_dir = fast_dir()
    where = "/dev/shm (tmpfs)" if base_dir else f"{tempfile.gettempdir()} (no /dev/shm)"
    max_n = max(args.clients + [args.fault_clients])
    workdir = tempfile.mkdtemp(prefix="thepusher-bench-", dir=base_dir)
    lab = Lab(workdir)
    started = time.monotonic()
    load = os.getloadavg()[0]
    cpu0 = machine_cpu()
    try:
        need = size * (1 + max_n) + (64 << 20)
        free = shutil.disk_usage(workdir).free
        if free < need:
            raise BenchError(f"{workdir} has {free >> 20} MiB free, the run needs {need >> 20} MiB "
                             "(image + one destination per client); try a smaller --size")
        image_dir = os.path.join(workdir, "images")
        disk_dir = os.path.join(workdir, "disks")
        os.makedirs(image_dir)
        os.makedirs(disk_dir)
        print(f"bench: work dir {workdir}; {size >> 20} MiB image, chains {args.clients}, "
              f"{args.repeat} round(s) each", flush=True)
        print("bench: measuring sha256 and an idle client ...", flush=True)
        sha_s = sha256_seconds_per_gb()
        floors = floors_per_gb(workdir)
        base = idle_client_baseline()
        print("bench: writing the random image and pre-creating "
              f"{max_n} destination file(s) at the image's size ...", flush=True)
        write_random(os.path.join(image_dir, "disk.img"), size)
        dests = [os.path.join(disk_dir, f"disk-{i + 1}.img") for i in range(max_n)]
        for d in dests:
            write_zeros(d, size)

        chain = []
        for n in args.clients:
            print(f"bench: chain of {n} writing files", flush=True)
            chain.append(measure(lab, image_dir, hosts_for(n), dests[:n], size, args.repeat,
                                 f"N={n}"))
        relay = []
        for n in (1, 2):
            print(f"bench: relay, {n} hop(s) writing /dev/null", flush=True)
            relay.append(measure(lab, image_dir, hosts_for(n), ["/dev/null"] * n, size,
                                 args.repeat, f"relay N={n}"))
        fault = None
        if args.fault_clients:
            n = args.fault_clients
            print(f"bench: fault, chain of {n} writing files, client {(n - 1) // 2 + 1} killed at "
                  "mid-image "
                  f"(per set: {n} without a fault, {n} with the kill, the {n - 1} others alone)",
                  flush=True)
            fault = measure_fault(lab, image_dir, n, dests, size, args.repeat)
        print_report(args, size, chain, relay, fault, sha_s, floors, base, where, load)
        lab.close()  # reap the last master so its CPU is counted as ours
        cpu1 = machine_cpu()
        print(f"bench: total {time.monotonic() - started:.0f} s; load average {load:.2f} before")
        if cpu0 and cpu1:
            print(f"bench: {cpu_report(cpu0, cpu1)}")
        return 0
    except BenchError as e:
        print(f"\nbench: ABORTED: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbench: interrupted", file=sys.stderr)
        return 130
    finally:
        lab.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
