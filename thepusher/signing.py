"""Signed tasks: with the config's `secret`, the master signs every task and start it
gives a client, and a client that knows the secret acts on nothing else.

What is signed is the whole answer (every field but `signature`), which carries the
client's address as the master sees it (`host`) and the random `nonce` the client sent
when it registered: an answer recorded earlier, or given to another machine, does not
pass on this client now. See docs/api.md ("Signed tasks and starts").
"""

import hashlib
import hmac
import json
import re
import secrets
from typing import Optional

from thepusher.config.model import normalize_host

TASK = "thepusher-task-v1"  # the answer to POST /api/register
START = "thepusher-start-v1"  # the answers to GET /api/next
MAX_NONCE = 128
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def check_secret(secret: str) -> str:
    """The config's rule for `secret`: at least 12 printable characters, no spaces."""
    if len(secret) < 12 or not secret.isprintable() or any(c.isspace() for c in secret):
        raise ValueError("the secret must be at least 12 printable characters without spaces, "
                         "the same as the master's `secret` setting")
    return secret


def new_nonce() -> str:
    return secrets.token_hex(16)


def canonical(answer: dict) -> bytes:
    """The bytes the MAC covers: the answer without its signature, keys sorted, no spaces."""
    body = {k: v for k, v in answer.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def signature(secret: str, kind: str, answer: dict) -> str:
    """hex HMAC-SHA256(secret, kind + "\\n" + canonical JSON of the answer)."""
    return hmac.new(secret.encode("utf-8"), kind.encode("ascii") + b"\n" + canonical(answer),
                    hashlib.sha256).hexdigest()


def sign(secret: str, kind: str, answer: dict) -> dict:
    return dict(answer, signature=signature(secret, kind, answer))


def problem(secret: str, kind: str, answer: dict, nonce: str, local_host: Optional[str]) -> Optional[str]:
    """Why this answer must not be acted on, or None when the master holding `secret`
    signed it for this very request (`nonce`) from this machine (`local_host`)."""
    given = answer.get("signature")
    if not given:
        return "it carries no signature (is `secret` set in the master's config?)"
    if not isinstance(given, str) or not _HEX64.match(given):
        return "its signature is malformed"
    try:
        expected = signature(secret, kind, answer)
    except (TypeError, ValueError):
        return "it is not plain JSON"
    if not hmac.compare_digest(given, expected):
        return "its signature is not made with this client's secret"
    if answer.get("nonce") != nonce:
        return "it was signed for an earlier request (a replayed answer)"
    host = answer.get("host")
    if local_host is not None and (not isinstance(host, str)
                                   or normalize_host(host) != normalize_host(local_host)):
        return f"it was signed for {host}, not for this machine ({local_host})"
    return None
