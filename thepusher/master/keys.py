"""The master's own key, kept in the image dir (thepusher-master.key, mode 0600).

Each round's data-plane secret is derived from it and the round's session id, so a
master restarted during a round can still tell a genuine late report of that round
(signed by a member with the round's secret) from a made-up one, without writing any
round's secret down.
"""

import hashlib
import hmac
import logging
import os
import secrets

log = logging.getLogger("thepusher.master")

FILENAME = "thepusher-master.key"
KEY_SIZE = 32


def load_or_create(image_dir: str) -> bytes:
    """The key in `image_dir`, made on first use. A master that cannot keep one still
    works: its rounds' late reports are then refused after a restart."""
    path = os.path.join(image_dir, FILENAME)
    try:
        with open(path, "rb") as f:
            key = f.read()
        if len(key) == KEY_SIZE:
            return key
        log.error("%s is not a key of %d bytes: making a new one", path, KEY_SIZE)
    except FileNotFoundError:
        pass
    except OSError as e:
        log.error("cannot read %s (%s): making a new one", path, e.strerror or e)
    key = secrets.token_bytes(KEY_SIZE)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        log.warning("cannot keep the master's key in %s (%s): reports of a round interrupted "
                    "by a restart will not be accepted", path, e.strerror or e)
    return key


def round_secret(key: bytes, session: str) -> bytes:
    """The data-plane secret of the round with this session id."""
    return hmac.new(key, b"thepusher-round-v1:" + session.encode(), hashlib.sha256).digest()
