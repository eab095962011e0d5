"""Who may steer the master and store images over HTTP.

People's calls (start, abort, retry, wake, assign) and uploads change what the master
does, so they take a token from the config or come from where the config allows:
without an admin token, the master's own host; without put_allowed, the same. A peer
that sends too many wrong tokens is throttled (guard.py), so guessing stays slow.
"""

import hmac
import ipaddress
import logging
import os
from dataclasses import dataclass
from email.message import Message
from typing import List

from thepusher.config.model import Config, normalize_host
from thepusher.master import guard
from thepusher.master.errors import ApiError

log = logging.getLogger("thepusher.http")

ADMIN_TOKEN_MISSING = ("this master needs its admin token for this: send it in the "
                       "X-Admin-Token header (thepusher ... --token TOKEN)")
UPLOAD_TOKEN_MISSING = ("this master needs its upload token for uploads: put-image "
                        "--upload-token TOKEN (or THEPUSHER_UPLOAD_TOKEN), or the X-Upload-Token "
                        "header; it is upload_token in the master's config")


class TooManyWrong(ApiError):
    """429: the peer sent too many wrong tokens lately (guard.py); Retry-After says when
    it may try again."""

    def __init__(self, seconds: int) -> None:
        super().__init__(429, f"too many wrong tokens from this address: try again in {seconds} s",
                         {"Retry-After": str(seconds)})


@dataclass(frozen=True)
class Request:
    """What the checks look at, so that they need no HTTP handler."""

    peer: str  # the caller's address, as the socket has it
    local: str  # the master's address the caller reached
    method: str
    path: str
    headers: Message


class Access:
    """The config's rules and the memory of wrong tokens; one per master, shared by its
    threads."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.throttle = guard.Throttle()  # wrong tokens, per peer

    def admin(self, req: Request) -> None:
        """Calls that change what the master does: with the config's `admin_token`, from
        anywhere with that token; without one, from the master's own host only."""
        token = self.config.settings.admin_token
        if token:
            self._check_token(req, token, given_token(req.headers, "X-Admin-Token"),
                              "admin token", ADMIN_TOKEN_MISSING)
            return
        if not is_own_host(req.peer, req.local):
            raise ApiError(
                403, f"{req.peer} may not do this: without an admin token (admin_token in "
                "the config), only the master's own host may start, abort, retry, wake or "
                "change groups"
            )

    def upload(self, req: Request) -> None:
        """Who may store images: hosts in the config's `put_allowed` networks, or, when it
        lists none, the master's own host (as for admin calls); with `upload_token` set,
        only with that token too. Checked before the body is asked for (100 Continue)."""
        settings = self.config.settings
        peer = normalize_host(req.peer)
        if settings.put_allowed:
            allowed = in_networks(peer, settings.put_allowed)
        else:
            allowed = is_own_host(peer, req.local)
        if not allowed:
            log.warning("upload to %s from %s refused: not in put_allowed (%s)",
                        req.path, peer, ", ".join(settings.put_allowed) or "empty")
            who = (f"put_allowed lists {', '.join(settings.put_allowed)}" if settings.put_allowed
                   else "without put_allowed only the master's own host may upload")
            raise ApiError(
                403, f"uploads from {peer} are not allowed ({who}): add it (or its network) to "
                f"put_allowed in {os.path.basename(self.config.path)}, e.g. put_allowed = "
                f"[\"{suggested_network(peer)}\"], and restart the master"
            )
        if settings.upload_token:
            self._check_token(req, settings.upload_token, given_token(req.headers, "X-Upload-Token"),
                              "upload token", UPLOAD_TOKEN_MISSING)

    def _check_token(self, req: Request, token: str, given: str, kind: str, missing: str) -> None:
        """`given` must be `token`. A peer that sent too many wrong tokens lately is
        answered 429 without a look at what it sent: guessing stays slow."""
        throttle = self.throttle
        host = req.peer
        wait = throttle.blocked(host)
        if wait:
            raise TooManyWrong(wait)
        if not given:
            raise ApiError(401, missing)
        if not hmac.compare_digest(given.encode(), token.encode()):
            throttle.wrong(host)
            log.warning("wrong %s from %s for %s %s", kind, host, req.method, req.path)
            if throttle.blocked(host):
                log.warning("%s sent %d wrong tokens within %g s: its token checks answer 429 "
                            "until then", host, throttle.limit, throttle.window)
            raise ApiError(401, f"wrong {kind}")


def given_token(headers: Message, header: str) -> str:
    """The token in `header`, or else in `Authorization: Bearer` (curl users' habit)."""
    given = headers.get(header, "")
    if not given and headers.get("Authorization", "").startswith("Bearer "):
        given = headers["Authorization"][len("Bearer "):]
    return given.strip()


def is_own_host(peer: str, local: str) -> bool:
    """A request from the master's machine: from loopback, or from the address it reached."""
    peer = normalize_host(peer)
    try:
        loopback = ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False
    return loopback or peer == normalize_host(local)


def in_networks(peer: str, networks: List[str]) -> bool:
    """Whether address `peer` is in one of `networks` (the config's normalised put_allowed)."""
    try:
        addr = ipaddress.ip_address(normalize_host(peer))
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(n, strict=False) for n in networks)


def suggested_network(peer: str) -> str:
    """The network an admin most likely means: the peer's /24 (IPv4) or /64 (IPv6)."""
    try:
        addr = ipaddress.ip_address(peer)
    except ValueError:
        return peer
    return str(ipaddress.ip_network(f"{addr}/{24 if addr.version == 4 else 64}", strict=False))
