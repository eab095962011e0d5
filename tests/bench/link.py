#!/usr/bin/env python3
"""Benchmark thepusher over emulated links: a network namespace per machine, shaped veths.

A script (`make bench-link`, or `python3 tests/bench/link.py --help`) and a small module
other bench modes import (`from link import LinkLab, run_round`). Root and Linux
only (`ip`, `tc`); stdlib only; runs under Python 3.9.

Network: one namespace per machine on one bridge, every veth shaped to the link rate
(the master's port may have a rate of its own, every port a one-way delay): LinkLab in
tests/support/netlab.py, which says how.

Modes: scaling (one chain of each N), chains (N clients in K chains), images (one client,
each image), room (`make bench-room`: up to 200 clients on slow links writing /dev/null,
5 % of them SIGKILLed at random moments; docs/benchmarks.md "A room of 200").

A round is real: `python3 thepusher.pyz master -S IMAGE_DIR -l 10.99.0.1:8080` in the
master's namespace with a group of the clients' addresses (start = "manual"), and
`python3 thepusher.pyz client -p 10.99.0.1:8080 --bind IP` in each client's namespace,
writing to /dev/shm. The round is started through the API once every client is WAIT;
the script reaches the master's API through a socket made inside the master's namespace.

Everything this makes (namespaces, the veths and the bridge in them, processes, files in
/dev/shm named tpb<PID>-*) is removed on exit, on an exception, on SIGINT/SIGTERM/SIGHUP;
and at the start of a run, what earlier runs that are no longer alive left behind.

Units: MB = 10^6 bytes, GB = 10^9 bytes, Mbit = 10^6 bits, MiB = 2^20 bytes.
"""

import argparse
import contextlib
import os
import platform
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_images  # noqa: E402 - beside this script, also when run as a file
from bench import (  # noqa: E402
    MAX_CLIENTS, cpu_report, cpu_ticks, machine_cpu, median, parse_clients, parse_size, tail_of,
)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from tests.support.netlab import (  # noqa: E402
    NAME_PREFIX, SHM, TCP_PAYLOAD, WIRE_FACTOR, LinkLab, delay_ms, link_queue, raise_interrupt,
    rate_bits, rate_text, remove_leftovers, sh,
)
from tests.support.netlab import LabError as BenchError  # noqa: E402 - what stops a run
from thepusher.demo import make_image  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYZ = os.path.join(ROOT, "thepusher.pyz")
API_PORT = 8080
MASTER_NICE = -20  # the master's nice value in a large room (run_round)
COMPRESSION_OF_SUFFIX = {".gz": "GZIP", ".bz2": "BZ2", ".xz": "XZ"}


# -- one round -------------------------------------------------------------------------


def thepusher_argv(python: Optional[str] = None, pyz: Optional[str] = PYZ) -> List[str]:
    """How to run thepusher: `python3 thepusher.pyz`, or with pyz=None the source tree
    (`python3 -m thepusher`, PYTHONPATH set by child_env)."""
    python = python or sys.executable
    return [python, pyz] if pyz else [python, "-m", "thepusher"]


def child_env(pyz: Optional[str] = PYZ) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if not pyz:
        env["PYTHONPATH"] = ROOT
    return env


def compression_of(path: str) -> str:
    return COMPRESSION_OF_SUFFIX.get(os.path.splitext(path)[1].lower(), "NONE")


def _write_config(image_dir: str, filename: str, compression: str, hosts: List[str],
                  chains: int = 1) -> None:
    """As tests/bench/bench.py: one image, one group of these hosts in this order (in `chains`
    chains), started by the bench (start = "manual") once every host is WAIT."""
    quoted = ", ".join(f'"{h}"' for h in hosts)
    with open(os.path.join(image_dir, "thePusher-config.hcl"), "w") as f:
        f.write(f'image "img" {{\n  filename = "{filename}"\n  destination = "/dev/null"\n'
                f'  compression = "{compression}"\n}}\n'
                f'clientgroup "room" {{\n  image = "img"\n  hosts = [{quoted}]\n'
                f'  start = "manual"\n  chains = {chains}\n}}\n')


class Sampler:
    """The machine's memory in use (MemTotal - MemAvailable) every `every` s, in a thread:
    `peak` and `first` in bytes."""

    def __init__(self, every: float = 0.5) -> None:
        self.every = every
        self.first = self.peak = mem_in_use() or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, mem_in_use() or 0)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, mem_in_use() or 0)
        return self.peak


def mem_in_use() -> Optional[int]:
    """MemTotal - MemAvailable in bytes (/proc/meminfo), None if unknown."""
    total, avail = None, _mem_available()
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) * 1024
    return total - avail if total is not None and avail is not None else None


