"""What a config file says, once read and checked: images, client groups, settings.

Everything here is plain data the rest of thepusher reads (the master's plan, the page,
`check-config`); how the file becomes this is schema.py and load.py.
"""

import ipaddress
import os
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, List, Optional

from thepusher.image.formats import HEAD, declaration_problem

AUTO = "auto"  # the destination that makes each client choose its disk (client/choose.py)


@dataclass(frozen=True)
class DiskHints:
    """What `destination = "auto"` must find on a client: each set hint narrows the
    disks it may choose, and a machine where not exactly one is left is not written.
    Sizes are bytes; model, serial, wwn and path are exact or shell-glob patterns.
    Unset (None, "") narrows nothing. The same hints travel in the client's task."""

    min_size: Optional[int] = None
    max_size: Optional[int] = None
    model: str = ""
    serial: str = ""
    wwn: str = ""
    rotational: Optional[bool] = None  # True: spinning disks only; False: SSDs only
    path: str = ""

    def to_json(self) -> Dict[str, Any]:
        """The hints that are set, as the task carries them (plan.Task.disk)."""
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}

    def under(self, other: "DiskHints") -> "DiskHints":
        """These hints with every hint `other` sets put in their place: a host's own
        `disk` block over its image's."""
        return replace(self, **other.to_json())

    def names_disk(self) -> bool:
        """A hint that points at one disk by name: what lets a loop, USB or removable
        disk be chosen (sizes and models match too many sticks to be trusted)."""
        return bool(self.path or self.serial or self.wwn)


@dataclass
class Image:
    name: str
    filename: str
    path: str  # absolute: image_dir/filename
    destination: str  # a path, or AUTO: each client chooses its disk by `disk`
    line: int
    comment: str = ""
    type: str = "IMG"
    compression: str = "NONE"
    pre_image: str = ""
    post_image: str = ""
    # "write": DONE means the bytes handed to the disk hash to the image's digest;
    # "readback": the bytes the disk gives back after the flush do.
    verify: str = "write"
    # After writing to a larger disk: the last partition ends at the disk's end (GPT).
    grow: bool = False
    # Free ranges (FREE records) of a block device destination are discarded (BLKDISCARD),
    # not just skipped.
    discard: bool = False
    # "linux": after the copy is verified, give its Linux root the host's own name and
    # no clone's machine-id or SSH host keys (disk/personalize.py); "": leave it as is.
    personalize: str = ""
    disk: DiskHints = field(default_factory=DiskHints)  # the `disk { ... }` block


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
class Host:
    """One machine's own identity, from a `host "ADDRESS" { ... }` block or a line of the
    hosts file: what its scripts see as #HOSTNAME# and #VAR:name#, and the name
    `personalize` writes into its system."""

    address: str  # normalised, as in a group's hosts
    line: int  # of its block in the config, or of its line in the hosts file
    name: str = ""  # a hostname (one RFC 1123 label); "" when none is given
    vars: Dict[str, str] = field(default_factory=dict)
    source: str = ""  # the hosts file it comes from; "" for a host block
    disk: DiskHints = field(default_factory=DiskHints)  # its `disk { ... }` block, over its image's


@dataclass
class Settings:
    """Top-level `key = value` lines: master-wide knobs. Every wait in a round is bounded
    by one of these (seconds); docs/protocol.md says what happens when each runs out."""

    arm_timeout: float = 30.0  # clients must take a round's start within this
    accept_timeout: float = 60.0  # a hop waits this long for its upstream to connect
    io_timeout: float = 30.0  # silence on a data connection that counts as a failure
    report_timeout: float = 15.0  # a client silent this long during a round is lost
    # MiB of recently sent records each hop keeps to replay after skipping a dead next
    # hop: covers what can be in flight past one hop (its 16 MiB of buffers + sockets).
    replay_window: float = 32.0
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
    # A CSV file (relative to the config's directory) of host names, vars and MACs.
    hosts_file: str = ""
    # What a network-booting machine no group lists boots (GET /boot.ipxe): its own
    # disk ("local"), or thepusher, to show up as unassigned on the page ("image").
    unknown_boot: str = "local"


@dataclass
class Config:
    path: str  # absolute path of the config file
    image_dir: str  # absolute
    images: Dict[str, Image]
    groups: Dict[str, ClientGroup]
    settings: Settings = field(default_factory=Settings)
    hosts: Dict[str, Host] = field(default_factory=dict)  # by address: names and vars

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


MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}([:-]?)[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$")


def normalize_mac(text: str) -> Optional[str]:
    """`aa:bb:cc:dd:ee:ff` from the usual spellings, or None if it is not a MAC address."""
    if not MAC_RE.match(text.strip()):
        return None
    digits = re.sub(r"[:-]", "", text.strip()).lower()
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))
