"""The config schema as a table (`BLOCKS`, `SETTINGS`): adding a key is one `Key(...)`
line here plus a field on the dataclass it fills (model.py); adding a block type is one
`BlockSpec` entry. Each converter takes one key's value and returns it checked, or raises
Invalid with every reason, so that load.py can report the whole file at once.
"""

import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from thepusher.config import hcl
from thepusher.config.model import ClientGroup, DiskHints, Image, normalize_host, normalize_mac
from thepusher.image.formats import ALIASES, COMPRESSIONS


class Invalid(Exception):
    """Raised by a converter: the value of one key is unacceptable (one or more reasons).

    `partial` is what was usable anyway (e.g. the valid hosts of a list with one bad
    entry), so that cross-checks can still report their own problems in the same run.
    """

    def __init__(self, *messages: str, partial: Any = None) -> None:
        super().__init__(*messages)
        self.messages = list(messages)
        self.partial = partial


def _kind(value: Any) -> str:
    """HCL's name for a Python value, for 'must be a string, found a list' messages."""
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, (int, float)):
        return "a number"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "a string"


def _string(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"'{key}' must be a string, found {_kind(value)}")
    return value


def _nonempty_string(key: str, value: Any) -> str:
    if not _string(key, value).strip():
        raise Invalid(f"'{key}' must not be empty")
    return value


def _mebibytes(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"'{key}' must be a number of MiB, found {_kind(value)}")
    if not 0 < value <= 4096:
        raise Invalid(f"'{key}' must be between 0 and 4096 MiB, found {value}")
    return float(value)


def _seconds(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"'{key}' must be a number of seconds, found {_kind(value)}")
    if not 0 < value <= 86400:
        raise Invalid(f"'{key}' must be between 0 and 86400 seconds, found {value}")
    return float(value)


# dd's spelling: K, M, G, T (with or without iB) count in 1024s, KB, MB, GB, TB in 1000s,
# as disks are sold ("500 GB" is what the label on a 500 GB disk means).
SIZE_UNITS = {"": 1, "b": 1, **{p + s: (1 << 10) ** (i + 1) for i, p in enumerate("kmgtp")
                                for s in ("", "ib")},
              **{p + "b": 1000 ** (i + 1) for i, p in enumerate("kmgtp")}}
SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-z]*)\s*$")


