"""The master's configuration: `thePusher-config.hcl` in the image directory.

The file format is the original tool's (see `example-config.hcl` and `docs/config.md`):
`image "name" { ... }` blocks describe images, `clientgroup "name" { ... }` blocks say
which hosts, in chain order, receive which image.

The schema is a table (`BLOCKS`): adding a key is one `Key(...)` line there plus a field
on the dataclass it fills; adding a block type is one `BlockSpec` entry. Every semantic
problem in the file is collected and reported at once, each as `file:line:col: message`,
so an administrator fixes the whole file in one pass instead of one error per restart.

A missing image *file* is deliberately not a load error: the master may start before
an image has been uploaded with `put-image`. `Config.file_problems()` reports those,
and files whose first bytes contradict their declared compression.
"""

import difflib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from thepusher import hcl
from thepusher.decode import HEAD, declaration_problem

__all__ = [
    "BLOCKS",
    "BlockSpec",
    "ClientGroup",
    "Config",
    "ConfigError",
    "Image",
    "Invalid",
    "Key",
    "SETTINGS",
    "Settings",
    "describe",
    "load",
    "normalize_host",
]


# ---------------------------------------------------------------------------- model


@dataclass
class Image:
    name: str
    filename: str
    path: str  # absolute: image_dir/filename
    destination: str
    line: int
    comment: str = ""
    type: str = "IMG"
    compression: str = "NONE"
    pre_image: str = ""
    post_image: str = ""
    # "write": DONE means the bytes handed to the disk hash to the image's digest;
    # "readback": the bytes the disk gives back after the flush do.
    verify: str = "write"


@dataclass
class ClientGroup:
    name: str
    image: str
    hosts: List[str]  # chain order: the master streams to hosts[0], which forwards to hosts[1], ...
    line: int
    start: str = "all"  # "all": automatically, by the rules below; "manual": `thepusher start` only
    wait: Optional[float] = None  # seconds: also start this long after the first host is ready ...
    min_clients: int = 1  # ... if at least this many are ready
    retries: int = 0  # automatic follow-up rounds a host that ended in ERROR is taken into
    chains: int = 1  # a round's hosts split into this many chains, each fed by the master
    macs: Dict[str, str] = field(default_factory=dict)  # host -> MAC, for Wake-on-LAN

    def split(self, hosts: List[str]) -> List[List[str]]:
        """A round's hosts (in `hosts` order) as its chains: `chains` runs of near-equal
        length, in order, so hosts listed together (a rack, a switch) share a chain.
        Fewer hosts than `chains` give one chain each."""
        k = min(self.chains, len(hosts)) or 1
        size, longer = divmod(len(hosts), k)
        out, at = [], 0
        for i in range(k):
            n = size + (1 if i < longer else 0)
            out.append(hosts[at:at + n])
            at += n
        return out

    def start_rule(self) -> str:
        """The start policy in words, for check-config and the master's log."""
        if self.start == "manual":
            return "by hand (thepusher start / retry)"
        rule = "when all hosts are ready"
        if self.wait is not None:
            rule += f", or {self.wait:g} s after the first is ready with at least {self.min_clients}"
        if self.retries:
            rule += f"; a failed host gets up to {self.retries} automatic retries"
        return rule


@dataclass
class Settings:
    """Top-level `key = value` lines: master-wide knobs. Every wait in a round is bounded
    by one of these (seconds); docs/protocol.md says what happens when each runs out."""

    arm_timeout: float = 30.0  # clients must take a round's start within this
    accept_timeout: float = 60.0  # a hop waits this long for its upstream to connect
    io_timeout: float = 30.0  # silence on a data connection that counts as a failure
    report_timeout: float = 15.0  # a client silent this long during a round is lost
    # MiB of recently sent records each hop keeps to replay after skipping a dead next
    # hop: covers what can be in flight past one hop (its 32 MiB of buffers + sockets).
    replay_window: float = 48.0
    # Required by every call that changes what the master does (start, abort, ...),
    # from anywhere; "" means none, and then only the master's own host may make them.
    admin_token: str = ""
    wake_address: str = "255.255.255.255:9"  # where Wake-on-LAN packets are broadcast
    # Who may store images with put-image: addresses and networks; empty means only the
    # master's own host. With upload_token set, uploads must also carry it.
    put_allowed: List[str] = field(default_factory=list)
    upload_token: str = ""
    # Shared with the netboot image (create-nbi --secret, or thePusherSecret= on the
    # kernel command line): clients then run only tasks the master signed with it.
    secret: str = ""


