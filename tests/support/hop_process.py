"""One real hop as its own process, for fault tests that kill -9 hops mid-stream.

Run by tests/system/test_faults.py: argv[1] is JSON with the listener's inherited fd, the
round's facts and the chain after this hop. Exit 0 only for a verified copy.
"""

import json
import os
import socket
import sys

from thepusher.chain import wire
from thepusher.chain.hop import Hop, HopConfig
from thepusher.disk.target import Target


def main() -> int:
    cfg = json.loads(sys.argv[1])
    listener = socket.socket(fileno=cfg["fd"])

    def fetch_range(offset: int, length: int):
        """The master's part of a gap fill, read straight from the image file."""
        f = open(cfg["image"], "rb")
        f.seek(offset)
        return f

    hop = Hop(
        listener,
        HopConfig(
            session=cfg["session"],
            secret=bytes.fromhex(cfg["secret"]),
            expect=wire.Expected(**cfg["expect"]),
            position=cfg["position"],
            downstream=[tuple(a) for a in cfg["downstream"]],
            window=cfg["window"],
            accept_timeout=cfg["timeout"] * 10,
            io_timeout=cfg["timeout"],
            fetch_range=fetch_range,
            round_alive=lambda: not os.path.exists(cfg["stream_ended"]),
        ),
        Target(cfg["destination"]),
    )
    hop.run()
    print(json.dumps({"verified": hop.verified, "error": hop.error, "skipped": hop.skipped}))
    return 0 if hop.verified else 1


if __name__ == "__main__":
    sys.exit(main())
