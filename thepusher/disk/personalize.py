"""`personalize = "linux"`: after an image is written and verified, make the Linux on it
this machine rather than a clone of the one the image was taken from.

The root filesystem is the first ext2/3/4 filesystem (by its superblock magic) on the
destination's own partition table (partitions.py), or at its byte 0 for a partition
image, that has /etc/os-release or /etc/hostname. It is mounted read-write by byte
offset (`mount -o loop,offset=,sizelimit=`: the same for a disk and a file; root only)
and always unmounted again. In it:

- /etc/hostname gets the host's name, and the 127.0.1.1 line of /etc/hosts too;
- /etc/machine-id is emptied: systemd makes a new one at first boot (an empty file,
  not none, so a read-only root works too); /var/lib/dbus/machine-id is removed when
  it is a file of its own (a symlink to /etc/machine-id is kept);
- the SSH host keys (/etc/ssh/ssh_host_*key*) are replaced. Debian 12's ssh.service
  only runs `sshd -t` before sshd and makes no keys: without any, sshd does not start.
  So new ones are made right here with `ssh-keygen -A -f ROOT` where the client has
  ssh-keygen, else a first-boot systemd unit in the image runs `ssh-keygen -A` before
  sshd; a system with neither is an error, its keys untouched.

Nothing is written through a symlink in the image: it could point anywhere in the
client's own system. Every failure is a PersonalizeError naming device and partition.
"""

import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from typing import Iterator, List, Optional, Tuple

from thepusher import syscalls
from thepusher.disk.partitions import TableError, is_ext, read_table

UNIT = "thepusher-ssh-keygen.service"
UNIT_TEXT = """\
# Written by thepusher's personalize: this machine's own SSH host keys at first boot.
[Unit]
Description=New SSH host keys for this machine (thepusher personalize)
Before=ssh.service sshd.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
"""


class PersonalizeError(Exception):
    """Why the written system could not be made this host; the client ends ERROR."""


def linux(destination: str, name: str, keygen: Optional[str] = None) -> List[str]:
    """Personalize the Linux on `destination` as host `name`; what was changed, one line
    each. `keygen`: the ssh-keygen to use, by default the one on PATH (if any)."""
    if not name:
        raise PersonalizeError("personalize needs this host's name, and the master's config "
                               "gives it none (a host block or the hosts file)")
    keygen = keygen if keygen is not None else (shutil.which("ssh-keygen") or "")
    candidates, scheme = _ext_filesystems(destination)
    for where, offset, size in candidates:
        with _mounted(destination, offset, size, where) as root:
            if os.path.lexists(os.path.join(root, "etc/os-release")) or \
                    os.path.lexists(os.path.join(root, "etc/hostname")):
                try:
                    return [f"root filesystem on {where}"] + _make_it(root, name, keygen)
                except OSError as e:
                    inside = os.path.relpath(e.filename, root) if e.filename else ""
                    raise PersonalizeError(f"changing {where} of {destination}: "
                                           f"/{inside}: {e.strerror or e}") from None
    found = (f"ext filesystems on {', '.join(w for w, _, _ in candidates)}, none with "
             f"/etc/os-release or /etc/hostname" if candidates else
             f"no ext2/3/4 filesystem ({scheme or 'no partition table'})")
    raise PersonalizeError(f"no Linux root filesystem on {destination}: {found}")


def _ext_filesystems(destination: str) -> Tuple[List[Tuple[str, int, int]], str]:
    """(where, byte offset, size) of each ext filesystem, and the table's kind."""
    try:
        fd = os.open(destination, os.O_RDONLY)
    except OSError as e:
        raise PersonalizeError(f"cannot open {destination}: {e.strerror or e}") from None
    try:
        try:
            scheme, parts = read_table(fd)
        except TableError as e:
            raise PersonalizeError(f"cannot read the partition table of {destination}: "
                                   f"{e}") from None
        found = [(f"partition {p.number} ({scheme})", p.start, p.size) for p in parts
                 if is_ext(fd, p.start)]
        if not parts and is_ext(fd, 0):
            size = syscalls.device_size(fd) or os.fstat(fd).st_size
            found = [("the whole device (no partition table)", 0, size)]
        return found, f"{scheme} table with {len(parts)} partitions" if scheme else ""
    except OSError as e:
        raise PersonalizeError(f"cannot read {destination}: {e.strerror or e}") from None
    finally:
        os.close(fd)


def _run(args: List[str], what: str) -> None:
    try:
        result = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    except OSError as e:
        raise PersonalizeError(f"{what}: cannot run {args[0]}: {e.strerror or e}") from None
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip().replace("\n", "; ")
        raise PersonalizeError(f"{what}: {args[0]} exited with status {result.returncode}"
                               f"{': ' + said if said else ''}")


