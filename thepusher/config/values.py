"""The converters of single config values: each takes one key's value and returns it
checked, or raises Invalid with every reason, so that load.py can report the whole
file at once. schema.py says which key takes which.
"""

import ipaddress
import os
from typing import Any, Callable, Dict, List, Optional

from thepusher.config.model import normalize_host, normalize_mac
from thepusher.config.placeholders import hostname_problem, var_problem
from thepusher.units import parse_size


class Invalid(Exception):
    """Raised by a converter: the value of one key is unacceptable (one or more reasons).

    `partial` is what was usable anyway (e.g. the valid hosts of a list with one bad
    entry), so that cross-checks can still report their own problems in the same run.
    """

    def __init__(self, *messages: str, partial: Any = None) -> None:
        super().__init__(*messages)
        self.messages = list(messages)
        self.partial = partial


def kind_of(value: Any) -> str:
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


def string(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"'{key}' must be a string, found {kind_of(value)}")
    return value


def nonempty_string(key: str, value: Any) -> str:
    if not string(key, value).strip():
        raise Invalid(f"'{key}' must not be empty")
    return value


def mebibytes(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"'{key}' must be a number of MiB, found {kind_of(value)}")
    if not 0 < value <= 4096:
        raise Invalid(f"'{key}' must be between 0 and 4096 MiB, found {value}")
    return float(value)


def seconds(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"'{key}' must be a number of seconds, found {kind_of(value)}")
    if not 0 < value <= 86400:
        raise Invalid(f"'{key}' must be between 0 and 86400 seconds, found {value}")
    return float(value)


