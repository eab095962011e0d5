"""The destination directory, reached only by dir_fd-relative, no-follow opens.

A path string would be resolved by the kernel, symlinks and all, at every call: a
symlink the archive (or anyone) put in the destination could then send a later member
anywhere. So every member's parent is opened component by component from the
destination's own fd, with O_NOFOLLOW, and a symlink on the way is refused, never
followed. The last parent opened stays open: an archive lists a directory's members
together.
"""

import errno
import os
import stat
from typing import Optional

from thepusher.disk.tar.model import Member, Parts, TarError, quoted, show

O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | O_CLOEXEC
O_NEWFILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | O_CLOEXEC


class Tree:
    def __init__(self, dest: str) -> None:
        self.dest = dest
        advice = ("a TAR image extracts into an existing directory: create or mount it "
                  "first (the preImage script typically mounts a filesystem there)")
        try:
            self.root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | O_CLOEXEC)
        except FileNotFoundError:
            raise TarError(f"destination directory {dest} does not exist; {advice}") from None
        except NotADirectoryError:
            raise TarError(f"destination {dest} is not a directory; {advice}") from None
        except OSError as e:
            raise TarError(f"cannot open destination directory {dest}: {e.strerror}") from None
        self._key: Optional[Parts] = None  # the last parent directory opened, kept open
        self._fd: Optional[int] = None

    def close(self) -> None:
        self.forget()
        os.close(self.root)

    def forget(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._key = self._fd = None

    def parent(self, member: Member, parts: Parts, create: bool = True) -> int:
        """An fd (owned by the tree) of the directory that holds `parts[-1]`.

        Missing directories are created and non-directories replaced when `create`;
        otherwise (a hard link's target) they are refused. A symlink is always refused.
        """
        key = parts[:-1]
        if not key:
            return self.root
        if key == self._key:
            return self._fd
        fd = self.root
        try:
            for i, comp in enumerate(key):
                next_fd = self._step(fd, comp, key[:i + 1], member, create)
                if fd != self.root:
                    os.close(fd)
                fd = next_fd
        except BaseException:
            if fd != self.root:
                os.close(fd)
            raise
        self.forget()
        self._key, self._fd = key, fd
        return fd

    def _step(self, fd: int, comp: bytes, path: Parts, member: Member, create: bool) -> int:
        shown = show(b"/".join(path))
        try:
            try:
                return os.open(comp, O_DIR, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise self._missing(member, shown) from None
                os.mkdir(comp, 0o755, dir_fd=fd)
                return os.open(comp, O_DIR, dir_fd=fd)
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
            if stat.S_ISLNK(os.lstat(comp, dir_fd=fd).st_mode):
                raise TarError(f"{quoted(member.name)} (tar byte {member.offset}): {shown} is "
                               f"a symbolic link in the destination; refusing to write "
                               f"through it")
            if not create:
                raise self._missing(member, shown)
            os.unlink(comp, dir_fd=fd)
            os.mkdir(comp, 0o755, dir_fd=fd)
            return os.open(comp, O_DIR, dir_fd=fd)
        except OSError as e:
            raise TarError(f"creating directory {shown} for {quoted(member.name)} (tar byte "
                           f"{member.offset}) failed: {e.strerror}") from None

    def _missing(self, member: Member, shown: str) -> TarError:
        return TarError(f"hard link {quoted(member.name)} (tar byte {member.offset}): its "
                        f"target {quoted(member.linkname)} has not been extracted ({shown} "
                        f"is missing or not a directory)")

    def open_dir(self, parts: Parts) -> Optional[int]:
        """A new fd of an existing directory (no symlinks on the way), or None."""
        fd = os.dup(self.root)
        for comp in parts:
            try:
                next_fd = os.open(comp, O_DIR, dir_fd=fd)
            except OSError:
                os.close(fd)
                return None
            os.close(fd)
            fd = next_fd
        return fd

    def clear(self, fd: int, comp: bytes, keep_dir: bool, member: Member) -> bool:
        """Remove what exists at `comp` (never following it); True if a directory is kept."""
        try:
            mode = os.lstat(comp, dir_fd=fd).st_mode
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(mode):
            if keep_dir:
                return True
            self.forget()  # the cached parent may be (under) this directory
            try:
                os.rmdir(comp, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    raise TarError(f"{quoted(member.name)} (tar byte {member.offset}): the "
                                   f"destination has a non-empty directory there") from None
                raise
        else:
            os.unlink(comp, dir_fd=fd)
        return False
