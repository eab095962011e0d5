"""Errors a caller can fix, answered with an HTTP status and a sentence instead of a
crash, and the reading of request fields that raises them: every handler, of clients'
calls, people's calls and uploads alike, refuses bad input the same way."""

import math
from typing import Any, Dict, Optional


class ApiError(Exception):
    def __init__(self, status: int, message: str,
                 headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}  # what the answer must carry besides (Allow, Retry-After)


MAX_INT = (1 << 63) - 1  # largest integer a client may send (a byte count, a port)


def body_field(body: dict, key: str, kind: type, default: Any = None,
               required: bool = False) -> Any:
    """`body[key]` if it is a `kind` (an int passes as a float), else `default`; 400 if
    it is required and missing or not of its kind."""
    value = body.get(key, default)
    if value is None:
        if required:
            raise ApiError(400, f"missing field {key!r}")
        return default
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ApiError(400, f"field {key!r} must be {kind.__name__}, got {type(value).__name__}")
    # JSON allows NaN, Infinity and 10**4000; the status page's arithmetic does not
    if kind is int and not -MAX_INT <= value <= MAX_INT:
        raise ApiError(400, f"field {key!r} is out of range")
    if kind is float and not math.isfinite(value):
        raise ApiError(400, f"field {key!r} must be a finite number")
    return value
