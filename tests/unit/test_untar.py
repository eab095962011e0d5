"""disk/tar/'s promises: a tar stream, fed in pieces of any size, becomes the same tree on
disk as its source; a hostile or broken archive is a TarError that names the member and
tar byte, and nothing is ever written outside the destination."""

import collections
import hashlib
import io
import os
import stat
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from thepusher.disk.tar import TarError, extract

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="owners and device nodes need root")

# A fixed, whole-second time so both tar formats store mtimes exactly.
T0 = 1_600_000_000


# Feeding.

def pieces(data: bytes, size: Optional[int]) -> Iterator[memoryview]:
    """`data` as views of one reused buffer, poisoned once the next piece is asked for:
    an extractor that kept a view past that point would write the poison."""
    size = size or max(len(data), 1)
    buf = bytearray(size)
    poison = b"\xa5" * size
    for start in range(0, len(data), size):
        n = min(size, len(data) - start)
        buf[:n] = data[start:start + n]
        yield memoryview(buf)[:n]
        buf[:] = poison


class Counted:
    """An iterator of pieces that tells how many were taken."""

    def __init__(self, chunks: List[bytes]) -> None:
        self.chunks = list(chunks)
        self.taken = 0

    def __iter__(self) -> "Counted":
        return self

    def __next__(self) -> bytes:
        if self.taken == len(self.chunks):
            raise StopIteration
        self.taken += 1
        return self.chunks[self.taken - 1]


def split(data: bytes, size: int) -> List[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


# Archives.

def gnu_tar(src: Path, *options: str) -> bytes:
    return subprocess.run(["tar", "-C", str(src), "-c", *options, "."], check=True,
                          stdout=subprocess.PIPE).stdout


def reg(name: str, data: bytes = b"data", **attrs) -> tuple:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def entry(name: str, kind: bytes, linkname: str = "", **attrs) -> tuple:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, None


def sym(name: str, target: str) -> tuple:
    return entry(name, tarfile.SYMTYPE, target)


def hard(name: str, target: str) -> tuple:
    return entry(name, tarfile.LNKTYPE, target)


def directory(name: str, **attrs) -> tuple:
    return entry(name, tarfile.DIRTYPE, mode=attrs.pop("mode", 0o755), **attrs)


def archive(*members: tuple, format: int = tarfile.GNU_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=format) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


# Trees.

def snapshot(root: Path, skip: Optional[Path] = None) -> tuple:
    """Everything lstat and the contents say about a tree, and its hard-link groups."""
    root_b = os.fsencode(root)
    skip_b = os.fsencode(skip) if skip else None
    seen: Dict[bytes, tuple] = {}
    inodes = collections.defaultdict(list)

    def visit(rel: bytes) -> None:
        path = os.path.join(root_b, rel) if rel else root_b
        if path == skip_b:
            return
        st = os.lstat(path)
        facts = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                 st.st_mtime_ns]
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                facts += [st.st_size, hashlib.sha256(f.read()).hexdigest()]
            if st.st_nlink > 1:
                inodes[st.st_ino].append(rel)
        elif stat.S_ISLNK(st.st_mode):
            facts.append(os.readlink(path))
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            facts.append(st.st_rdev)
        seen[rel] = tuple(facts)
        if stat.S_ISDIR(st.st_mode):
            for name in sorted(os.listdir(path)):
                visit(os.path.join(rel, name) if rel else name)

    visit(b"")
    return seen, sorted(sorted(group) for group in inodes.values())


def make_sparse(path: Path) -> None:
    """3 MiB apparent, two small data extents, ending in a hole."""
    with open(path, "wb") as f:
        f.truncate(3 << 20)
        f.seek(64 << 10)
        f.write(b"x" * 5000)
        f.seek(2 << 20)
        f.write(os.urandom(3000))


