"""NTFS: the clusters in use, from $Bitmap (MFT record 6).

The boot sector gives the cluster size and where the MFT starts; MFT records 0-15
are contiguous at its start (Windows and ntfs-3g keep them so; we check with $MFT's
own runlist). Each record is read with its multi-sector fixups checked and applied
(a torn record is a broken one). $Bitmap's unnamed $DATA gives one bit per cluster,
read through its runlist. The boot sector and everything after the last cluster (the
backup boot sector, in the volume's last sector) are always kept.

Safety: $Volume (record 3) has a dirty flag in its $VOLUME_INFORMATION; and a Windows
that hibernated (or shut down with Fast Startup, which is a hibernation of its
kernel) left hiberfil.sys starting with "hibr"/"HIBR", as ntfs-3g checks too. Either
way the volume's metadata on disk is not the whole truth: refused. Anything broken
(a truncated or torn MFT record, a runlist outside the volume, $Bitmap spread over
several records) makes the volume copied whole, with the reason.
"""

import struct
from typing import Iterator, List, Optional, Tuple

from thepusher.image.fsmap.common import Ranges, Unsafe, Whole, bit_runs, read

DATA, VOLUME_INFORMATION, ATTRIBUTE_LIST = 0x80, 0x70, 0x20
INDEX_ROOT, INDEX_ALLOCATION = 0x90, 0xA0
END = 0xFFFFFFFF
VOLUME_DIRTY = 0x0001
MAX_INDEX_BYTES = 64 << 20  # a root directory's index larger than this is not plausible


def probe(head: bytes) -> bool:
    return head[3:11] == b"NTFS    "


