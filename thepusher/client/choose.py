"""Which disk `destination = "auto"` means on this machine: pure rules over its
inventory (disk/inventory.py) and the image's hints (config.model.DiskHints).

A wrong guess overwrites someone's data, so the rules only ever take a disk when
exactly one is left, and say otherwise why each disk was not taken:

- the disk holding the running system or the boot medium is never taken;
- nor a read-only one;
- a loop device, a removable disk or one on USB is taken only when a hint names it
  (`path`, `serial` or `wwn`): a stick left in a PC, the netboot image's own loop
  devices, an external disk are no target by default;
- every hint that is set must match: sizes in bytes, model, serial and WWN as
  case-insensitive shell patterns, path as a case-sensitive one.

Lives with the client, not in disk/: its messages speak units and it reads the
config's hints, and disk/ may import neither. `choose` is the pure part; `resolve`
applies it to this machine.
"""

import fnmatch
import logging
from typing import Any, Dict, List, Sequence, Tuple

from thepusher.config.model import AUTO, DiskHints
from thepusher.disk.inventory import Disk, inventory
from thepusher.units import size as human_bytes

log = logging.getLogger("thepusher.client")

UNNAMED = "taken only when a path, serial or wwn hint names it"  # loop, USB, removable


class NoDisk(Exception):
    """Not exactly one disk fits. `listing`: every disk and why it was (not) taken;
    `example`: the path of a disk a person likely means, for advice ("" if none)."""

    def __init__(self, listing: str, advice: str, example: str = "") -> None:
        super().__init__(f"{listing}. {advice}")
        self.listing = listing
        self.example = example


def _like(value: str, pattern: str, case: bool = False) -> bool:
    if case:
        return fnmatch.fnmatchcase(value, pattern)
    return fnmatch.fnmatchcase(value.lower(), pattern.lower())


def reasons(disk: Disk, hints: DiskHints) -> List[str]:
    """Why `disk` is not a candidate under `hints`; [] when it is."""
    why = []
    if disk.boot:
        why.append(f"holds the running system ({disk.mounted} is mounted from it)")
    if disk.read_only:
        why.append("read-only")
    if disk.transport == "loop" or disk.removable or disk.transport == "usb":
        kind = ("a loop device" if disk.transport == "loop"
                else "on USB" if disk.transport == "usb" else "removable")
        if not hints.names_disk():
            why.append(f"{kind}: {UNNAMED}")
    if hints.min_size is not None and disk.size < hints.min_size:
        why.append(f"smaller than min_size {human_bytes(hints.min_size)}")
    if hints.max_size is not None and disk.size > hints.max_size:
        why.append(f"larger than max_size {human_bytes(hints.max_size)}")
    for key in ("model", "serial", "wwn"):
        pattern, value = getattr(hints, key), getattr(disk, key)
        if pattern and not _like(value, pattern):
            why.append(f'{key} is not "{pattern}"')
    if hints.rotational is not None and disk.rotational != hints.rotational:
        why.append("not a spinning disk (rotational = true)" if hints.rotational
                   else "a spinning disk (rotational = false)")
    if hints.path and not _like(disk.path, hints.path, case=True):
        why.append(f'path is not "{hints.path}"')
    return why


def describe(disk: Disk) -> str:
    """'/dev/sda (931.5 GiB, sata, WDC WD10EZEX, serial WD-WCC6Y4)': enough to tell it apart."""
    facts = [human_bytes(disk.size), disk.transport or "unknown bus", disk.model,
             f"serial {disk.serial}" if disk.serial else ""]
    return f"{disk.path} ({', '.join(f for f in facts if f)})"


def choose(disks: Sequence[Disk], hints: DiskHints, label: str = f'destination "{AUTO}"') -> Disk:
    """The one disk that fits, or NoDisk with every disk and the hint to add."""
    judged: List[Tuple[Disk, List[str]]] = [(d, reasons(d, hints)) for d in disks]
    fits = [d for d, why in judged if not why]
    if len(fits) == 1:
        return fits[0]
    if not disks:
        raise NoDisk(f"{label}: this machine has no disk (none in /sys/block)",
                     "Check that the target disk is connected and seen by the kernel")
    others = "; ".join(f"{describe(d)}: {', '.join(why)}" for d, why in judged if why)
    if fits:
        first = fits[0]
        example = f'serial = "{first.serial}"' if first.serial else f'path = "{first.path}"'
        listing = (f"{label}: {len(fits)} disks fit, so none is written: "
                   f"{'; '.join(describe(d) for d in fits)}"
                   + (f". Not taken: {others}" if others else ""))
        raise NoDisk(listing, f"Add a hint to the image's disk block that only one of them "
                              f"matches, e.g. {example}", first.path)
    gated = [d for d, why in judged if len(why) == 1 and why[0].endswith(UNNAMED)]
    listing = f"{label}: no disk fits, so none is written. Not taken: {others}"
    if gated:
        raise NoDisk(listing, f"To write {gated[0].path} anyway, name it in the image's disk "
                              f'block, e.g. path = "{gated[0].path}"', gated[0].path)
    if hints.to_json():
        raise NoDisk(listing, "Loosen the image's disk hints, or check that the target disk "
                              "is connected")
    raise NoDisk(listing, "Check that the target disk is connected and seen by the kernel")


def resolve(destination: str, hints: Dict[str, Any]) -> str:
    """Where to write: `destination` itself, or for "auto" the disk this machine's
    inventory and the task's hints (plan.Task.disk) leave; NoDisk when not exactly one."""
    if destination != AUTO:
        return destination
    disk = choose(inventory(), DiskHints(**hints))
    log.info('destination "%s": %s is the one disk that fits', AUTO, describe(disk))
    return disk.path
