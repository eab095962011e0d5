"""What the master learns about hosts at run time, kept across restarts.

`IMAGE_DIR/thepusher-hosts.json`, next to the config:
- hosts an admin added to a group from the page or API (appended to the group's chain
  after the config's own hosts; the config wins if it later lists the host itself);
- the MAC address each host last registered with, for Wake-on-LAN.

Written atomically; a damaged file stops the master with its name rather than being
silently replaced, since it holds decisions an admin made.
"""

import json
import logging
import os
import threading
from typing import Dict, List

from thepusher.config.model import Config, normalize_host, normalize_mac
from thepusher.image.facts import atomic_write

log = logging.getLogger("thepusher.master")

FILENAME = "thepusher-hosts.json"


class HostBook:
    def __init__(self, path: str) -> None:
        self.path = path
        self.added: Dict[str, List[str]] = {}  # group -> hosts added at run time, in order
        self.macs: Dict[str, str] = {}  # host -> MAC it registered with
        self._lock = threading.Lock()

    @classmethod
    def load(cls, image_dir: str) -> "HostBook":
        book = cls(os.path.join(image_dir, FILENAME))
        try:
            with open(book.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return book
        except (OSError, ValueError) as e:
            raise ValueError(f"{book.path} is damaged ({e}); fix or remove it") from None
        try:
            book.added = {str(g): [normalize_host(str(h)) for h in hosts]
                          for g, hosts in data.get("added", {}).items()}
            book.macs = {normalize_host(str(h)): str(m) for h, m in data.get("macs", {}).items()
                         if normalize_mac(str(m))}
        except (AttributeError, TypeError) as e:
            raise ValueError(f"{book.path} is damaged ({e}); fix or remove it") from None
        return book

    def apply(self, config: Config) -> None:
        """Put the added hosts into their groups; drop what the config now decides itself."""
        for group, hosts in list(self.added.items()):
            target = config.groups.get(group)
            if target is None:
                log.warning("%s: group %s is no longer in the config; its added hosts %s are "
                            "unassigned again", self.path, group, ", ".join(hosts))
                del self.added[group]
                continue
            kept = [h for h in hosts if config.group_of(h) is None]
            target.hosts.extend(kept)
            self.added[group] = kept

    def add(self, host: str, group: str) -> None:
        """Record and save at once; OSError if it cannot be saved (and then nothing changed)."""
        with self._lock:
            before = list(self.added.get(group, []))
            self.added.setdefault(group, []).append(host)
            try:
                self._save()
            except OSError:
                self.added[group] = before
                raise

    def learn_mac(self, host: str, mac: str) -> None:
        """Remember a registered MAC; written only when it is new or changed."""
        mac = normalize_mac(mac) or ""
        with self._lock:
            if not mac or self.macs.get(host) == mac:
                return
            self.macs[host] = mac
            try:
                self._save()
            except OSError as e:
                log.error("cannot save %s: %s", self.path, e)

    def _save(self) -> None:
        data = {"note": "written by thepusher master: hosts added to groups at run time "
                        "and the MAC each host registered with",
                "added": self.added, "macs": self.macs}
        atomic_write(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")