def _size(key: str, value: Any) -> int:
    """Bytes: a whole number, or a string such as "100G", "500 GB", "1.5TiB"."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Invalid(f"'{key}' must be a size such as \"100G\" or \"500 GB\", found {_kind(value)}")
    if isinstance(value, str):
        m = SIZE_RE.match(value.lower())
        if m is None or m.group(2) not in SIZE_UNITS:
            raise Invalid(f"'{key}' must be a size such as \"100G\", \"500 GB\" or \"1.5TiB\" "
                          f"(K, M, G, T count 1024s, KB, MB, GB, TB 1000s), found '{value}'")
        value = float(m.group(1)) * SIZE_UNITS[m.group(2)]
    if not 0 < value < 1 << 63:
        raise Invalid(f"'{key}' must be more than 0 bytes, found {value!r}")
    return int(value)


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"'{key}' must be true or false, found {_kind(value)}")
    return value


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


def _duration(key: str, value: Any) -> float:
    """A number of seconds, or a string such as "90s", "5m", "1.5h" (people think in minutes)."""
    seconds: Any = value
    if isinstance(value, str):
        text = value.strip().lower()
        unit = DURATION_UNITS.get(text[-1:], 0)
        try:
            seconds = float(text[:-1] if unit else text) * (unit or 1)
        except ValueError:
            seconds = None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        found = f"'{value}'" if isinstance(value, str) else _kind(value)
        raise Invalid(
            f"'{key}' must be a duration such as \"90s\", \"5m\", \"1h\" or a number of "
            f"seconds, found {found}"
        )
    if not 0 < seconds <= 86400:
        raise Invalid(f"'{key}' must be between 0 and 86400 seconds (one day), found {value!r}")
    return float(seconds)


def _count(minimum: int) -> Callable[[str, Any], int]:
    """A whole number of at least `minimum` (clients, retries)."""

    def convert(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            found = value if isinstance(value, float) else _kind(value)
            raise Invalid(f"'{key}' must be a whole number, found {found}")
        if value < minimum:
            raise Invalid(f"'{key}' must be at least {minimum}, found {value}")
        return value

    return convert


def _word(*allowed: str) -> Callable[[str, Any], str]:
    """A case-insensitive enumeration of lower-case words."""

    def convert(key: str, value: Any) -> str:
        word = _string(key, value).strip().lower()
        if word not in allowed:
            raise Invalid(f"unsupported {key} '{value}'; supported: {', '.join(allowed)}")
        return word

    return convert


def _choice(*allowed: str, aliases: Optional[Dict[str, str]] = None) -> Callable[[str, Any], str]:
    """A case-insensitive enumeration, stored in upper case; `aliases` map old spellings."""
    aliases = aliases or {}

    def convert(key: str, value: Any) -> str:
        upper = _string(key, value).upper()
        upper = aliases.get(upper, upper)
        if upper not in allowed:
            shown = ", ".join(allowed + tuple(f"{a} (= {t})" for a, t in aliases.items()))
            raise Invalid(f"unsupported {key} '{value}'; supported: {shown}")
        return upper

    return convert


def _plain_filename(key: str, value: Any) -> str:
    """Images are served from the image directory only: no paths, no escaping it."""
    name = _nonempty_string(key, value)
    separators = [s for s in ("/", os.sep, os.altsep) if s]
    if any(s in name for s in separators) or name in (".", "..") or "\0" in name:
        raise Invalid(
            f"'{key}' must be a plain file name inside the image directory "
            f"(no path separators, not '.' or '..'), found '{name}'"
        )
    return name


def _token(key: str, value: Any) -> str:
    """A shared secret typed into a browser and a shell: printable, no spaces, not short."""
    token = _string(key, value)
    if token and (len(token) < 12 or not token.isprintable() or any(c.isspace() for c in token)):
        raise Invalid(f"'{key}' must be at least 12 printable characters without spaces "
                      f"(or \"\" for none)")
    return token


def _wake_address(key: str, value: Any) -> str:
    """`ADDRESS[:PORT]`: an IPv4 broadcast (or unicast) address for magic packets."""
    text = _string(key, value).strip()
    host, sep, port = text.rpartition(":")
    host = host if sep else text
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        raise Invalid(f"'{key}' must be an IPv4 address with an optional :PORT, such as "
                      f"\"10.0.0.255:9\", found '{value}'") from None
    if sep and (not port.isdigit() or not 0 < int(port) < 65536):
        raise Invalid(f"'{key}': port '{port}' is not a UDP port (1-65535)")
    return text


def _networks(key: str, value: Any) -> List[str]:
    """Addresses or networks (`10.0.0.7`, `10.0.0.0/24`, `fd00::/64`), kept normalised."""
    if not isinstance(value, list):
        raise Invalid(f"'{key}' must be a list of addresses or networks, such as "
                      f"[\"10.0.0.0/24\"], found {_kind(value)}")
    out = []
    for item in value:
        try:
            out.append(str(ipaddress.ip_network(_string(key, item).strip(), strict=False)))
        except ValueError:
            raise Invalid(f"'{key}': '{item}' is not an IP address or network such as "
                          f"\"10.0.0.0/24\"") from None
    return out


def _mac_map(key: str, value: Any) -> Dict[str, str]:
    """`{ "10.0.0.5" = "52:54:00:12:34:56", ... }`: the MAC of each host, for waking it."""
    if not isinstance(value, dict):
        raise Invalid(f"'{key}' must be an object of \"address\" = \"MAC\", found {_kind(value)}")
    problems: List[str] = []
    macs: Dict[str, str] = {}
    for raw_host, raw_mac in value.items():
        try:
            host = normalize_host(str(ipaddress.ip_address(raw_host)))
        except ValueError:
            problems.append(f"{key}: '{raw_host}' is not an IPv4 or IPv6 address")
            continue
        mac = normalize_mac(raw_mac) if isinstance(raw_mac, str) else None
        if mac is None:
            problems.append(f"{key}: the MAC of {host} must look like \"52:54:00:12:34:56\", "
                            f"found {raw_mac!r}")
            continue
        macs[host] = mac
    if problems:
        raise Invalid(*problems, partial=macs)
    return macs


def _host_list(key: str, value: Any) -> List[str]:
    """A non-empty list of distinct IPv4/IPv6 addresses, in canonical text form."""
    if not isinstance(value, list):
        raise Invalid(f"'{key}' must be a list of address strings, found {_kind(value)}")
    if not value:
        raise Invalid(f"'{key}' must not be empty")
    problems: List[str] = []
    hosts: List[str] = []
    for raw in value:
        if not isinstance(raw, str):
            problems.append(f"{key} entries must be address strings, found {_kind(raw)}")
            continue
        try:
            addr = ipaddress.ip_address(raw)
        except ValueError:
            problems.append(f"{key} entry '{raw}' is not an IPv4 or IPv6 address")
            continue
        host = normalize_host(str(addr))
        if host in hosts:
            problems.append(f"host {host} is listed twice in {key}")
        else:
            hosts.append(host)
    if problems:
        raise Invalid(*problems, partial=hosts)
    return hosts


@dataclass(frozen=True)
class Key:
    """One HCL attribute: its name in the file, the dataclass field it fills, its converter."""

    hcl: str
    field: str
    convert: Callable[[str, Any], Any]
    required: bool = False


@dataclass(frozen=True)
class Nested:
    """A block inside a block, without a label and at most once: `disk { ... }` in an
    image. Its keys convert as a block's do; `build` makes of them the one value that
    fills the outer dataclass's `field`, or raises Invalid for what spans its keys."""

    hcl: str
    field: str
    keys: Tuple[Key, ...]
    build: Callable[[Dict[str, Any]], Any]


