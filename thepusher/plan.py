"""What the master tells a client, and the ports both sides agree on.

The master plans (config -> groups -> chains -> one start per client); the client
acts on it. This module is the contract between the two rooms, so neither imports
the other: the master builds these objects and sends `to_json()`, the client reads
them back with `from_json()`, which refuses an answer that lacks a key or holds one of
another type, and says which.

The JSON is the wire format of docs/api.md, and with the config's `secret` it is what
gets signed (signing.py): `to_json()` keeps every key, value and order as it was.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Tuple, Union

DEFAULT_PORT = 8080  # the master's HTTP API and page
DEFAULT_DATA_PORT = 8081  # a client's data port, where its upstream connects
MAX_DISKS = 64  # the most disks a registration lists (a lab PC has one to four)

Address = Tuple[str, int]


class PlanError(ValueError):
    """The master's answer does not fit this contract (another version, or not a
    thepusher master): acting on part of it could write the wrong thing to a disk."""


def _take(d: Dict[str, Any], what: str, key: str, kind: type) -> Any:
    if key not in d:
        raise PlanError(f"the master's {what} lacks key {key!r}")
    value = d[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise PlanError(f"the master's {what} has key {key!r} as {type(value).__name__}, "
                        f"not {kind.__name__}")
    return value


def _optional(d: Dict[str, Any], what: str, key: str, kind: type, default: Any) -> Any:
    """A key a master older than it may leave out: its absence means `default`."""
    return _take(d, what, key, kind) if key in d else default


def _object(d: Any, what: str) -> Dict[str, Any]:
    if not isinstance(d, dict):
        raise PlanError(f"the master's {what} is {type(d).__name__}, not a JSON object")
    return d


# The hints of `destination = "auto"` (config.model.DiskHints) as a task carries them.
DISK_HINTS = {"min_size": int, "max_size": int, "model": str, "serial": str, "wwn": str,
              "rotational": bool, "path": str}


def _disk_hints(d: Dict[str, Any]) -> Dict[str, Any]:
    """The task's `disk`: absent from an older master's task, else only known hints."""
    hints = _object(d.get("disk", {}), "task's disk")
    for key in hints:
        if key not in DISK_HINTS:
            raise PlanError(f"the master's task has an unknown disk hint {key!r}")
        _take(hints, "task's disk", key, DISK_HINTS[key])
    return hints


@dataclass(frozen=True)
class Task:
    """What a registered host is given (the answer to POST /api/register): its group's
    image, where to write it (a path, or "auto" with the `disk` hints), the scripts
    around it, and who the host is (for the scripts' #HOSTNAME#, #VAR:x#, ... and
    `personalize`). A master from before the identity fields or the hints sends none of
    them: they default to nothing."""

    group: str
    image: str
    comment: str
    destination: str
    type: str  # "IMG" (a disk image) or "TAR" (unpacked into a directory)
    compression: str
    verify: str
    pre_image: str
    post_image: str
    grow: bool = False  # the last partition ends at a larger disk's end
    discard: bool = False  # free ranges of a block device are discarded (BLKDISCARD)
    hostname: str = ""  # the config's name for the host; "" when it gives none
    address: str = ""  # the host's address as its group lists it
    mac: str = ""
    vars: Dict[str, str] = field(default_factory=dict)
    personalize: str = ""  # "linux": make the written system this host (disk/personalize.py)
    disk: Dict[str, Any] = field(default_factory=dict)  # DISK_HINTS that are set

    def to_json(self) -> Dict[str, Any]:
        # A task without these is what it always was.
        hints = {"disk": self.disk} if self.disk else {}
        discard = {"discard": True} if self.discard else {}
        return {
            "group": self.group,
            "image": self.image,
            "comment": self.comment,
            "destination": self.destination,
            "type": self.type,
            "compression": self.compression,
            "verify": self.verify,
            "preImage": self.pre_image,
            "postImage": self.post_image,
            "grow": self.grow,
            **discard,
            "hostname": self.hostname,
            "address": self.address,
            "mac": self.mac,
            "vars": dict(self.vars),
            "personalize": self.personalize,
            **hints,
        }

    @classmethod
    def from_json(cls, d: Any) -> "Task":
        d = _object(d, "task")
        return cls(
            group=_take(d, "task", "group", str),
            image=_take(d, "task", "image", str),
            comment=_take(d, "task", "comment", str),
            destination=_take(d, "task", "destination", str),
            type=_take(d, "task", "type", str),
            compression=_take(d, "task", "compression", str),
            verify=_take(d, "task", "verify", str),
            pre_image=_take(d, "task", "preImage", str),
            post_image=_take(d, "task", "postImage", str),
            grow=_optional(d, "task", "grow", bool, False),
            discard=_optional(d, "task", "discard", bool, False),
            hostname=_optional(d, "task", "hostname", str, ""),
            address=_optional(d, "task", "address", str, ""),
            mac=_optional(d, "task", "mac", str, ""),
            vars=_vars(_optional(d, "task", "vars", dict, {})),
            personalize=_optional(d, "task", "personalize", str, ""),
            disk=_disk_hints(d),
        )


def _vars(d: Dict[str, Any]) -> Dict[str, str]:
    for name, value in d.items():
        if not isinstance(value, str):
            raise PlanError(f"the master's task has var {name!r} as {type(value).__name__}, "
                            "not str")
    return dict(d)


@dataclass(frozen=True)
class Start:
    """A client's part in a round (`action: receive` from GET /api/next): its place in
    its chain, the round's data-plane secret, and the facts of the image (`image` to
    `record_size`) that its hop checks every stream and its own copy against."""

    round: int
    session: str
    secret: bytes  # hex on the wire
    chain: int  # which of the round's `chains` (from 1)
    chains: int
    position: int  # in its chain, from 1
    chain_length: int
    downstream: Tuple[Address, ...]  # every hop after it in its chain, in order
    image: str
    stream_size: int
    content_size: int
    sha256: str  # of the content, decompressed
    compression: str
    record_size: int
    verify: str
    accept_timeout: float
    io_timeout: float
    window: int  # bytes of sent records a hop keeps to replay after a skip
    # The free map of a stream with FREE records (version 2): what the copy leaves alone
    free_bytes: int = 0
    free_map_sha256: str = ""

    ACTION = "receive"

    def to_json(self) -> Dict[str, Any]:
        return {
            "round": self.round,
            "session": self.session,
            "secret": self.secret.hex(),
            "chain": self.chain,
            "chains": self.chains,
            "position": self.position,
            "chain_length": self.chain_length,
            "downstream": [[host, port] for host, port in self.downstream],
            "image": self.image,
            "stream_size": self.stream_size,
            "content_size": self.content_size,
            "sha256": self.sha256,
            "compression": self.compression,
            "record_size": self.record_size,
            "verify": self.verify,
            "accept_timeout": self.accept_timeout,
            "io_timeout": self.io_timeout,
            "window": self.window,
            "action": self.ACTION,
            **({"free_bytes": self.free_bytes, "free_map_sha256": self.free_map_sha256}
               if self.free_map_sha256 else {}),
        }

    @classmethod
    def from_json(cls, d: Any) -> "Start":
        d = _object(d, "start")

        def take(key: str, kind: type) -> Any:
            return _take(d, "start", key, kind)

        secret = take("secret", str)
        try:
            key = bytes.fromhex(secret)
        except ValueError:
            raise PlanError("the master's start has key 'secret' not in hex") from None
        return cls(
            round=take("round", int),
            session=take("session", str),
            secret=key,
            chain=take("chain", int),
            chains=take("chains", int),
            position=take("position", int),
            chain_length=take("chain_length", int),
            downstream=_addresses(take("downstream", list)),
            image=take("image", str),
            stream_size=take("stream_size", int),
            content_size=take("content_size", int),
            sha256=take("sha256", str),
            compression=take("compression", str),
            record_size=take("record_size", int),
            verify=take("verify", str),
            accept_timeout=take("accept_timeout", float),
            io_timeout=take("io_timeout", float),
            window=take("window", int),
            free_bytes=_optional(d, "start", "free_bytes", int, 0),
            free_map_sha256=_optional(d, "start", "free_map_sha256", str, ""),
        )


def _addresses(entries: list) -> Tuple[Address, ...]:
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                and isinstance(entry[1], int) and not isinstance(entry[1], bool)):
            raise PlanError(f"the master's start has key 'downstream' with {entry!r}, "
                            "not a [host, port] pair")
    return tuple((host, port) for host, port in entries)


@dataclass(frozen=True)
class RoundFailed:
    """`action: error` from GET /api/next: the round failed before its start reached
    this client, which then has nothing to do but say so."""

    error: str

    ACTION = "error"

    def to_json(self) -> Dict[str, Any]:
        return {"action": self.ACTION, "error": self.error}

    @classmethod
    def from_json(cls, d: Any) -> "RoundFailed":
        return cls(error=_take(_object(d, "start"), "start", "error", str))


@dataclass(frozen=True)
class Waiting:
    """GET /api/next with no round for the client yet: it asks again. `none` instead of
    `wait` tells that no group lists the host (yet)."""

    in_group: bool
    state: str  # the host's state as the master sees it

    def to_json(self) -> Dict[str, Any]:
        return {"action": "wait" if self.in_group else "none", "state": self.state}


def start_from_json(d: Any) -> Union[Start, RoundFailed]:
    """An answer of GET /api/next that ends the client's wait, by its `action`."""
    action = _object(d, "start").get("action")
    if action == Start.ACTION:
        return Start.from_json(d)
    if action == RoundFailed.ACTION:
        return RoundFailed.from_json(d)
    raise PlanError(f"the master's start has action {action!r}, not "
                    f"{Start.ACTION!r} or {RoundFailed.ACTION!r}")
