"""Whether a source is mounted read-write: /proc/self/mountinfo, for the device, its
partitions and what is stacked on them (LVM, dm-crypt), or the loop devices over a
file. A filesystem changing under a capture gives an image no fsck can trust, and
its bitmaps would not match its blocks: the caller refuses unless forced.
"""

import os
import stat
from typing import List, Set, Tuple

SYS_BLOCK = "/sys/dev/block"


def mounted_rw(path: str, mountinfo: str = "/proc/self/mountinfo") -> List[str]:
    """One line per read-write mount of `path` (a block device or an image file), of
    one of its partitions, or of a device stacked on them; [] when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return []
    if stat.S_ISBLK(st.st_mode):
        devices = _with_children({(os.major(st.st_rdev), os.minor(st.st_rdev))})
    else:
        devices = _with_children(_loops_over(os.path.realpath(path)))
    names = {os.path.realpath(path)}
    found = []
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split(" ")
        if "-" not in fields[6:] or len(fields) < 10:
            continue
        sep = fields.index("-", 6)
        major, _, minor = fields[2].partition(":")
        source, options = fields[sep + 2], fields[sep + 3].split(",")
        if "rw" not in options or "rw" not in fields[5].split(","):
            continue
        number = (int(major), int(minor)) if major.isdigit() and minor.isdigit() else None
        if number in devices or os.path.realpath(source) in names:
            mount_point = fields[4].encode().decode("unicode_escape")
            found.append(f"{source} is mounted read-write on {mount_point}")
    return found


def _with_children(devices: Set[Tuple[int, int]]) -> Set[Tuple[int, int]]:
    """The devices, their partitions and their holders, transitively (from sysfs)."""
    todo, seen = list(devices), set(devices)
    while todo:
        major, minor = todo.pop()
        base = f"{SYS_BLOCK}/{major}:{minor}"
        try:
            children = [os.path.join(base, n) for n in os.listdir(base)
                        if os.path.exists(os.path.join(base, n, "partition"))]
            holders = os.path.join(base, "holders")
            if os.path.isdir(holders):
                children += [os.path.join(holders, n) for n in os.listdir(holders)]
        except OSError:
            continue
        for child in children:
            try:
                with open(os.path.join(child, "dev"), encoding="ascii") as f:
                    a, _, b = f.read().strip().partition(":")
            except OSError:
                continue
            number = (int(a), int(b))
            if number not in seen:
                seen.add(number)
                todo.append(number)
    return seen


def _loops_over(real: str) -> Set[Tuple[int, int]]:
    found = set()
    try:
        names = [n for n in os.listdir("/sys/block") if n.startswith("loop")]
    except OSError:
        return found
    for name in names:
        try:
            with open(f"/sys/block/{name}/loop/backing_file", encoding="utf-8") as f:
                backing = f.read().strip()
            with open(f"/sys/block/{name}/dev", encoding="ascii") as f:
                a, _, b = f.read().strip().partition(":")
        except OSError:
            continue
        if backing == real:
            found.add((int(a), int(b)))
    return found
