"""Every image format through a real chain of 3 clients, as the standard tools make them:
the disks must equal the uncompressed image, and corrupt data must end in ERROR naming
where, never in DONE."""

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import ENV, sha256_file, thepusher, write_config

MiB = 1 << 20
ROOT = Path(__file__).resolve().parents[2]


def hosts(n):
    return [f"127.0.0.{11 + i}" for i in range(n)]


def content(path: Path, size: int) -> Path:
    """Compressible like a disk: this project's source repeated, random stretches, zeros."""
    text = b"".join(p.read_bytes() for p in sorted((ROOT / "thepusher").rglob("*.py")))
    with open(path, "wb") as f:
        while f.tell() < size:
            f.write(text[: 3 * MiB])
            f.write(os.urandom(MiB))
            f.write(bytes(MiB // 2))
        f.truncate(size)
    return path


def run(*argv: str, stdout=None) -> None:
    if not shutil.which(argv[0]):
        pytest.skip(f"needs {argv[0]}")
    subprocess.run(argv, check=True, stdout=stdout)


def compressed(raw: Path, out: Path, *argv: str) -> Path:
    with open(out, "wb") as f:
        run(*argv, "-c", str(raw), stdout=f)
    return out


def multi_stream_bzip2(raw: Path, out: Path) -> Path:
    """As pbzip2/lbzip2 write: independent bzip2 streams, one after the other."""
    data = raw.read_bytes()
    with open(out, "wb") as f:
        for i in range(0, len(data), 5 * MiB):
            f.write(subprocess.run(["bzip2", "-9"], input=data[i : i + 5 * MiB],
                                   capture_output=True, check=True).stdout)
    return out


FORMATS = {
    "bzip2 -9 (single stream)": ("BZ2", lambda raw, d: compressed(raw, d / "i.bz2", "bzip2", "-9")),
    "bzip2 -1 (many small blocks)": ("BZ2", lambda raw, d: compressed(raw, d / "i.bz2", "bzip2", "-1")),
    "bzip2 streams concatenated (pbzip2 style)": ("BZ2", lambda raw, d: multi_stream_bzip2(raw, d / "i.bz2")),
    "gzip": ("GZIP", lambda raw, d: compressed(raw, d / "i.gz", "gzip", "-6")),
    "gzip declared GZ": ("GZ", lambda raw, d: compressed(raw, d / "i.gz", "gzip", "-1")),
    "xz": ("XZ", lambda raw, d: compressed(raw, d / "i.xz", "xz", "-3")),
}


def run_round(lab, filename: str, compression: str, n: int = 3, extra: str = ""):
    write_config(lab.images, hosts(n), filename=filename, compression=compression, extra=extra)
    lab.start_master()
    clients = [lab.start_client(h) for h in hosts(n)]
    codes = [c.wait(180) for c in clients]
    return codes, lab.clients()


@pytest.mark.parametrize("name", list(FORMATS))
def test_image_made_by_the_standard_tool_reaches_three_clients_byte_identical(lab, name, tmp_path):
    compression, make = FORMATS[name]
    raw = content(tmp_path / "raw.img", 24 * MiB + 12345)
    image = make(raw, lab.images)
    codes, states = run_round(lab, image.name, compression)
    assert codes == [0, 0, 0], lab.dump()
    want = sha256_file(raw)
    for h in hosts(3):
        assert sha256_file(lab.disks / f"{h}.img") == want
        assert states[h]["state"] == "DONE" and states[h]["sha256"] == want


@pytest.mark.parametrize("fmt, compression", [("bz2", "BZ2"), ("gz", "GZIP"), ("xz", "XZ")])
def test_image_made_by_thepusher_compress_reaches_three_clients(lab, tmp_path, fmt, compression):
    raw = content(tmp_path / "raw.img", 20 * MiB)
    image = lab.images / f"raw.img.{fmt}"
    subprocess.run([*thepusher(), "compress", str(raw), "--format", fmt, "-o", str(image)],
                   check=True, capture_output=True, env=ENV)
    codes, states = run_round(lab, image.name, compression)
    assert codes == [0, 0, 0], lab.dump()
    for h in hosts(3):
        assert sha256_file(lab.disks / f"{h}.img") == sha256_file(raw)


def corrupt_keeping_mtime(path: Path, offset: int) -> None:
    """Bit rot after the master hashed the image: same size, same mtime, so the master
    trusts its sidecar and streams the damaged bytes."""
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x55]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("tool, compression", [("gzip", "GZIP"), ("bzip2", "BZ2"), ("xz", "XZ")])
def test_corrupt_compressed_image_ends_in_error_naming_the_stream_byte_never_done(lab, tmp_path,
                                                                                   tool, compression):
    raw = content(tmp_path / "raw.img", 12 * MiB)
    image = compressed(raw, lab.images / f"i.{tool}", tool)
    write_config(lab.images, hosts(3), filename=image.name, compression=compression)
    master = lab.start_master()
    lab.wait_for(lambda: lab.status()["images"][0]["state"] == "ready", 60, "the image hashed")
    master.stop()
    corrupt_keeping_mtime(image, image.stat().st_size // 2)
    lab.start_master()
    clients = [lab.start_client(h) for h in hosts(3)]
    assert [c.wait(120) for c in clients] == [1, 1, 1], lab.dump()
    states = lab.clients()
    for h in hosts(3):
        assert states[h]["state"] == "ERROR", states[h]
        assert f"{compression} data" in states[h]["error"] and "stream byte" in states[h]["error"]


def test_corrupt_image_is_refused_by_the_master_before_any_round(lab, tmp_path):
    raw = content(tmp_path / "raw.img", 6 * MiB)
    image = compressed(raw, lab.images / "i.bz2", "bzip2", "-1")
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0xFF
    image.write_bytes(bytes(data))
    write_config(lab.images, hosts(1), filename="i.bz2", compression="BZ2")
    lab.start_master()
    described = lab.wait_for(lambda: (i := lab.status()["images"][0])["state"] == "error" and i,
                             60, "the image refused")
    assert "BZ2 data" in described["error"] and "stream byte" in described["error"]


def tree(root: Path) -> dict:
    """What an extracted tree holds: paths, kinds, modes, contents, link targets."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        st = path.lstat()
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            out[rel] = ("dir", st.st_mode & 0o7777)
        else:
            out[rel] = ("file", st.st_mode & 0o7777, sha256_file(path))
    return out


def make_tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("lab-pc\n")
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "usr" / "lib" / "big.bin").write_bytes(os.urandom(3 * MiB) + bytes(2 * MiB))
    (root / "usr" / "bin").mkdir()
    tool = root / "usr" / "bin" / "tool"
    tool.write_bytes(b"#!/bin/sh\necho hi\n")
    tool.chmod(0o4755)
    (root / "bin").symlink_to("usr/bin")
    (root / "etc" / "localtime").symlink_to("/usr/share/zoneinfo/UTC")
    (root / "empty").mkdir()
    return root


@pytest.mark.parametrize("suffix, compression", [("", "NONE"), (".gz", "GZIP"), (".bz2", "BZ2")])
def test_tar_image_is_extracted_into_every_clients_directory(lab, tmp_path, suffix, compression):
    source = make_tree(tmp_path / "root")
    archive = lab.images / f"root.tar{suffix}"
    flag = {"": "", ".gz": "z", ".bz2": "j"}[suffix]
    run("tar", f"-c{flag}f", str(archive), "-C", str(source), ".")
    dests = [tmp_path / f"mnt-{h}" for h in hosts(3)]
    for d in dests:
        d.mkdir()
    write_config(lab.images, hosts(3), filename=archive.name, compression=compression,
                 extra='  type = "TAR"\n')
    lab.start_master()
    clients = [lab.start_client(h, str(d)) for h, d in zip(hosts(3), dests)]
    assert [c.wait(120) for c in clients] == [0, 0, 0], lab.dump()
    for d in dests:
        assert tree(d) == tree(source)
    assert {c["state"] for c in lab.clients().values()} == {"DONE"}


def test_tar_image_escaping_its_directory_is_refused_on_every_client(lab, tmp_path):
    archive = lab.images / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("ok.txt")
        info.size = 3
        tar.addfile(info, fileobj=io.BytesIO(b"ok\n"))
        link = tarfile.TarInfo("escape")
        link.type = tarfile.SYMTYPE
        link.linkname = str(tmp_path / "outside")
        tar.addfile(link)
        through = tarfile.TarInfo("escape/planted")
        through.size = 4
        tar.addfile(through, fileobj=io.BytesIO(b"evil"))
    (tmp_path / "outside").mkdir()
    dests = [tmp_path / f"mnt-{h}" for h in hosts(3)]
    for d in dests:
        d.mkdir()
    write_config(lab.images, hosts(3), filename="evil.tar", extra='  type = "TAR"\n')
    lab.start_master()
    clients = [lab.start_client(h, str(d)) for h, d in zip(hosts(3), dests)]
    assert [c.wait(120) for c in clients] == [1, 1, 1], lab.dump()
    assert list((tmp_path / "outside").iterdir()) == []
    states = lab.clients()
    for h in hosts(3):
        assert states[h]["state"] == "ERROR" and "escape" in states[h]["error"], states[h]
