"""The client: register with the master, prepare, take part in one round, report.

Runs on each PXE-booted machine (and, for tests and the demo, many times on one
machine with distinct --bind addresses, since the master tells clients apart by
source IP). The data work is the hop's (chain/hop/); this module is the conversation around it.
"""

import logging
import resource
import socket
import sys
import threading
import time
from typing import Dict, Optional, Union

from thepusher import signing, syscalls
from thepusher.chain import wire
from thepusher.chain.hop import Hop, HopConfig
from thepusher.client import free_map
from thepusher.client.choose import NoDisk, resolve
from thepusher.client.machine import disk_size, local_mac
from thepusher.client.master_link import MasterLink, MasterRefused, MasterUnreachable
from thepusher.client.scripts import personalize_copy, run_script, words
from thepusher.console import ProgressLine, banner
from thepusher.disk import gpt
from thepusher.disk.inventory import inventory
from thepusher.disk.target import Target, TarTarget
from thepusher.plan import (DEFAULT_DATA_PORT, MAX_DISKS, PlanError, RoundFailed, Start, Task,
                            start_from_json)
from thepusher.units import duration
from thepusher.units import size as human_bytes

log = logging.getLogger("thepusher.client")

REPORT_EVERY = 1.0
REFUSED_RETRY = 10.0  # seconds before registering again after an answer we do not trust
# How long a final report is retried while the master does not answer. A DONE is worth
# waiting for (a master restarting takes a while, and then it takes late reports); an
# ERROR the master learns anyway when the client stays silent, and a machine whose
# master is gone should be free to boot again soon.
FINAL_PATIENCE = {"DONE": 120.0, "ERROR": 5.0}