def make_tree(src: Path) -> None:
    """Files, dirs, links, special files, long names, odd modes and owners."""
    src.mkdir()
    (src / "file.txt").write_bytes(b"hello\n" * 100)
    (src / "empty-file").write_bytes(b"")
    (src / "random.bin").write_bytes(os.urandom(100_000))  # > 64 KiB: direct writes too
    (src / "empty-dir").mkdir()
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "sub" / "deeper" / "x").write_bytes(b"x")
    (src / "sub" / "up-link").symlink_to("../file.txt")
    (src / "rel-link").symlink_to("file.txt")
    (src / "abs-link").symlink_to("/usr/share/zoneinfo/UTC")  # kept: absolute
    (src / "dangling").symlink_to("no/such/file")
    os.link(src / "file.txt", src / "hard-link")
    os.mkfifo(src / "fifo", 0o640)
    (src / "suid-bin").write_bytes(b"#!/bin/sh\n")
    os.chmod(src / "suid-bin", 0o4755)
    (src / "sgid-bin").write_bytes(b"#!/bin/sh\n")
    os.chmod(src / "sgid-bin", 0o2711)
    (src / "sticky").mkdir()
    os.chmod(src / "sticky", 0o1777)
    (src / "read-only").mkdir()
    (src / "read-only" / "inside").write_bytes(b"still written")
    os.chmod(src / "read-only", 0o555)
    long_dir = src / ("d" * 120)
    long_dir.mkdir()
    (long_dir / ("n" * 150)).write_bytes(b"long name")
    (long_dir / ("s" * 130)).symlink_to("n" * 150)  # a long link target too
    (src / "café ☕.txt").write_bytes(b"utf-8 name")
    (src / os.fsdecode(b"latin1-\xe9")).write_bytes(b"not utf-8 name")
    make_sparse(src / "sparse.img")
    if ROOT:
        (src / "dev").mkdir()
        os.mknod(src / "dev" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(src / "dev" / "loop0", 0o660 | stat.S_IFBLK, os.makedev(7, 0))
        os.chown(src / "file.txt", 1234, 5678)
        os.chown(src / "sgid-bin", 0, 5678)
        os.chown(src / "sticky", 1234, 5678)
        os.chown(src / "rel-link", 1234, 5678, follow_symlinks=False)
        os.chown(src / "dev" / "loop0", 0, 6)
        os.chmod(src / "suid-bin", 0o4755)  # again, after any chown
        os.chmod(src / "sgid-bin", 0o2711)
        os.chown(src, 1234, 5678)
    os.chmod(src, 0o750)
    # Distinct mtimes, deepest first, so a parent's mtime is not disturbed afterwards.
    paths = sorted((p for p in src.rglob("*")), key=lambda p: -len(p.parts))
    for i, path in enumerate(paths + [src]):
        os.utime(path, (T0, T0 + i), follow_symlinks=False)


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "dest"
    d.mkdir()
    return d


@pytest.fixture
def outside(tmp_path: Path, dest: Path):
    """A sentinel directory next to dest; yields it, then checks nothing outside dest
    changed (tmp_path's own mtime included: nothing new appeared next to dest)."""
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep").write_bytes(b"original")
    os.utime(tmp_path, (T0, T0))
    before = snapshot(tmp_path, skip=dest)
    yield sentinel
    assert snapshot(tmp_path, skip=dest) == before, "something outside dest changed"
    assert not (tmp_path / "outside").exists()


# Round trips.

@pytest.fixture(scope="module")
def source_tree(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("round-trip") / "src"
    make_tree(src)
    return src


@pytest.mark.parametrize("tar_format", ["gnu", "posix"])
@pytest.mark.parametrize("piece_size", [1, 511, 64 << 10, None],
                         ids=["1-byte", "511-byte", "64KiB", "whole"])
def test_a_tree_made_by_gnu_tar_comes_out_identical_whatever_the_piece_size(
        source_tree, dest, tar_format, piece_size):
    data = gnu_tar(source_tree, "-S", f"--format={tar_format}")
    summary = extract(pieces(data, piece_size), str(dest))
    assert snapshot(dest) == snapshot(source_tree)
    assert (summary.files, summary.links) == (11, 6)  # the hard link is one of the links
    assert (summary.dirs, summary.others) == ((8, 3) if ROOT else (7, 1))  # "./" is a dir
    dense = sum(os.lstat(p).st_size for p in source_tree.rglob("*")
                if p.is_file() and not p.is_symlink() and p.name not in ("sparse.img", "hard-link"))
    assert dense + 8000 <= summary.bytes < dense + (64 << 10)  # sparse: only the data extents
    # The end-of-archive marker is where the summary says; GNU tar pads after it.
    assert summary.tar_bytes <= len(data) and not data[summary.tar_bytes - 1024:].strip(b"\0")


@pytest.mark.parametrize("tar_format, sparse_version, type_flag", [
    ("gnu", None, b"S"), ("posix", "0.0", b"0"), ("posix", "0.1", b"0"), ("posix", "1.0", b"0"),
])
def test_sparse_files_of_every_gnu_sparse_format_keep_their_holes(
        tmp_path, dest, tar_format, sparse_version, type_flag):
    src = tmp_path / "src"
    src.mkdir()
    make_sparse(src / "disk.img")
    options = ["-S", f"--format={tar_format}"]
    if sparse_version:
        options.append(f"--sparse-version={sparse_version}")
    data = gnu_tar(src, *options)
    assert type_flag in {data[i + 156:i + 157] for i in range(0, len(data), 512)}
    summary = extract(pieces(data, 4096), str(dest))
    assert (dest / "disk.img").read_bytes() == (src / "disk.img").read_bytes()
    st = os.stat(dest / "disk.img")
    assert st.st_size == 3 << 20 and st.st_blocks * 512 < 1 << 20, "the holes were filled"
    assert summary.bytes < 64 << 10


@pytest.mark.parametrize("piece_size", [(1 << 20) + 7, 3 << 20], ids=["1MiB+7", "whole"])
def test_a_file_of_several_mebibytes_is_copied_whole(tmp_path, dest, piece_size):
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom((3 << 20) + 123))
    extract(pieces(gnu_tar(src), piece_size), str(dest))
    assert (dest / "big").read_bytes() == (src / "big").read_bytes()


@needs_root
@pytest.mark.parametrize("format", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT], ids=["gnu", "pax"])
def test_numeric_owners_beyond_the_octal_field_are_restored_and_names_ignored(dest, format):
    data = archive(reg("f", uid=4_000_000, gid=3_000_000, uname="root", gname="root",
                       mtime=T0), format=format)
    extract([data], str(dest))
    st = os.lstat(dest / "f")
    assert (st.st_uid, st.st_gid, st.st_mtime_ns) == (4_000_000, 3_000_000, T0 * 10**9)


