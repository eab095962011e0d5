"""Each kind of member made on disk, from a checked name and its data in the stream.

Whatever already exists at a member's path is removed first, never followed, and the
member is then created exclusively: an old file in the destination that is a hard link
to a file elsewhere is never written through. Data moves from the stream to the file
without a copy when it comes in big pieces; small ones are gathered so that the disk
sees big writes either way.
"""

import errno
import os
import stat
from typing import Dict

from thepusher.disk.tar import sparse
from thepusher.disk.tar.headers import BLOCK, REGULAR
from thepusher.disk.tar.metadata import Metadata
from thepusher.disk.tar.model import Member, Parts, Summary, TarError, failed, quoted, show
from thepusher.disk.tar.names import escapes, normalise, why_refused
from thepusher.disk.tar.stream import COPY, Stream
from thepusher.disk.tar.tree import O_NEWFILE, Tree

SMALL = 64 << 10  # stream pieces smaller than this are gathered into COPY-sized writes
NODES = {b"3": stat.S_IFCHR, b"4": stat.S_IFBLK, b"6": stat.S_IFIFO}


class Creator:
    def __init__(self, stream: Stream, tree: Tree, summary: Summary) -> None:
        self.stream = stream
        self.tree = tree
        self.summary = summary
        self.metadata = Metadata(summary)
        self.dirs: Dict[Parts, Member] = {}  # their metadata is applied at the end
        self.buffer = bytearray(COPY)

    def create(self, member: Member) -> None:
        """The member and its data, up to the next header."""
        kind = member.type
        if kind == b"V":  # a GNU volume label names the archive, not a file
            self.stream.skip(member.size + (-member.size) % BLOCK, "a volume label")
            return
        parts = normalise(member.name)
        if parts is None or (not parts and kind not in (b"5", b"D")):
            raise TarError(f"{quoted(member.name)} (tar byte {member.offset}): refused, "
                           f"{why_refused(member.name) if parts is None else 'its name is empty'}")
        member.parts = parts
        if kind not in (b"5", b"D"):
            self.dirs.pop(parts, None)  # a directory this replaces gets no metadata at the end
        if kind in REGULAR or kind == b"S":
            self._file(member)
            return
        if kind in (b"5", b"D"):
            self._dir(member)
        elif kind == b"2":
            self._symlink(member)
        elif kind == b"1":
            self._hardlink(member)
        elif kind in NODES:
            self._node(member)
        else:
            raise TarError(f"{quoted(member.name)} (tar byte {member.offset}) has type "
                           f"{show(kind)!r}, which this extractor does not know; refusing "
                           f"to guess")
        if kind != b"5":  # GNU tar skips data of every type but directories
            self.stream.skip(member.size + (-member.size) % BLOCK,
                             f"the data of {quoted(member.name)}")

    def finish_dirs(self) -> None:
        """Owner, mode, xattrs and mtime of every directory member, deepest first."""
        for parts in sorted(self.dirs, key=len, reverse=True):
            member = self.dirs[parts]
            fd = self.tree.open_dir(parts)
            if fd is None:  # replaced by a later member
                continue
            try:
                self.metadata.apply(fd, member, "setting owner and mode of directory")
            finally:
                os.close(fd)

    def _file(self, member: Member) -> None:
        if member.sparse_map_in_data:
            sparse.read_map_from_data(member, self.stream)
        extents = member.sparse
        if extents is not None:
            stored = sum(length for _, length in extents)
            if (stored != member.size or not 0 <= member.realsize < 1 << 63 or
                    any(o < 0 or n < 0 or o + n > member.realsize for o, n in extents)):
                raise TarError(f"{quoted(member.name)} (tar byte {member.offset}): its sparse "
                               f"map does not match its data ({stored} mapped bytes, "
                               f"{member.size} stored, {member.realsize} in the file)")
        parent = self.tree.parent(member, member.parts)
        comp = member.parts[-1]
        try:
            self.tree.clear(parent, comp, False, member)
            fd = os.open(comp, O_NEWFILE, 0o600, dir_fd=parent)
        except OSError as e:
            raise failed("creating", member, e) from None
        try:
            if extents is None:
                self._copy(fd, member.size, member)
            else:
                for start, length in extents:
                    try:
                        os.lseek(fd, start, os.SEEK_SET)
                    except OSError as e:
                        raise failed("writing", member, e) from None
                    self._copy(fd, length, member)
            if extents is not None:
                try:
                    os.ftruncate(fd, member.realsize)
                except OSError as e:
                    raise failed("setting owner and mode of", member, e) from None
            self.metadata.apply(fd, member, "setting owner and mode of")
        finally:
            os.close(fd)
        self.stream.skip((-member.size) % BLOCK, f"the data of {quoted(member.name)}")
        self.summary.files += 1

    def _copy(self, fd: int, n: int, member: Member) -> None:
        """`n` bytes of the stream into `fd`: big pieces directly, small ones gathered."""
        buffer = self.buffer
        filled = 0
        while n:
            chunk = self.stream.take(min(n, COPY))
            if not chunk:
                self._write(fd, memoryview(buffer)[:filled], member)
                raise self.stream.truncated(f"the data of {quoted(member.name)} (tar byte "
                                            f"{member.offset}), {n} bytes short")
            n -= len(chunk)
            if len(chunk) >= SMALL and not filled:
                self._write(fd, chunk, member)
                continue
            if filled + len(chunk) > len(buffer):
                self._write(fd, memoryview(buffer)[:filled], member)
                filled = 0
            buffer[filled:filled + len(chunk)] = chunk
            filled += len(chunk)
        self._write(fd, memoryview(buffer)[:filled], member)

    def _write(self, fd: int, view: memoryview, member: Member) -> None:
        self.summary.bytes += len(view)  # counted as requested: a failed write raises
        while view:
            try:
                n = os.write(fd, view)
            except OSError as e:
                raise failed("writing", member, e) from None
            if n == 0:
                raise failed("writing", member, OSError(errno.ENOSPC, "No space left "
                                                                      "on device"))
            view = view[n:]

    def _dir(self, member: Member) -> None:
        if member.parts:
            parent = self.tree.parent(member, member.parts)
            comp = member.parts[-1]
            try:
                if not self.tree.clear(parent, comp, True, member):
                    os.mkdir(comp, 0o700, dir_fd=parent)
            except OSError as e:
                raise failed("creating directory", member, e) from None
        self.dirs[member.parts] = member
        self.summary.dirs += 1

    def _symlink(self, member: Member) -> None:
        target = member.linkname
        if not target or b"\0" in target:
            raise TarError(f"symlink {quoted(member.name)} (tar byte {member.offset}): its "
                           f"target is empty or contains a NUL byte; refused")
        if not target.startswith(b"/") and escapes(member.parts, target):
            raise TarError(f"symlink {quoted(member.name)} -> {quoted(target)} (tar byte "
                           f"{member.offset}) points outside the destination; refused")
        parent = self.tree.parent(member, member.parts)
        comp = member.parts[-1]
        try:
            self.tree.clear(parent, comp, False, member)
            os.symlink(target, comp, dir_fd=parent)
        except OSError as e:
            raise failed("creating symlink", member, e) from None
        self.metadata.apply_at(parent, comp, member, chmod=False)
        self.summary.links += 1

    def _hardlink(self, member: Member) -> None:
        target = normalise(member.linkname)
        refused = f"hard link {quoted(member.name)} (tar byte {member.offset})"
        if not target:
            why = why_refused(member.linkname) if target is None else "it is empty"
            raise TarError(f"{refused}: its target {quoted(member.linkname)} is refused, {why}")
        source = os.dup(self.tree.parent(member, target, create=False))
        try:
            try:
                mode = os.lstat(target[-1], dir_fd=source).st_mode
            except FileNotFoundError:
                mode = 0
            if not stat.S_ISREG(mode):
                kind = "does not exist" if not mode else (
                    "is a symbolic link" if stat.S_ISLNK(mode) else "is not a regular file")
                raise TarError(f"{refused}: its target {quoted(member.linkname)} {kind} in "
                               f"the destination; only links to extracted regular files are "
                               f"made")
            if target == member.parts:
                self.summary.links += 1
                return
            parent = self.tree.parent(member, member.parts)
            comp = member.parts[-1]
            try:
                self.tree.clear(parent, comp, False, member)
                os.link(target[-1], comp, src_dir_fd=source, dst_dir_fd=parent,
                        follow_symlinks=False)
            except OSError as e:
                raise failed("creating hard link", member, e) from None
        finally:
            os.close(source)
        self.summary.links += 1

    def _node(self, member: Member) -> None:
        parent = self.tree.parent(member, member.parts)
        comp = member.parts[-1]
        try:
            self.tree.clear(parent, comp, False, member)
            os.mknod(comp, 0o600 | NODES[member.type], os.makedev(*member.device),
                     dir_fd=parent)
        except OSError as e:
            need = " (device nodes need root)" if e.errno == errno.EPERM else ""
            raise TarError(f"creating {'FIFO' if member.type == b'6' else 'device node'} "
                           f"{show(member.name)} (tar byte {member.offset}) failed: "
                           f"{e.strerror}{need}") from None
        self.metadata.apply_at(parent, comp, member, chmod=True)
        self.summary.others += 1