def proc_hwm_kb(pid: int) -> Optional[int]:
    """A live process's peak RSS (VmHWM, KiB), None if unknown."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    return None


def run_round(lab: LinkLab, image_path: str, compression: str = "NONE",
              clients: Optional[int] = None, dest: str = "shm", python: Optional[str] = None,
              pyz: Optional[str] = PYZ, timeout: Optional[float] = None,
              keep_logs: Optional[str] = None, chains: int = 1,
              kills: Sequence[Tuple[int, float]] = (), strict: bool = True,
              probe: Optional[Tuple[int, int]] = None) -> dict:
    """One real round over the lab's links: master + `clients` (default all) client
    processes, started fresh and stopped at the end. Raises BenchError unless every
    client ends DONE (each verified the SHA-256 of what it wrote) and exits 0.

    `dest`: "shm" (a file per client in /dev/shm that is there before the round, as a
    disk is: LinkLab.disks) or "null".
    `chains`: the group's `chains` (the master feeds that many chains at once).
    `kills`: (client index, seconds after the stream started): that client gets SIGKILL
    then (its whole process group); it is expected to end ERROR, everyone else DONE.
    `strict` False: a survivor not DONE or not exiting 0 is listed in `problems` (with
    the logs kept in `keep_logs`) instead of raising. `probe`: two client indices whose
    UDP round trip is sampled while the stream flows (LinkLab.rtt_probe): `rtt_ms`.
    Returns: n, stream_s (phase 'streaming' seen -> master's finished), wall_s (master's
    round: finished - started), content_bytes (what each client wrote), image_bytes (the
    file the master streams), goodput_mb_s (content MB / stream s, per client: every
    client receives all of it), goodput_per_link (goodput over the rate in MB/s of the
    slowest port, the master's counted as shared by its chains), cpu_s (each surviving
    hop's cpu_seconds as reported with DONE), cpu_s_per_gb (per hop, over content GB),
    states, chain, chains, round; and reg_wait_s / reg_start_s (client processes started
    -> all WAIT seen / the master's round started), master_cpu_s (the master's CPU from
    the start call to the round's end), master_hwm_kb (its VmHWM), rss_kb (host ->
    max_rss_kb of each DONE client), cpu_start_s (each hop's CPU seconds when the round was
    started: its start-up and registration), last_hops (the last host of each chain), killed,
    survivors, survivors_done, problems, mem_peak / mem_before (machine memory in use,
    bytes), machine_share (the machine's busy CPU over stream s x CPUs), records (the
    record size the clients logged), rtt_ms.
    """
    n = lab.n if clients is None else clients
    if not 1 <= n <= lab.n:
        raise ValueError(f"clients must be from 1 to {lab.n}")
    hosts = lab.client_ips[:n]
    victims = {i for i, _ in kills}
    if not victims <= set(range(n)):
        raise ValueError(f"kills name clients outside 0..{n - 1}")
    large = n > 16  # poll a large room's status less often: it is a large answer
    image_path = os.path.abspath(image_path)
    image_bytes = os.path.getsize(image_path)
    work = tempfile.mkdtemp(prefix=f"{NAME_PREFIX}{os.getpid()}-round-", dir=SHM)
    image_dir = os.path.join(work, "images")
    logs = keep_logs or os.path.join(work, "logs")
    os.makedirs(image_dir)
    os.makedirs(logs, exist_ok=True)
    filename = os.path.basename(image_path)
    try:
        os.link(image_path, os.path.join(image_dir, filename))
    except OSError:
        os.symlink(image_path, os.path.join(image_dir, filename))
    if os.path.exists(image_path + ".bmap"):  # its free ranges travel as FREE records
        try:
            os.link(image_path + ".bmap", os.path.join(image_dir, filename + ".bmap"))
        except OSError:
            os.symlink(image_path + ".bmap", os.path.join(image_dir, filename + ".bmap"))
    # The master's digest sidecar (valid while the image is unchanged) is kept beside the
    # image between rounds, so a 1 GiB image is hashed once, not once per round.
    sidecar = image_path + ".digest.json"
    if os.path.exists(sidecar):
        shutil.copy(sidecar, image_dir)
    _write_config(image_dir, filename, compression, hosts, chains)
    if dest not in ("shm", "null"):
        raise ValueError("dest must be 'shm' or 'null'")
    cmd, env = thepusher_argv(python, pyz), child_env(pyz)
    master_log = os.path.join(logs, "master.log")
    procs: List[Tuple[str, subprocess.Popen, str]] = []
    sampler: Optional[Sampler] = None
    rtt = None

    def status() -> dict:
        try:
            code, body = lab.http(lab.master_ns, "GET", lab.master_ip, API_PORT,
                                  "/api/status", timeout=30)
        except socket.timeout:
            raise BenchError("the master did not answer GET /api/status within 30 s"
                             + logs_of(procs)) from None
        if code != 200:
            raise BenchError(f"GET /api/status: {code} {body}")
        return body

    def logs_of(which: List[Tuple[str, subprocess.Popen, str]]) -> str:
        if len(which) > 12:  # a large room: the master and the last few, the rest on disk
            shown = which[:1] + which[-4:]
            return "".join(f"\n--- {name} ({path}) ---\n{tail_of(path)}"
                           for name, _, path in shown) + f"\n(all logs in {logs})"
        return "".join(f"\n--- {name} ({path}) ---\n{tail_of(path)}" for name, _, path in which)

    try:
        # In a large room the master, a machine of its own in a real one, runs at nice
        # MASTER_NICE, as does the bench (mode_room), and the clients at 0: the master's
        # answers and the bench's clock are not late because 200 clients share 2 CPUs.
        # `ip netns exec` and `nice` exec in place: the pids are the programs'.
        own = os.getpriority(os.PRIO_PROCESS, 0)
        boost = ["nice", "-n", str(MASTER_NICE - own)] if large and MASTER_NICE < own else []
        plain = ["nice", "-n", str(-own)] if own < 0 else []
        master = lab.popen(lab.master_ns, boost + cmd + ["-v", "master", "-S", image_dir, "-l",
                                                         f"{lab.master_ip}:{API_PORT}"],
                           log=master_log, env=env)
        procs.append(("master", master, master_log))
        deadline = time.monotonic() + 120 + image_bytes / 100e6  # it hashes the image first
        images: list = []
        while True:
            if master.poll() is not None:
                raise BenchError("the master exited" + logs_of(procs))
            if time.monotonic() > deadline:
                raise BenchError(f"the master was not ready in time: {images}" + logs_of(procs))
            try:
                images = status().get("images", [])
            except OSError:
                time.sleep(0.1)
                continue
            states = [i.get("state") for i in images]
            if states and all(s == "ready" for s in states):
                break
            if "error" in states:
                raise BenchError(f"the master cannot use the image: {images}")
            time.sleep(0.1)
        content_bytes = images[0].get("content_size") or None
        dests = lab.disks(n, content_bytes or image_bytes) if dest == "shm" else ["/dev/null"] * n
        made = os.path.join(image_dir, filename + ".digest.json")
        if not os.path.exists(sidecar) and os.path.exists(made):
            shutil.copy(made, sidecar)

        sampler = Sampler()
        clients_started = time.time()
        for i, (ns, host, d) in enumerate(zip(lab.client_ns, hosts, dests)):
            path = os.path.join(logs, f"client-c{i + 1}.log")
            p = lab.popen(ns, plain + cmd + ["-v", "client", "-p", f"{lab.master_ip}:{API_PORT}",
                                             "--bind", host, "--destination", d],
                          log=path, env=env)
            procs.append((f"client c{i + 1} {host}", p, path))
        wait_limit = 60 + 0.5 * n
        deadline = time.monotonic() + wait_limit
        while True:
            for name, p, _ in procs:
                if p.poll() is not None:
                    raise BenchError(f"{name} exited before the round" + logs_of(procs))
            if time.monotonic() > deadline:
                raise BenchError(f"{n} clients not all WAIT after {wait_limit:.0f} s"
                                 + logs_of(procs))
            by_host = {c["host"]: c["state"] for c in status()["groups"][0]["clients"]}
            if all(by_host.get(h) == "WAIT" for h in hosts):
                break
            time.sleep(0.2 if large else 0.02)
        all_wait = time.time()
        cpu_at_wait = {h: cpu_ticks(p.pid) for h, (_, p, _) in zip(hosts, procs[1:])}
        cpu_start = [cpu_ticks(p.pid) for _, p, _ in procs[1:]]
        master_cpu0 = cpu_ticks(master.pid)
        code, answer = lab.http(lab.master_ns, "POST", lab.master_ip, API_PORT,
                                "/api/groups/room/start", {})
        if code != 200:
            raise BenchError(f"POST /api/groups/room/start: {code} {answer}")
        if answer.get("chain") != hosts or len(answer.get("chains", [])) != min(chains, n):
            raise BenchError(f"round started with chains {answer.get('chains')}, expected "
                             f"{hosts} in {chains}")
        number = answer["round"]

        link_mb_s = min(lab.rate_bps, lab.master_rate_bps / min(chains, n)) / 8 / 1e6
        if timeout is None:  # 10x the time of a link-limited round, at least 2 minutes
            timeout = 120 + 10 * (content_bytes or image_bytes) / (link_mb_s * 1e6)
        deadline = time.monotonic() + timeout
        seen_streaming: Optional[float] = None
        machine0: Optional[dict] = None
        cpu_at_stream: Dict[str, Optional[float]] = {}
        pending = sorted(kills, key=lambda k: k[1])
        killed: List[dict] = []
        last_by_host: Dict[str, dict] = {}
        while True:
            if time.monotonic() > deadline:
                raise BenchError(f"round {number} ({n} clients) not finished after "
                                 f"{timeout:.0f} s" + logs_of(procs))
            if master.poll() is not None:
                raise BenchError(f"the master died during the round (exit status "
                                 f"{master.returncode})" + logs_of(procs))
            while pending and seen_streaming is not None \
                    and time.time() - seen_streaming >= pending[0][1]:
                i, at = pending.pop(0)
                _, victim, _ = procs[1 + i]
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(victim.pid, signal.SIGKILL)
                last = last_by_host.get(hosts[i], {})
                killed.append({"index": i, "host": hosts[i], "planned": at,
                               "at": time.time() - seen_streaming,
                               "bytes_done": last.get("bytes_done"),
                               "state": last.get("state")})
            st = status()
            if st["history"] and st["history"][-1]["number"] >= number:
                break
            r = st["groups"][0]["round"]
            if seen_streaming is None and r and r["number"] == number \
                    and r["phase"] == "streaming":
                seen_streaming = time.time()
                machine0 = machine_cpu()
                cpu_at_stream = {h: cpu_ticks(p.pid) for h, (_, p, _) in zip(hosts, procs[1:])}
                if probe is not None:
                    rtt = lab.rtt_probe(*probe).start()
            last_by_host = {c["host"]: c for c in st["groups"][0]["clients"]}
            wait = (0.05 if large else 0.005) if seen_streaming is None else \
                (0.5 if large else 0.1)
            if pending and seen_streaming is not None:
                wait = max(0.0, min(wait, seen_streaming + pending[0][1] - time.time()))
            time.sleep(wait)
        machine1 = machine_cpu()
        master_cpu1 = cpu_ticks(master.pid)
        master_hwm = proc_hwm_kb(master.pid)
        rtt_ms = rtt.stop() if rtt is not None else []
        rtt = None
        rnd = st["history"][-1]
        by_host = {c["host"]: c for c in st["groups"][0]["clients"]}
        killed_hosts = {k["host"] for k in killed}
        survivors = [h for h in hosts if h not in killed_hosts]
        problems = []
        for h in survivors:
            if by_host[h]["state"] != "DONE":
                problems.append(f"{h} (c{hosts.index(h) + 1}): {by_host[h]['state']} "
                                f"{by_host[h].get('error')}")
        for k in killed:
            k["end"] = by_host[k["host"]]["state"]
            k["error"] = by_host[k["host"]].get("error", "")
        if problems and strict:
            raise BenchError(f"round {number} with {n} clients: not every client DONE: "
                             + "; ".join(problems) + logs_of(procs))
        for i, (name, p, _) in enumerate(procs[1:]):
            if hosts[i] in killed_hosts:
                p.wait(10)
                continue
            try:
                code = p.wait(30)
            except subprocess.TimeoutExpired:
                problems.append(f"{name} still running 30 s after the round")
                if strict:
                    raise BenchError(f"{name} still running 30 s after DONE"
                                     + logs_of(procs)) from None
                continue
            if code != 0:
                problems.append(f"{name} exited with {code}")
                if strict:
                    raise BenchError(f"{name} exited with {code} after DONE" + logs_of(procs))
        if content_bytes is None:
            sizes = [os.path.getsize(d) for d in dests if d != "/dev/null"]
            content_bytes = max(sizes) if sizes else image_bytes
        done = [h for h in survivors if by_host[h]["state"] == "DONE"]
        cpu = [by_host[h].get("cpu_seconds") for h in done]
        if None in cpu:
            raise BenchError(f"a client reported no cpu_seconds: {by_host}")
        stream = rnd["finished"] - seen_streaming if seen_streaming else float("nan")
        goodput = content_bytes / stream / 1e6
        gb = content_bytes / 1e9
        ncpu = os.cpu_count() or 1
        busy = machine1["busy"] - machine0["busy"] if machine0 and machine1 else float("nan")
        mem_peak = sampler.stop()
        # the clients' CPU in the stream alone: what they reported with DONE, less what they
        # had used when the stream started (start-up, registration, waiting)
        in_stream = [by_host[h]["cpu_seconds"] - cpu_at_stream[h] for h in done
                     if cpu_at_stream.get(h) is not None]
        at_wait = [c for c in cpu_at_wait.values() if c is not None]
        return {
            "n": n,
            "round": number,
            "chain": answer["chain"],
            "chains": answer["chains"],
            "stream_s": stream,
            "wall_s": rnd["finished"] - rnd["started"],
            "content_bytes": content_bytes,
            "image_bytes": image_bytes,
            "goodput_mb_s": goodput,
            "goodput_per_link": goodput / link_mb_s,
            "link_mb_s": link_mb_s,
            "cpu_s": cpu,
            "cpu_s_per_gb": [c / gb for c in cpu],
            "cpu_s_per_gb_med": median(cpu) / gb if cpu else float("nan"),
            "cpu_s_per_gb_max": max(cpu) / gb if cpu else float("nan"),
            "cpu_start_s": cpu_start,
            # the clients' CPU over the machine's during the stream: near 1, the CPUs (not
            # the links) set the pace, as for long chains on a 2-CPU machine
            "cpu_share": sum(cpu) / stream / ncpu,
            "machine_share": busy / stream / ncpu,
            "stream_cpu_share": sum(in_stream) / stream / ncpu if in_stream else float("nan"),
            "stream_cpu_s_per_gb": [c / gb for c in in_stream],
            "startup_cpu_s": median(at_wait) if at_wait else float("nan"),
            "states": {h: by_host[h]["state"] for h in hosts},
            "all_done": not problems and len(done) == n,
            "reg_wait_s": all_wait - clients_started,
            "reg_start_s": rnd["started"] - clients_started,
            "master_cpu_s": (master_cpu1 - master_cpu0
                             if master_cpu0 is not None and master_cpu1 is not None
                             else float("nan")),
            "master_hwm_kb": master_hwm,
            "rss_kb": {h: by_host[h].get("max_rss_kb") for h in done},
            "last_hops": [c[-1] for c in answer["chains"]],
            "killed": killed,
            "survivors": len(survivors),
            "survivors_done": len(done),
            "problems": problems,
            "mem_peak": mem_peak,
            "mem_before": sampler.first,
            "records": _record_size(logs, n),
            "rtt_ms": rtt_ms,
            "logs": logs,
        }
    finally:
        if rtt is not None:
            rtt.stop()
        if sampler is not None:
            sampler.stop()
        for _, p, _ in reversed(procs):
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        for _, p, _ in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
            with contextlib.suppress(ValueError):
                lab.procs.remove(p)
        shutil.rmtree(work, ignore_errors=True)


def _record_size(logs: str, n: int) -> Optional[int]:
    """The record size in bytes the last client logged ('... in records of K KiB')."""
    text = tail_of(os.path.join(logs, f"client-c{n}.log"), 1 << 20)
    m = re.search(r"in records of (\d+) KiB", text)
    return int(m.group(1)) << 10 if m else None


# -- the CLI ---------------------------------------------------------------------------


def _mem_available() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_room(need: int) -> None:
    free = shutil.disk_usage(SHM).free
    avail = _mem_available()
    room = min(free, avail) if avail is not None else free
    if room < need + (1 << 30):
        raise BenchError(f"{SHM} has {free >> 20} MiB free and {(avail or 0) >> 20} MiB of memory "
                         f"are available; the run needs {need >> 20} MiB + 1 GiB to spare "
                         "(the image, a destination per client, 64 MiB per client of --mode "
                         "room): use --dest null or a smaller --size")


def median_of(rounds: List[dict], key: str) -> float:
    return median([r[key] for r in rounds])


def repeat_rounds(args, lab: LinkLab, image: str, what: str, compression: str = "NONE",
                  clients: Optional[int] = None, chains: int = 1) -> List[dict]:
    """--repeat rounds of one configuration, a line each as it ends."""
    out = []
    for i in range(args.repeat):
        r = run_round(lab, image, compression, clients=clients, dest=args.dest, pyz=args.pyz,
                      chains=chains)
        out.append(r)
        print(f"  [{what}, round {i + 1}/{args.repeat}] stream {r['stream_s']:.2f} s, wall "
              f"{r['wall_s']:.2f} s, {r['goodput_mb_s']:.1f} MB/s of content per client "
              f"({r['goodput_per_link']:.3f} of the link), hop CPU "
              f"{r['cpu_s_per_gb_med']:.2f}/{r['cpu_s_per_gb_max']:.2f} s/GB med/max, "
              f"all {r['n']} DONE", flush=True)
    return out


def _source_note(pyz: Optional[str]) -> str:
    try:
        head = sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], check=False).strip()
        dirty = sh(["git", "-C", ROOT, "status", "--porcelain", "--", "thepusher"],
                    check=False).strip()
    except (OSError, subprocess.SubprocessError):
        head, dirty = "", ""
    code = f"commit {head or '?'}{' + uncommitted changes in thepusher/' if dirty else ''}"
    if not pyz:
        return f"thepusher from the source tree {ROOT} ({code})"
    if os.path.abspath(pyz) != PYZ:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(pyz)))
        return f"{pyz} (built {stamp}; this tree is at {code})"
    note = f"{pyz} ({code})"
    newest = 0.0
    for d, _, files in os.walk(os.path.join(ROOT, "thepusher")):
        for name in files:
            if name.endswith(".py"):
                newest = max(newest, os.path.getmtime(os.path.join(d, name)))
    if newest > os.path.getmtime(pyz):
        note += " -- OLDER than thepusher/*.py: run `make` (or pass --source)"
    return note


def print_header(args, lab: LinkLab) -> None:
    """What was measured and how; first the link check, which stops the run when the
    shaping does not limit."""
    check_mbit = lab.link_check()
    ideal = min(lab.rate_bps, lab.master_rate_bps) * TCP_PAYLOAD / 1e6
    if check_mbit > ideal * 1.05:
        raise BenchError(f"the shaping does not limit: {check_mbit:.0f} Mbit/s through a "
                         f"{lab.rate} link")
    print("=" * 100)
    print(f"command: {' '.join(shlex.quote(a) for a in [sys.executable] + sys.argv)}")
    print(f"machine: {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, Python "
          f"{platform.python_version()}; load average {os.getloadavg()[0]:.2f}")
    print(f"thepusher: {_source_note(args.pyz)}")
    delay = f", one-way delay {lab.delay} leaving each machine (hop RTT 2x)" if lab.delay else \
        ", no added delay"
    print(f"links: clients {lab.rate}, master {lab.master_rate}{delay}; HTB on both ends of each "
          "veth, at rate x 1514/1538 (Ethernet wire overhead)")
    if not lab.delay:
        gso, queue = lab.gso_max_size, max(link_queue(lab.rate_bps)[1], 3 * lab.gso_max_size)
        print(f"queues: each port's HTB leaf a bfifo of {queue} B ({queue * 8e3 / lab.rate_bps:.0f} "
              f"ms at {lab.rate}), GSO packets up to {gso} B; lab set up in {lab.setup_s:.1f} s")
    path = (f"a {lab.rate} shaped veth pair" if lab.rate == lab.master_rate else
            f"shaped veths, master {lab.master_rate}, c1 {lab.rate}")
    print(f"link check: {check_mbit:.0f} Mbit/s of TCP payload master -> c1 through {path} "
          f"(a real link carries {ideal:.0f})")
    print(f"destinations: {'files in ' + SHM + ' (tmpfs)' if args.dest == 'shm' else '/dev/null'}; "
          f"every figure is the median of {args.repeat} round(s); MB = 1e6 B, GB = 1e9 B")
    print("stream s = phase 'streaming' seen (polled every 5 ms) -> the master's round finished;"
          " wall s = the master's round")
    print("goodput = image content MB / stream s (each client gets all of it); /link = over the "
          "link rate in MB/s")
    print("CPU s/GB per hop = cpu_seconds each client reported with DONE (whole process, incl. "
          "~0.1 s start-up) / content GB")
    print(f"CPU share = all hops' cpu_seconds / (stream s x {os.cpu_count()} CPUs): near 1 the "
          "CPUs, not the links, set the pace (the kernel's softirq work for veth/bridge/HTB is "
          "not in it)")
    print("=" * 100, flush=True)


@contextlib.contextmanager
def random_image(size: int) -> Iterator[str]:
    """A random raw image in /dev/shm for one mode's rounds, removed afterwards."""
    work = os.path.join(SHM, f"{NAME_PREFIX}{os.getpid()}-work")
    os.makedirs(work, exist_ok=True)
    try:
        image = os.path.join(work, "disk.img")
        print(f"bench_link: writing a {size >> 20} MiB random image ...", flush=True)
        make_image(image, size)
        yield image
    finally:
        shutil.rmtree(work, ignore_errors=True)


def mode_scaling(args, lab: LinkLab) -> None:
    size = args.size
    with random_image(size) as image:
        rows = []
        for n in args.clients:
            rounds = repeat_rounds(args, lab, image, f"N={n}", clients=n)
            rows.append({"n": n, **{name: median_of(rounds, key) for name, key in (
                ("stream", "stream_s"), ("wall", "wall_s"), ("goodput", "goodput_mb_s"),
                ("per_link", "goodput_per_link"), ("cpu_med", "cpu_s_per_gb_med"),
                ("cpu_max", "cpu_s_per_gb_max"), ("cpu_share", "cpu_share"))}})
    print()
    print(f"chain scaling: {size >> 20} MiB random raw image, master -> c1 -> ... -> cN, "
          f"links {lab.rate} (master {lab.master_rate}), medians of {args.repeat}")
    head = (f"{'N':>3} {'stream s':>9} {'wall s':>7} {'MB/s/client':>12} {'goodput/link':>13} "
            f"{'/shaped':>8} {'T(N)/T(1)':>10} {'hop CPU s/GB med':>17} {'max':>5} "
            f"{'CPU share':>10}")
    print(head)
    print("-" * len(head))
    first = rows[0]
    for row in rows:
        print(f"{row['n']:>3} {row['stream']:>9.2f} {row['wall']:>7.2f} {row['goodput']:>12.1f} "
              f"{row['per_link']:>13.3f} {row['per_link'] / WIRE_FACTOR:>8.3f} "
              f"{row['stream'] / first['stream']:>10.2f} "
              f"{row['cpu_med']:>17.2f} {row['cpu_max']:>5.2f} {row['cpu_share']:>10.2f}")
    if first["n"] != 1:
        print(f"(T(N)/T(1) is relative to N={first['n']}, the smallest N measured)")
    print(f"(the most a {lab.rate} link carries as TCP payload: "
          f"{lab.rate_bps * TCP_PAYLOAD / 8e6:.1f} MB/s = {TCP_PAYLOAD:.3f} of the link, "
          f"{TCP_PAYLOAD / WIRE_FACTOR:.3f} of the shaped rate, the link x 1514/1538)")
    print_scaling_targets(rows)


def print_scaling_targets(rows: List[dict]) -> None:
    """Issue 8's targets for one chain, as far as the rows measured them."""
    by_n = {row["n"]: row for row in rows}
    checks = []
    if 1 in by_n and 16 in by_n:
        checks.append(("T(16)/T(1)", by_n[16]["stream"] / by_n[1]["stream"], "<=", 1.05))
    worst = min(rows, key=lambda row: row["per_link"])
    checks.append((f"goodput / shaped rate, lowest (N={worst['n']})",
                   worst["per_link"] / WIRE_FACTOR, ">=", 0.95))
    checks.append(("hop CPU s/GB, highest median", max(row["cpu_med"] for row in rows),
                   "<=", 0.25))
    print()
    for what, value, op, limit in checks:
        ok = value <= limit if op == "<=" else value >= limit
        print(f"{what:<40} {value:6.3f}  (target {op} {limit}: {'met' if ok else 'MISSED'})")


def mode_chains(args) -> int:
    """`--room` clients in K chains (each K of --chains), the master's port K times the
    clients' rate, against one chain of the longest chain's length with equal ports: K
    chains should take the time of one. A lab per master rate (namespaces are rebuilt).
    Returns the packets the shaping queues dropped."""
    n, size, drops = args.room, args.size, 0
    longest = {k: -(-n // k) for k in args.chains}  # ceil: the chains' longest

    with random_image(size) as image:
        one: Dict[int, List[dict]] = {}
        with LinkLab(n, args.rate, None, args.delay) as lab:
            print_header(args, lab)
            for length in sorted(set(longest.values())):
                one[length] = repeat_rounds(args, lab, image, f"one chain of {length}, master "
                                            f"{lab.rate}", clients=length)
            drops += lab.tc_drops()
        many: Dict[int, List[dict]] = {}
        for k in args.chains:
            if k == 1:  # one chain of all: measured above
                many[k] = one[n]
                continue
            master = rate_text(rate_bits(args.rate) * k)
            with LinkLab(n, args.rate, master, args.delay) as lab:
                many[k] = repeat_rounds(args, lab, image, f"{n} clients in {k} chains, master "
                                        f"{master}", clients=n, chains=k)
                drops += lab.tc_drops()
    print()
    print(f"fan-out: {n} clients in K chains, client links {args.rate}, the master's K x "
          f"{args.rate}; against one chain of the longest chain's length (master {args.rate}); "
          f"{size >> 20} MiB random raw image, medians of {args.repeat}")
    head = (f"{'K':>3} {'chains':>12} {'master':>8} {'stream s':>9} {'MB/s/client':>12} "
            f"{'goodput/link':>13} {'one chain s':>12} {'K / one':>8} {'hop CPU s/GB':>13} "
            f"{'CPU share':>10}")
    print(head)
    print("-" * len(head))
    for k in args.chains:
        rs = many[k]
        stream, alone = median_of(rs, "stream_s"), median_of(one[longest[k]], "stream_s")
        shape = "+".join(str(len(c)) for c in rs[0]["chains"])
        print(f"{k:>3} {shape:>12} {rate_text(rate_bits(args.rate) * k):>8} {stream:>9.2f} "
              f"{median_of(rs, 'goodput_mb_s'):>12.1f} {median_of(rs, 'goodput_per_link'):>13.3f} "
              f"{alone:>12.2f} {stream / alone:>8.2f} {median_of(rs, 'cpu_s_per_gb_med'):>13.2f} "
              f"{median_of(rs, 'cpu_share'):>10.2f}")
    if 4 in many:
        ratio = median_of(many[4], "stream_s") / median_of(one[longest[4]], "stream_s")
        print(f"K=4 / one chain of {longest[4]}: {ratio:.2f}  (target <= 1.1: "
              f"{'met' if ratio <= 1.1 else 'MISSED'})")
    return drops


# -- a room of 200 (issue 21) -------------------------------------------------------------

RSS_BUDGET_KB = {"last": 52 << 10, "forwarding": 84 << 10}  # docs/protocol.md "Memory"
# The room's defaults (docs/benchmarks.md "A room of 200"). 200 Python hops share this
# machine's 2 CPUs: at 20 Mbit/s they would need about 5, and once the clients and the
# kernel's packet work fill both CPUs the master's answers stall and clients are
# declared lost; at 4 Mbit/s 200 hops in 8 chains took 0.96 of the machine. 128 MiB
# (200 records of 64 KiB are 9.8 % of it) at 3 Mbit/s is about 380 s per round.
ROOM_RATE = "3mbit"
ROOM_SIZE = 128 << 20
ROOM_T_RATIO = 1.1  # target: T(N)/T(1) at the largest N, one chain


def room_rows(args) -> List[Tuple[int, int]]:
    """(N, K): one chain for each N of --clients, then K chains of the largest N for each
    K of --chains above 1."""
    top = max(args.clients)
    return [(n, 1) for n in args.clients] + [(top, k) for k in args.chains if k > 1]


def kill_plan(rng: random.Random, n: int, percent: float, expected_s: float
              ) -> List[Tuple[int, float]]:
    """`percent` of n clients (rounded half up; none for N=1), any of them, each killed at a
    moment uniform over the first 90 % of the expected stream time (so that it still has
    bytes to get). Sorted by time."""
    count = 0 if n < 2 else min(n - 1, int(n * percent / 100 + 0.5))
    victims = rng.sample(range(n), count)
    return sorted(((i, rng.uniform(0, 0.9 * expected_s)) for i in victims),
                  key=lambda k: k[1])


def probe_pair(n: int, k: int, victims: set) -> Optional[Tuple[int, int]]:
    """Two neighbours in the middle of the first chain, neither killed."""
    length = -(-n // k)
    if length < 2:
        return None
    mid = length // 2
    for d in range(length):
        for a in (mid - 1 - d, mid - 1 + d):
            if 0 <= a < length - 1 and a not in victims and a + 1 not in victims:
                return a, a + 1
    return None


def heal_counts(logs: str) -> Dict[str, int]:
    """What the clients' logs say about healing: resumes, gap fills from the master, and
    refusals that made a hop wait before asking again."""
    out = {"resumed": 0, "gap_fills": 0, "refused": 0}
    for name in os.listdir(logs):
        if not name.startswith("client-"):
            continue
        text = tail_of(os.path.join(logs, name), 1 << 22)
        out["resumed"] += text.count("continuing at byte")
        out["gap_fills"] += text.count("fetching stream bytes")
        out["refused"] += text.count("asking again in")
    return out


def _mib(kb: Optional[float]) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f}"


def _med_max(values: List[float], fmt: str = "{:.1f}") -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{fmt.format(median(values))}/{fmt.format(max(values))}"


def mode_room(args) -> int:
    """A room: one chain of each N of --clients, then K chains of the largest N (the
    master's port K x --rate); --kill % of each N's clients SIGKILLed at random moments.
    Returns the packets the shaping queues dropped."""
    n_max, size = max(args.clients), args.size
    rng = random.Random(args.seed)
    # The bench's own threads (the status polls, the kills' clock) at the master's nice:
    # run_round starts the clients at 0 again. Linux: nice is per thread, and threads
    # and processes started from here inherit it.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, MASTER_NICE)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_root = os.path.join(ROOT, "build", "bench-room", stamp)
    rows = []
    with random_image(size) as image, LinkLab(n_max, args.rate, None, args.delay) as lab:
        if lab.leftovers:
            print(f"bench_link: removed leftovers of earlier runs: {' '.join(lab.leftovers)}")
        print_header(args, lab)
        payload = lab.rate_bps * TCP_PAYLOAD / 8
        expected = size / payload
        print(f"room: {n_max} client namespaces and veths set up in {lab.setup_s:.1f} s; "
              f"expected stream time {expected:.0f} s ({size >> 20} MiB at {payload / 1e6:.2f} "
              f"MB/s of TCP payload); {args.kill:g} % of the clients killed (seed {args.seed}); "
              f"logs in {log_root}", flush=True)
        for n, k in room_rows(args):
            if k > 1:
                lab.set_master_rate(rate_text(lab.rate_bps * k))
            elif lab.master_rate_bps != lab.rate_bps:
                lab.set_master_rate(lab.rate)
            rounds = []
            for rep in range(args.repeat):
                kills = kill_plan(rng, n, args.kill, expected)
                victims = {i for i, _ in kills}
                logs = os.path.join(log_root, f"N{n}-K{k}-{rep + 1}")
                r = run_round(lab, image, clients=n, dest=args.dest, pyz=args.pyz, chains=k,
                              kills=kills, strict=False, probe=probe_pair(n, k, victims),
                              keep_logs=logs)
                r["heal"] = heal_counts(logs)
                rounds.append(r)
                print_room_round(r, n, k, rep, args.repeat)
            rows.append(room_row(n, k, rounds))
        drops = lab.tc_drops()
    print(f"room: lab removed in {lab.teardown_s:.1f} s (the kernel frees the namespaces "
          "afterwards)")
    print_room(args, rows, expected)
    return drops


def print_room_round(r: dict, n: int, k: int, rep: int, repeat: int) -> None:
    killed = r["killed"]
    ended = sum(1 for x in killed if x["end"] == "ERROR")
    rtt = sorted(r["rtt_ms"])
    rtt_text = (f"; UDP RTT between neighbours med {median(rtt):.0f} ms, p90 "
                f"{rtt[int(len(rtt) * 0.9)]:.0f} ms" if rtt else "")
    print(f"  [N={n} K={k}, round {rep + 1}/{repeat}] stream {r['stream_s']:.1f} s, "
          f"{r['survivors_done']}/{r['survivors']} survivors DONE, {ended}/{len(killed)} killed "
          f"ERROR; clients to all WAIT {r['reg_wait_s']:.1f} s, to start "
          f"{r['reg_start_s']:.1f} s; records {(r['records'] or 0) >> 10} KiB; a client's CPU "
          f"to WAIT {r['startup_cpu_s']:.2f} s; in the stream: machine CPU "
          f"{r['machine_share']:.2f}, clients' {r['stream_cpu_share']:.2f}; heal: "
          f"{r['heal']['resumed']} resumed, {r['heal']['gap_fills']} gap fill(s), "
          f"{r['heal']['refused']} refusal(s){rtt_text}", flush=True)
    for x in killed:
        got = "?" if x["bytes_done"] is None else f"{x['bytes_done'] / (1 << 20):.0f} MiB"
        print(f"      killed c{x['index'] + 1} at +{x['at']:.1f} s (last report: {got}, "
              f"{x['state']}) -> {x['end']} {x['error']}")
    for p in r["problems"]:
        print(f"      PROBLEM: {p}")
    if r["problems"]:
        print(f"      logs: {r['logs']}")


def room_row(n: int, k: int, rounds: List[dict]) -> dict:
    """One row from its rounds: times are medians, counts sums, peaks maxima."""
    rss = {"forwarding": [], "last": []}
    for r in rounds:
        last = set(r["last_hops"])
        for host, kb in r["rss_kb"].items():
            if kb is not None:
                rss["last" if host in last else "forwarding"].append(kb)
    cpu = [c for r in rounds for c in r["cpu_s_per_gb"]]
    in_stream = [c for r in rounds for c in r["stream_cpu_s_per_gb"]]
    return {
        "n": n, "k": k, "rounds": rounds,
        "stream": median_of(rounds, "stream_s"),
        "survivors": sum(r["survivors"] for r in rounds),
        "done": sum(r["survivors_done"] for r in rounds),
        "killed": sum(len(r["killed"]) for r in rounds),
        "killed_error": sum(1 for r in rounds for x in r["killed"] if x["end"] == "ERROR"),
        "reg_wait": median_of(rounds, "reg_wait_s"),
        "reg_start": median_of(rounds, "reg_start_s"),
        "master_cpu": median_of(rounds, "master_cpu_s"),
        "master_hwm": max((r["master_hwm_kb"] or 0) for r in rounds),
        "rss": rss,
        "cpu": cpu,
        "in_stream": in_stream,
        "cpu_share": median_of(rounds, "stream_cpu_share"),
        "machine_share": median_of(rounds, "machine_share"),
        "mem_peak": max(r["mem_peak"] for r in rounds),
        "mem_before": min(r["mem_before"] for r in rounds),
        "records": rounds[0]["records"],
        "rtt": [x for r in rounds for x in r["rtt_ms"]],
        "problems": [p for r in rounds for p in r["problems"]],
    }


def print_room(args, rows: List[dict], expected: float) -> None:
    total = (mem_in_use() or 0) + (_mem_available() or 0)
    one = next((row["stream"] for row in rows if row["n"] == 1 and row["k"] == 1), None)
    print()
    print(f"a room: up to {max(args.clients)} clients behind {args.rate} links, destination "
          f"{'/dev/null' if args.dest == 'null' else 'files in ' + SHM}, {args.size >> 20} MiB "
          f"random raw image, {args.kill:g} % of each N killed (seed {args.seed}), "
          f"{args.repeat} round(s) per row")
    head = (f"{'N':>3} {'K':>2} {'rec KiB':>7} {'fill %':>6} {'stream s':>9} {'T/T(1)':>7} {'DONE':>8} "
            f"{'killed ERROR':>12} {'to WAIT s':>9} {'to start s':>10} {'RTT ms med/p90':>14}")
    print(head)
    print("-" * len(head))
    for row in rows:
        rtt = sorted(row["rtt"])
        rtt_text = f"{median(rtt):.0f}/{rtt[int(len(rtt) * 0.9)]:.0f}" if rtt else "-"
        ratio = f"{row['stream'] / one:.3f}" if one else "-"
        fill = -(-row["n"] // row["k"]) * (row["records"] or 0) / row["rounds"][0]["content_bytes"]
        print(f"{row['n']:>3} {row['k']:>2} {(row['records'] or 0) >> 10:>7} {100 * fill:>6.1f} "
              f"{row['stream']:>9.1f} {ratio:>7} {row['done']:>4}/{row['survivors']:<3} "
              f"{row['killed_error']:>6}/{row['killed']:<5} {row['reg_wait']:>9.1f} "
              f"{row['reg_start']:>10.1f} {rtt_text:>14}")
    print()
    head = (f"{'N':>3} {'K':>2} {'master CPU s':>12} {'master MiB':>10} "
            f"{'fwd hop MiB med/max':>19} {'last hop MiB med/max':>20} "
            f"{'client CPU s/GB med/max':>23} {'in stream':>9} {'clients CPU':>11} "
            f"{'machine CPU':>11} "
            f"{'mem in use GiB':>14}")
    print(head)
    print("-" * len(head))
    for row in rows:
        fwd = [kb / 1024 for kb in row["rss"]["forwarding"]]
        last = [kb / 1024 for kb in row["rss"]["last"]]
        print(f"{row['n']:>3} {row['k']:>2} {row['master_cpu']:>12.1f} "
              f"{_mib(row['master_hwm']):>10} {_med_max(fwd):>19} {_med_max(last):>20} "
              f"{_med_max(row['cpu'], '{:.2f}'):>23} "
              f"{_med_max(row['in_stream'], '{:.2f}').split('/')[0]:>9} {row['cpu_share']:>11.2f} "
              f"{row['machine_share']:>11.2f} {row['mem_peak'] / (1 << 30):>14.1f}")
    print(f"(rec = record size the master picked; fill % = the longest chain's hops x a "
          f"record over the image: what a hop's forwarding a record once it has all of it "
          f"adds to T/T(1) at least; T/T(1) over one client's stream s; DONE = "
          f"survivors DONE / survivors; RTT = UDP round trip between two neighbours mid-chain "
          f"while the stream flows; MiB = peak RSS: the master's VmHWM, each DONE client's "
          f"max_rss_kb; client CPU s/GB = each DONE client's cpu_seconds (whole process) over "
          f"content GB, in stream = the part used after the stream started (median); clients "
          f"CPU / machine CPU = the clients' CPU in the stream / the machine's busy CPU over "
          f"stream s x {os.cpu_count()} CPUs; mem in use = MemTotal - MemAvailable, peak, of "
          f"{total / (1 << 30):.1f} GiB, {rows[0]['mem_before'] / (1 << 30):.1f} GiB before the "
          "first round's clients started)")
    print()
    checks: List[Tuple[str, str, bool]] = []
    top = [row for row in rows if row["k"] == 1 and row["n"] == max(args.clients)]
    if one and top and top[0]["n"] > 1:
        ratio = top[0]["stream"] / one
        checks.append((f"T({top[0]['n']})/T(1), one chain", f"{ratio:.3f}  (<= {ROOM_T_RATIO})",
                       ratio <= ROOM_T_RATIO))
    done = sum(row["done"] for row in rows)
    survivors = sum(row["survivors"] for row in rows)
    checks.append(("every survivor DONE", f"{done}/{survivors}", done == survivors))
    errors = sum(row["killed_error"] for row in rows)
    killed = sum(row["killed"] for row in rows)
    checks.append(("every killed client ERROR", f"{errors}/{killed}", errors == killed))
    for role, label in (("last", "last hop"), ("forwarding", "forwarding hop")):
        peak = max((kb for row in rows for kb in row["rss"][role]), default=None)
        if peak is not None:
            budget = RSS_BUDGET_KB[role]
            checks.append((f"peak RSS of a {label}", f"{peak / 1024:.1f} MiB  (<= "
                           f"{budget >> 10} MiB)", peak <= budget))
    peak = max(row["mem_peak"] for row in rows)
    checks.append(("machine memory in use, peak", f"{peak / (1 << 30):.1f} GiB  (of "
                   f"{total / (1 << 30):.1f} GiB)", peak < total))
    for what, value, ok in checks:
        print(f"{what:<36} {value:<28} {'met' if ok else 'MISSED'}")


def mode_images(args, lab: LinkLab) -> None:
    """One client restores each image; without --image, the standard set of
    bench_images.py (raw, gz, bz2, xz of content that compresses about 2:1, and a
    random and a 75%-zero image of the same size), plus thepusher's decode speeds."""
    if not args.image:
        images = bench_images.standard_set(args.size)
        rows = restore_images(args, lab, images)
        print_images(args, lab, rows)
        print_targets(rows)
        print_decode_speeds(images, args.repeat)
        return
    specs = []
    for spec in args.image:
        path, sep, comp = spec.rpartition(":")
        if not sep or os.path.exists(spec):
            path, comp = spec, ""
        if not os.path.isfile(path):
            raise BenchError(f"--image {spec}: no such file")
        specs.append((path, (comp or compression_of(path)).upper()))
    print_images(args, lab, restore_images(args, lab, specs))


def restore_images(args, lab: LinkLab, specs: List[Tuple[str, str]]) -> List[dict]:
    rows = []
    for path, comp in specs:
        rounds = repeat_rounds(args, lab, path, f"{os.path.basename(path)} {comp}", comp,
                               clients=1)
        rows.append({
            "name": os.path.basename(path), "comp": comp,
            "file": rounds[0]["image_bytes"], "content": rounds[0]["content_bytes"],
            "stream": median_of(rounds, "stream_s"), "wall": median_of(rounds, "wall_s"),
            "cpu": median_of(rounds, "cpu_s_per_gb_med"),
        })
    return rows


def print_images(args, lab: LinkLab, rows: List[dict]) -> None:
    print()
    print(f"images: one client, link {lab.rate} (master {lab.master_rate}), medians of "
          f"{args.repeat}; restore = stream s; ratio = over the first image's")
    head = (f"{'image':<28} {'comp':>5} {'file MB':>9} {'content MB':>11} {'restore s':>10} "
            f"{'wall s':>7} {'content MB/s':>13} {'wire MB/s':>10} {'ratio':>6} {'CPU s/GB':>9}")
    print(head)
    print("-" * len(head))
    for row in rows:
        print(f"{row['name'][:28]:<28} {row['comp']:>5} {row['file'] / 1e6:>9.1f} "
              f"{row['content'] / 1e6:>11.1f} {row['stream']:>10.2f} {row['wall']:>7.2f} "
              f"{row['content'] / row['stream'] / 1e6:>13.1f} "
              f"{row['file'] / row['stream'] / 1e6:>10.1f} "
              f"{row['stream'] / rows[0]['stream']:>6.2f} {row['cpu']:>9.2f}")


def print_targets(rows: List[dict]) -> None:
    """Issue 6's targets, from the standard set's rows (raw, gz, bz2, xz, random, zeros75)."""
    t = {row["name"]: row["stream"] for row in rows}
    checks = [
        ("gzip restore / raw restore", t["raw.img.gz"] / t["raw.img"], 0.6),
        ("bzip2 -9 restore / raw restore", t["raw.img.bz2"] / t["raw.img"], 1.0),
        ("xz restore / raw restore", t["raw.img.xz"] / t["raw.img"], None),
        ("75%-zero restore / random restore", t["zeros75.img"] / t["random.img"], 0.35),
    ]
    print()
    for what, ratio, limit in checks:
        verdict = "" if limit is None else (f"  (target <= {limit}: "
                                            f"{'met' if ratio <= limit else 'MISSED'})")
        print(f"{what:<36} {ratio:5.2f}{verdict}")


def print_decode_speeds(images: List[Tuple[str, str]], repeat: int) -> None:
    speeds = bench_images.decode_speeds(images, repeat)
    print()
    print(f"thepusher's decoder alone (content MB/s, one process on this machine, "
          f"median of {repeat}):")
    for path, by_threads in speeds.items():
        shown = ", ".join(f"{mbs:.0f} MB/s with {n} thread{'s' if n > 1 else ''}"
                          for n, mbs in sorted(by_threads.items()))
        print(f"  {os.path.basename(path):<14} {shown}")


def _argument(check: Callable[[str], object]) -> Callable[[str], str]:
    """An argparse type that keeps the text once `check` accepts it."""
    def convert(text: str) -> str:
        try:
            check(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return text
    return convert


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="thepusher over emulated links: a network namespace per machine, "
                    "shaped veths, real rounds (root, Linux).")
    parser.add_argument("--mode", choices=("scaling", "chains", "images", "udpcast", "room"),
                        default="scaling",
                        help="scaling: chains of --clients on a random raw image (default); "
                             "chains: --room clients in each of --chains chains; "
                             "images: one client, each --image in turn; "
                             "udpcast: thepusher and UDPcast's multicast, round by round, "
                             "for each N of --clients (tests/bench/peer_udpcast.py); "
                             "room: one chain of each N of --clients, then the largest N in "
                             "each K of --chains chains, --kill %% of the clients killed")
    parser.add_argument("--clients", type=parse_clients, default=None,
                        help="chain lengths for --mode scaling (default 1,2,4,8,16) and "
                             "--mode room (default 1,50,100,200), client counts for --mode "
                             "udpcast (default 1,2,4,8)")
    parser.add_argument("--chains", type=parse_clients, default=None,
                        help="chain counts K for --mode chains (default 1,2,4) and for the "
                             "largest N of --mode room (default 4,8); the master's link is "
                             "K x --rate")
    parser.add_argument("--room", type=int, default=8,
                        help="clients for --mode chains (default 8)")
    parser.add_argument("--rate", type=_argument(rate_bits), default=None,
                        help="every client port's rate, tc units (default 1gbit; "
                             f"{ROOM_RATE} for --mode room)")
    parser.add_argument("--master-rate", type=_argument(rate_bits), default=None,
                        help="the master port's rate (default: --rate)")
    parser.add_argument("--delay", type=_argument(delay_ms), default="0ms",
                        help="one-way delay added as packets leave each machine, e.g. 1ms "
                             "(needs sch_netem; default 0ms: none)")
    parser.add_argument("--size", type=parse_size, default=None,
                        help="image size for --mode scaling, chains and room and for the "
                             "standard images of --mode images (default 1G = 1 GiB; "
                             f"{ROOM_SIZE >> 20}M for --mode room, 256M for --mode udpcast)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="rounds per row; medians (default 3; 1 for --mode room)")
    parser.add_argument("--kill", type=float, default=5.0,
                        help="--mode room: percent of each N's clients killed with SIGKILL "
                             "while the stream flows, rounded (default 5; none for N=1)")
    parser.add_argument("--seed", type=int, default=21,
                        help="--mode room: seed of the victims and moments (default 21)")
    parser.add_argument("--image", action="append", metavar="PATH[:COMPRESSION]",
                        help="--mode images: an image file, compression NONE/GZIP/BZ2/XZ "
                             "(default from .gz/.bz2/.xz); repeat for more (default: the "
                             "standard set of tests/bench/bench_images.py)")
    parser.add_argument("--dest", choices=("shm", "null"), default=None,
                        help="clients write files in /dev/shm (default) or /dev/null (the "
                             "default for --mode room)")
    parser.add_argument("--pyz", default=PYZ, help=f"the zipapp to run (default {PYZ})")
    parser.add_argument("--source", action="store_const", dest="pyz", const=None,
                        help="run thepusher from the source tree (python3 -m thepusher) "
                             "instead of the zipapp")
    parser.add_argument("--udpcast-args", default="", metavar="ARGS",
                        help="--mode udpcast: more udp-sender flags, one string, e.g. "
                             "'--rexmit-hello-interval 100' or '--max-bitrate 900m' "
                             "(default: none beyond --min-receivers N --nokbd --interface eth0)")
    parser.add_argument("--udpcast-receiver-args", default="", metavar="ARGS",
                        help="--mode udpcast: more udp-receiver flags, e.g. '--rcvbuf 4194304'")
    args = parser.parse_args(argv)
    room, udpcast = args.mode == "room", args.mode == "udpcast"
    if udpcast:
        args.clients = args.clients or [1, 2, 4, 8]
        args.size = args.size or 256 << 20
    for name, usual, in_room in (("clients", [1, 2, 4, 8, 16], [1, 50, 100, MAX_CLIENTS]),
                                 ("chains", [1, 2, 4], [4, 8]), ("rate", "1gbit", ROOM_RATE),
                                 ("size", 1 << 30, ROOM_SIZE), ("repeat", 3, 1),
                                 ("dest", "shm", "null")):
        if getattr(args, name) is None:
            setattr(args, name, in_room if room else usual)
    if udpcast and args.dest != "shm":
        parser.error("--mode udpcast checks every copy: it needs --dest shm")
    if not 0 <= args.kill < 100:
        parser.error("--kill must be a percentage from 0 to below 100")
    if room and max(args.chains) > max(args.clients):
        parser.error("--chains must not exceed the largest of --clients")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.pyz and not os.path.isfile(args.pyz):
        parser.error(f"{args.pyz} not found: run `make` first, or pass --source")
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces, tc)")
    if args.mode == "chains" and not max(args.chains) <= args.room <= MAX_CLIENTS:
        parser.error(f"--room must be from the largest of --chains to {MAX_CLIENTS}")
    n = {"scaling": max(args.clients), "chains": args.room,
         "udpcast": max(args.clients), "room": max(args.clients)}.get(args.mode, 1)
    started = time.monotonic()
    cpu0 = machine_cpu()
    # Ctrl-C, kill, a closed terminal: all unwind through LinkLab's cleanup (SIGINT too when
    # started from a script that ignores it, as `cmd &` in a non-interactive shell does).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, raise_interrupt)
    try:
        removed = remove_leftovers()  # before check_room: they may hold /dev/shm space
        bad_copies = 0
        if udpcast:
            import peer_udpcast
            peer_udpcast.require_udpcast()  # before any namespace is made
        if args.mode in ("scaling", "chains", "room", "udpcast"):
            # a hop's own memory (its buffers, 16 MiB in flight + a 32 MiB window, and its
            # heap; the interpreter's pages are shared) is within 64 MiB
            check_room(args.size * (1 + (n if args.dest == "shm" else 0))
                       + (n * (64 << 20) if room else 0))
        if args.mode == "chains":
            drops = mode_chains(args)
        elif room:
            drops = mode_room(args)
        elif udpcast:
            bad_copies, drops = peer_udpcast.mode_udpcast(args, run_round, random_image,
                                                          print_header)
        else:
            with LinkLab(n, args.rate, args.master_rate, args.delay) as lab:
                removed += lab.leftovers
                if removed:
                    print(f"bench_link: removed leftovers of earlier runs: {' '.join(removed)}")
                print_header(args, lab)
                if args.mode == "scaling":
                    mode_scaling(args, lab)
                else:
                    mode_images(args, lab)
                drops = lab.tc_drops()
        print(f"bench_link: total {time.monotonic() - started:.0f} s; load average "
              f"{os.getloadavg()[0]:.2f} at the end; {drops} packet(s) dropped by the shaping "
              "queues; namespaces removed")
        cpu1 = machine_cpu()
        if cpu0 and cpu1:
            print(f"bench_link: {cpu_report(cpu0, cpu1)}")
        if bad_copies:
            print(f"bench_link: FAILED: {bad_copies} of thepusher's copies were not the image",
                  file=sys.stderr)
            return 1
        return 0
    except BenchError as e:
        print(f"\nbench_link: ABORTED: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbench_link: interrupted; namespaces removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
