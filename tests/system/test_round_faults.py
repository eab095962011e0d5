"""Randomized faults on whole rounds: DONE stays true through what admins and insiders do.

Where test_faults.py kills and stops hops of a bare chain, these plans run the whole
system (a real master process, real client processes, real cp) through the events of
issue 15, each with or without a client killed (kill -9) or stopped (SIGSTOP, then
SIGCONT) at a random moment of the stream:

- replace: the image is replaced between two rounds with `cp`, by other bytes of the
  same size that differ from the old ones only where the old image was zero;
- replace-cp-p: the same with `cp -p` (size and mtime kept) while the master is down;
- shorten: the image is cut short (`cp shorter.img`) while the master streams it;
- restart: the master is killed after it sent the whole stream, and started again;
- insider: a member of the round feeds the hop after it a forged image under a header
  signed with the round's secret, before the master streams.

Every plan asserts: no false DONE (a client that exits 0, and a host the master records
DONE, holds exactly the bytes the image file had when its round started), no hang
(every process ends within a bound), and no verified host recorded ERROR (a client
that exits 0 is DONE in the master's record of its round, restarts included).

`make test` runs one plan of each kind (THEPUSHER_ROUND_FAULTS=5); the long mode,
THEPUSHER_ROUND_FAULTS=120, runs 120.
"""

import hashlib
import os
import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from tests.conftest import Proc, sha256_file, write_config
from tests.support.members import Member
from thepusher.chain import wire

RUNS = int(os.environ.get("THEPUSHER_ROUND_FAULTS", "5"))
KINDS = ["replace", "replace-cp-p", "shorten", "restart", "insider"]
HOSTS = ["127.0.0.31", "127.0.0.32", "127.0.0.33"]
MiB = 1 << 20
SETTINGS = ("io_timeout = 2\naccept_timeout = 10\nreport_timeout = 5\narm_timeout = 10\n"
            "replay_window = 16\n")
BOUND = 90  # seconds any client process may take: more is a hang


@dataclass
class Plan:
    kind: str
    seed: int
    crash: Optional[str] = None  # "kill" or "stop": one client, at a random moment
    victim: int = 0  # index into HOSTS

    @property
    def id(self) -> str:
        return f"{self.seed}-{self.kind}" + (f"-{self.crash}{self.victim + 1}" if self.crash else "")


def plans(count: int) -> List[Plan]:
    rng = random.Random(20261207)
    out = []
    for n in range(count):
        kind = KINDS[n % len(KINDS)]
        crash = rng.choice([None, None, "kill", "stop"]) if n >= len(KINDS) else None
        out.append(Plan(kind, n, crash, rng.randrange(len(HOSTS))))
    return out


@dataclass
class Run:
    """What happened, for the checks: every client process with the round it joined, and
    the sha256 the image file had when each round started."""

    lab: object
    rng: random.Random
    clients: List[Tuple[int, str, Proc]] = field(default_factory=list)  # (round, host, proc)
    content: Dict[int, str] = field(default_factory=dict)  # round -> sha256 of the image then
    harmed: set = field(default_factory=set)  # (round, host) killed or stopped

    def start_round(self, number: int, hosts: List[str], image: Path) -> List[Proc]:
        self.content[number] = sha256_file(image)
        procs = [self.lab.start_client(h) for h in hosts]
        self.clients += [(number, h, p) for h, p in zip(hosts, procs)]
        return procs

    def wait_all(self, procs: List[Proc]) -> None:
        for p in procs:
            p.wait(BOUND)