def test_pax_mtime_with_nanoseconds_and_a_global_header_apply(dest):
    info, data = reg("f")
    info.pax_headers = {"mtime": "1600000000.123456789"}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"comment": "global header"}) as tf:
        tf.addfile(info, io.BytesIO(data))
    extract([out.getvalue()], str(dest))
    assert os.lstat(dest / "f").st_mtime_ns == 1600000000123456789


def test_pax_xattrs_are_applied_and_acls_counted_as_skipped(dest):
    info, data = reg("f")
    info.pax_headers = {"SCHILY.xattr.user.pusher": "yes", "SCHILY.acl.access": "user::rw-"}
    summary = extract([archive((info, data), format=tarfile.PAX_FORMAT)], str(dest))
    assert os.getxattr(dest / "f", "user.pusher") == b"yes"
    assert (summary.xattrs, summary.acls_skipped) == (1, 1)


def test_xattrs_stored_by_gnu_tar_are_restored(tmp_path, dest):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"")
    os.setxattr(src / "f", "user.pusher", b"\x00binary\nvalue")
    summary = extract([gnu_tar(src, "--format=posix", "--xattrs")], str(dest))
    assert os.getxattr(dest / "f", "user.pusher") == b"\x00binary\nvalue"
    assert summary.xattrs == 1


def test_a_gnu_volume_label_is_ignored(dest):
    label = entry("../not a path", b"V")
    assert extract([archive(label, reg("a"))], str(dest)).files == 1
    assert os.listdir(dest) == ["a"]


def test_a_dot_slash_root_entry_sets_the_destination_directorys_mode_and_mtime(dest):
    extract([archive(directory("./", mode=0o711, mtime=T0), reg("./a"))], str(dest))
    st = os.stat(dest)
    assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (0o711, T0 * 10**9)
    assert (dest / "a").read_bytes() == b"data"


