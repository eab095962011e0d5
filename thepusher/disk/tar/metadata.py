"""Owner, mode, extended attributes and mtime: applied once a member's content is in place.

The order is what keeps them: the owner before the mode (chown clears setuid and
setgid bits), the mtime last (setting anything else could change it). Files and
directories stay owner-only until then, so nobody reads a half-written file with its
final permissions; directories get theirs at the very end (create.py), deepest first,
so that a read-only directory does not block its own contents.
"""

import errno
import os
import time
from typing import Optional, Union

from thepusher.disk.tar.model import Member, Summary, failed

SKIPPED_XATTR_ERRORS = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.ENOSYS)


class Metadata:
    def __init__(self, summary: Summary) -> None:
        self.summary = summary
        self.as_root = os.geteuid() == 0
        self.proc = os.path.isdir("/proc/self/fd")  # names symlinks and nodes for setxattr
        self.now_ns = time.time_ns()

    def apply(self, fd: int, member: Member, what: str) -> None:
        """On an open file or directory; `what` names the step in a failure's message."""
        try:
            if self.as_root:
                os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, member.mode)
        except OSError as e:
            raise failed(what, member, e) from None
        self._xattrs(fd, member)
        try:
            os.utime(fd, ns=(self.now_ns, member.mtime_ns))
        except OSError as e:
            raise failed("setting the mtime of", member, e) from None

    def apply_at(self, parent: int, comp: bytes, member: Member, chmod: bool) -> None:
        """On a just created symlink, node or FIFO, which cannot be opened: by name."""
        try:
            if self.as_root:
                os.chown(comp, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
            if chmod:  # a node we just created, not a symlink: following is harmless
                os.chmod(comp, member.mode, dir_fd=parent)
        except OSError as e:
            raise failed("setting owner and mode of", member, e) from None
        proc = b"/proc/self/fd/%d/%s" % (parent, comp) if self.proc else None
        self._xattrs(proc, member)
        try:
            os.utime(comp, ns=(self.now_ns, member.mtime_ns), dir_fd=parent,
                     follow_symlinks=False)
        except OSError as e:
            raise failed("setting the mtime of", member, e) from None

    def _xattrs(self, where: Optional[Union[int, bytes]], member: Member) -> None:
        """Extended attributes on an fd, or on a /proc path (not followed); None: skip."""
        self.summary.acls_skipped += member.acls
        setxattr = getattr(os, "setxattr", None)
        for name, value in member.xattrs:
            if setxattr is None or where is None:
                self.summary.xattrs_skipped += 1
                continue
            try:
                if isinstance(where, int):
                    setxattr(where, name, value)
                else:
                    setxattr(where, name, value, follow_symlinks=False)
            except OSError as e:
                if e.errno not in SKIPPED_XATTR_ERRORS:
                    raise failed(f"setting extended attribute {name} of", member,
                                 e) from None
                self.summary.xattrs_skipped += 1
            else:
                self.summary.xattrs += 1