# dd's spelling: K, M, G, T (with or without iB) count in 1024s, KB, MB, GB, TB in 1000s,
# as disks are sold ("500 GB" is what the label on a 500 GB disk means).
def byte_size(key: str, value: Any) -> int:
    """Bytes: a whole number, or a string such as "100G", "500 GB", "1.5TiB"."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Invalid(f"'{key}' must be a size such as \"100G\" or \"500 GB\", found {kind_of(value)}")
    if isinstance(value, str):
        try:
            value = parse_size(value)
        except ValueError:
            raise Invalid(f"'{key}' must be a size such as \"100G\", \"500 GB\" or \"1.5TiB\" "
                          f"(K, M, G, T count 1024s, KB, MB, GB, TB 1000s), found '{value}'") from None
    if not 0 < value < 1 << 63:
        raise Invalid(f"'{key}' must be more than 0 bytes, found {value!r}")
    return int(value)


def flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"'{key}' must be true or false, found {kind_of(value)}")
    return value


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


def duration(key: str, value: Any) -> float:
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
        found = f"'{value}'" if isinstance(value, str) else kind_of(value)
        raise Invalid(
            f"'{key}' must be a duration such as \"90s\", \"5m\", \"1h\" or a number of "
            f"seconds, found {found}"
        )
    if not 0 < seconds <= 86400:
        raise Invalid(f"'{key}' must be between 0 and 86400 seconds (one day), found {value!r}")
    return float(seconds)


def count(minimum: int) -> Callable[[str, Any], int]:
    """A whole number of at least `minimum` (clients, retries)."""

    def convert(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            found = value if isinstance(value, float) else kind_of(value)
            raise Invalid(f"'{key}' must be a whole number, found {found}")
        if value < minimum:
            raise Invalid(f"'{key}' must be at least {minimum}, found {value}")
        return value

    return convert


def word(*allowed: str) -> Callable[[str, Any], str]:
    """A case-insensitive enumeration of lower-case words."""

    def convert(key: str, value: Any) -> str:
        word = string(key, value).strip().lower()
        if word not in allowed:
            raise Invalid(f"unsupported {key} '{value}'; supported: {', '.join(allowed)}")
        return word

    return convert


def choice(*allowed: str, aliases: Optional[Dict[str, str]] = None) -> Callable[[str, Any], str]:
    """A case-insensitive enumeration, stored in upper case; `aliases` map old spellings."""
    aliases = aliases or {}

    def convert(key: str, value: Any) -> str:
        upper = string(key, value).upper()
        upper = aliases.get(upper, upper)
        if upper not in allowed:
            shown = ", ".join(allowed + tuple(f"{a} (= {t})" for a, t in aliases.items()))
            raise Invalid(f"unsupported {key} '{value}'; supported: {shown}")
        return upper

    return convert


def plain_filename(key: str, value: Any) -> str:
    """Images are served from the image directory only: no paths, no escaping it."""
    name = nonempty_string(key, value)
    separators = [s for s in ("/", os.sep, os.altsep) if s]
    if any(s in name for s in separators) or name in (".", "..") or "\0" in name:
        raise Invalid(
            f"'{key}' must be a plain file name inside the image directory "
            f"(no path separators, not '.' or '..'), found '{name}'"
        )
    return name


def token(key: str, value: Any) -> str:
    """A shared secret typed into a browser and a shell: printable, no spaces, not short."""
    token = string(key, value)
    if token and (len(token) < 12 or not token.isprintable() or any(c.isspace() for c in token)):
        raise Invalid(f"'{key}' must be at least 12 printable characters without spaces "
                      f"(or \"\" for none)")
    return token


def wake_address(key: str, value: Any) -> str:
    """`ADDRESS[:PORT]`: an IPv4 broadcast (or unicast) address for magic packets."""
    text = string(key, value).strip()
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


def networks(key: str, value: Any) -> List[str]:
    """Addresses or networks (`10.0.0.7`, `10.0.0.0/24`, `fd00::/64`), kept normalised."""
    if not isinstance(value, list):
        raise Invalid(f"'{key}' must be a list of addresses or networks, such as "
                      f"[\"10.0.0.0/24\"], found {kind_of(value)}")
    out = []
    for item in value:
        try:
            out.append(str(ipaddress.ip_network(string(key, item).strip(), strict=False)))
        except ValueError:
            raise Invalid(f"'{key}': '{item}' is not an IP address or network such as "
                          f"\"10.0.0.0/24\"") from None
    return out


def mac_map(key: str, value: Any) -> Dict[str, str]:
    """`{ "10.0.0.5" = "52:54:00:12:34:56", ... }`: the MAC of each host, for waking it."""
    if not isinstance(value, dict):
        raise Invalid(f"'{key}' must be an object of \"address\" = \"MAC\", found {kind_of(value)}")
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


def hostname(key: str, value: Any) -> str:
    """One RFC 1123 label, as /etc/hostname holds it (and safe in a shell command)."""
    problem = hostname_problem(string(key, value))
    if problem:
        raise Invalid(f"'{key}' {problem}")
    return value


def var_map(key: str, value: Any) -> Dict[str, str]:
    """`{ room = "B12", seat = "04" }`: a host's own words for its scripts."""
    if not isinstance(value, dict):
        raise Invalid(f"'{key}' must be an object of name = \"value\", found {kind_of(value)}")
    problems: List[str] = []
    out: Dict[str, str] = {}
    for name, item in value.items():
        problem = var_problem(name, item if isinstance(item, str) else None, list(out))
        if problem is not None:
            problems.append(f"{key}: {problem}")
            continue
        out[name] = item
    if problems:
        raise Invalid(*problems, partial=out)
    return out


def host_list(key: str, value: Any) -> List[str]:
    """A non-empty list of distinct IPv4/IPv6 addresses, in canonical text form."""
    if not isinstance(value, list):
        raise Invalid(f"'{key}' must be a list of address strings, found {kind_of(value)}")
    if not value:
        raise Invalid(f"'{key}' must not be empty")
    problems: List[str] = []
    hosts: List[str] = []
    for raw in value:
        if not isinstance(raw, str):
            problems.append(f"{key} entries must be address strings, found {kind_of(raw)}")
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
