"""Who may be our upstream: the data port's acceptor and its handshakes.

Only a connection that proves it holds this round's secret (HMAC over our fresh nonce),
comes from earlier in the chain and describes the same stream is offered to the reader
(rules.check_offer), and only while the reader has no working upstream. Everything else
is refused and logged; nothing it sent is written anywhere.

Threads: the acceptor, for the whole round, and one short-lived handshake per connection.
Owns (writes): shared.offers (puts), shared.refused; the pending handshakes.
Reads: shared.done (stop), shared.upstream_ok and shared.upstream (refuse while the
reader has a working upstream), the config.
Sets no events.
"""

import collections
import logging
import socket
import threading
import time
from typing import Tuple

from thepusher.chain import rules, wire
from thepusher.chain.hop.config import HopConfig
from thepusher.chain.hop.shared import Offer, Shared


log = logging.getLogger("thepusher.hop")

HANDSHAKE_TIMEOUT = 5.0  # a connection to the data port has this long to prove itself
MAX_HANDSHAKES = 64  # connections proving themselves at once; more drop the oldest


class Admission:
    """Answer every connection on our data port for the whole round.

    Each connection proves itself in its own thread, within HANDSHAKE_TIMEOUT in all:
    idle or trickling peers cannot keep the real upstream waiting behind them. At most
    MAX_HANDSHAKES are pending; a new connection beyond that drops the oldest, so a
    flood of idle ones cannot lock the port either.
    """

    def __init__(self, listener: socket.socket, config: HopConfig, shared: Shared) -> None:
        self.listener = listener
        self.config = config
        self.shared = shared
        self._pending: "collections.OrderedDict[socket.socket, threading.Thread]" = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()  # guards _pending, and putting an offer after done

    def serve(self) -> None:
        """The acceptor thread: until the hop is done, then ends every pending handshake."""
        self.listener.settimeout(0.5)
        try:
            while not self.shared.done.is_set():
                try:
                    sock, peer = self.listener.accept()
                except socket.timeout:
                    continue
                except OSError as e:
                    log.error("data port failed: %s", e)
                    return
                with self._lock:
                    while len(self._pending) >= MAX_HANDSHAKES:
                        oldest, _ = self._pending.popitem(last=False)
                        _shut(oldest)  # its thread sees the connection end and refuses it
                    t = threading.Thread(
                        target=self._handshake, args=(sock, peer), name="hop-handshake", daemon=True
                    )
                    self._pending[sock] = t
                t.start()
        finally:
            with self._lock:
                waiting = list(self._pending.items())
            for sock, t in waiting:
                _shut(sock)
                t.join()

    def close(self) -> None:
        """Close the offers nobody took; once the acceptor has stopped, none come after."""
        while not self.shared.offers.empty():
            self.shared.offers.get_nowait().sock.close()

    def _handshake(self, sock: socket.socket, peer: Tuple[str, int]) -> None:
        """One would-be upstream: an authenticated offer for the reader, or refused."""
        # A peer gets a short while in all to prove itself, so an idle or trickling
        # connection cannot keep a thread (or the real upstream) waiting for long.
        limit = min(HANDSHAKE_TIMEOUT, self.config.io_timeout)
        deadline = time.monotonic() + limit
        offered = False
        try:
            sock.settimeout(limit)
            wire.tune(sock)
            nonce = wire.new_nonce()
            wire.send_hello(sock, nonce)
            raw, mac = wire.recv_header(sock, deadline)
            header = wire.verify_header(raw, mac, self.config.secret, nonce)
            working = self.shared.upstream if self.shared.upstream_ok.is_set() else None
            rules.check_offer(
                header, session=self.config.session, position=self.config.position,
                expect=self.config.expect, working_upstream=working,
            )
            with self._lock:
                if self._pending.pop(sock, None) is not None and not self.shared.done.is_set():
                    self.shared.offers.put(Offer(sock, header, peer[0]))
                    offered = True
        except wire.Probe:
            pass
        except (wire.ProtocolError, OSError) as e:
            log.warning("refused data connection from %s:%s: %s", peer[0], peer[1], e)
            if not isinstance(e, OSError):
                self.shared.refused = (time.monotonic(), f"refused {peer[0]}: {e}")
            try:
                wire.send_reject(sock, str(e))
            except OSError:
                pass
        finally:
            if not offered:
                with self._lock:
                    self._pending.pop(sock, None)
                sock.close()


def _shut(sock: socket.socket) -> None:
    """End a connection another thread is reading: its recv returns at once."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
