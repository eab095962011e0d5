"""Build and run the master: config -> image catalog -> state -> HTTP server."""

import errno
import io
import logging
import os
import socket
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Optional, Tuple
from urllib.parse import urlsplit

from thepusher.config.load import load as load_config
from thepusher.master import access, history, hosts, keys, limits, marks, nextboot, uploads
from thepusher.master.hosts import HostBook
from thepusher.master.lobby import Full, Lobby
from thepusher.master.api import UPLOADS, Handler
from thepusher.master.control import Controller
from thepusher.master.images import Catalog
from thepusher.master.state import State
from thepusher.master.view import StatusView
from thepusher.plan import DEFAULT_PORT

log = logging.getLogger("thepusher.master")

CONFIG_NAME = "thePusher-config.hcl"

# Why a listening socket could not be made, in words that say what to do.
LISTEN_HINTS = {
    errno.EADDRINUSE: "address already in use (another master, or another program, has "
                      "that port: stop it or give -l another port)",
    errno.EACCES: "permission denied (ports below 1024 need root)",
    errno.EADDRNOTAVAIL: "no interface of this machine has that address (-l takes one of "
                         "its own, or :PORT for all)",
}


def parse_listen(text: str) -> Tuple[str, int]:
    """`[IP]:PORT`, `IP:PORT`, `:PORT` or `PORT`; an empty IP means every interface."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]")
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"listen address {text!r}: port {port!r} is not a number") from None
    if not 0 <= number < 65536:
        raise ValueError(f"listen address {text!r}: port {number} out of range")
    return host, number


class _DeadlineReader(io.RawIOBase):
    """The request's socket, read under the handler's `read_deadline` (time.monotonic()):
    each read waits at most until then (and at most the socket's own timeout), so a peer
    that sends a byte now and then cannot stretch a request forever."""

    def __init__(self, sock: socket.socket, handler: "TimedHandler") -> None:
        self.sock = sock
        self.handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        deadline = self.handler.read_deadline
        if deadline is None:
            return self.sock.recv_into(b)
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("request not received in time")
        base = self.sock.gettimeout()
        self.sock.settimeout(left if base is None else min(base, left))
        try:
            return self.sock.recv_into(b)
        finally:
            self.sock.settimeout(base)


class TimedHandler(Handler):
    """The API handler with a budget per request: its request line and headers must
    arrive within the server's `request_timeout` of the master starting to wait for them
    (an idle keep-alive connection is closed after it), and then its body within another
    `request_timeout`. Only uploads (PUT /api/images/) are exempt: they may take long,
    and uploads.py bounds their silences itself. Long-polls and event streams do not
    read while they wait, so the budget does not touch them."""

    read_deadline: Optional[float] = None

    def setup(self) -> None:
        super().setup()
        self.rfile.close()
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self))

    def handle_one_request(self) -> None:
        self.read_deadline = time.monotonic() + self.server.request_timeout
        super().handle_one_request()

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        try:
            path = urlsplit(self.path).path
        except ValueError:
            path = self.path
        if self.command == "PUT" and path.startswith(UPLOADS):
            self.read_deadline = None
        else:
            self.read_deadline = time.monotonic() + self.server.request_timeout
        return True


class MasterServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # a room's clients report every second; none must be refused

    def __init__(self, address, controller: Controller, static_dir: Optional[str],
                 boot_dir: Optional[str] = None) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        # A request's line and headers, and then its body, must each come within this
        # (TimedHandler); the config's io_timeout, as for silences during uploads.
        self.request_timeout = controller.state.config.settings.io_timeout
        self.controller = controller
        self.event_streams = limits.Slots(limits.EVENT_STREAMS, limits.EVENT_STREAMS_PER_SOURCE,
                                          "event streams")
        budget = limits.connection_budget()
        self._accept_rest = limits.AcceptRest(budget)
        # Connections wait there without a thread until their request starts to arrive;
        # made before the socket is bound, as a failed bind calls server_close().
        self.lobby = Lobby(self._serve, self.shutdown_request, self.request_timeout, budget)
        super().__init__(address, TimedHandler)
        self.state = controller.state
        self.catalog = controller.catalog
        self.static_dir = static_dir
        self.boot_dir = boot_dir  # create-nbi's output: /boot/ and GET /boot.ipxe
        self.boot_desk = nextboot.BootDesk(self.state, controller.book.macs, boot_dir)
        self.access = access.Access(self.state.config)  # who may steer it and upload
        self.view = StatusView(self.state, self.catalog)
        self.uploads = uploads.Uploads(
            self.state.config, self.catalog,
            (CONFIG_NAME, history.FILENAME, hosts.FILENAME, keys.FILENAME, marks.FILENAME),
            self.state.config.settings.io_timeout,
        )

    def get_request(self):
        if not self.lobby.wait_for_room(limits.ACCEPT_REST):
            raise Full(f"{self.lobby.budget} connections open")
        try:
            return super().get_request()
        except OSError as e:
            if e.errno in limits.OUT_OF_FILES:
                self._accept_rest(e)  # else the readable listening socket spins a core
            raise  # socketserver drops the attempt and goes on

    def process_request(self, request, client_address) -> None:
        self.lobby.admit(request, client_address)

    def _serve(self, request, client_address) -> None:
        super().process_request(request, client_address)  # a thread of its own

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.lobby.done(client_address)

    def handle_error(self, request, client_address) -> None:
        """A peer that went away while it was answered is no fault of the master's (a
        flood's connections do it all the time); anything else is a bug, logged."""
        if isinstance(sys.exc_info()[1], (ConnectionError, socket.timeout)):
            log.debug("%s went away while it was answered", client_address[0])
            return
        log.exception("error serving %s", client_address[0])

    def server_close(self) -> None:
        super().server_close()
        self.lobby.stop()
        self.controller.book.close()  # MACs learned in the last second


def build(
    image_dir: str,
    static_dir: Optional[str] = None,
    listen: str = f":{DEFAULT_PORT}",
    config_path: Optional[str] = None,
    boot_dir: Optional[str] = None,
) -> MasterServer:
    """Everything a running master needs; raises ConfigError/ValueError/OSError on bad input."""
    _check_dir("image directory", image_dir)
    limits.raise_open_files()
    if static_dir is not None:
        _check_dir("static directory", static_dir)
    if boot_dir is not None:
        _check_dir("boot directory", boot_dir)
        nextboot.check_boot_dir(boot_dir)
    path = config_path or os.path.join(image_dir, CONFIG_NAME)
    cfg = load_config(path, image_dir)
    for problem in cfg.file_problems():
        log.warning("%s", problem)
    uploads.remove_leftovers(cfg.image_dir)
    book = HostBook.load(cfg.image_dir)
    book.apply(cfg)
    catalog = Catalog(cfg)
    rounds = history.History.load(os.path.join(cfg.image_dir, history.FILENAME))
    state = State(cfg, rounds, keys.load_or_create(cfg.image_dir), marks.Marks.load(cfg.image_dir),
                  book.forget)
    controller = Controller(state, catalog, book)
    address = parse_listen(listen)
    try:
        srv = MasterServer(address, controller, static_dir, boot_dir)
    except OSError as e:
        shown = f"[{address[0]}]" if ":" in address[0] else address[0] or "*"
        raise ValueError(f"cannot listen on {shown}:{address[1]}: "
                         f"{LISTEN_HINTS.get(e.errno, e.strerror or str(e))}") from None
    # Only a master that has its port starts working (hashing images, starting rounds):
    # one that cannot listen leaves nothing running behind its error.
    catalog.start()
    controller.start()
    return srv


def _check_dir(what: str, path: str) -> None:
    if not os.path.exists(path):
        raise ValueError(f"{what} {path} does not exist")
    if not os.path.isdir(path):
        raise ValueError(f"{what} {path} is not a directory")


def serve_in_thread(server: MasterServer) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, name="master-http", daemon=True)
    t.start()
    return t