def test_a_member_inside_a_directory_listed_later_still_gets_the_directorys_mode(dest):
    extract([archive(reg("late/f"), directory("late", mode=0o500, mtime=T0))], str(dest))
    st = os.stat(dest / "late")
    assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (0o500, T0 * 10**9)
    assert (dest / "late" / "f").read_bytes() == b"data"


# Streaming.

def test_members_are_on_disk_before_the_rest_of_the_stream_arrives(dest):
    data = archive(reg("first", b"1" * 1000), reg("second", b"2"))

    def arriving():
        yield data[:512 + 1000]  # the first header and its data, not the padding
        assert (dest / "first").read_bytes() == b"1" * 1000
        yield data[512 + 1000:]

    extract(arriving(), str(dest))
    assert (dest / "second").read_bytes() == b"2"


def test_extract_returns_at_the_end_marker_without_taking_the_pieces_after_it(dest):
    data = archive(reg("a", b"a" * 600))  # tarfile pads to 10240 bytes after the marker
    chunks = Counted(split(data + b"TRAILING BYTES THE CALLER HASHES", 512))
    summary = extract(chunks, str(dest))
    assert summary.tar_bytes == 512 + 1024 + 1024
    assert chunks.taken == summary.tar_bytes // 512
    assert b"".join(chunks) == data[summary.tar_bytes:] + b"TRAILING BYTES THE CALLER HASHES"


@pytest.mark.parametrize("zero_blocks", [2, 1])
def test_pieces_running_out_right_after_the_end_marker_are_fine(dest, zero_blocks):
    data = archive(reg("a"))[:1024 + 512 * zero_blocks]
    summary = extract(split(data, 512), str(dest))
    assert summary.files == 1 and summary.tar_bytes == len(data)


def test_an_error_of_the_pieces_iterator_propagates_unchanged(dest):
    class Broken(Exception):
        pass

    def failing():
        yield archive(reg("a"))[:700]
        raise Broken("decoder says no")

    with pytest.raises(Broken):
        extract(failing(), str(dest))


# Broken archives.

@pytest.mark.parametrize("cut, message", [
    (0, "the tar stream is empty"),
    (300, "ends at byte 300 inside a header"),
    (512 + 700, "ends at byte 1212, inside the data of \"a\""),
    (2048, "ends at byte 2048 without an end-of-archive marker"),
])
def test_a_truncated_archive_is_a_tar_error_naming_the_offset(dest, cut, message):
    data = archive(reg("a", b"a" * 1500))
    with pytest.raises(TarError, match=message):
        extract(split(data[:cut], 100), str(dest))


def test_garbage_is_not_a_tar_archive(dest):
    with pytest.raises(TarError, match="not a tar archive"):
        extract([os.urandom(10240)], str(dest))
    assert not os.listdir(dest)


def test_a_damaged_header_after_good_members_is_an_error_not_a_silent_end(dest):
    good = archive(reg("a", b"a" * 100))[:1024]
    with pytest.raises(TarError, match="header at tar byte 1024 is damaged"):
        extract([good + b"\x01" * 512 + bytes(1024)], str(dest))
    assert (dest / "a").read_bytes() == b"a" * 100


def test_a_lone_zero_block_followed_by_more_members_is_an_error(dest):
    a, b = archive(reg("a"))[:1024], archive(reg("b"))[:1024]
    with pytest.raises(TarError, match="single zero block at tar byte 1024"):
        extract([a + bytes(512) + b + bytes(1024)], str(dest))


@pytest.mark.parametrize("field, value", [("uid", 1 << 40), ("mtime", 1 << 70),
                                          ("mtime", -(1 << 70))])
def test_numbers_the_system_cannot_take_are_a_tar_error(dest, field, value):
    with pytest.raises(TarError, match=f"tar byte 0 is damaged: {field} .* out of range"):
        extract([archive(reg("a", **{field: value}))], str(dest))


def test_a_negative_mtime_before_1970_is_restored(dest):
    extract([archive(reg("old", mtime=-86400))], str(dest))
    assert os.lstat(dest / "old").st_mtime_ns == -86400 * 10**9


def test_an_unknown_member_type_is_refused(dest):
    with pytest.raises(TarError, match=r'"odd" \(tar byte 0\) has type \'Q\''):
        extract([archive(entry("odd", b"Q"))], str(dest))


# The destination.

