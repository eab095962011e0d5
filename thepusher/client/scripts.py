"""The steps around a round that make a machine this host: preImage and postImage, the
admin's shell commands, run with `sh -c` as the original tool did, with this host's
words filled in (config/placeholders.py) and also given as THEPUSHER_* environment
variables; and `personalize` (disk/personalize.py) on the verified copy."""

import logging
import os
import subprocess
import threading
from typing import Callable, Dict, List, Optional, Tuple

from thepusher.config.placeholders import MissingVar, environment, substitute, values
from thepusher.disk import personalize
from thepusher.plan import Task

log = logging.getLogger("thepusher.client")


def words(task: Task, master: str, registered_as: str) -> Dict[str, str]:
    """What `#WORD#` means on this host. `registered_as` (the address the master answered
    the registration for) stands in for a master too old to send the task's address."""
    return values(master=master, hostname=task.hostname, address=task.address or registered_as,
                  mac=task.mac, group=task.group, image=task.image, host_vars=task.vars)


def run_script(label: str, command: str, words: Dict[str, str]) -> Optional[str]:
    """Run one script; return why it failed, or None. A var the host lacks fails it
    before it starts: the config check catches that, except for hosts added to a group
    at run time, which have no vars."""
    if not command:
        return None
    try:
        command = substitute(command, words)
    except MissingVar as e:
        return (f"{label} uses #VAR:{e.name}#, but the master's config gives this host "
                f"({words['IP']}) no var {e.name!r}; {label} was not run")
    log.info("running %s: %s", label, command)
    try:
        result = subprocess.run(["sh", "-c", command], stdin=subprocess.DEVNULL,
                                env=dict(os.environ, **environment(words)))
    except OSError as e:
        return f"{label} could not start: {e}"
    if result.returncode != 0:
        return f"{label} exited with status {result.returncode}"
    return None


def personalize_copy(task: Task, destination: str, every: float,
                     keep_alive: Callable[[], None]) -> Tuple[List[str], Optional[str]]:
    """(what was changed, why it failed or None) for the task's `personalize`. It mounts,
    writes and may make SSH keys: seconds in which `keep_alive` is called `every` so
    often, so that the master does not take the silence for a lost client."""
    done: List[str] = []
    failed: List[str] = []

    def work() -> None:
        try:
            done.extend(personalize.linux(destination, task.hostname))
        except (personalize.PersonalizeError, OSError) as e:
            failed.append(f"personalize: {e}")

    worker = threading.Thread(target=work, name="personalize", daemon=True)
    worker.start()
    while True:
        worker.join(every)
        if not worker.is_alive():
            break
        keep_alive()
    if failed or not done:
        return [], failed[0] if failed else "personalize ended without a result"
    log.info("personalized %s as %s: %s", destination, task.hostname, "; ".join(done))
    return done, None