@dataclass
class Config:
    path: str  # absolute path of the config file
    image_dir: str  # absolute
    images: Dict[str, Image]
    groups: Dict[str, ClientGroup]
    settings: Settings = field(default_factory=Settings)

    def group_of(self, host: str) -> Optional[ClientGroup]:
        """The group `host` (an address as a socket reports it) belongs to, if any."""
        key = normalize_host(host)
        for group in self.groups.values():
            if key in group.hosts:
                return group
        return None

    def file_problems(self) -> List[str]:
        """One line per image whose file is not (yet) in the image directory, is not a
        regular file, or is not compressed the way its block says."""
        problems = []
        for image in self.images.values():
            problem = image_file_problem(image)
            if problem is None:
                continue
            problems.append(f"{self.path}:{image.line}: image '{image.name}': {problem}")
        return problems


def image_file_problem(image: Image) -> Optional[str]:
    """What is wrong with an image's file, as "file PATH <problem>", or None."""
    if not os.path.exists(image.path):
        problem = "does not exist"
    elif not os.path.isfile(image.path):
        problem = "is not a regular file"
    elif os.path.getsize(image.path) == 0:
        problem = "is empty (0 bytes): nothing to deploy"
    else:
        try:
            with open(image.path, "rb") as f:
                head = f.read(HEAD)
        except OSError as e:
            return f"file {image.path} cannot be read: {e.strerror or e}"
        problem = declaration_problem(head, image.compression)
        if problem is None:
            return None
    return f"file {image.path} {problem}"


class ConfigError(Exception):
    """Everything wrong with a config file; `str()` is one `file:line:col: message` per line."""

    def __init__(self, errors: List[str]) -> None:
        if isinstance(errors, str):
            errors = [errors]
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


def normalize_host(host: str) -> str:
    """Canonical text of an address, so '::FFFF:10.0.0.1', '10.0.0.1' and '0:0::1'/'::1' compare
    equal to what the config holds; anything that is not an address comes back unchanged."""
    try:
        addr = ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return host
    mapped = getattr(addr, "ipv4_mapped", None)
    return str(mapped or addr)


# ---------------------------------------------------------------------------- schema


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


MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}([:-]?)[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$")


def normalize_mac(text: str) -> Optional[str]:
    """`aa:bb:cc:dd:ee:ff` from the usual spellings, or None if it is not a MAC address."""
    if not MAC_RE.match(text.strip()):
        return None
    digits = re.sub(r"[:-]", "", text.strip()).lower()
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


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
class BlockSpec:
    """One block type: its keys, the `Config` table it fills and how to build an entry."""

    keys: Tuple[Key, ...]
    table: str  # attribute of Config holding the built objects, by name
    build: Callable[[str, Dict[str, Any], hcl.Block, "_Loader"], Any]


def _build_image(name: str, fields: Dict[str, Any], block: hcl.Block, loader: "_Loader") -> Image:
    path = os.path.join(loader.image_dir, fields["filename"])
    return Image(name=name, path=path, line=block.line, **fields)


def _build_group(name: str, fields: Dict[str, Any], block: hcl.Block, loader: "_Loader") -> ClientGroup:
    return ClientGroup(name=name, line=block.line, **fields)


COMPRESSIONS = ("NONE", "BZ2", "GZIP", "XZ")
TYPES = ("IMG", "TAR")  # TAR: extracted into the destination directory (untar.py)
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
            Key("compression", "compression", _choice(*COMPRESSIONS, aliases={"GZ": "GZIP"})),
            Key("preImage", "pre_image", _string),
            Key("postImage", "post_image", _string),
            Key("verify", "verify", _word(*VERIFY)),
        ),
        table="images",
        build=_build_image,
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


