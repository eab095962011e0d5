"""The config schema as a table (`BLOCKS`, `SETTINGS`): adding a key is one `Key(...)`
line here plus a field on the dataclass it fills (model.py); adding a block type is one
`BlockSpec` entry. Each key names its converter (values.py).
"""

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Tuple

from thepusher.config import hcl
from thepusher.config import values as v
from thepusher.config.model import ClientGroup, DiskHints, Host, Image
from thepusher.config.values import Invalid
from thepusher.image.formats import ALIASES, COMPRESSIONS


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


def _build_host(name: str, fields: Dict[str, Any], block: hcl.Block, image_dir: str) -> Host:
    return Host(address=name, line=block.line, **fields)


def _build_disk_hints(fields: Dict[str, Any]) -> DiskHints:
    low, high = fields.get("min_size"), fields.get("max_size")
    if low is not None and high is not None and low > high:
        raise Invalid(f"min_size ({low} bytes) is larger than max_size ({high} bytes): "
                      f"no disk can fit")
    return DiskHints(**fields)


# `disk { ... }`: which disk destination = "auto" may choose. A table of its own, so that
# any block whose hosts choose a disk can take it (`nested=(DISK_HINTS,)`).
DISK_HINTS = Nested("disk", "disk", keys=(
    Key("min_size", "min_size", v.byte_size),
    Key("max_size", "max_size", v.byte_size),
    Key("model", "model", v.nonempty_string),
    Key("serial", "serial", v.nonempty_string),
    Key("wwn", "wwn", v.nonempty_string),
    Key("rotational", "rotational", v.flag),
    Key("path", "path", v.nonempty_string),
), build=_build_disk_hints)

TYPES = ("IMG", "TAR")  # TAR: extracted into the destination directory (disk/tar/)
START_POLICIES = ("all", "manual")
VERIFY = ("write", "readback")
PERSONALIZE = ("linux",)

SETTINGS: Tuple[Key, ...] = (
    Key("arm_timeout", "arm_timeout", v.seconds),
    Key("accept_timeout", "accept_timeout", v.seconds),
    Key("io_timeout", "io_timeout", v.seconds),
    Key("report_timeout", "report_timeout", v.seconds),
    Key("replay_window", "replay_window", v.mebibytes),
    Key("admin_token", "admin_token", v.token),
    Key("wake_address", "wake_address", v.wake_address),
    Key("put_allowed", "put_allowed", v.networks),
    Key("upload_token", "upload_token", v.token),
    Key("secret", "secret", v.token),
    Key("hosts_file", "hosts_file", v.string),
    Key("unknown_boot", "unknown_boot", v.word("local", "image")),
)

BLOCKS: Dict[str, BlockSpec] = {
    "image": BlockSpec(
        keys=(
            Key("filename", "filename", v.plain_filename, required=True),
            Key("comment", "comment", v.string),
            Key("destination", "destination", v.nonempty_string, required=True),
            Key("type", "type", v.choice(*TYPES)),
            Key("compression", "compression", v.choice(*COMPRESSIONS, aliases=ALIASES)),
            Key("preImage", "pre_image", v.string),
            Key("postImage", "post_image", v.string),
            Key("verify", "verify", v.word(*VERIFY)),
            Key("grow", "grow", v.flag),
            Key("discard", "discard", v.flag),
            Key("personalize", "personalize", v.word(*PERSONALIZE)),
        ),
        table="images",
        build=_build_image,
        nested=(DISK_HINTS,),
    ),
    "clientgroup": BlockSpec(
        keys=(
            Key("image", "image", v.nonempty_string, required=True),
            Key("hosts", "hosts", v.host_list, required=True),
            Key("start", "start", v.word(*START_POLICIES)),
            Key("wait", "wait", v.duration),
            Key("min_clients", "min_clients", v.count(1)),
            Key("retries", "retries", v.count(0)),
            Key("chains", "chains", v.count(1)),
            Key("macs", "macs", v.mac_map),
        ),
        table="groups",
        build=_build_group,
    ),
    # labelled by the host's address; load.py checks and normalises it (identity.py)
    "host": BlockSpec(
        keys=(
            Key("name", "name", v.hostname),
            Key("vars", "vars", v.var_map),
        ),
        table="hosts",
        build=_build_host,
        nested=(DISK_HINTS,),
    ),
}

# The settings check-config lists as timeouts.
TIMEOUTS: Tuple[Key, ...] = tuple(k for k in SETTINGS if k.convert is v.seconds)
