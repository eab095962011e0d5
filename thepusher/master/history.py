"""The record of rounds, kept across master restarts in IMAGE_DIR/thepusher-history.json.

A round is written when it starts and again when it ends, each time atomically (temp
file, fsync, rename: images.atomic_write), so a crash leaves the old file or the new
one, never half of one. A master that finds a round still unfinished in the file when
it starts knows it died during that round, so it records the round as failed: its
clients lost their stream with the master.
"""

import json
import logging
import os
from typing import List

from thepusher.master.images import atomic_write

log = logging.getLogger("thepusher.history")

FILENAME = "thepusher-history.json"
KEEP = 1000  # rounds kept in the file; the round counter is stored on its own
INTERRUPTED = "master restarted during the round"


class History:
    """Every round as a dict (`Round.public()`), oldest first; the caller holds the state lock."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.rounds: List[dict] = []
        self.counter = 0  # number of the last round started, ever

    @classmethod
    def load(cls, path: str) -> "History":
        """The history in `path`; an unreadable file is moved aside, not fatal."""
        history = cls(path)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            rounds, counter = data["rounds"], data["round_counter"]
            if not isinstance(counter, int) or not all(_valid(r) for r in rounds):
                raise ValueError("unexpected content")
        except FileNotFoundError:
            return history
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.error("cannot read the round history %s (%s); starting a new one", path, e)
            try:
                os.replace(path, path + ".corrupt")
            except OSError:
                pass
            return history
        history.rounds, history.counter = rounds, counter
        interrupted = [r for r in rounds if r["phase"] != "finished"]
        for r in interrupted:
            log.warning("round %d of group %s was interrupted: %s", r["number"], r["group"], INTERRUPTED)
            r.update(phase="finished", error=INTERRUPTED)
            r["outcome"] = {host: "ERROR" for host in r["chain"]}
            r["errors"] = {host: INTERRUPTED for host in r["chain"]}
        if interrupted:
            history.save()
        return history

    def record(self, round_: dict) -> None:
        """Add a round, or replace the earlier record of the same round, and save."""
        for i, r in enumerate(self.rounds):
            if r["number"] == round_["number"]:
                self.rounds[i] = round_
                break
        else:
            self.rounds.append(round_)
        self.counter = max(self.counter, round_["number"])
        self.save()

    def finished(self) -> List[dict]:
        return [r for r in self.rounds if r["phase"] == "finished"]

    def save(self) -> None:
        """Best effort: a master that cannot write its history still images machines."""
        del self.rounds[:-KEEP]
        data = {"version": 1, "round_counter": self.counter, "rounds": self.rounds}
        try:
            atomic_write(self.path, json.dumps(data, indent=1) + "\n")
        except OSError as e:
            log.error("cannot save the round history to %s: %s", self.path, e)


def _valid(r) -> bool:
    return (
        isinstance(r, dict)
        and isinstance(r.get("number"), int)
        and isinstance(r.get("group"), str)
        and isinstance(r.get("phase"), str)
        and isinstance(r.get("chain"), list)
        and isinstance(r.get("outcome"), dict)
    )