# ---------------------------------------------------------------------------- loading


def _suggest(word: str, known: List[str]) -> str:
    """'; did you mean 'x'?' for a likely typo (case-insensitive), else ''."""
    lowered = {k.lower(): k for k in known}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f"; did you mean '{lowered[close[0]]}'?" if close else ""


@dataclass
class _Entry:
    """A block as read, kept even when it has errors so cross-checks still see it."""

    type: str
    name: Optional[str]  # None when the block lacks its single label
    what: str  # how messages name it: "clientgroup 'g'", or "clientgroup block"
    block: hcl.Block
    fields: Dict[str, Any]  # converted values of the keys that were valid
    attrs: Dict[str, hcl.Attribute]
    complete: bool  # no error inside this block


class _Loader:
    def __init__(self, path: str, image_dir: str) -> None:
        self.path = path
        self.image_dir = image_dir
        self.errors: List[Tuple[int, int, str]] = []
        self.entries: List[_Entry] = []
        self.settings: Dict[str, Any] = {}

    def error(self, line: int, col: int, message: str) -> None:
        self.errors.append((line, col, message))

    def read(self, body: hcl.Body) -> None:
        settings = {k.hcl: k for k in SETTINGS}
        for attr in body.attributes:
            key = settings.get(attr.key)
            if key is None:
                hint = _suggest(attr.key, list(settings)) or (
                    f" (top-level settings: {', '.join(settings)}; image and group keys go "
                    f"inside {' or '.join(BLOCKS)} blocks)"
                )
                self.error(attr.line, attr.col, f"unknown setting '{attr.key}'{hint}")
                continue
            try:
                self.settings[key.field] = key.convert(attr.key, attr.value)
            except Invalid as e:
                for message in e.messages:
                    self.error(attr.line, attr.col, message)
        for block in body.blocks:
            spec = BLOCKS.get(block.type)
            if spec is None:
                self.error(
                    block.line,
                    block.col,
                    f"unknown block type '{block.type}'{_suggest(block.type, list(BLOCKS))} "
                    f"(known: {', '.join(sorted(BLOCKS))})",
                )
                continue
            self.entries.append(self.read_block(block, spec))

    def read_block(self, block: hcl.Block, spec: BlockSpec) -> _Entry:
        before = len(self.errors)
        name: Optional[str] = None
        if len(block.labels) == 1:
            name = block.labels[0]
            what = f"{block.type} '{name}'"
        else:
            found = "none" if not block.labels else ", ".join(f'"{x}"' for x in block.labels)
            self.error(
                block.line,
                block.col,
                f"{block.type} block must have exactly one label, its name, "
                f'as in {block.type} "name" {{ ... }}; found {found}',
            )
            what = f"{block.type} block"
        keys = {k.hcl: k for k in spec.keys}
        fields: Dict[str, Any] = {}
        attrs: Dict[str, hcl.Attribute] = {}
        for attr in block.body.attributes:
            key = keys.get(attr.key)
            if key is None:
                hint = _suggest(attr.key, list(keys)) or f" (known keys: {', '.join(keys)})"
                self.error(attr.line, attr.col, f"{what}: unknown key '{attr.key}'{hint}")
                continue
            attrs[attr.key] = attr
            try:
                fields[key.field] = key.convert(attr.key, attr.value)
            except Invalid as e:
                for message in e.messages:
                    self.error(attr.line, attr.col, f"{what}: {message}")
                if e.partial is not None:
                    fields[key.field] = e.partial
        for inner in block.body.blocks:
            self.error(
                inner.line, inner.col, f"{what}: unexpected block '{inner.type}' (only key = value here)"
            )
        for key in spec.keys:
            if key.required and key.hcl not in attrs:
                self.error(block.line, block.col, f"{what}: missing required key '{key.hcl}'")
        return _Entry(block.type, name, what, block, fields, attrs, complete=len(self.errors) == before)

    def check_names(self) -> None:
        first: Dict[Tuple[str, str], _Entry] = {}
        for entry in self.entries:
            if entry.name is None:
                continue
            seen = first.setdefault((entry.type, entry.name), entry)
            if seen is not entry:
                entry.complete = False
                self.error(
                    entry.block.line,
                    entry.block.col,
                    f"duplicate {entry.type} '{entry.name}': already defined at line {seen.block.line}",
                )

    def check_image_refs(self) -> None:
        images = list(
            dict.fromkeys(e.name for e in self.entries if e.type == "image" and e.name is not None)
        )
        for entry in self.entries:
            ref = entry.fields.get("image") if entry.type == "clientgroup" else None
            if ref is None or ref in images:
                continue
            attr = entry.attrs["image"]
            hint = _suggest(ref, images) or (
                f" (defined images: {', '.join(images)})" if images else " (no images are defined)"
            )
            self.error(attr.line, attr.col, f"{entry.what}: image '{ref}' is not defined{hint}")

    def check_hosts(self) -> None:
        """A host is one machine in one chain: it may appear in one group only."""
        owner: Dict[str, _Entry] = {}
        for entry in self.entries:
            for host in entry.fields.get("hosts", []) if entry.type == "clientgroup" else []:
                other = owner.setdefault(host, entry)
                if other is entry:
                    continue
                here, there = entry.attrs["hosts"], other.attrs["hosts"]
                self.error(
                    here.line,
                    here.col,
                    f"host {host} is in {other.what} (line {there.line}) "
                    f"and in {entry.what} (line {here.line}); a host belongs to one group only",
                )

    def check_macs(self) -> None:
        """A MAC for a host the group does not list is a typo in one of the two."""
        for entry in self.entries:
            if entry.type != "clientgroup" or "macs" not in entry.attrs:
                continue
            hosts = entry.fields.get("hosts", [])
            attr = entry.attrs["macs"]
            for host in entry.fields.get("macs", {}):
                if host not in hosts:
                    self.error(attr.line, attr.col,
                               f"{entry.what}: macs names {host}, which is not in its hosts")

    def check_verify(self) -> None:
        """A TAR image is extracted into files: there is no disk range to read back."""
        for entry in self.entries:
            f = entry.fields
            if entry.type == "image" and f.get("verify") == "readback" and f.get("type") == "TAR":
                attr = entry.attrs["verify"]
                self.error(attr.line, attr.col,
                           f"{entry.what}: verify = \"readback\" reads a disk image back; a "
                           f"TAR image is extracted into files (leave verify out for TAR)")

    def check_start_policies(self) -> None:
        """Keys that are each valid but make no sense together, reported where they stand."""
        for entry in self.entries:
            if entry.type != "clientgroup":
                continue
            f, attrs = entry.fields, entry.attrs
            manual = f.get("start") == "manual"
            hosts = f.get("hosts")
            if "min_clients" in attrs and "min_clients" in f:
                attr = attrs["min_clients"]
                if "wait" not in attrs:
                    self.error(
                        attr.line, attr.col,
                        f"{entry.what}: 'min_clients' needs 'wait': without a wait, the group "
                        f"starts only when all its hosts are ready",
                    )
                if hosts and f["min_clients"] > len(hosts):
                    self.error(
                        attr.line, attr.col,
                        f"{entry.what}: 'min_clients' is {f['min_clients']} but the group has "
                        f"{len(hosts)} host{'s' if len(hosts) != 1 else ''}",
                    )
            if "chains" in attrs and "chains" in f and hosts and f["chains"] > len(hosts):
                attr = attrs["chains"]
                self.error(
                    attr.line, attr.col,
                    f"{entry.what}: 'chains' is {f['chains']} but the group has "
                    f"{len(hosts)} host{'s' if len(hosts) != 1 else ''}: a chain needs one",
                )
            if manual and "wait" in f:
                attr = attrs["wait"]
                self.error(
                    attr.line, attr.col,
                    f"{entry.what}: 'wait' has no effect with start = \"manual\" "
                    f"(rounds start only with thepusher start)",
                )
            if manual and f.get("retries"):
                attr = attrs["retries"]
                self.error(
                    attr.line, attr.col,
                    f"{entry.what}: 'retries' has no effect with start = \"manual\" "
                    f"(follow-up rounds start only with thepusher retry)",
                )

    def config(self) -> Config:
        tables: Dict[str, Dict[str, Any]] = {spec.table: {} for spec in BLOCKS.values()}
        for entry in self.entries:
            spec = BLOCKS[entry.type]
            assert entry.name is not None and entry.complete
            tables[spec.table][entry.name] = spec.build(entry.name, entry.fields, entry.block, self)
        return Config(
            path=self.path, image_dir=self.image_dir, settings=Settings(**self.settings), **tables
        )


