"""preImage and postImage: the admin's shell commands around a round, run with `sh -c`
as the original tool did, with this host's words filled in (config/placeholders.py)
and also given as THEPUSHER_* environment variables."""

import logging
import os
import subprocess
from typing import Dict, Optional

from thepusher.config.placeholders import MissingVar, environment, substitute, values
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