def test_a_missing_destination_directory_is_an_error_for_the_admin(tmp_path):
    with pytest.raises(TarError, match="does not exist.*preImage"):
        extract([archive(reg("a"))], str(tmp_path / "not-mounted"))


def test_a_destination_that_is_a_file_is_an_error(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(TarError, match="is not a directory"):
        extract([archive(reg("a"))], str(tmp_path / "file"))


def test_a_file_member_replaces_an_existing_file_and_an_existing_directory_is_kept(dest):
    (dest / "f").write_bytes(b"old, and longer than the new content")
    (dest / "d").mkdir()
    (dest / "d" / "old").write_bytes(b"kept")
    (dest / "was-file").write_bytes(b"a file where the archive has a directory")
    extract([archive(reg("f", b"new"), directory("d", mode=0o701),
                     reg("was-file/inside"))], str(dest))
    assert (dest / "f").read_bytes() == b"new"
    assert (dest / "d" / "old").read_bytes() == b"kept"
    assert stat.S_IMODE(os.stat(dest / "d").st_mode) == 0o701
    assert (dest / "was-file" / "inside").read_bytes() == b"data"


def test_a_file_member_where_a_non_empty_directory_exists_is_an_error(dest):
    (dest / "d").mkdir()
    (dest / "d" / "x").write_bytes(b"")
    with pytest.raises(TarError, match='"d" \\(tar byte 0\\): the destination has a non-empty'):
        extract([archive(reg("d"))], str(dest))


@pytest.fixture
def small_fs(tmp_path: Path):
    """A real 64 KiB tmpfs: a filesystem that fills up (needs root, as CI has)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                                            str(mnt)]).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_a_disk_error_names_the_member_and_tar_byte(small_fs):
    data = archive(reg("ok"), reg("etc/passwd", os.urandom(256 << 10)))
    with pytest.raises(TarError, match=r"^writing etc/passwd \(tar byte 1024\) failed: "
                                       r"No space left on device$"):
        extract([data], str(small_fs))


def test_a_device_node_without_the_privilege_is_an_error():
    """Extracted by a real process that gave up root, as a client run by a user would."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop it")
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o755)
        dest = Path(d) / "dest"
        dest.mkdir()
        os.chown(dest, 65534, 65534)
        check_device_node_refused(dest)


def check_device_node_refused(dest: Path) -> None:
    data = archive(entry("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0))
    script = ("import os, sys\nfrom thepusher.disk.tar import TarError, extract\n"
              "os.setgid(65534); os.setuid(65534)\n"
              "try:\n    extract([sys.stdin.buffer.read()], sys.argv[1])\n"
              "except TarError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", script, str(dest)], input=data, capture_output=True,
                         env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])))
    assert out.stdout.decode().strip() == ("creating device node dev/sda (tar byte 0) failed: "
                                           "Operation not permitted (device nodes need root)"), out
    assert not (dest / "dev" / "sda").exists()


# Hostile archives: refused, nothing written outside dest.

def hostile(sentinel: Path) -> Dict[str, tuple]:
    """id -> (members, what the error says)."""
    outside = sentinel.parent / "outside"
    long_escape = "a" * 120 + "/../../sentinel/x"
    pax_escape, _ = reg("innocent")
    pax_escape.pax_headers = {"path": "../sentinel/x"}
    return {
        "absolute name": ([reg(str(sentinel / "x"))], "its name is absolute"),
        "dot-dot name": ([reg("../sentinel/x")], 'its name contains ".."'),
        "dot-dot after a directory": ([reg("a/../../sentinel/x")], 'its name contains ".."'),
        "dot-dot in a GNU long name": ([reg(long_escape)], 'its name contains ".."'),
        "dot-dot in a pax path": ([(pax_escape, b"data")], 'its name contains ".."'),
        "empty name": ([reg("./")], "its name is empty"),
        "write through an absolute symlink": (
            [sym("evil", str(outside)), reg("evil/file")],
            "evil is a symbolic link in the destination; refusing to write through it"),
        "write through a symlink to the sentinel": (
            [sym("evil", str(sentinel)), reg("evil/keep", b"overwritten")],
            "evil is a symbolic link"),
        "directory through a symlink": (
            [sym("evil", str(sentinel)), directory("evil/new")], "evil is a symbolic link"),
        "symlink deep in the path": (
            [directory("a"), sym("a/b", str(sentinel)), reg("a/b/c/d")],
            "a/b is a symbolic link"),
        "symlink climbing out": ([sym("a/b", "../../../etc")], "points outside the destination"),
        "symlink to the sentinel by ..": ([sym("up", "../sentinel")], "points outside"),
        "hard link to /etc/passwd": ([hard("pw", "/etc/passwd")], "is refused, its name is absol"),
        "hard link to ..": ([hard("k", "../sentinel/keep")], 'its name contains ".."'),
        "hard link through a symlink": (
            [sym("l", str(sentinel)), hard("k", "l/keep")], "l is a symbolic link"),
        "hard link to a symlink": (
            [sym("s", str(sentinel / "keep")), hard("k", "s")], "is a symbolic link in the dest"),
        "hard link to nothing": ([hard("k", "missing")], "does not exist in the destination"),
        "hard link into a missing directory": ([hard("k", "no/such")], "has not been extracted"),
    }


