"""The admin's marks for hosts' next network boot ("re-image at next boot", "upload at
next boot"), kept in IMAGE_DIR/thepusher-nextboot.json so that a restarted master keeps
them. What they make a machine boot is nextboot.py's.
"""

import json
import os
import re
from typing import Dict, Optional

from thepusher.config.model import normalize_host
from thepusher.image.facts import atomic_write

FILENAME = "thepusher-nextboot.json"
IMAGE, PUT = "image", "put"
DEVICE_RE = re.compile(r"^(auto|/dev/[A-Za-z0-9/_.\-]+)$")


class Marks:
    """host -> "image" or "put:DEVICE", saved at each change (the caller holds the state lock)."""

    def __init__(self, path: Optional[str]) -> None:
        self.path = path
        self.marks: Dict[str, str] = {}

    @classmethod
    def load(cls, image_dir: str) -> "Marks":
        marks = cls(os.path.join(image_dir, FILENAME))
        try:
            with open(marks.path, encoding="utf-8") as f:
                data = json.load(f)
            marks.marks = {normalize_host(str(h)): str(m) for h, m in data["next_boot"].items()
                           if _valid_mark(str(m))}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, AttributeError, TypeError) as e:
            raise ValueError(f"{marks.path} is damaged ({e}); fix or remove it") from None
        return marks

    def set(self, host: str, mark: str) -> None:
        """Record and save; OSError if it cannot be saved, and then nothing changed."""
        if self.marks.get(host, "") == mark:
            return
        marks = {h: m for h, m in self.marks.items() if h != host}
        if mark:
            marks[host] = mark
        if self.path is not None:
            note = "written by thepusher master: what each marked host boots next"
            atomic_write(self.path, json.dumps({"note": note, "next_boot": marks},
                                               indent=2, sort_keys=True) + "\n")
        self.marks = marks

def _valid_mark(mark: str) -> bool:
    return mark == IMAGE or (mark.startswith(PUT + ":") and bool(DEVICE_RE.match(mark[4:])))