def used(fd: int, start: int, size: int) -> Tuple[str, Ranges, int]:
    """(description, used byte ranges (absolute), the filesystem's size in bytes)."""
    vol = _Volume(fd, start, size)
    mft = vol.record(0, "$MFT")
    mft_runs = vol.runs(_data(mft, "$MFT"), "$MFT")
    if mft_runs[0][0] != vol.mft_lcn or mft_runs[0][1] * vol.cluster < 16 * vol.record_size:
        raise Whole(f"{vol.where}: $MFT's first 16 records are not contiguous at its start")
    flags = _volume_flags(vol.record(3, "$Volume"))
    if flags & VOLUME_DIRTY:
        raise Unsafe(f"{vol.where}: the volume is marked dirty ($Volume flags {flags:#06x}): "
                     "boot Windows and shut it down cleanly (or run chkdsk), then capture")
    bitmap_attr = _data(vol.record(6, "$Bitmap"), "$Bitmap")
    if not bitmap_attr[8]:
        bitmap = _resident_value(bitmap_attr, "$Bitmap")
    else:
        bitmap = vol.read_runs(vol.runs(bitmap_attr, "$Bitmap"), (vol.clusters + 7) // 8,
                               "$Bitmap")
    if len(bitmap) * 8 < vol.clusters:
        raise Whole(f"{vol.where}: $Bitmap has {len(bitmap) * 8} bits for {vol.clusters} clusters")
    for lcn, what in ((0, "the boot sector"), (vol.mft_lcn, "$MFT")):
        if not bitmap[lcn // 8] >> (lcn % 8) & 1:
            raise Whole(f"{vol.where}: $Bitmap says {what} (cluster {lcn}) is free")
    vol.check_hibernation()
    runs = bit_runs(bitmap, vol.clusters)
    in_use = sum(n for _, n in runs)
    ranges = [(start, vol.cluster)] + [(start + c * vol.cluster, n * vol.cluster) for c, n in runs]
    return (f"NTFS, {vol.cluster}-byte clusters, {100 * in_use // vol.clusters}% used",
            ranges, vol.clusters * vol.cluster)


class _Volume:
    """The boot sector's geometry, and reads of MFT records and of runlists."""

    def __init__(self, fd: int, start: int, size: int) -> None:
        self.fd, self.start = fd, start
        self.where = f"NTFS at byte {start}"
        boot = read(fd, start, 512, "the NTFS boot sector")
        sector, per_cluster = struct.unpack_from("<HB", boot, 11)
        if per_cluster > 0x80:
            per_cluster = 1 << (256 - per_cluster)
        total, self.mft_lcn = struct.unpack_from("<QQ", boot, 0x28)
        per_record, = struct.unpack_from("<b", boot, 0x40)
        self.cluster = sector * per_cluster
        self.record_size = per_record * self.cluster if per_record > 0 else 1 << -per_record
        if (sector not in (512, 1024, 2048, 4096) or not 0 < per_cluster <= 4096
                or self.record_size not in (1024, 2048, 4096) or not total):
            raise Whole(f"{self.where}: its boot sector is not plausible (sector {sector}, "
                        f"{per_cluster} sectors per cluster, MFT records of {self.record_size})")
        if total * sector > size:
            raise Whole(f"{self.where} says it is {total * sector} bytes, but its space is "
                        f"{size} bytes")
        self.clusters = total // per_cluster
        if not 0 < self.mft_lcn < self.clusters:
            raise Whole(f"{self.where}: its MFT is said to start at cluster {self.mft_lcn}, "
                        "outside the volume")

    def record(self, number: int, name: str) -> bytes:
        """MFT record `number` (one of the first 16), fixups applied; Whole if broken."""
        at = self.start + self.mft_lcn * self.cluster + number * self.record_size
        raw = read(self.fd, at, self.record_size, f"{self.where}: MFT record {number} ({name})")
        rec = fixup(raw, b"FILE", f"{self.where}: MFT record {number} ({name}) at byte {at}")
        if not struct.unpack_from("<H", rec, 0x16)[0] & 1:
            raise Whole(f"{self.where}: MFT record {number} ({name}) at byte {at} is not in use")
        return rec

    def runs(self, attr: bytes, name: str) -> List[Tuple[int, int]]:
        """(first cluster, count) of a non-resident attribute, each inside the volume."""
        found = runlist(attr, f"{self.where}: {name}'s runlist")
        for lcn, count in found:
            if lcn < 0 or lcn + count > self.clusters:
                raise Whole(f"{self.where}: {name}'s runlist points outside the volume "
                            f"(clusters {lcn}-{lcn + count})")
        return found

    def read_runs(self, runs: List[Tuple[int, int]], length: int, name: str) -> bytes:
        parts, got = [], 0
        for lcn, count in runs:
            take = min(count * self.cluster, length - got)
            if take <= 0:
                break
            parts.append(read(self.fd, self.start + lcn * self.cluster, take,
                              f"{self.where}: {name}"))
            got += take
        return b"".join(parts)

    def check_hibernation(self) -> None:
        """Unsafe if the root directory's hiberfil.sys starts with "hibr" or "HIBR"."""
        root = self.record(5, "the root directory")
        number = self._find_in_root(root, "hiberfil.sys")
        if number is None:
            return
        if number < 16 or number * self.record_size > 1 << 40:
            raise Whole(f"{self.where}: hiberfil.sys's MFT reference {number} is not plausible")
        head = self._file_head(number)
        if head[:4] in (b"hibr", b"HIBR"):
            raise Unsafe(f"{self.where}: Windows is hibernated, or shut down with Fast Startup "
                         f"(hiberfil.sys starts with {head[:4].decode()}): boot it and shut "
                         "down fully (shutdown /s /t 0, or disable Fast Startup), then capture")

    def _find_in_root(self, root: bytes, wanted: str) -> Optional[int]:
        blocks = []
        index_size = 4096
        for kind, attr in attributes(root, f"{self.where}: the root directory"):
            if kind == INDEX_ROOT:
                value = _resident_value(attr, "the root directory's $INDEX_ROOT")
                index_size, = struct.unpack_from("<I", value, 8)
                first, end = struct.unpack_from("<II", value, 0x10)
                blocks.append((value, 0x10 + first, 0x10 + end))
            elif kind == INDEX_ALLOCATION and attr[8]:
                size, = struct.unpack_from("<Q", attr, 0x30)
                if size > MAX_INDEX_BYTES:
                    raise Whole(f"{self.where}: the root directory's index is {size} bytes")
                data = self.read_runs(self.runs(attr, "the root directory's index"), size,
                                      "the root directory's index")
                for at in range(0, len(data) - index_size + 1, max(index_size, 512)):
                    if data[at:at + 4] != b"INDX":
                        continue  # an index block not in use
                    block = fixup(data[at:at + index_size], b"INDX",
                                  f"{self.where}: the root directory's index block at {at}")
                    first, end = struct.unpack_from("<II", block, 0x18)
                    blocks.append((block, 0x18 + first, 0x18 + end))
        for buf, first, end in blocks:
            for name, number in index_entries(buf, first, min(end, len(buf))):
                if name.lower() == wanted:
                    return number
        return None

    def _file_head(self, number: int) -> bytes:
        """The first 4 bytes of file record `number`'s unnamed $DATA ("" if empty)."""
        runs = self.runs(_data(self.record(0, "$MFT"), "$MFT"), "$MFT")
        vcn, offset = divmod(number * self.record_size, self.cluster)
        for lcn, count in runs:
            if vcn < count:
                at = self.start + (lcn + vcn) * self.cluster + offset
                raw = read(self.fd, at, self.record_size, f"{self.where}: MFT record {number}")
                rec = fixup(raw, b"FILE", f"{self.where}: MFT record {number} at byte {at}")
                attr = _data(rec, "hiberfil.sys")
                if not attr[8]:
                    return _resident_value(attr, "hiberfil.sys")[:4]
                initialized, = struct.unpack_from("<Q", attr, 0x38)
                file_runs = self.runs(attr, "hiberfil.sys")
                return self.read_runs(file_runs, 4, "hiberfil.sys") if initialized else b""
            vcn -= count
        raise Whole(f"{self.where}: MFT record {number} is beyond $MFT's runlist")


def fixup(raw: bytes, magic: bytes, what: str) -> bytes:
    """A record with its update sequence array applied: the last 2 bytes of each 512
    were replaced by the sequence number when written; a mismatch is a torn write."""
    if raw[:4] != magic:
        raise Whole(f"{what} does not start with {magic.decode()} (damaged or truncated MFT)")
    usa, count = struct.unpack_from("<HH", raw, 4)
    if count < 2 or usa + 2 * count > len(raw) or (count - 1) * 512 > len(raw):
        raise Whole(f"{what}: its update sequence array is not plausible")
    rec = bytearray(raw)
    usn = raw[usa:usa + 2]
    for i in range(1, count):
        if rec[i * 512 - 2:i * 512] != usn:
            raise Whole(f"{what}: sector {i - 1} of it fails its fixup check (a torn write)")
        rec[i * 512 - 2:i * 512] = raw[usa + 2 * i:usa + 2 * i + 2]
    return bytes(rec)


def attributes(rec: bytes, what: str) -> Iterator[Tuple[int, bytes]]:
    """(type, attribute bytes) of a fixed-up MFT record, up to its end marker."""
    at, = struct.unpack_from("<H", rec, 0x14)
    used_bytes = min(struct.unpack_from("<I", rec, 0x18)[0], len(rec))
    while at + 8 <= used_bytes:
        kind, length = struct.unpack_from("<II", rec, at)
        if kind == END:
            return
        if length < 24 or at + length > used_bytes:
            raise Whole(f"{what}: an attribute at byte {at} of its MFT record is broken")
        yield kind, rec[at:at + length]
        at += length
    raise Whole(f"{what}: its MFT record ends without an end marker (truncated)")


def runlist(attr: bytes, what: str) -> List[Tuple[int, int]]:
    """(first cluster, count) runs of a non-resident attribute's mapping pairs."""
    at, = struct.unpack_from("<H", attr, 0x20)
    lcn, found = 0, []
    while True:
        if at >= len(attr):
            raise Whole(f"{what} runs past its attribute (no terminator)")
        header = attr[at]
        if not header:
            break
        length_bytes, offset_bytes = header & 0xF, header >> 4
        if not length_bytes or at + 1 + length_bytes + offset_bytes > len(attr):
            raise Whole(f"{what} is broken at byte {at} of its attribute")
        count = int.from_bytes(attr[at + 1:at + 1 + length_bytes], "little")
        if not offset_bytes:
            raise Whole(f"{what} has a sparse run, where none can be")
        lcn += int.from_bytes(attr[at + 1 + length_bytes:at + 1 + length_bytes + offset_bytes],
                              "little", signed=True)
        found.append((lcn, count))
        at += 1 + length_bytes + offset_bytes
    if not found:
        raise Whole(f"{what} is empty")
    return found


def index_entries(buf: bytes, at: int, end: int) -> Iterator[Tuple[str, int]]:
    """(file name, MFT record number) of the $FILE_NAME keys of an index node."""
    while at + 16 <= end:
        ref, length, key_length, flags = struct.unpack_from("<QHHI", buf, at)
        if length < 16 or at + length > end or flags & 2:
            return
        if key_length >= 0x42:
            chars = buf[at + 16 + 0x40]
            name = buf[at + 16 + 0x42:at + 16 + 0x42 + 2 * chars]
            yield name.decode("utf-16-le", "replace"), ref & 0xFFFFFFFFFFFF
        at += length


def _data(rec: bytes, name: str) -> bytes:
    """The unnamed $DATA attribute of a file's record."""
    for kind, attr in attributes(rec, name):
        if kind == ATTRIBUTE_LIST:
            raise Whole(f"{name}'s attributes are spread over several MFT records")
        if kind == DATA and not attr[9]:
            return attr
    raise Whole(f"{name} has no unnamed $DATA attribute in its MFT record")


def _resident_value(attr: bytes, name: str) -> bytes:
    length, offset = struct.unpack_from("<IH", attr, 0x10)
    if offset + length > len(attr):
        raise Whole(f"{name}: its resident value runs past the attribute")
    return attr[offset:offset + length]


def _volume_flags(rec: bytes) -> int:
    for kind, attr in attributes(rec, "$Volume"):
        if kind == VOLUME_INFORMATION and not attr[8]:
            value = _resident_value(attr, "$Volume's $VOLUME_INFORMATION")
            if len(value) >= 12:
                return struct.unpack_from("<H", value, 0x0A)[0]
    raise Whole("$Volume has no $VOLUME_INFORMATION attribute")
