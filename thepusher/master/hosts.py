"""What the master learns about hosts at run time, kept across restarts.

`IMAGE_DIR/thepusher-hosts.json`, next to the config:
- hosts an admin added to a group from the page or API (appended to the group's chain
  after the config's own hosts; the config wins if it later lists the host itself);
- the MAC address each host last registered with, for Wake-on-LAN.

Written atomically; a damaged file stops the master with its name rather than being
silently replaced, since it holds decisions an admin made. An admin's addition is saved
before it is answered, and so is a new MAC when the file was last written more than
SAVE_EVERY ago. Other MACs are saved in batches, SAVE_EVERY after the last write, by a
thread of their own (and when the master stops): a room registering, or a flood of
addresses, costs a write or two a second, not one rewrite of the whole file per new
MAC. A MAC learned less than SAVE_EVERY before a crash may be lost; the host tells it
again at its next registration. The file's form is unchanged.
"""

import json
import logging
import os
import threading
import time
from typing import Dict, List, Optional

from thepusher.config.model import Config, normalize_host, normalize_mac
from thepusher.image.facts import atomic_write

log = logging.getLogger("thepusher.master")

FILENAME = "thepusher-hosts.json"
SAVE_EVERY = 1.0  # seconds: learned MACs are written at most this often


class HostBook:
    def __init__(self, path: str) -> None:
        self.path = path
        self.added: Dict[str, List[str]] = {}  # group -> hosts added at run time, in order
        self.macs: Dict[str, str] = {}  # host -> MAC it registered with
        self._lock = threading.Lock()  # guards the dicts, `_unsaved` and `_saved_at`
        self._write_lock = threading.Lock()  # one write at a time, in the order taken
        self._dirty = threading.Condition(self._lock)  # notified when a MAC needs saving
        self._unsaved = False
        self._saved_at = -SAVE_EVERY  # time.monotonic() of the last write
        self._stop = threading.Event()
        self._saver: Optional[threading.Thread] = None
        self._failing = ""  # the last save error logged, so a failing disk is said once

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
        with self._write_lock:
            with self._lock:
                before = list(self.added.get(group, []))
                self.added.setdefault(group, []).append(host)
                text, self._unsaved = self._text(), False
                self._saved_at = time.monotonic()
            try:
                atomic_write(self.path, text)
            except OSError:
                with self._lock:
                    self.added[group] = before
                    self._unsaved = True
                raise

    def learn_mac(self, host: str, mac: str) -> None:
        """Remember a registered MAC when it is new or changed: saved now if the file
        was last written more than SAVE_EVERY ago, else with the next batch."""
        mac = normalize_mac(mac) or ""
        with self._lock:
            if not mac or self.macs.get(host) == mac:
                return
            self.macs[host] = mac
            save_now = time.monotonic() - self._saved_at >= SAVE_EVERY
            if save_now:
                self._unsaved = True
            else:
                self._changed()
        if save_now:
            self.flush()

    def forget(self, host: str) -> None:
        """Drop the MAC of a host the master no longer keeps (an unassigned host it let go)."""
        with self._lock:
            if self.macs.pop(host, None) is not None:
                self._changed()

    def flush(self) -> None:
        """Save what changed since the last save, now."""
        with self._write_lock:
            with self._lock:
                if not self._unsaved:
                    return
                text, self._unsaved = self._text(), False
                self._saved_at = time.monotonic()
            try:
                atomic_write(self.path, text)
            except OSError as e:
                with self._lock:
                    self._unsaved = True
                if str(e) != self._failing:
                    log.error("cannot save %s: %s (trying again every %.0f s)", self.path, e, SAVE_EVERY)
                self._failing = str(e)
                return
            if self._failing:
                log.info("saved %s again", self.path)
            self._failing = ""

    def close(self) -> None:
        """Save what is left and stop the saving thread (the master stops)."""
        with self._lock:
            self._stop.set()
            self._dirty.notify()
            saver = self._saver
        if saver is not None:
            saver.join(10)
        self.flush()

    def _changed(self) -> None:
        """(lock held) Something to save: wake the saving thread, started on first use."""
        self._unsaved = True
        if self._saver is None and not self._stop.is_set():
            self._saver = threading.Thread(target=self._save_loop, name="hosts-saver", daemon=True)
            self._saver.start()
        self._dirty.notify()

    def _save_loop(self) -> None:
        while True:
            with self._lock:
                while not self._unsaved and not self._stop.is_set():
                    self._dirty.wait()
                rest = self._saved_at + SAVE_EVERY - time.monotonic()
            if self._stop.wait(max(0.0, rest)):  # what comes meanwhile joins this write
                return  # close() saves what is left
            self.flush()

    def _text(self) -> str:
        data = {"note": "written by thepusher master: hosts added to groups at run time "
                        "and the MAC each host registered with",
                "added": self.added, "macs": self.macs}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
