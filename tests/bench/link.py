#!/usr/bin/env python3
"""Benchmark thepusher over emulated links: a network namespace per machine, shaped veths.

A script (`make bench-link`, or `python3 tests/bench/link.py --help`) and a small module
other bench modes import (`from link import LinkLab, run_round`). Root and Linux
only (`ip`, `tc`); stdlib only; runs under Python 3.9.

Network: one namespace per machine on one bridge, every veth shaped to the link rate
(the master's port may have a rate of its own, every port a one-way delay): LinkLab in
tests/support/netlab.py, which says how.

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
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, Iterator, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_images  # noqa: E402 - beside this script, also when run as a file
from bench import (  # noqa: E402
    MAX_CLIENTS, cpu_report, cpu_ticks, machine_cpu, median, parse_clients, parse_size,
)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from tests.support.netlab import (  # noqa: E402
    NAME_PREFIX, SHM, TCP_PAYLOAD, WIRE_FACTOR, LinkLab, delay_ms, raise_interrupt, rate_bits,
    rate_text, remove_leftovers, sh,
)
from tests.support.netlab import LabError as BenchError  # noqa: E402 - what stops a run
from thepusher.demo import make_image  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYZ = os.path.join(ROOT, "thepusher.pyz")
API_PORT = 8080
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


def _tail(path: str, chars: int = 2500) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-chars:]
    except OSError:
        return ""


def run_round(lab: LinkLab, image_path: str, compression: str = "NONE",
              clients: Optional[int] = None, dest: str = "shm", python: Optional[str] = None,
              pyz: Optional[str] = PYZ, timeout: Optional[float] = None,
              keep_logs: Optional[str] = None, chains: int = 1) -> dict:
    """One real round over the lab's links: master + `clients` (default all) client
    processes, started fresh and stopped at the end. Raises BenchError unless every
    client ends DONE (each verified the SHA-256 of what it wrote) and exits 0.

    `dest`: "shm" (a file per client in /dev/shm that is there before the round, as a
    disk is: LinkLab.disks) or "null".
    `chains`: the group's `chains` (the master feeds that many chains at once).
    Returns: n, stream_s (phase 'streaming' seen -> master's finished), wall_s (master's
    round: finished - started), content_bytes (what each client wrote), image_bytes (the
    file the master streams), goodput_mb_s (content MB / stream s, per client: every
    client receives all of it), goodput_per_link (goodput over the rate in MB/s of the
    slowest port, the master's counted as shared by its chains), cpu_s (each hop's cpu_seconds as reported with DONE), cpu_s_per_gb (per hop,
    over content GB), cpu_start_s (each hop's CPU seconds when the round was started: its
    start-up and registration, in cpu_s too), master_cpu_s (the master's CPU seconds from
    the start of the round to its end, /proc), states, chain, round.
    """
    n = lab.n if clients is None else clients
    if not 1 <= n <= lab.n:
        raise ValueError(f"clients must be from 1 to {lab.n}")
    hosts = lab.client_ips[:n]
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

    def status() -> dict:
        code, body = lab.http(lab.master_ns, "GET", lab.master_ip, API_PORT, "/api/status")
        if code != 200:
            raise BenchError(f"GET /api/status: {code} {body}")
        return body

    def logs_of(which: List[Tuple[str, subprocess.Popen, str]]) -> str:
        return "".join(f"\n--- {name} ({path}) ---\n{_tail(path)}" for name, _, path in which)

    try:
        master = lab.popen(lab.master_ns, cmd + ["-v", "master", "-S", image_dir, "-l",
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

        for i, (ns, host, d) in enumerate(zip(lab.client_ns, hosts, dests)):
            path = os.path.join(logs, f"client-c{i + 1}.log")
            p = lab.popen(ns, cmd + ["-v", "client", "-p", f"{lab.master_ip}:{API_PORT}",
                                     "--bind", host, "--destination", d], log=path, env=env)
            procs.append((f"client c{i + 1} {host}", p, path))
        deadline = time.monotonic() + 60
        while True:
            for name, p, _ in procs:
                if p.poll() is not None:
                    raise BenchError(f"{name} exited before the round" + logs_of(procs))
            if time.monotonic() > deadline:
                raise BenchError(f"{n} clients not all WAIT after 60 s" + logs_of(procs))
            by_host = {c["host"]: c["state"] for c in status()["groups"][0]["clients"]}
            if all(by_host.get(h) == "WAIT" for h in hosts):
                break
            time.sleep(0.02)
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
        while True:
            if time.monotonic() > deadline:
                raise BenchError(f"round {number} ({n} clients) not finished after "
                                 f"{timeout:.0f} s" + logs_of(procs))
            if master.poll() is not None:
                raise BenchError("the master died during the round" + logs_of(procs))
            st = status()
            if st["history"] and st["history"][-1]["number"] >= number:
                break
            r = st["groups"][0]["round"]
            if seen_streaming is None and r and r["number"] == number \
                    and r["phase"] == "streaming":
                seen_streaming = time.time()
            time.sleep(0.005 if seen_streaming is None else 0.1)
        master_cpu1 = cpu_ticks(master.pid)
        rnd = st["history"][-1]
        by_host = {c["host"]: c for c in st["groups"][0]["clients"]}
        bad = [h for h in hosts if by_host[h]["state"] != "DONE"]
        if bad:
            reasons = "; ".join(f"{h}: {by_host[h]['state']} {by_host[h].get('error')}"
                                for h in bad)
            raise BenchError(f"round {number} with {n} clients: not every client DONE: "
                             f"{reasons}" + logs_of(procs))
        for name, p, _ in procs[1:]:
            try:
                code = p.wait(30)
            except subprocess.TimeoutExpired:
                raise BenchError(f"{name} still running 30 s after DONE" + logs_of(procs)) \
                    from None
            if code != 0:
                raise BenchError(f"{name} exited with {code} after DONE" + logs_of(procs))
        if content_bytes is None:
            sizes = [os.path.getsize(d) for d in dests if d != "/dev/null"]
            content_bytes = max(sizes) if sizes else image_bytes
        cpu = [by_host[h].get("cpu_seconds") for h in hosts]
        if None in cpu:
            raise BenchError(f"a client reported no cpu_seconds: {by_host}")
        stream = rnd["finished"] - seen_streaming if seen_streaming else float("nan")
        goodput = content_bytes / stream / 1e6
        gb = content_bytes / 1e9
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
            "cpu_s_per_gb_med": median(cpu) / gb,
            "cpu_s_per_gb_max": max(cpu) / gb,
            "cpu_start_s": cpu_start,
            "master_cpu_s": (master_cpu1 - master_cpu0
                             if master_cpu0 is not None and master_cpu1 is not None else None),
            # the clients' CPU over the machine's during the stream: near 1, the CPUs (not
            # the links) set the pace, as for long chains on a 2-CPU machine
            "cpu_share": sum(cpu) / stream / (os.cpu_count() or 1),
            "states": {h: by_host[h]["state"] for h in hosts},
            "all_done": True,
        }
    finally:
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
                         "(image + a destination per client): use --dest null or a smaller --size")


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
    parser.add_argument("--mode", choices=("scaling", "chains", "images", "udpcast"),
                        default="scaling",
                        help="scaling: chains of --clients on a random raw image (default); "
                             "chains: --room clients in each of --chains chains; "
                             "images: one client, each --image in turn; "
                             "udpcast: thepusher and UDPcast's multicast, round by round, "
                             "for each N of --clients (tests/bench/peer_udpcast.py)")
    parser.add_argument("--clients", type=parse_clients, default=None,
                        help="chain lengths for --mode scaling (default 1,2,4,8,16), client "
                             "counts for --mode udpcast (default 1,2,4,8)")
    parser.add_argument("--chains", type=parse_clients, default=[1, 2, 4],
                        help="chain counts K for --mode chains (default 1,2,4); the master's "
                             "link is K x --rate")
    parser.add_argument("--room", type=int, default=8,
                        help="clients for --mode chains (default 8)")
    parser.add_argument("--rate", type=_argument(rate_bits), default="1gbit",
                        help="every client port's rate, tc units (default 1gbit)")
    parser.add_argument("--master-rate", type=_argument(rate_bits), default=None,
                        help="the master port's rate (default: --rate)")
    parser.add_argument("--delay", type=_argument(delay_ms), default="0ms",
                        help="one-way delay added as packets leave each machine, e.g. 1ms "
                             "(needs sch_netem; default 0ms: none)")
    parser.add_argument("--size", type=parse_size, default=None,
                        help="image size for --mode scaling and for the standard images of "
                             "--mode images (default 1G = 1 GiB), for --mode udpcast "
                             "(default 256M)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per row; medians (default 3)")
    parser.add_argument("--image", action="append", metavar="PATH[:COMPRESSION]",
                        help="--mode images: an image file, compression NONE/GZIP/BZ2/XZ "
                             "(default from .gz/.bz2/.xz); repeat for more (default: the "
                             "standard set of tests/bench/bench_images.py)")
    parser.add_argument("--dest", choices=("shm", "null"), default="shm",
                        help="clients write files in /dev/shm (default) or /dev/null")
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
    udpcast = args.mode == "udpcast"
    if args.clients is None:
        args.clients = [1, 2, 4, 8] if udpcast else [1, 2, 4, 8, 16]
    if args.size is None:
        args.size = 256 << 20 if udpcast else 1 << 30
    if udpcast and args.dest != "shm":
        parser.error("--mode udpcast checks every copy: it needs --dest shm")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.pyz and not os.path.isfile(args.pyz):
        parser.error(f"{args.pyz} not found: run `make` first, or pass --source")
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces, tc)")
    if args.mode == "chains" and not max(args.chains) <= args.room <= MAX_CLIENTS:
        parser.error(f"--room must be from the largest of --chains to {MAX_CLIENTS}")
    n = {"scaling": max(args.clients), "chains": args.room,
         "udpcast": max(args.clients)}.get(args.mode, 1)
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
        if args.mode in ("scaling", "chains", "udpcast"):
            check_room(args.size * (1 + (n if args.dest == "shm" else 0)))
        if args.mode == "chains":
            drops = mode_chains(args)
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
