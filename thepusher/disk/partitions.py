"""The partitions of a freshly written disk image, read from its own partition table
(MBR with its logical partitions, or GPT), in pure Python.

The kernel does not re-read a disk's table when we write one over it, and a file or
a loop device in the tests has no partition nodes at all: so `personalize` finds its
partition here and mounts it by byte offset, the same way on a disk and on a file.
The table itself is read by image/fsmap/table.py, which the used-block maps share.
"""

import os

from thepusher.image.fsmap.table import Partition, TableError, read_table  # noqa: F401

EXT_MAGIC_AT = 1080  # ext2/3/4: the superblock (at 1024) holds 0xEF53 at its byte 56
EXT_MAGIC = b"\x53\xef"


def is_ext(fd: int, start: int) -> bool:
    """Whether an ext2/3/4 filesystem starts at byte `start` (its superblock's magic)."""
    return os.pread(fd, 2, start + EXT_MAGIC_AT) == EXT_MAGIC
