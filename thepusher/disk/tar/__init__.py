"""TAR images: extract a tar stream into a directory as it arrives.

A TAR image's destination is a directory, usually a filesystem the preImage script has
just made and mounted there. `extract` reads the decoded (uncompressed) tar stream piece
by piece and creates each member as soon as its header and data have arrived; nothing is
buffered beyond one member's headers. It returns right after the end-of-archive marker
(two zero blocks) and takes no further piece from the iterator: the caller drains and
hashes what follows (GNU tar pads an archive to a 10 KiB record, other bytes may follow).
Nothing is fsynced here: the caller syncs (os.sync(), or unmounting) before it calls the
copy durable.

The headers are parsed here, not by `tarfile`: its stream mode reads ahead, treats a
damaged header after the first member as the end of the archive (silently dropping the
rest), and its extraction follows symlinks (Python 3.9 before 3.9.17 has no filters).
Understood: ustar, v7, GNU (LongName/LongLink, old sparse 'S', dumpdir 'D' as a plain
directory, volume labels 'V' ignored), pax local and global headers (path, linkpath,
size, uid, gid, mtime, SCHILY.devmajor/devminor, GNU.sparse.* of versions 0.0, 0.1 and
1.0), base-256 numbers. Names are handled as bytes, as on disk.

Security: nothing is ever written outside the destination.
- Member names (also hard link targets) that are absolute, contain a ".." component,
  are empty or contain a NUL byte are refused. A leading "./" is fine; "./" itself is
  the destination directory (its mode, owner and mtime are applied to it).
- Every path is opened component by component relative to the destination
  (O_NOFOLLOW, dir_fd): a symlink that is an existing parent component of a member is
  refused (TarError naming it), never followed, whether the archive made it or it was in
  the destination before. A missing parent is created (mode 0755 less the umask); a
  non-directory where a directory is needed is replaced.
- What already exists at a member's own path is removed first (a symlink is unlinked,
  never followed; an empty directory is removed; a non-empty one is an error), then the
  member is created exclusively (O_CREAT|O_EXCL|O_NOFOLLOW for files): old content of
  the destination that is a hard link to a file elsewhere is never written through. An
  existing directory for a directory member is kept and gets the member's metadata.
- Hard links: the target must be a normal archive name (same rules as member names)
  that exists in the destination as a regular file reached without symlinks; anything
  else (absolute, "..", missing, a symlink, a directory, a device node) is refused.
  The link gets no metadata of its own (it shares the target's inode).
- Symlinks: a relative target that climbs above the destination, resolved lexically
  from the link's directory (`a/b -> ../../../etc`), is refused. ABSOLUTE TARGETS ARE
  KEPT AS THEY ARE (`etc/localtime -> /usr/share/zoneinfo/UTC`,
  `lib64/ld-linux-x86-64.so.2 -> /lib/...`): a TAR image is usually a root filesystem,
  whose absolute links point inside that filesystem once it boots. They are safe while
  extracting because no symlink is ever followed here; a script run afterwards
  (postImage) must not follow them on the client either, where they point at the
  client's own files.
- Device nodes and FIFOs are created as the archive says (a root filesystem has
  /dev/console); without the privilege to do so (not root) that is a TarError.
- Ownership is the archive's numeric uid/gid (never the names: the client's /etc/passwd
  is not the image's), applied when running as root, before the mode, so setuid and
  setgid bits survive. Files get mode, extended attributes and mtime right after their
  data; directories get owner, mode, extended attributes and mtime at the end, deepest
  first, so that a read-only directory does not block its own contents. Files and
  directories are created owner-only (0600/0700) until their final mode is applied.

Not restored (skipped, counted in the Summary where the archive asked for them):
- ACLs (pax SCHILY.acl.*): counted in `acls_skipped`, never applied.
- Extended attributes (pax SCHILY.xattr.* and LIBARCHIVE.xattr.*) are applied with
  os.setxattr; those the filesystem or the kernel refuses (not supported, not
  permitted, e.g. user.* on a symlink), or on a system without os.setxattr or /proc
  (needed for symlinks and device nodes), are counted in `xattrs_skipped`.
- Access times (set to the time of extraction), user/group names, BSD file flags,
  ctime, inode numbers: ignored.
- Multi-volume continuations ('M'), old GNU long-name files ('N') and unknown member
  types are refused with a TarError rather than guessed at.

Strictness: a damaged header anywhere (bad checksum, bad number), data that ends inside
a member or without an end-of-archive marker, and a single zero block followed by more
data are TarErrors naming the tar byte offset. An error from the pieces iterator itself
(e.g. a DecodeError) propagates unchanged.

The parts, in the order a byte meets them: `stream` (exact reads over the caller's
pieces), `extractor` (the walk from header to header), `headers` (header blocks, numbers
and pax records into a `Member`), `sparse` (the three forms of a GNU sparse map),
`create` (each member type made on disk), `names` (which names are refused), `tree` (the
destination, reached only by dir_fd and never through a symlink), `metadata` (owner,
mode, xattrs and mtime, in the order that keeps them), and `model` (the member, the
summary and the error they share).
"""

from typing import Iterable

from thepusher.disk.tar.extractor import Extractor
from thepusher.disk.tar.model import Summary, TarError
from thepusher.disk.tar.stream import Stream
from thepusher.disk.tar.tree import Tree

__all__ = ["Summary", "TarError", "extract"]


def extract(pieces: Iterable, dest: str) -> Summary:
    """Extract the tar stream in `pieces` (bytes-like objects) into the directory `dest`.

    Returns once the end-of-archive marker has been read, without taking another piece.
    A piece may be reused by the caller once the next one is requested: nothing of it is
    kept past that point.
    """
    tree = Tree(dest)
    try:
        return Extractor(Stream(pieces), tree).run()
    finally:
        tree.close()