HOSTILE = list(hostile(Path("/x/sentinel")))


@pytest.mark.parametrize("case", HOSTILE)
@pytest.mark.parametrize("format", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT], ids=["gnu", "pax"])
def test_a_hostile_archive_is_refused_and_nothing_outside_dest_changes(
        dest, outside, case, format):
    members, message = hostile(outside)[case]
    if case == "dot-dot in a pax path" and format != tarfile.PAX_FORMAT:
        pytest.skip("pax only")
    with pytest.raises(TarError, match=r'.*\(tar byte \d+\)') as caught:
        extract(pieces(archive(*members, format=format), 512), str(dest))
    assert message in str(caught.value)


def test_a_refused_member_says_which_member_and_where(dest, outside):
    data = archive(reg("fine"), reg("a/../../sentinel/x"))
    with pytest.raises(TarError) as caught:
        extract([data], str(dest))
    assert str(caught.value) == ('"a/../../sentinel/x" (tar byte 1024): refused, its name '
                                 'contains ".."')
    assert (dest / "fine").exists()


def test_an_existing_symlink_in_dest_is_never_written_through(dest, outside):
    (dest / "etc").symlink_to(outside)
    with pytest.raises(TarError, match=r'"etc/keep" \(tar byte 0\): etc is a symbolic link'):
        extract([archive(reg("etc/keep", b"overwritten"))], str(dest))


def test_an_existing_symlink_at_a_members_own_path_is_replaced_not_followed(dest, outside):
    (dest / "file").symlink_to(outside / "keep")
    (dest / "dir").symlink_to(outside)
    (dest / "link").symlink_to(outside / "keep")
    (dest / "node").symlink_to(outside / "keep")
    extract([archive(reg("file", b"new"), directory("dir", mode=0o700), reg("dir/keep", b"new"),
                     hard("link", "file"), entry("node", tarfile.FIFOTYPE, mode=0o600))],
            str(dest))
    assert not (dest / "file").is_symlink() and (dest / "file").read_bytes() == b"new"
    assert not (dest / "dir").is_symlink() and (dest / "dir" / "keep").read_bytes() == b"new"
    assert os.lstat(dest / "link").st_ino == os.lstat(dest / "file").st_ino
    assert stat.S_ISFIFO(os.lstat(dest / "node").st_mode)


def test_an_existing_hard_link_to_a_file_outside_is_replaced_not_written_through(dest, outside):
    os.link(outside / "keep", dest / "shared")
    extract([archive(reg("shared", b"overwritten", mode=0o4777))], str(dest))
    assert (dest / "shared").read_bytes() == b"overwritten"


def test_absolute_symlinks_are_kept_as_they_are(dest, outside):
    extract([archive(sym("etc/localtime", "/usr/share/zoneinfo/UTC"),
                     sym("out", str(outside / "keep")), sym("ok", "etc/../etc/localtime"))],
            str(dest))
    assert os.readlink(dest / "etc" / "localtime") == "/usr/share/zoneinfo/UTC"
    assert os.readlink(dest / "out") == str(outside / "keep")
    assert os.readlink(dest / "ok") == "etc/../etc/localtime"
