"""The client's line to the master: JSON over HTTP, always from the chosen source
address (the master tells clients apart by it), and the master's address as people write it."""

import http.client
import json
import time
from typing import Optional, Tuple

from thepusher.chain import wire
from thepusher.plan import DEFAULT_PORT


class MasterUnreachable(Exception):
    """No answer (network, master down): worth retrying."""


class MasterRefused(Exception):
    """The master answered with an error: retrying the same call will not help."""


class MasterLink:
    """JSON over HTTP to the master, always from our chosen source address."""

    def __init__(self, master: str, bind: Optional[str], token: str = "") -> None:
        self.host, self.port = split_host_port(master, DEFAULT_PORT)
        self.bind = bind
        self.token = token  # the admin token, for people's calls (start, abort, ...)
        self.local_host: Optional[str] = None  # our address on the last call, as sent
        self.answered = time.monotonic()  # when the master last answered anything

    def call(self, method: str, path: str, body: Optional[dict] = None, timeout: float = 10.0):
        conn = http.client.HTTPConnection(
            self.host, self.port, timeout=timeout,
            source_address=(self.bind, 0) if self.bind else None,
        )
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            if self.token:
                headers["X-Admin-Token"] = self.token
            conn.request(method, path, body=data, headers=headers)
            if conn.sock is not None:
                self.local_host = conn.sock.getsockname()[0]
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise MasterUnreachable(f"master {self.host}:{self.port}: {e}") from None
        finally:
            conn.close()
        try:
            answer = json.loads(raw.decode("utf-8"))
        except ValueError:
            raise MasterUnreachable(f"master answered {resp.status} with non-JSON") from None
        self.answered = time.monotonic()
        if resp.status >= 400:
            raise MasterRefused(f"master refused {path}: {answer.get('error', resp.status)}")
        return answer

    def fetch_range(self, session: str, secret: bytes, offset: int, length: int, timeout: float,
                    records: bool = False):
        """Open the master's copy of stream bytes [offset, offset+length) for a gap fill;
        with `records`, as records (a stream with FREE records, master/ranges.py)."""
        conn = http.client.HTTPConnection(
            self.host, self.port, timeout=timeout,
            source_address=(self.bind, 0) if self.bind else None,
        )
        query = f"session={session}&offset={offset}&length={length}" + ("&records=1" if records else "")
        conn.request("GET", f"/api/range?{query}", headers={
            "X-Thepusher-Auth": wire.range_mac(secret, session, offset, length),
        })
        resp = conn.getresponse()
        if resp.status != 200:
            raise wire.ProtocolError(
                f"master refused bytes {offset}+{length}: {resp.status} {resp.read(500)!r}"
            )
        return resp

    def fetch_free_map(self, session: str, secret: bytes, limit: int, timeout: float) -> bytes:
        """The master's free map for the round (GET /api/free-map), at most `limit` bytes:
        MasterUnreachable when it does not answer, MasterRefused when it says no."""
        conn = http.client.HTTPConnection(
            self.host, self.port, timeout=timeout,
            source_address=(self.bind, 0) if self.bind else None,
        )
        try:
            conn.request("GET", f"/api/free-map?session={session}", headers={
                "X-Thepusher-Auth": wire.free_map_mac(secret, session),
            })
            resp = conn.getresponse()
            if resp.status != 200:
                raise MasterRefused(f"master refused the free map: {resp.status} "
                                    f"{resp.read(500)!r}")
            data = resp.read(limit + 1)
            if len(data) > limit:
                raise MasterRefused(f"master's free map is over the {limit} bytes a free map "
                                    f"may have")
        except (OSError, http.client.HTTPException) as e:
            raise MasterUnreachable(f"master {self.host}:{self.port}: {e}") from None
        finally:
            conn.close()
        self.answered = time.monotonic()
        return data


def split_host_port(text: str, default_port: int) -> Tuple[str, int]:
    """The master's address as people write it: HOST, HOST:PORT, [IPv6]:PORT, or the URL
    the master prints at start (http://HOST:PORT/). ValueError says what is wrong."""
    rest = text.strip()
    if rest.lower().startswith("http://"):
        rest = rest[len("http://"):]
    rest = rest[:-1] if rest.endswith("/") else rest
    if rest.startswith("["):
        host, _, port = rest[1:].partition("]")
        if port and not port.startswith(":"):
            raise ValueError(f"{text!r}: expected :PORT after ']'")
        port = port[1:]
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    else:  # a bare host, or an IPv6 address without brackets
        host, port = rest, ""
    if not host:
        raise ValueError(f"{text!r}: no host before the port")
    if not port:
        return host, default_port
    if not port.isdigit():
        raise ValueError(f"{text!r}: port {port!r} is not a number")
    if not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: port {int(port)} is not a TCP port (1 to 65535)")
    return host, int(port)