@contextmanager
def _mounted(device: str, offset: int, size: int, where: str) -> Iterator[str]:
    """The filesystem at `offset` mounted read-write on a fresh directory; unmounted
    (and its loop device freed) however the block ends."""
    point = tempfile.mkdtemp(prefix="thepusher-root-")
    try:
        _run(["mount", "-o", f"loop,offset={offset},sizelimit={size}", device, point],
             f"mounting {where} of {device}")
        try:
            yield point
        finally:
            try:
                _run(["umount", point], f"unmounting {where} of {device}")
            except PersonalizeError:
                subprocess.run(["umount", "-l", point], capture_output=True)  # not left behind
                raise
            os.sync()  # the loop device wrote through the page cache of the destination
    finally:
        os.rmdir(point)


def _path(root: str, rel: str) -> str:
    """root/rel, refusing a path that goes through a symlink anywhere in the image."""
    path = root
    for part in rel.split("/"):
        path = os.path.join(path, part)
        if os.path.islink(path):
            raise PersonalizeError(f"/{rel} in the image goes through a symlink "
                                   f"(/{os.path.relpath(path, root)}): not followed")
    return path


def _write(root: str, rel: str, text: str, mode: int = 0o644) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(_path(root, rel), flags, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _read(root: str, rel: str) -> Optional[str]:
    path = _path(root, rel)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def _make_it(root: str, name: str, keygen: str) -> List[str]:
    done: List[str] = []
    old = (_read(root, "etc/hostname") or "").strip()
    _write(root, "etc/hostname", name + "\n")
    done.append(f"hostname {name}" + (f" (was {old})" if old and old != name else ""))
    hosts = _read(root, "etc/hosts")
    if hosts is not None:
        new, line = hosts_with(hosts, old, name)
        if new != hosts:
            _write(root, "etc/hosts", new)
            done.append(f"/etc/hosts: {line}")
    if _read(root, "etc/machine-id") is not None:
        _write(root, "etc/machine-id", "")
        done.append("machine-id emptied")
    dbus = os.path.join(_path(root, "var/lib/dbus"), "machine-id")
    if os.path.isfile(dbus) and not os.path.islink(dbus):
        os.unlink(dbus)
        done.append("/var/lib/dbus/machine-id removed")
    return done + _ssh_keys(root, keygen)


def hosts_with(text: str, old: str, name: str) -> Tuple[str, str]:
    """/etc/hosts with `name` on its 127.0.1.1 line, and that line: the old name (its
    first label) replaced, also in longer names (old.example.org -> name.example.org);
    a line without the old name gets `name` alone."""
    lines = text.splitlines(keepends=True)
    short = old.split(".")[0]
    for i, line in enumerate(lines):
        fields = line.split("#", 1)[0].split()
        if fields[:1] != ["127.0.1.1"]:
            continue
        names = [name + n[len(short):] if short and (n == short or n.startswith(short + "."))
                 else n for n in fields[1:]]
        if names == fields[1:]:
            names = [name]
        lines[i] = "127.0.1.1\t" + " ".join(names) + "\n"
        return "".join(lines), lines[i].strip().replace("\t", " ")
    return text, ""


def _ssh_keys(root: str, keygen: str) -> List[str]:
    ssh = _path(root, "etc/ssh")
    if not os.path.isdir(ssh):
        return []
    keys = sorted(n for n in os.listdir(ssh) if n.startswith("ssh_host_") and "key" in n)
    if not keys:
        return []
    systemd = os.path.isdir(_path(root, "etc/systemd/system"))
    if not keygen and not systemd:
        raise PersonalizeError("the image's SSH host keys would be removed with nothing to "
                               "make new ones (no ssh-keygen on this client, no systemd in the "
                               "image): its sshd would not start")
    for key in keys:
        os.unlink(os.path.join(ssh, key))
    private = sum(not k.endswith(".pub") for k in keys)
    done = [f"{private} SSH host key{'s' if private != 1 else ''} removed"]
    if keygen:
        try:
            _run([keygen, "-A", "-f", root], "making new SSH host keys")
            made = sum(n.startswith("ssh_host_") and n.endswith("_key") for n in os.listdir(ssh))
            return done + [f"{made} new SSH host keys made (ssh-keygen -A)"]
        except PersonalizeError:
            if not systemd:
                raise
    unit = f"etc/systemd/system/{UNIT}"
    _write(root, unit, UNIT_TEXT)
    wants = _path(root, "etc/systemd/system/multi-user.target.wants")
    os.makedirs(wants, exist_ok=True)
    link = os.path.join(wants, UNIT)
    if not os.path.lexists(link):
        os.symlink(f"/{unit}", link)
    return done + [f"new SSH host keys at first boot ({UNIT})"]
