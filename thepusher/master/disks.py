"""A client's disks as it lists them when it registers (`disks` in POST /api/register,
from disk/inventory.py): checked before the master keeps them, because the status page
and every `/api/status` reader show them to people.

The master keeps the known fields only (a newer client may send more), each of its
type, with bounded lengths and counts: a broken or hostile client gets a 400 that says
which disk and which field, not a status too large to serve.
"""

from typing import Any, Dict, List

from thepusher.master.errors import MAX_INT, ApiError
from thepusher.plan import MAX_DISKS
MAX_TEXT = 200  # longer than any path, model, serial or WWN the kernel gives

# field -> (type, value when a client leaves it out); path and size are required.
FIELDS: Dict[str, Any] = {
    "path": (str, None), "size": (int, None), "logical_sector_size": (int, 512),
    "physical_sector_size": (int, 512), "model": (str, ""), "serial": (str, ""),
    "wwn": (str, ""), "rotational": (bool, False), "removable": (bool, False),
    "transport": (str, ""), "read_only": (bool, False), "boot": (bool, False),
    "mounted": (str, ""),
}


def disks_field(body: dict) -> List[Dict[str, Any]]:
    """The checked `disks` of a registration; [] from a client that sends none."""
    value = body.get("disks")
    if value is None:
        return []
    if not isinstance(value, list):
        raise ApiError(400, f"field 'disks' must be a list of disk objects, got "
                            f"{type(value).__name__}")
    if len(value) > MAX_DISKS:
        raise ApiError(400, f"field 'disks' lists {len(value)} disks; at most {MAX_DISKS}")
    return [_disk(i, entry) for i, entry in enumerate(value, 1)]


def _disk(i: int, entry: Any) -> Dict[str, Any]:
    where = f"field 'disks', disk {i}"
    if not isinstance(entry, dict):
        raise ApiError(400, f"{where} must be an object, got {type(entry).__name__}")
    disk: Dict[str, Any] = {}
    for key, (kind, default) in FIELDS.items():
        value = entry.get(key)
        if value is None and default is not None:
            value = default
        elif value is None:
            raise ApiError(400, f"{where}: missing {key!r}")
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ApiError(400, f"{where}: {key!r} must be {kind.__name__}, got "
                                f"{type(value).__name__}")
        elif kind is int and not 0 <= value <= MAX_INT:
            raise ApiError(400, f"{where}: {key!r} is out of range")
        elif kind is str and len(value) > MAX_TEXT:
            raise ApiError(400, f"{where}: {key!r} is longer than {MAX_TEXT} characters")
        disk[key] = value
    return disk
