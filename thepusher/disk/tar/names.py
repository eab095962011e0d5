"""Which archive names are refused, and which symlink targets climb out.

An archive comes from wherever the image came from; its names are the one thing that
could point a write outside the destination. They are judged here, lexically, before
the tree (tree.py) opens anything: a name that passes has no "..", no leading "/" and
no NUL, so joining its parts under the destination cannot leave it.
"""

from typing import Optional

from thepusher.disk.tar.model import Parts


def normalise(name: bytes) -> Optional[Parts]:
    """The path components of an archive name, or None when it must be refused."""
    if not name or name.startswith(b"/") or b"\0" in name:
        return None
    parts = tuple(p for p in name.split(b"/") if p and p != b".")
    return None if b".." in parts else parts


def why_refused(name: bytes) -> str:
    if not name:
        return "its name is empty"
    if name.startswith(b"/"):
        return "its name is absolute"
    if b"\0" in name:
        return "its name contains a NUL byte"
    return 'its name contains ".."'


def escapes(parts: Parts, target: bytes) -> bool:
    """True if relative symlink `target` of the link at `parts` climbs above the root."""
    where = list(parts[:-1])
    for comp in target.split(b"/"):
        if comp == b"..":
            if not where:
                return True
            where.pop()
        elif comp and comp != b".":
            where.append(comp)
    return False
