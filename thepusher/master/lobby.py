"""Accepted connections wait here, without a thread, until their first bytes arrive.

A threading HTTP server gives every accepted connection a thread at once, and an idle
one keeps it until its request budget ends (server.TimedHandler): 10 000 idle
connections, 10 000 threads. Here one thread watches every connection that has not
spoken yet (epoll, through selectors); one gets a server thread only when its request
starts to arrive (at once when it is there as it is accepted, as a real client's
usually is: that costs one recv() more than a plain threading server), and then only
while its address has fewer than PER_SOURCE connections being served and the master
fewer than MAX_SERVED (limits.py); otherwise it is answered 503 at once and closed.

Bounds on what waits:
- a connection silent for `timeout` seconds after it was accepted is closed;
- waiting and served connections together stay within the connection budget (the
  open-file limit less what the master keeps for itself). When it is full the accept
  loop waits (new connections stay in the kernel's backlog) while the lobby serves
  those whose request came and closes the one that has waited longest for its first
  byte. Real clients send their request as soon as they connect, so a flood of idle
  connections delays none of them (a hop's data port does the same:
  chain/hop/admission.py).
"""

import collections
import json
import logging
import selectors
import socket
import threading
import time
from typing import Callable, Deque, Optional, Tuple

from thepusher.master import limits

log = logging.getLogger("thepusher.master")

Address = Tuple  # a peer's address as accept() gives it: (host, port[, flow, scope])


class Full(OSError):
    """No room for another connection yet. Raised from the server's get_request():
    socketserver gives up that attempt and tries again, while the connection waits in
    the kernel's backlog."""


