"""Randomized fault injection on a real chain: hops are real processes, killed for real.

The master's streaming side (master/source.Source, with its healing Link) runs here in
the test process; each hop is tests/support/hop_process.py, a real process with its own
listener. Faults: kill -9 of one to three hops at random stream offsets (first,
middle, last, adjacent pairs all come up), and SIGSTOP (a hop stalled, not dead).

Invariants, for every run:
- no false DONE: a hop that reports its copy verified has exactly the image;
- no hang: every hop process ends within a bound;
- healing: every hop that was not killed or stopped ends DONE.
"""

import dataclasses
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ENV, ROOT, fast_tmp
from thepusher.chain import wire
from thepusher.master.images import ImageFile
from thepusher.master.source import Source, StreamFailed

RUNS = int(os.environ.get("THEPUSHER_FAULT_RUNS", "12"))
HOPS = 8
RECORD = 256 * 1024
TIMEOUT = 2.0  # I/O timeout: short, so stalls are detected quickly, with room for a busy CI


@pytest.fixture(scope="module")
def image():
    with tempfile.TemporaryDirectory(prefix="thepusher-faults-", dir=fast_tmp()) as d:
        path = Path(d) / "image"
        path.write_bytes(os.urandom(24 << 20))
        yield path


def run_chain(image: Path, workdir: Path, rng: random.Random, faults: dict) -> dict:
    """One round over HOPS real hop processes; `faults` maps position -> (signal, offset)."""
    data_digest = hashlib.sha256(image.read_bytes()).hexdigest()
    size = image.stat().st_size
    secret = os.urandom(32)
    header = wire.StreamHeader(
        session="faults", image="img", stream_size=size, content_size=size,
        content_sha256=data_digest, record_size=RECORD,
    )
    listeners = [socket.create_server((f"127.0.0.{21 + i}", 0)) for i in range(HOPS)]
    addresses = [s.getsockname()[:2] for s in listeners]
    procs = []
    for i, listener in enumerate(listeners):
        cfg = {
            "fd": listener.fileno(), "session": "faults", "secret": secret.hex(),
            "position": i + 1, "downstream": addresses[i + 1 :], "image": str(image),
            "destination": str(workdir / f"disk{i + 1}"), "timeout": TIMEOUT,
            "window": rng.choice([1 << 20, 4 << 20, 48 << 20]),
            "stream_ended": str(workdir / "stream-ended"),
            "expect": dataclasses.asdict(wire.Expected.of(header)),
        }
        procs.append(subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "support" / "hop_process.py"), json.dumps(cfg)],
            pass_fds=[listener.fileno()], env=ENV, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        ))
        listener.close()
    skipped_by_master = []
    opened = ImageFile(str(image))
    source = Source(opened, header, secret, addresses, TIMEOUT,
                    on_skip=lambda host, reason: skipped_by_master.append(host), check=data_digest)
    outcome = {}

    def stream():
        try:
            source.run()
        except StreamFailed as e:
            outcome["source_error"] = str(e)
        finally:
            opened.release()
            (workdir / "stream-ended").touch()

    sender = threading.Thread(target=stream, daemon=True)
    sender.start()
    pending = sorted(faults.items(), key=lambda kv: kv[1][1])
    while pending and sender.is_alive():
        position, (sig, offset) = pending[0]
        if source.sent >= offset:
            os.kill(procs[position - 1].pid, sig)
            pending.pop(0)
        else:
            time.sleep(0.001)
    for position, (sig, _) in pending:  # stream ended first: still inject, after the fact
        os.kill(procs[position - 1].pid, sig)
    sender.join(60)
    assert not sender.is_alive(), "master stream hung"
    results = {}
    for i, p in enumerate(procs):
        if (i + 1) in faults and faults[i + 1][0] == signal.SIGSTOP:
            p.kill()
        try:
            out, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            raise AssertionError(f"hop {i + 1} hung (faults {faults})")
        results[i + 1] = (p.returncode, out, err)
    outcome["results"] = results
    outcome["digest"] = data_digest
    outcome["skipped_by_master"] = skipped_by_master
    return outcome


def check_run(workdir: Path, faults: dict, outcome: dict) -> None:
    for position, (code, out, err) in outcome["results"].items():
        disk = workdir / f"disk{position}"
        if code == 0:
            got = hashlib.sha256(disk.read_bytes()).hexdigest()
            assert got == outcome["digest"], f"FALSE DONE at hop {position} (faults {faults})"
        elif position not in faults:
            raise AssertionError(
                f"hop {position} was not harmed but ended with {code} (faults {faults}, "
                f"master: {outcome.get('source_error')}, master skipped: "
                f"{outcome['skipped_by_master']}):\n{out}\n{err[-3000:]}"
            )


def fault_plans(count: int):
    rng = random.Random(20261127)
    size = 24 << 20
    for n in range(count):
        k = rng.choice([1, 1, 2, 3])
        if rng.random() < 0.3:  # adjacent pair (or triple)
            first = rng.randint(1, HOPS - k + 1)
            victims = list(range(first, first + k))
        else:
            victims = rng.sample(range(1, HOPS + 1), k)
        sigs = [signal.SIGSTOP if rng.random() < 0.2 else signal.SIGKILL for _ in victims]
        plan = {v: (s, rng.randint(RECORD, size - RECORD)) for v, s in zip(victims, sigs)}
        yield pytest.param(n, plan, id=f"run{n}-" + "-".join(
            f"{'stop' if s == signal.SIGSTOP else 'kill'}{v}" for v, (s, _) in sorted(plan.items())))


@pytest.mark.parametrize("seed, faults", list(fault_plans(RUNS)))
def test_random_faults_never_give_false_done_nor_hang(image, tmp_path, seed, faults):
    outcome = run_chain(image, tmp_path, random.Random(seed), faults)
    check_run(tmp_path, faults, outcome)


def test_chain_without_faults_all_verified(image, tmp_path):
    outcome = run_chain(image, tmp_path, random.Random(1), {})
    check_run(tmp_path, {}, outcome)
    assert all(code == 0 for code, _, _ in outcome["results"].values())