def load(path: str, image_dir: Optional[str] = None) -> Config:
    """Read and check a config file; raise ConfigError listing every problem in it.

    `image_dir` (the master's -S) defaults to the directory holding the config file.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError([f"cannot read config file {path}: {e.strerror or e}"]) from None
    except ValueError as e:  # e.g. a NUL byte in the path
        raise ConfigError([f"cannot read config file {path!r}: {e}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigError(
            [f"{path}:{line}:{col}: not UTF-8 text (byte 0x{data[e.start]:02x})"]
        ) from None
    try:
        body = hcl.parse(text, path)
    except hcl.HCLError as e:
        raise ConfigError([str(e)]) from None
    if image_dir is None:
        image_dir = os.path.dirname(path)
    loader = _Loader(os.path.abspath(path), os.path.abspath(image_dir))
    loader.read(body)
    loader.check_names()
    loader.check_image_refs()
    loader.check_hosts()
    loader.check_start_policies()
    loader.check_macs()
    loader.check_verify()
    if loader.errors:
        raise ConfigError(
            [
                f"{path}:{line}:{col}: {msg}"
                for line, col, msg in sorted(loader.errors, key=lambda e: e[:2])
            ]
        )
    return loader.config()


# ---------------------------------------------------------------------------- describe


def _size(path: str) -> str:
    try:
        size = os.stat(path).st_size
    except OSError:
        return "missing"
    if not os.path.isfile(path):
        return "not a regular file"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # not reached


def describe(cfg: Config) -> str:
    """A human summary for `thepusher check-config`: what would be deployed where."""
    out = [f"config     {cfg.path}", f"image dir  {cfg.image_dir}"]
    timeouts = ", ".join(f"{k.hcl} {getattr(cfg.settings, k.field):g} s" for k in SETTINGS
                         if k.convert is _seconds)
    admin = "admin token set" if cfg.settings.admin_token else "no admin token (control from the master's host only)"
    out += [f"timeouts   {timeouts}", f"replay     {cfg.settings.replay_window:g} MiB",
            f"control    {admin}; Wake-on-LAN to {cfg.settings.wake_address}", ""]
    out.append(f"images ({len(cfg.images)}):")
    for image in cfg.images.values():
        out.append(f"  {image.name}")
        if image.comment:
            out.append(f"    comment      {image.comment}")
        out.append(f"    file         {image.filename} ({_size(image.path)})")
        out.append(f"    type         {image.type}, compression {image.compression}, "
                   f"verify {image.verify}")
        out.append(f"    destination  {image.destination}")
        for label, script in (("preImage", image.pre_image), ("postImage", image.post_image)):
            lines = script.rstrip("\n").split("\n") if script.strip() else []
            for i, text in enumerate(lines):
                out.append(f"    {label if i == 0 else '':<12} {text}")
    out.append("")
    out.append(f"client groups ({len(cfg.groups)}):")
    for group in cfg.groups.values():
        count = f"{len(group.hosts)} host{'s' if len(group.hosts) != 1 else ''}"
        chains = group.split(group.hosts)
        shape = "in chain order" if len(chains) == 1 else f"in {len(chains)} chains"
        out.append(f"  {group.name}: image {group.image}, {count} {shape}")
        out.append(f"    starts {group.start_rule()}")
        for n, chain in enumerate(chains, 1):
            if len(chains) > 1:
                out.append(f"    chain {n}:")
            for i, host in enumerate(chain, 1):
                out.append(f"    {i:>3}. {host}")
    return "\n".join(out)