class Lobby:
    def __init__(self, serve: Callable[[socket.socket, Address], None],
                 close: Callable[[socket.socket], None], timeout: float, budget: int,
                 per_source: int = limits.PER_SOURCE, max_served: int = limits.MAX_SERVED) -> None:
        """`serve` starts a server thread for a connection that spoke; `close` shuts one
        down; `budget`: connections kept open at most, waiting and served."""
        self._serve = serve
        self._close = close
        self.timeout = timeout
        self.budget = budget
        self._lock = threading.Lock()  # guards the counts, the arrivals and `_room_wanted`
        self._roomy = threading.Condition(self._lock)  # notified when a connection ends
        self._arrived: Deque[Tuple[socket.socket, Address]] = collections.deque()
        self._waiting_count = 0  # arrived or waiting
        self._served = limits.Slots(max_served, per_source, "connections")  # in a server thread
        self._room_wanted = False  # the accept loop waits for the budget to allow one more
        self._stopping = False
        # Only the lobby thread touches these: accepted order is deadline order.
        self._waiting: "collections.OrderedDict[socket.socket, Tuple[Address, float]]" = \
            collections.OrderedDict()
        self._selector = selectors.DefaultSelector()
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self._selector.register(self._wake_in, selectors.EVENT_READ)
        self._full = limits.Every()
        self._crowded = limits.Every()
        self._thread = threading.Thread(target=self._run, name="lobby", daemon=True)
        self._thread.start()

    # -- other threads -------------------------------------------------------------

    def wait_for_room(self, timeout: float) -> bool:
        """Whether the budget allows one more connection; if not, ask the lobby to make
        room and wait for it up to `timeout` (the accept loop's thread, before accept())."""
        with self._lock:
            if self._open() < self.budget:
                return True
            self._room_wanted = True
        self._say(self._full, "%d connections open, as many as the master keeps: new ones "
                  "wait to be accepted", self.budget)
        self._wake()
        with self._lock:
            self._roomy.wait_for(lambda: self._open() < self.budget or self._stopping, timeout)
            return self._open() < self.budget

    def admit(self, sock: socket.socket, address: Address) -> None:
        """A connection just accepted (the accept loop's thread). One whose request is
        there already, as a real client's usually is, is served at once; the others
        wait in the lobby."""
        bytes_in = _bytes_in(sock)
        if bytes_in is not None:
            self._dispatch(sock, address, bytes_in)
            return
        with self._lock:
            self._waiting_count += 1
            self._arrived.append((sock, address))
        self._wake()

    def done(self, address: Address) -> None:
        """A served connection ended (its server thread's last act)."""
        self._served.release(address[0])
        with self._lock:
            self._roomy.notify()

    def stop(self) -> None:
        """Close every waiting connection and end the lobby thread."""
        with self._lock:
            self._stopping = True
            self._roomy.notify_all()
        self._wake()
        self._thread.join(5)

    def _open(self) -> int:
        return self._waiting_count + self._served.in_use

    # -- the lobby thread ----------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    break
            self._handle(self._selector.select(self._until_next_deadline()))
            self._take_arrivals()
            self._make_room()
            self._expire()
        self._shut_down()

    def _handle(self, events) -> None:
        for key, _ in events:
            if key.fileobj is self._wake_in:
                self._drain_wake()
            else:
                self._spoke(key.fileobj)

    def _until_next_deadline(self) -> float:
        if not self._waiting:
            return self.timeout
        _, deadline = next(iter(self._waiting.values()))
        return max(0.0, deadline - time.monotonic())

    def _take_arrivals(self) -> None:
        with self._lock:
            arrived, self._arrived = self._arrived, collections.deque()
        deadline = time.monotonic() + self.timeout
        for sock, address in arrived:
            try:
                self._selector.register(sock, selectors.EVENT_READ)
            except (OSError, ValueError):  # closed meanwhile
                self._forget(sock, False)
                continue
            self._waiting[sock] = (address, deadline)

    def _make_room(self) -> None:
        """The accept loop waits for room: serve (or refuse) those whose request came,
        then, if that was not enough, close the one that waited longest."""
        with self._lock:
            wanted, self._room_wanted = self._room_wanted, False
        if not wanted:
            return
        self._handle(self._selector.select(0))
        with self._lock:
            full = self._open() >= self.budget
        if full and self._waiting:
            self._say(self._crowded, "%d connections open, as many as the master keeps: "
                      "closing those that waited longest for their first request", self.budget)
            self._drop(next(iter(self._waiting)))

    def _expire(self) -> None:
        now = time.monotonic()
        while self._waiting:
            sock, (_, deadline) = next(iter(self._waiting.items()))
            if deadline > now:
                return
            self._drop(sock)

    def _spoke(self, sock: socket.socket) -> None:
        """Its first bytes came (or it closed)."""
        address, _ = self._waiting[sock]
        self._selector.unregister(sock)
        del self._waiting[sock]
        with self._lock:
            self._waiting_count -= 1
        self._dispatch(sock, address, _bytes_in(sock) is not False)

    def _dispatch(self, sock: socket.socket, address: Address, alive: bool) -> None:
        """A connection that spoke (`alive`) or closed: a server thread, or 503 at once."""
        if not alive:
            self._close(sock)
            with self._lock:
                self._roomy.notify()
            return
        why = self._served.take(address[0])
        if why:
            self._say(self._crowded, "%s: refused (503)", why)
            self._refuse(sock, why)
            return
        try:
            self._serve(sock, address)
        except RuntimeError as e:  # no thread to be had
            self.done(address)
            self._say(self._crowded, "cannot serve %s: %s", address[0], e)
            self._refuse(sock, f"the master cannot start a thread for this connection: {e}")

    def _refuse(self, sock: socket.socket, why: str) -> None:
        """503 with the reason, without a thread: the answer fits the socket's buffer.
        What the peer sent is read away first, so that closing sends FIN, not a reset
        that could lose the answer."""
        body = json.dumps({"error": f"{why}; try again later"}).encode()
        answer = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\nRetry-After: 10\r\nConnection: close\r\n\r\n%s"
                  % (len(body), body))
        try:
            sock.send(answer, socket.MSG_DONTWAIT)
            sock.shutdown(socket.SHUT_WR)
            sock.recv(65536, socket.MSG_DONTWAIT)
        except OSError:
            pass  # its buffer was full, or it is gone: it gets the close alone
        self._close(sock)
        with self._lock:
            self._roomy.notify()

    def _drop(self, sock: socket.socket) -> None:
        self._forget(sock, True)

    def _forget(self, sock: socket.socket, registered: bool) -> None:
        if registered:
            self._selector.unregister(sock)
            del self._waiting[sock]
        self._close(sock)
        with self._lock:
            self._waiting_count -= 1
            self._roomy.notify()

    def _wake(self) -> None:
        try:
            self._wake_out.send(b"w")
        except OSError:
            pass  # its buffer is full of wake-ups already

    def _drain_wake(self) -> None:
        try:
            while self._wake_in.recv(4096):
                pass
        except OSError:
            pass

    def _shut_down(self) -> None:
        self._take_arrivals()
        for sock in list(self._waiting):
            self._drop(sock)
        self._selector.close()
        self._wake_in.close()
        self._wake_out.close()

    @staticmethod
    def _say(every: limits.Every, message: str, *args) -> None:
        skipped = every.due()
        if skipped is not None:
            log.warning(message + (f" ({skipped} more times since the last message)" if skipped else ""),
                        *args)


def _bytes_in(sock: socket.socket) -> Optional[bool]:
    """True: bytes wait to be read; False: the peer closed (or the connection failed);
    None: nothing yet."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return False