def zeroed_image(path: Path, size: int) -> bytearray:
    """Random bytes with a long zero run in the middle (sent as ZERO records)."""
    data = bytearray(os.urandom(size))
    data[size // 4 : size // 2] = bytes(size // 4)
    path.write_bytes(data)
    return data


def other_inside_the_zero_run(data: bytearray) -> bytes:
    new = bytearray(data)
    at = len(data) // 4 + len(data) // 8
    new[at : at + 4096] = os.urandom(4096)
    return bytes(new)


def crash(run: Run, plan: Plan, number: int, procs: List[Proc], hosts: List[str]) -> None:
    """kill -9 or stop one client at a random moment once its stream has begun."""
    if not plan.crash or plan.victim >= len(procs):
        return
    victim, host = procs[plan.victim], hosts[plan.victim]

    def act() -> None:
        deadline = time.monotonic() + 30
        while "receiving img" not in victim.output() and time.monotonic() < deadline:
            if victim.popen.poll() is not None:
                return
            time.sleep(0.01)
        time.sleep(run.rng.uniform(0, 0.3))
        run.harmed.add((number, host))
        if plan.crash == "kill":
            victim.kill()
        else:
            victim.kill(signal.SIGSTOP)
            time.sleep(run.rng.uniform(1, 4))
            victim.kill(signal.SIGCONT)

    threading.Thread(target=act, daemon=True).start()


def rounds_finished(lab, count: int) -> List[dict]:
    return lab.wait_for(
        lambda: len(h := lab.status()["history"]) >= count and lab.round()["phase"] == "finished" and h,
        BOUND, f"{count} rounds finished")


# -- the kinds ------------------------------------------------------------------------------


def begin(run: Run, size: int, io_timeout: int = 2):
    """A zeroed image of `size`, the config, the master up: (image, master)."""
    lab = run.lab
    image = lab.images / "disk.img"
    zeroed_image(image, size)
    write_config(lab.images, HOSTS, settings=SETTINGS.replace("io_timeout = 2",
                                                              f"io_timeout = {io_timeout}"))
    return image, lab.start_master()


def replace(run: Run, plan: Plan, keep_mtime: bool) -> int:
    lab = run.lab
    image, _ = begin(run, 16 * MiB)
    old = bytearray(image.read_bytes())
    procs = run.start_round(1, HOSTS, image)
    run.wait_all(procs)
    rounds_finished(lab, 1)
    new = lab.root / "new.img"
    new.write_bytes(other_inside_the_zero_run(old))
    if keep_mtime:
        lab.kill_master()
        mtime = image.stat().st_mtime_ns
        os.utime(new, ns=(mtime, mtime))
        subprocess.run(["cp", "-p", str(new), str(image)], check=True)
        lab.start_master()
    else:
        subprocess.run(["cp", str(new), str(image)], check=True)
    procs = run.start_round(2, HOSTS, image)
    crash(run, plan, 2, procs, HOSTS)
    run.wait_all(procs)
    return 2


def shorten(run: Run, plan: Plan) -> int:
    """The first client is stopped once the stream is under way, which holds the master
    mid-image; the file is cut short; the client goes on."""
    lab = run.lab
    image, _ = begin(run, 64 * MiB, io_timeout=8)
    procs = run.start_round(1, HOSTS, image)
    crash(run, plan, 1, procs, HOSTS)
    lab.wait_for(lambda: any("receiving img" in p.output() or p.popen.poll() is not None
                             for p in procs[1:]), 30, "the stream under way")
    procs[0].kill(signal.SIGSTOP)
    time.sleep(0.3)
    shorter = lab.root / "shorter.img"
    shorter.write_bytes(os.urandom(4 * MiB))
    subprocess.run(["cp", str(shorter), str(image)], check=True)
    procs[0].kill(signal.SIGCONT)
    run.wait_all(procs)
    rounds_finished(lab, 1)
    procs = run.start_round(2, HOSTS, image)
    lab.wait_for(lambda: lab.round()["number"] == 2
                 or all(lab.clients()[h]["state"] == "WAIT" for h in HOSTS), 30, "round 2 ready")
    if lab.round()["number"] == 1:  # after a failed round the group waits for `start`
        started = lab.cli("start", "room")
        assert started.returncode == 0 or lab.round()["number"] == 2, started.stderr
    run.wait_all(procs)
    return 2


def restart(run: Run, plan: Plan) -> int:
    lab = run.lab
    image, master = begin(run, 64 * MiB, io_timeout=20)
    procs = run.start_round(1, HOSTS, image)
    last = procs[-1]
    lab.wait_for(lambda: "receiving img" in last.output(), 30, "data reaching the last client")
    last.kill(signal.SIGSTOP)
    lab.wait_for(lambda: "master sent all" in master.output(), 30, "the stream to end")
    lab.restart_master()
    last.kill(signal.SIGCONT)
    crash(run, plan, 1, procs, HOSTS)
    run.wait_all(procs)
    return 1


def insider(run: Run, plan: Plan) -> int:
    lab = run.lab
    image, _ = begin(run, 16 * MiB)
    member = Member(lab, HOSTS[0], swallow=False)
    member.join()
    run.content[1] = sha256_file(image)
    procs = [lab.start_client(h) for h in HOSTS[1:]]
    run.clients += [(1, h, p) for h, p in zip(HOSTS[1:], procs)]
    start = member.take_start()
    lab.wait_for(lambda: all(lab.clients()[h]["state"] == "BUSY" for h in HOSTS[1:]), 30, "armed")
    forged = os.urandom(start["content_size"])
    # the first plan of each kind forges the facts too: the attack that used to pass
    true_facts = plan.seed >= len(KINDS) and run.rng.random() < 0.5
    header = wire.StreamHeader(
        session=start["session"], image="img", stream_size=len(forged), content_size=len(forged),
        content_sha256=start["sha256"] if true_facts else hashlib.sha256(forged).hexdigest(),
        sender=1,
    )
    try:
        sock, _ = wire.connect(tuple(start["downstream"][0]), header, bytes.fromhex(start["secret"]), 5)
    except (wire.ProtocolError, OSError):
        pass
    else:
        with sock:
            for pos in range(0, len(forged), MiB):
                sock.sendall(wire.pack_head(wire.DATA, MiB, pos) + forged[pos:pos + MiB])
            sock.sendall(wire.end_record(len(forged), header.content_sha256, len(forged)))
    crash(run, plan, 1, procs, HOSTS[1:])
    member.report("BUSY")
    run.wait_all(procs)
    return 1


RUNNERS = {
    "replace": lambda run, plan: replace(run, plan, keep_mtime=False),
    "replace-cp-p": lambda run, plan: replace(run, plan, keep_mtime=True),
    "shorten": shorten,
    "restart": restart,
    "insider": insider,
}


def check(run: Run, rounds: int) -> None:
    lab = run.lab
    history = {r["number"]: r for r in rounds_finished(lab, rounds)}
    last_round = {}  # host -> the last round it took part in (its disk holds that one's copy)
    for number, host, proc in run.clients:
        code = proc.popen.returncode
        record = history[number]
        last_round[host] = max(last_round.get(host, 0), number)
        if code == 0:  # no verified host recorded ERROR
            assert record["outcome"].get(host) == "DONE", \
                f"{host} exited DONE in round {number}, recorded {record['outcome']}: {record['errors']}"
    for host, number in last_round.items():
        record = history[number]
        exited = [p.popen.returncode for n, h, p in run.clients if (n, h) == (number, host)]
        if record["outcome"].get(host) == "DONE" or 0 in exited:
            # no false DONE: the disk holds the bytes the image file had at the round's start
            assert sha256_file(lab.disks / f"{host}.img") == run.content[number], \
                f"FALSE DONE: {host} in round {number}"
            assert record.get("sha256") == run.content[number], f"round {number} announced another image"


@pytest.mark.parametrize("plan", plans(RUNS), ids=lambda p: p.id)
def test_round_faults_never_give_false_done_nor_hang(lab, plan):
    run = Run(lab, random.Random(plan.seed))
    rounds = RUNNERS[plan.kind](run, plan)
    check(run, rounds)
    # Healing: with the master up, the hops nobody harmed end DONE (after a restart
    # nobody can fill a gap any more, so there only when no client was harmed).
    if plan.kind in ("replace", "replace-cp-p") or (plan.kind == "restart" and not plan.crash):
        for number, host, proc in run.clients:
            if (number, host) not in run.harmed:
                assert proc.popen.returncode == 0, f"{host} round {number}:\n{proc.output()[-3000:]}"
