"""The sending end of a data connection, which heals: it always feeds the first live hop.

Both the master (the chain's source) and every forwarding hop send through a Link. It
knows the ordered list of hops after the sender. When the current one dies (reset,
EOF) or makes no progress for the I/O timeout and does not answer a liveness probe,
the Link gives up on it, reports it as skipped, and connects to the next one, which
answers with the first stream byte it lacks; the caller then resends from there.
A slow hop that still answers the probe is waited for, never skipped.
"""

import logging
import socket
import time
from typing import Callable, List, Optional, Tuple

from thepusher.chain import wire

log = logging.getLogger("thepusher.relay")

Address = Tuple[str, int]
PROBE_TIMEOUT = 3.0
HANDSHAKE_TIMEOUT = 5.0
REFUSED_FIRST_WAIT = 0.25


class LinkBroken(Exception):
    """The connection to the current hop failed; call `Link.reopen()`.

    `dead` means the hop did not answer a probe: no point asking it again.
    """

    def __init__(self, message: str, dead: bool = False) -> None:
        super().__init__(message)
        self.dead = dead


class NoHopLeft(Exception):
    """Every hop after this sender is skipped or refused the stream."""


def probe(address: Address, timeout: float = PROBE_TIMEOUT) -> bool:
    """Is a hop alive? Its listener answers HELLO from a control thread even while its
    data threads are busy or blocked on a slow disk; a stopped or dead one cannot."""
    try:
        with socket.create_connection(address, timeout=timeout) as s:
            wire.recv_hello(s)
            s.sendall(wire.PROBE_MAGIC)
        return True
    except (OSError, wire.ProtocolError):
        return False


class Link:
    def __init__(
        self,
        hops: List[Address],
        header: wire.StreamHeader,
        secret: bytes,
        timeout: float,
        source: Optional[str] = None,
        on_skip: Optional[Callable[[str, str], None]] = None,
    ) -> None:
        self.hops = hops
        self.header = header
        self.secret = secret
        self.timeout = timeout
        self.source = source
        self.on_skip = on_skip or (lambda host, reason: None)
        self.index = 0
        self._asked_again = -1  # the hop reopen() already gave a second chance
        self.sock: Optional[socket.socket] = None
        self.skipped: List[Tuple[str, str]] = []

    @property
    def host(self) -> str:
        return self.hops[self.index][0] if self.index < len(self.hops) else "-"

    def open(self) -> int:
        """Connect to the first hop that takes the stream; return the offset it wants.

        A hop that is not listening or does not answer the handshake in time is
        skipped at once; one that refuses (it still trusts its old upstream, whose
        end it has not yet seen) is asked again, for up to the I/O timeout.
        """
        while self.index < len(self.hops):
            address = self.hops[self.index]
            wait, waited = REFUSED_FIRST_WAIT, 0.0
            while True:
                try:
                    return self._connect(address)
                except wire.ProtocolError as e:
                    # Usually it has not yet read to its dead upstream's EOF: soon it
                    # will, so ask again quickly, then less often, for up to io_timeout.
                    error = str(e)
                    if waited >= self.timeout:
                        break
                    log.info("next hop %s: %s; asking again in %.2f s", address[0], e, wait)
                    time.sleep(wait)
                    waited += wait
                    wait *= 2
                except OSError as e:
                    error = str(e) or type(e).__name__
                    break
            self.skip(f"could not take the stream: {error}")
        raise NoHopLeft("no hop after this one takes the stream")

    def reopen(self, broken: LinkBroken) -> int:
        """After a failed connection: ask the same hop once more (it may only have
        timed us out, e.g. on a stall further up, and now waits for an upstream), else
        skip it. Returns the offset the hop that takes the stream wants."""
        self.close()
        if not broken.dead and self._asked_again != self.index:
            self._asked_again = self.index
            try:
                resume = self._connect(self.hops[self.index])
                log.info("next hop %s took the stream again at byte %d", self.host, resume)
                return resume
            except (OSError, wire.ProtocolError):
                pass
        self.skip(str(broken))
        return self.open()

    def _connect(self, address: Address) -> int:
        self.sock, resume = wire.connect(
            address, self.header, self.secret, min(HANDSHAKE_TIMEOUT, self.timeout), self.source
        )
        self.sock.settimeout(self.timeout)
        return resume

    def skip(self, reason: str) -> None:
        host = self.host
        self.close()
        log.warning("skipping hop %s: %s", host, reason)
        self.skipped.append((host, reason))
        self.on_skip(host, reason)
        self.index += 1

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def send(self, data, offset: int) -> None:
        """Send all of `data` (stream byte `offset` is where it starts, for messages)."""
        view = memoryview(data)
        while view:
            try:
                n = self.sock.send(view)
            except socket.timeout:
                self._stalled(offset)
                continue
            except OSError as e:
                raise LinkBroken(f"send failed at stream byte {offset}: {e}") from None
            view = view[n:]

    def finish(self, offset: int) -> None:
        """After END, wait until the hop closes its end: only then has its reader taken
        everything. Until then the bytes may still sit in a stopped hop's socket buffer,
        and a hop found dead now is skipped like any other."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            raise LinkBroken(f"connection lost at the end of the stream: {e}") from None
        while True:
            try:
                if not self.sock.recv(4096):
                    return
            except socket.timeout:
                self._stalled(offset)
            except OSError as e:
                raise LinkBroken(f"connection lost at the end of the stream: {e}") from None

    def _stalled(self, offset: int) -> None:
        """No progress for the I/O timeout: slow (alive) means wait on, stopped means skip."""
        if probe(self.hops[self.index], min(PROBE_TIMEOUT, self.timeout)):
            log.info("next hop %s is slow but alive at stream byte %d; waiting", self.host, offset)
            return
        raise LinkBroken(
            f"no progress for {self.timeout:.0f} s at stream byte {offset} and no answer to a probe",
            dead=True,
        )
