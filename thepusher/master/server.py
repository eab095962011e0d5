"""Build and run the master: config -> image catalog -> state -> HTTP server."""

import logging
import os
import socket
import threading
from http.server import ThreadingHTTPServer
from typing import Optional, Tuple

from thepusher import config as config_mod
from thepusher.master import history, hosts, uploads
from thepusher.master.hosts import HostBook
from thepusher.master.api import Handler
from thepusher.master.control import Controller
from thepusher.master.images import Catalog
from thepusher.master.state import State
from thepusher.master.view import StatusView

log = logging.getLogger("thepusher.master")

CONFIG_NAME = "thePusher-config.hcl"
DEFAULT_PORT = 8080


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


class MasterServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # a room's clients report every second; none must be refused

    def __init__(self, address, controller: Controller, static_dir: Optional[str]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.controller = controller
        self.state = controller.state
        self.catalog = controller.catalog
        self.static_dir = static_dir
        self.view = StatusView(self.state, self.catalog)
        self.uploads = uploads.Uploads(
            self.state.config, self.catalog, (CONFIG_NAME, history.FILENAME, hosts.FILENAME),
            self.state.config.settings.io_timeout,
        )


def build(
    image_dir: str,
    static_dir: Optional[str] = None,
    listen: str = f":{DEFAULT_PORT}",
    config_path: Optional[str] = None,
) -> MasterServer:
    """Everything a running master needs; raises ConfigError/ValueError/OSError on bad input."""
    if not os.path.isdir(image_dir):
        raise ValueError(f"image directory {image_dir} does not exist")
    if static_dir is not None and not os.path.isdir(static_dir):
        raise ValueError(f"static directory {static_dir} does not exist")
    path = config_path or os.path.join(image_dir, CONFIG_NAME)
    cfg = config_mod.load(path, image_dir)
    for problem in cfg.file_problems():
        log.warning("%s", problem)
    uploads.remove_leftovers(cfg.image_dir)
    book = HostBook.load(cfg.image_dir)
    book.apply(cfg)
    catalog = Catalog(cfg)
    catalog.start()
    rounds = history.History.load(os.path.join(cfg.image_dir, history.FILENAME))
    controller = Controller(State(cfg, rounds), catalog, book)
    controller.start()
    return MasterServer(parse_listen(listen), controller, static_dir)


def serve_in_thread(server: MasterServer) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, name="master-http", daemon=True)
    t.start()
    return t