@dataclass(frozen=True)
class BlockSpec:
    """One block type: its keys, the `Config` table it fills and how to build an entry."""

    keys: Tuple[Key, ...]
    table: str  # attribute of Config holding the built objects, by name
    build: Callable[[str, Dict[str, Any], hcl.Block, str], Any]  # (name, fields, block, image_dir)
    nested: Tuple[Nested, ...] = ()


def _build_image(name: str, fields: Dict[str, Any], block: hcl.Block, image_dir: str) -> Image:
    path = os.path.join(image_dir, fields["filename"])
    return Image(name=name, path=path, line=block.line, **fields)


def _build_group(name: str, fields: Dict[str, Any], block: hcl.Block, image_dir: str) -> ClientGroup:
    return ClientGroup(name=name, line=block.line, **fields)


def _build_disk_hints(fields: Dict[str, Any]) -> DiskHints:
    low, high = fields.get("min_size"), fields.get("max_size")
    if low is not None and high is not None and low > high:
        raise Invalid(f"min_size ({low} bytes) is larger than max_size ({high} bytes): "
                      f"no disk can fit")
    return DiskHints(**fields)


# `disk { ... }`: which disk destination = "auto" may choose. A table of its own, so that
# any block whose hosts choose a disk can take it (`nested=(DISK_HINTS,)`).
DISK_HINTS = Nested("disk", "disk", keys=(
    Key("min_size", "min_size", _size),
    Key("max_size", "max_size", _size),
    Key("model", "model", _nonempty_string),
    Key("serial", "serial", _nonempty_string),
    Key("wwn", "wwn", _nonempty_string),
    Key("rotational", "rotational", _bool),
    Key("path", "path", _nonempty_string),
), build=_build_disk_hints)

TYPES = ("IMG", "TAR")  # TAR: extracted into the destination directory (disk/tar/)
START_POLICIES = ("all", "manual")
VERIFY = ("write", "readback")

SETTINGS: Tuple[Key, ...] = (
    Key("arm_timeout", "arm_timeout", _seconds),
    Key("accept_timeout", "accept_timeout", _seconds),
    Key("io_timeout", "io_timeout", _seconds),
    Key("report_timeout", "report_timeout", _seconds),
    Key("replay_window", "replay_window", _mebibytes),
    Key("admin_token", "admin_token", _token),
    Key("wake_address", "wake_address", _wake_address),
    Key("put_allowed", "put_allowed", _networks),
    Key("upload_token", "upload_token", _token),
    Key("secret", "secret", _token),
)

BLOCKS: Dict[str, BlockSpec] = {
    "image": BlockSpec(
        keys=(
            Key("filename", "filename", _plain_filename, required=True),
            Key("comment", "comment", _string),
            Key("destination", "destination", _nonempty_string, required=True),
            Key("type", "type", _choice(*TYPES)),
            Key("compression", "compression", _choice(*COMPRESSIONS, aliases=ALIASES)),
            Key("preImage", "pre_image", _string),
            Key("postImage", "post_image", _string),
            Key("verify", "verify", _word(*VERIFY)),
        ),
        table="images",
        build=_build_image,
        nested=(DISK_HINTS,),
    ),
    "clientgroup": BlockSpec(
        keys=(
            Key("image", "image", _nonempty_string, required=True),
            Key("hosts", "hosts", _host_list, required=True),
            Key("start", "start", _word(*START_POLICIES)),
            Key("wait", "wait", _duration),
            Key("min_clients", "min_clients", _count(1)),
            Key("retries", "retries", _count(0)),
            Key("chains", "chains", _count(1)),
            Key("macs", "macs", _mac_map),
        ),
        table="groups",
        build=_build_group,
    ),
}

# The settings check-config lists as timeouts.
TIMEOUTS: Tuple[Key, ...] = tuple(k for k in SETTINGS if k.convert is _seconds)
