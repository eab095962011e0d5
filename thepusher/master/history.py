"""The record of rounds, kept across master restarts in IMAGE_DIR/thepusher-history.json.

A round is written when it starts, once its image is opened, and when it ends, each
time atomically (temp file, fsync, rename: facts.atomic_write), so a crash leaves the
old file or the new one, never half of one. What a client reports at its end (DONE or
ERROR) is appended to a journal beside it (FILENAME.journal) and synced before the
client is answered: a DONE the master acknowledged survives a crash.

A master that finds a round still unfinished in the file when it starts knows it died
during that round: it records the round as interrupted, each host with the outcome it
reported before the crash, the others ERROR for now. Those may still report late: the
client of a host that got its whole copy goes on and tells the new master, which
records it DONE (reports.py checks it against the round's digest).
"""

import json
import logging
import os
import threading
from typing import List, Optional

from thepusher.image.facts import atomic_write

log = logging.getLogger("thepusher.history")

FILENAME = "thepusher-history.json"
JOURNAL = FILENAME + ".journal"
KEEP = 1000  # rounds kept in the file; the round counter is stored on its own
INTERRUPTED = "master restarted during the round"


class History:
    """Every round as a dict (`Round.public()`), oldest first; the caller holds the state lock."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.journal = os.path.join(os.path.dirname(path), JOURNAL)
        self.rounds: List[dict] = []
        self.counter = 0  # number of the last round started, ever
        self._journal_lock = threading.Lock()  # appends happen outside the state lock

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
            r.update(phase="finished", error=INTERRUPTED, interrupted=True)
            r["outcome"] = {host: "ERROR" for host in r["chain"]}
            r["errors"] = {host: INTERRUPTED for host in r["chain"]}
            r.setdefault("verified_by", {})
        if not (history._replay_journal() or interrupted) or history.save():
            history.clear_journal()  # every outcome in it is in the file now
        return history

    def _replay_journal(self) -> int:
        """Outcomes reported into rounds the file does not show finished with them; how
        many lines the journal had."""
        try:
            with open(self.journal, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return 0
        except OSError as e:
            log.error("cannot read the outcome journal %s: %s", self.journal, e)
            return 0
        by_number = {r["number"]: r for r in self.rounds if r.get("interrupted")}
        for line in lines:
            try:
                entry = json.loads(line)
                r = by_number.get(entry["round"])
                host, state = entry["host"], entry["state"]
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by the crash
            if r is None or host not in r["chain"] or state not in ("DONE", "ERROR"):
                continue
            self.set_outcome(r, host, state, entry.get("error", ""), entry.get("verified_by", ""))
        return len(lines)

    @staticmethod
    def set_outcome(r: dict, host: str, state: str, error: str, verified_by: str) -> None:
        """A host's outcome in interrupted round `r`, as it reported it (late); the caller
        notes it in the journal too."""
        # New dicts, not updates: status() serialises these outside the lock.
        r["outcome"] = dict(r["outcome"], **{host: state})
        r["errors"] = {h: e for h, e in r["errors"].items() if h != host}
        r["verified_by"] = {h: v for h, v in r.get("verified_by", {}).items() if h != host}
        if state == "DONE":
            r["verified_by"][host] = verified_by or "write"
        else:
            r["errors"][host] = error

    def note_outcome(self, number: int, host: str, state: str, error: str = "",
                     verified_by: str = "") -> None:
        """Append a reported outcome to the journal and sync it: call before answering the
        client, outside the state lock. Best effort, like save()."""
        line = json.dumps({"round": number, "host": host, "state": state, "error": error,
                           "verified_by": verified_by}) + "\n"
        with self._journal_lock:
            try:
                fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, line.encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as e:
                log.error("cannot write the outcome journal %s: %s", self.journal, e)

    def clear_journal(self) -> None:
        """Once the file holds every outcome the journal has (no round running, saved)."""
        with self._journal_lock:
            try:
                os.unlink(self.journal)
            except FileNotFoundError:
                pass
            except OSError as e:
                log.error("cannot clear the outcome journal %s: %s", self.journal, e)

    def latest(self, group: str) -> Optional[dict]:
        """The group's most recent round."""
        return next((r for r in reversed(self.rounds) if r["group"] == group), None)

    def interrupted(self, session: str) -> Optional[dict]:
        """The round with this session if a master restart interrupted it."""
        return next((r for r in self.rounds if r.get("session") == session
                     and r.get("interrupted")), None)

    def record(self, round_: dict) -> bool:
        """Add a round, or replace the earlier record of the same round, and save."""
        for i, r in enumerate(self.rounds):
            if r["number"] == round_["number"]:
                self.rounds[i] = round_
                break
        else:
            self.rounds.append(round_)
        self.counter = max(self.counter, round_["number"])
        return self.save()

    def finished(self) -> List[dict]:
        return [r for r in self.rounds if r["phase"] == "finished"]

    def save(self) -> bool:
        """Best effort: a master that cannot write its history still images machines."""
        del self.rounds[:-KEEP]
        data = {"version": 1, "round_counter": self.counter, "rounds": self.rounds}
        try:
            atomic_write(self.path, json.dumps(data, indent=1) + "\n")
        except OSError as e:
            log.error("cannot save the round history to %s: %s", self.path, e)
            return False
        return True


def _valid(r) -> bool:
    return (
        isinstance(r, dict)
        and isinstance(r.get("number"), int)
        and isinstance(r.get("group"), str)
        and isinstance(r.get("phase"), str)
        and isinstance(r.get("chain"), list)
        and isinstance(r.get("outcome"), dict)
    )