class Client:
    def __init__(
        self,
        master: str,
        bind: Optional[str] = None,
        destination: Optional[str] = None,
        data_port: int = DEFAULT_DATA_PORT,
        secret: str = "",
    ) -> None:
        self.link = MasterLink(master, bind)
        # With a secret, only tasks and starts the master holding it signed are acted on.
        self.secret = secret
        self._nonce = ""  # sent with the registration whose task we took
        self._registered_as = ""  # the address the master knows us by
        self._refused = False
        self.bind = bind
        self.destination = destination
        self.listener = socket.create_server((bind or "", data_port), backlog=8)
        self._streaming_until = 0.0
        # The master's reason, once it ended our part in the round (an admin aborted it,
        # the image changed, we were skipped or given up on, our DONE was refused).
        self._aborted: Optional[str] = None
        self._lost_round = False  # the master restarted and holds no stream for us
        self.data_port = self.listener.getsockname()[1]

    def run(self) -> int:
        """One imaging round; exit status 0 only for a verified copy."""
        try:
            return self._run()
        except (MasterRefused, PlanError) as e:
            log.error("ERROR: %s", e)
            show_banner("ERROR", [str(e)])
            return 1
        finally:
            self.listener.close()

    def _run(self) -> int:
        task = self._register()
        destination = self.destination or task.destination
        try:  # "auto" is settled before preImage, so that it and the write see one disk
            destination = resolve(destination, task.disk)
        except NoDisk as e:
            error: Optional[str] = str(e)
        else:
            error = run_script("preImage", task.pre_image, self._words(task))
        # The disk as preImage left it: the master checks the image fits before a round.
        self._call("POST", "/api/ready", {"error": error or "", "destination": destination,
                                          "disk_size": disk_size(destination)})
        if error:
            log.error("ERROR: %s", error)
            show_banner("ERROR", [error, "This machine was not imaged."])
            return 1
        start = self._wait_for_start(task)
        if isinstance(start, RoundFailed):  # the round failed before it reached us
            log.error("ERROR: %s", start.error)
            show_banner("ERROR", [start.error, "This machine was not imaged."])
            return 1
        return self._receive(start, destination, task)

    # -- steps ---------------------------------------------------------------------

    def _register(self) -> Task:
        """Register, retrying with backoff until the master answers and gives us a task."""
        delay = 1.0
        while True:
            nonce = signing.new_nonce()  # fresh each time: no earlier answer passes for this one
            try:
                answer = self.link.call("POST", "/api/register", {
                    "data_port": self.data_port,
                    "mac": local_mac(),
                    "disk_size": disk_size(self.destination) if self.destination else None,
                    "disks": [disk.to_json() for disk in inventory()[:MAX_DISKS]],
                    "nonce": nonce,
                })
            except MasterUnreachable as e:
                log.warning("cannot register (%s); retrying in %.0f s", e, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            if answer.get("task") and self.secret:
                why = signing.problem(self.secret, signing.TASK, answer, nonce,
                                      self.link.local_host)
                if why is not None:
                    self._refuse("task not signed by the master holding the secret: refusing "
                                 "to run it", why)
                    continue
            if answer.get("task"):
                self._nonce = nonce
                self._registered_as = str(answer.get("host") or "")
                task = Task.from_json(answer["task"])
                log.info(
                    "registered as %s in group %s: image %s -> %s",
                    answer["host"], task.group, task.image, self.destination or task.destination,
                )
                return task
            log.warning(
                "registered as %s, but no client group lists this host; asking again in 10 s",
                answer.get("host"),
            )
            time.sleep(10)

    def _words(self, task: Task) -> Dict[str, str]:
        return words(task, self.link.host, self._registered_as)

    def _wait_for_start(self, task: Task) -> Union[Start, RoundFailed]:
        log.info("ready; waiting for group %s to start", task.group)
        while True:
            answer = self._call("GET", "/api/next?wait=20", timeout=40.0)
            if answer.get("action") in (Start.ACTION, RoundFailed.ACTION):
                why = self.secret and signing.problem(self.secret, signing.START, answer,
                                                      self._nonce, self.link.local_host)
                if why:
                    self._refuse("start not signed by the master holding the secret: refusing "
                                 "to act on it", why)
                    continue
                return start_from_json(answer)

    def _refuse(self, what: str, why: str) -> None:
        """An answer a rogue master could have sent: say so (the banner once), wait, and
        ask again, so that the real master still reaches this machine."""
        where = f"{self.link.host}:{self.link.port}"
        log.error("ERROR: %s: the answer from %s: %s; asking again in %.0f s",
                  what, where, why, REFUSED_RETRY)
        if not self._refused:
            self._refused = True
            show_banner("ERROR", [f"{what}:", f"the answer from {where}: {why}",
                                  "Nothing was run or written. Still asking the master."])
        time.sleep(REFUSED_RETRY)

    def _receive(self, start: Start, destination: str, task: Task) -> int:
        secret, io_timeout = start.secret, start.io_timeout
        # Before our first report arms us: the master streams only once every hop is armed.
        free_runs, free_map_error = free_map.for_start(self.link, start)
        config = HopConfig(
            session=start.session,
            secret=secret,
            expect=wire.Expected(
                image=start.image,
                stream_size=start.stream_size,
                content_size=start.content_size,
                content_sha256=start.sha256,
                compression=start.compression,
                record_size=start.record_size,
                free_bytes=start.free_bytes, free_map_sha256=start.free_map_sha256,
            ),
            verify=start.verify,
            position=start.position,
            window=start.window,
            downstream=list(start.downstream),
            fetch_range=lambda offset, length, records=False: self.link.fetch_range(
                start.session, secret, offset, length, io_timeout, records
            ),
            round_alive=lambda: time.monotonic() < self._streaming_until,
            master_gone=lambda: self._master_gone(io_timeout),
            accept_timeout=start.accept_timeout,
            io_timeout=io_timeout,
            source=self.bind,
            free_runs=free_runs,
            free_map_error=free_map_error,
        )
        place = f"{start.position}/{start.chain_length}"
        if start.chains > 1:
            place += f" of chain {start.chain}/{start.chains}"
        log.info("round %s: position %s, writing %s", start.round, place, destination)
        target = (TarTarget(destination) if task.type == "TAR"
                  else Target(destination, discard=task.discard))
        hop = Hop(self.listener, config, target)
        worker = threading.Thread(target=hop.run, name="hop", daemon=True)
        worker.start()
        where = f'client {place} of room "{task.group}"'
        sampler = Sampler(hop, start.content_size)
        line = ProgressLine(where, start.content_size, log)
        # The first BUSY arms us: the master streams once every client has sent one.
        self._report(start, "BUSY", sampler.sample())
        while not hop.done.wait(REPORT_EVERY) and self._aborted is None:
            fields = sampler.sample()
            line.update(fields["bytes_done"])
            self._report(start, "BUSY", fields)
        final = sampler.sample()
        line.close(final["bytes_done"])
        took = f"{human_bytes(final['bytes_done'])} in {duration(line.elapsed())}"
        if self._aborted is not None:
            # Leaving ends the process, and with it the hop's connections: the hops before
            # and after us see their streams end and hear of the abort themselves.
            log.error("ERROR: %s", self._aborted)
            show_banner("ERROR", [self._aborted, f"image {task.image} was not written to "
                                  f"{destination} ({took}); {where}, round {start.round}"])
            return 1
        error, after, short_of = hop.error, [], f"was not written to {destination} ({took})"
        if error is None and task.type == "IMG":
            short_of = f"was written to {destination} and verified, but its disk's end is not right"
            try:
                after = gpt.fit_to_disk(destination, start.content_size, task.grow)
            except gpt.FitError as e:
                error = f"{e} (the image itself was written and verified)"
        if error is None and task.personalize:
            short_of = f"was written to {destination} and verified, but this machine is not itself"
            final["personalized"], error = personalize_copy(
                task, destination, REPORT_EVERY,
                lambda: self._report(start, "BUSY", sampler.sample()))
        if error is None:
            final["sha256"] = hop.digest
            final["verified_by"] = hop.verified_by
            final["after_write"] = after
            final["auth"] = wire.report_mac(secret, start.session, "DONE", hop.digest,
                                            final["bytes_done"])
            self._report(start, "DONE", final, final=True)
            if self._aborted is not None:  # the master refused our DONE: it says why
                log.error("ERROR: %s", self._aborted)
                show_banner("ERROR", [self._aborted, f"image {task.image} was written to "
                                      f"{destination} but the master did not accept it; {where}, "
                                      f"round {start.round}"])
                return 1
            checked = "read back and verified" if hop.verified_by == "readback" else "verified"
            log.info("DONE: %s %s, sha256 %s", destination, checked, hop.digest)
            for line in after:
                log.info("%s: %s", destination, line)
            for host, reason in hop.skipped:
                log.warning("skipped next hop %s: %s", host, reason)
            if hop.forward_error:
                log.warning("the next hop did not get the image: %s", hop.forward_error)
            show_banner("DONE", [
                f"image {task.image} written to {destination} and {checked}",
                f"sha256 {hop.digest}",
                *after,
                f"{took}; {where}, round {start.round}",
            ] + ([f"personalized as {task.hostname}"] if task.personalize else []))
            error = run_script("postImage", task.post_image, self._words(task))
            if error:
                log.warning("%s", error)
            return 0
        final["error"] = error
        self._report(start, "ERROR", final, final=True)
        log.error("ERROR: %s", error)
        show_banner("ERROR", [error, f"image {task.image} {short_of}; {where}, round {start.round}"])
        return 1

    def _report(self, start: Start, state: str, fields: dict, final: bool = False) -> None:
        """Progress is best effort; the final state is retried so the master hears it,
        for a while (FINAL_PATIENCE) if it does not answer.

        What the master answers counts: `ok: false` means it ended our part in the
        round (or refused our DONE), with the reason; `lost_round` that it restarted
        and holds no stream for us any more."""
        body = dict(fields, state=state, session=start.session)
        give_up = time.monotonic() + (FINAL_PATIENCE[state] if final else 0.0)
        delay = 1.0
        while True:
            try:
                answer = self.link.call("POST", "/api/report", body, timeout=5.0)
            except (MasterUnreachable, MasterRefused) as e:
                log.warning("report failed: %s", e)
                if time.monotonic() + delay > give_up:
                    return
                time.sleep(delay)
                delay = min(2 * delay, 8.0)
                continue
            if answer.get("ok") is False:
                self._aborted = str(answer.get("aborted") or answer.get("reason")
                                    or "the master ended this client's part in the round")
            self._lost_round = bool(answer.get("lost_round"))
            if answer.get("streaming"):
                # Believe it for a while: a master that stops answering stops counting.
                self._streaming_until = time.monotonic() + 2 * start.io_timeout
            return

    def _master_gone(self, io_timeout: float) -> Optional[str]:
        """Why the master can no longer feed our chain, or None: it has not answered for
        io_timeout, or it restarted and lost the round."""
        if self._lost_round:
            return "the master restarted and holds no stream for this round"
        silent = time.monotonic() - self.link.answered
        if silent >= io_timeout:
            return f"the master has not answered for {silent:.0f} s"
        return None

    def _call(self, method: str, path: str, body: Optional[dict] = None, timeout: float = 10.0):
        """A call that must succeed: retry until the master answers."""
        delay = 1.0
        while True:
            try:
                return self.link.call(method, path, body, timeout)
            except MasterUnreachable as e:
                log.warning("%s; retrying in %.0f s", e, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)


def show_banner(word: str, lines) -> None:
    """The big DONE or ERROR at the end, on the console (stderr, where the log goes),
    terminal or not: the netboot console may be a file or a serial port."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.write(banner(word, lines))
    sys.stderr.flush()


class Sampler:
    """Bytes, rate and resources for the reports to the master."""

    def __init__(self, hop: Hop, total: int) -> None:
        self.hop = hop
        self.total = total
        self.last = (time.monotonic(), 0)
        self.rate = 0.0

    def sample(self) -> dict:
        now = time.monotonic()
        done = self.hop.written
        t0, b0 = self.last
        if now - t0 >= 0.5:
            self.rate = (done - b0) / (now - t0)
            self.last = (now, done)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "bytes_done": done,
            "bytes_total": self.total,
            "free_bytes": self.hop.free_bytes,
            "rate": self.rate,
            "queues": dict(self.hop.queue_fill(), unread=self._unread()),
            "skipped": [list(entry) for entry in self.hop.skipped],
            "read_back": self.hop.read_back,
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "max_rss_kb": syscalls.max_rss_kib(usage.ru_maxrss),
        }

    def _unread(self) -> Optional[float]:
        """How full the upstream socket is with what this hop has not read yet: near 1, it
        reads slower than it is sent to (short of CPU), whatever its queues say; the
        master tells a slow hop from a slow link by it (master/bottleneck.py)."""
        sock = self.hop.upstream_socket
        share = syscalls.unread_share(sock) if sock is not None else None
        return None if share is None else round(share, 2)
