"""Files the master hands out as they are: `/static/` (scripts for preImage and
postImage, `master -s DIR`) and `/boot/` (the netboot kernel and initrds that iPXE loads
over HTTP, `master --boot DIR`).

Only regular files inside the directory, whatever the path says (`..`, symlinks out);
streamed with sendfile, since a room of machines fetches tens of MiB each at once.
"""

import mimetypes
import os
from typing import Optional
from urllib.parse import unquote

from thepusher.master.errors import ApiError


def resolve(root: Optional[str], rel: str, prefix: str, option: str) -> str:
    """The file `rel` names under `root`, or a 404 that says what was asked for."""
    if root is None:
        raise ApiError(404, f"no {prefix} directory configured (master {option} DIR)")
    name = unquote(rel)
    if "\0" in name:  # os.path would raise ValueError
        raise ApiError(404, f"no such file: {prefix}{rel}")
    base = os.path.realpath(root)
    path = os.path.realpath(os.path.join(base, name))
    if not path.startswith(base + os.sep) or not os.path.isfile(path):
        raise ApiError(404, f"no such file: {prefix}{rel}")
    return path


def send(handler, path: str) -> None:
    """200 with the file's bytes (none for HEAD: UEFI HTTP boot asks the size first)."""
    ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        handler.send_response(200)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(size))
        handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()
        if handler.command == "HEAD":
            return
        handler.wfile.flush()
        if handler.connection.sendfile(f, 0, size) < size:
            handler.close_connection = True  # the file shrank: the reader sees it short
