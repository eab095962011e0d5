"""Keys that are each valid but make no sense together, reported where they stand: a
MAC for a host its group does not list, readback, grow or discard for a TAR image,
disk hints without destination = "auto" (an image's, or a host's whose group's image
writes to a path), start policies that cannot apply."""

from typing import Callable, Sequence

from thepusher.config.entry import Entry
from thepusher.config.model import AUTO

Report = Callable[[int, int, str], None]  # line, col, message


def check(entries: Sequence[Entry], error: Report) -> None:
    for rule in (_check_start_policies, _check_macs, _check_verify, _check_auto, _check_disk_blocks):
        rule(entries, error)


def _check_macs(entries: Sequence[Entry], error: Report) -> None:
    """A MAC for a host the group does not list is a typo in one of the two."""
    for entry in entries:
        if entry.type != "clientgroup" or "macs" not in entry.attrs:
            continue
        hosts = entry.fields.get("hosts", [])
        attr = entry.attrs["macs"]
        for host in entry.fields.get("macs", {}):
            if host not in hosts:
                error(attr.line, attr.col,
                      f"{entry.what}: macs names {host}, which is not in its hosts")


def _check_verify(entries: Sequence[Entry], error: Report) -> None:
    """A TAR image is extracted into files: there is no disk range to read back, nor
    a partition table to grow, nor a free range of a disk to discard."""
    for entry in entries:
        f = entry.fields
        if entry.type != "image" or f.get("type") != "TAR":
            continue
        if f.get("verify") == "readback":
            attr = entry.attrs["verify"]
            error(attr.line, attr.col,
                  f"{entry.what}: verify = \"readback\" reads a disk image back; a "
                  f"TAR image is extracted into files (leave verify out for TAR)")
        if f.get("grow"):
            attr = entry.attrs["grow"]
            error(attr.line, attr.col,
                  f"{entry.what}: grow = true grows a disk image's last partition; a "
                  f"TAR image is extracted into files (leave grow out for TAR)")
        if f.get("discard"):
            attr = entry.attrs["discard"]
            error(attr.line, attr.col,
                  f"{entry.what}: discard = true discards a disk image's free ranges; a "
                  f"TAR image is extracted into files (leave discard out for TAR)")


def _check_auto(entries: Sequence[Entry], error: Report) -> None:
    """destination = "auto" picks a disk: not for a TAR image, extracted into a directory."""
    for entry in entries:
        f = entry.fields
        if entry.type == "image" and f.get("destination") == AUTO and f.get("type") == "TAR":
            attr = entry.attrs["destination"]
            error(attr.line, attr.col,
                  f"{entry.what}: destination = \"auto\" chooses a disk; a TAR image is "
                  f"extracted into a directory: give its path")


def _check_disk_blocks(entries: Sequence[Entry], error: Report) -> None:
    """A `disk` block, an image's or a host's over its image's, narrows the choice that
    destination = "auto" makes: the image must make one."""
    images = {e.name: e for e in entries if e.type == "image"}
    group_of = {h: e for e in entries if e.type == "clientgroup" for h in e.fields.get("hosts", [])}
    for entry in entries:
        inner = entry.blocks.get("disk")
        if inner is None:
            continue
        if entry.type == "image":
            image, whose, where = entry, "the destination is", ""
        else:
            group = group_of.get(entry.name)
            image = images.get(group.fields.get("image")) if group else None
            whose, where = f"{image.what} of its {group.what} writes to" if image else "", " there"
        destination = image.fields.get("destination") if image else None
        if destination not in (None, AUTO):
            error(inner.line, inner.col,
                  f"{entry.what}: a disk block narrows destination = \"auto\", but {whose} "
                  f"\"{destination}\" (set destination = \"auto\"{where} or remove the block)")


def _check_start_policies(entries: Sequence[Entry], error: Report) -> None:
    """min_clients without wait, more min_clients or chains than hosts, and wait or
    retries with a manual start."""
    for entry in entries:
        if entry.type != "clientgroup":
            continue
        f, attrs = entry.fields, entry.attrs
        manual = f.get("start") == "manual"
        hosts = f.get("hosts")
        if "min_clients" in attrs and "min_clients" in f:
            attr = attrs["min_clients"]
            if "wait" not in attrs:
                error(
                    attr.line, attr.col,
                    f"{entry.what}: 'min_clients' needs 'wait': without a wait, the group "
                    f"starts only when all its hosts are ready",
                )
            if hosts and f["min_clients"] > len(hosts):
                error(
                    attr.line, attr.col,
                    f"{entry.what}: 'min_clients' is {f['min_clients']} but the group has "
                    f"{len(hosts)} host{'s' if len(hosts) != 1 else ''}",
                )
        if "chains" in attrs and "chains" in f and hosts and f["chains"] > len(hosts):
            attr = attrs["chains"]
            error(
                attr.line, attr.col,
                f"{entry.what}: 'chains' is {f['chains']} but the group has "
                f"{len(hosts)} host{'s' if len(hosts) != 1 else ''}: a chain needs one",
            )
        if manual and "wait" in f:
            attr = attrs["wait"]
            error(
                attr.line, attr.col,
                f"{entry.what}: 'wait' has no effect with start = \"manual\" "
                f"(rounds start only with thepusher start)",
            )
        if manual and f.get("retries"):
            attr = attrs["retries"]
            error(
                attr.line, attr.col,
                f"{entry.what}: 'retries' has no effect with start = \"manual\" "
                f"(follow-up rounds start only with thepusher retry)",
            )
