"""create-nbi from a stand-in TinyCore cache: the overlay's exact contents, dependency
resolution, md5 checks, the boot configs, the ISO and the mirror download.

TinyCore itself cannot be downloaded here, so the cache is built by the tests
(tests/support/tinycore_cache.py): a bzImage-shaped kernel, a gzip'd newc initrd with
TinyCore's top directories, and `.tcz` files with `.dep` chains and `.md5.txt` sums as
the mirror publishes them.
"""

import gzip
import http.server
import io
import os
import shutil
import stat
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from typing import Dict, List

import pytest

from tests.conftest import ENV, ROOT
from tests.support.tinycore_cache import LOAD_ORDER, NO_DEP_FILE, RELEASE, write_with_md5
from thepusher.netboot import bootfiles, cpio, efi, fetch, nbi, overlay, tcz
from thepusher.netboot.tcz import NbiError


def gzip_members(data: bytes) -> List[bytes]:
    members = []
    while data:
        d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        members.append(d.decompress(data))
        data = d.unused_data
    return members


def entries(path: Path) -> Dict[str, cpio.Entry]:
    (member,) = gzip_members(path.read_bytes())
    return {e.name: e for e in cpio.read(member)}


def test_overlay_holds_exactly_boot_files_and_extensions_with_tinycore_owners(cache, pyz, tmp_path):
    out = tmp_path / "nbi"
    nbi.create(str(cache), str(out), str(pyz), master="10.1.2.3")
    got = {(e.name, e.kind, oct(e.perm), e.uid, e.gid) for e in entries(out / "thepusher.gz").values()}
    optional = "tmp/builtin/optional/"
    expected = {
        ("opt/bootlocal.sh", "file", "0o775", 0, 50),
        ("opt/thepusher-boot.sh", "file", "0o755", 0, 0),
        ("opt/thepusher.pyz", "file", "0o644", 0, 0),
        ("opt/thepusher.env", "file", "0o644", 0, 0),
        ("tmp/builtin", "dir", "0o755", 1001, 50),
        ("tmp/builtin/optional", "dir", "0o755", 1001, 50),
        ("tmp/builtin/onboot.lst", "file", "0o644", 1001, 50),
    }
    for name in LOAD_ORDER:
        expected.add((optional + name, "file", "0o644", 1001, 50))
        expected.add((optional + name + ".md5.txt", "file", "0o644", 1001, 50))
        if name not in NO_DEP_FILE:
            expected.add((optional + name + ".dep", "file", "0o644", 1001, 50))
    assert got == expected
    files = entries(out / "thepusher.gz")
    assert files["opt/thepusher.pyz"].data == pyz.read_bytes()
    assert files["opt/thepusher-boot.sh"].data == (ROOT / "tinycore/thepusher-boot.sh").read_bytes()
    assert files["opt/thepusher.env"].data == b"THEPUSHER_MASTER=10.1.2.3\n"
    assert files["tmp/builtin/onboot.lst"].data == b"python3.9.tcz\n"
    assert files[optional + "readline.tcz"].data == (cache / "readline.tcz").read_bytes()
    assert b"/opt/thepusher-boot.sh" in files["opt/bootlocal.sh"].data


def test_overlay_never_names_a_directory_tinycore_already_has(cache, pyz, tmp_path):
    """The kernel re-chmods existing directories named in a later archive: /tmp must stay 1777."""
    out = tmp_path / "nbi"
    nbi.create(str(cache), str(out), str(pyz))
    layer = entries(out / "thepusher.gz")
    base = {e.name for e in cpio.read(gzip_members((cache / "corepure64.gz").read_bytes())[0])
            if e.kind == "dir"}
    assert not {name for name, e in layer.items() if e.kind == "dir"} & base
    for name in layer:  # every parent exists, in TinyCore's initrd or earlier in the overlay
        parent = os.path.dirname(name)
        assert parent in base or parent in layer, name


def test_overlay_without_master_bakes_none_and_is_byte_reproducible(cache, pyz, tmp_path):
    nbi.create(str(cache), str(tmp_path / "a"), str(pyz))
    nbi.create(str(cache), str(tmp_path / "b"), str(pyz))
    a = (tmp_path / "a" / "thepusher.gz").read_bytes()
    assert a == (tmp_path / "b" / "thepusher.gz").read_bytes()
    assert "opt/thepusher.env" not in entries(tmp_path / "a" / "thepusher.gz")


def test_combined_initrd_is_tinycore_then_overlay(cache, pyz, tmp_path):
    out = tmp_path / "nbi"
    nbi.create(str(cache), str(out), str(pyz))
    combined = (out / "thepusher-core.gz").read_bytes()
    assert combined == (cache / "corepure64.gz").read_bytes() + (out / "thepusher.gz").read_bytes()
    assert (out / "corepure64.gz").read_bytes() == (cache / "corepure64.gz").read_bytes()
    assert (out / "vmlinuz64").read_bytes() == (cache / "vmlinuz64").read_bytes()
    merged = {}
    for member in gzip_members(combined):  # later archives win, as in the kernel
        merged.update({e.name: e for e in cpio.read(member)})
    assert b"thepusher-boot.sh" in merged["opt/bootlocal.sh"].data
    assert merged["tmp"].perm == 0o1777


@pytest.mark.skipif(shutil.which("cpio") is None, reason="GNU cpio not installed")
def test_gnu_cpio_reads_the_overlay_with_our_owners(cache, pyz, tmp_path):
    out = tmp_path / "nbi"
    nbi.create(str(cache), str(out), str(pyz))
    listing = subprocess.run(["cpio", "-itv", "--numeric-uid-gid"], check=True, capture_output=True,
                             input=gzip.decompress((out / "thepusher.gz").read_bytes())).stdout.decode()
    lines = {line.split()[-1]: line.split() for line in listing.splitlines()}
    assert lines["tmp/builtin/onboot.lst"][:4] == ["-rw-r--r--", "1", "1001", "50"]
    assert lines["opt/thepusher-boot.sh"][:4] == ["-rwxr-xr-x", "1", "0", "0"]
    assert set(lines) == set(entries(out / "thepusher.gz"))


def test_dependencies_come_from_dep_files_deps_first_each_once(cache):
    assert tcz.resolve(str(cache), ["python3.9.tcz"], RELEASE) == LOAD_ORDER


def test_missing_dependency_is_named_with_the_chain_that_needs_it(cache, pyz, tmp_path):
    (cache / "ncursesw.tcz").unlink()
    with pytest.raises(NbiError) as e:
        nbi.create(str(cache), str(tmp_path / "nbi"), str(pyz))
    assert str(e.value) == (f"ncursesw.tcz is missing from {cache} (needed by "
                            "readline.tcz.dep line 1 <- python3.9.tcz.dep line 2)")
    assert not (tmp_path / "nbi").exists()


def test_missing_python_extension_is_named(cache, pyz, tmp_path):
    (cache / "python3.9.tcz").unlink()
    with pytest.raises(NbiError, match=r"python3.9.tcz is missing from .* \(needed by the netboot image\)"):
        nbi.create(str(cache), str(tmp_path / "nbi"), str(pyz))


def test_kernel_module_dependency_takes_the_kernels_release(cache):
    (cache / "readline.tcz.dep").write_text("ncursesw.tcz\nfilesystems-KERNEL.tcz\n")
    with pytest.raises(NbiError, match=f"filesystems-{RELEASE}.tcz is missing"):
        tcz.resolve(str(cache), ["python3.9.tcz"], tcz.kernel_release(str(cache / "vmlinuz64")))
    write_with_md5(cache / f"filesystems-{RELEASE}.tcz", b"hsqs modules")
    assert f"filesystems-{RELEASE}.tcz" in tcz.resolve(str(cache), ["python3.9.tcz"], RELEASE)


def test_damaged_extension_is_refused_by_its_md5(cache, pyz, tmp_path):
    with open(cache / "openssl-1.1.1.tcz", "r+b") as f:
        f.truncate(100)
    with pytest.raises(NbiError, match=r"openssl-1.1.1.tcz: md5 [0-9a-f]{32} does not match"):
        nbi.create(str(cache), str(tmp_path / "nbi"), str(pyz))


@pytest.mark.parametrize("name,content,message", [
    ("vmlinuz64", None, r"vmlinuz64 is missing from .*distribution_files/vmlinuz64"),
    ("corepure64.gz", None, r"corepure64.gz is missing from"),
    ("vmlinuz64", b"MZ not a kernel", r"vmlinuz64 is not a bzImage"),
    ("corepure64.gz", b"070701 plain cpio", r"corepure64.gz is not gzip-compressed"),
])
def test_bad_kernel_or_initrd_is_named(cache, pyz, tmp_path, name, content, message):
    (cache / name).unlink()
    (cache / (name + ".md5.txt")).unlink()
    if content is not None:
        (cache / name).write_bytes(content)
    with pytest.raises(NbiError, match=message):
        nbi.create(str(cache), str(tmp_path / "nbi"), str(pyz))


def test_pxelinux_ipxe_and_dnsmasq_files_boot_with_the_right_command_line(cache, pyz, tmp_path):
    out = tmp_path / "nbi"
    nbi.create(str(cache), str(out), str(pyz), master="10.1.2.3")
    pxe = (out / "pxelinux.cfg" / "default").read_text()
    assert "DEFAULT thepusher\nPROMPT 0\nTIMEOUT 0\n" in pxe
    assert ("LABEL thepusher\n  KERNEL vmlinuz64\n  INITRD corepure64.gz,thepusher.gz\n"
            "  APPEND loglevel=3 base norestore noswap thePusher=10.1.2.3\n") in pxe
    assert "LABEL put\n" in pxe and "thePusher=10.1.2.3 putImage=/dev/sda\n" in pxe
    ipxe = (out / "boot.ipxe").read_text().splitlines()
    assert ipxe[0] == "#!ipxe"
    assert ("kernel vmlinuz64 initrd=corepure64.gz initrd=thepusher.gz "
            "loglevel=3 base norestore noswap thePusher=10.1.2.3") in ipxe
    assert ipxe[-3:] == ["initrd corepure64.gz", "initrd thepusher.gz", "boot"]
    for path in bootfiles.pxelinux_binaries():
        assert (out / os.path.basename(path)).read_bytes() == Path(path).read_bytes()
    assert (out / "cmdline.txt").read_text() == "loglevel=3 base norestore noswap thePusher=10.1.2.3\n"


def test_configs_without_master_say_how_to_give_one(cache, pyz, tmp_path):
    out = tmp_path / "nbi"
    nbi.create(str(cache), str(out), str(pyz))
    pxe = (out / "pxelinux.cfg" / "default").read_text()
    assert "thePusher=" not in pxe.split("DEFAULT")[1]
    assert "add thePusher=MASTER_IP" in pxe
    assert "add thePusher=MASTER_IP" in (out / "boot.ipxe").read_text()


@pytest.mark.parametrize("master", ["10.0.0.1; reboot", "$(id)", "a b", ""])
def test_master_that_is_not_an_address_is_refused(cache, pyz, tmp_path, master):
    with pytest.raises(NbiError, match="is not a host name or IP address"):
        overlay.check_master(master)


@pytest.mark.skipif(bootfiles.iso_tools_missing() != [], reason="xorriso/isolinux not installed")
def test_iso_is_hybrid_and_boots_the_same_files(cache, pyz, tmp_path):
    out = tmp_path / "nbi"
    nbi.create(str(cache), str(out), str(pyz), master="10.1.2.3")
    iso = (out / "thepusher.iso").read_bytes()
    assert iso[510:512] == b"\x55\xaa", "no MBR: not a hybrid ISO"
    tree = tmp_path / "iso"
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(out / "thepusher.iso"),
                    "-extract", "/", str(tree)], check=True, capture_output=True)
    for name in ("vmlinuz64", "corepure64.gz", "thepusher.gz"):
        assert (tree / "boot" / name).read_bytes() == (out / name).read_bytes()
    cfg = (tree / "boot/isolinux/isolinux.cfg").read_text()
    assert "INITRD /boot/corepure64.gz,/boot/thepusher.gz" in cfg
    assert "APPEND loglevel=3 base norestore noswap thePusher=10.1.2.3 putImage=/dev/sda" in cfg
    assert (tree / "boot/isolinux/isolinux.bin").is_file()
    assert (tree / "boot/isolinux/ldlinux.c32").is_file()


def el_torito(iso: Path) -> List[str]:
    """The boot catalog's image lines as xorriso reports them: platform, emulation, path."""
    report = subprocess.run(["xorriso", "-indev", str(iso), "-report_el_torito", "plain"],
                            check=True, capture_output=True, text=True).stdout
    return [line for line in report.splitlines() if line.startswith("El Torito")]


needs_uefi_iso = pytest.mark.skipif(bootfiles.iso_tools_missing() + efi.tools_missing() != [],
                                    reason="xorriso/isolinux/grub-efi-amd64-bin/mtools not installed")


@needs_uefi_iso
def test_iso_boots_bios_and_uefi_from_one_catalog_and_stays_hybrid(cache, pyz, tmp_path):
    out = tmp_path / "nbi"
    nbi.create(str(cache), str(out), str(pyz), master="10.1.2.3")
    iso = out / "thepusher.iso"
    images = [line.split() for line in el_torito(iso) if line.startswith("El Torito boot img")]
    # xorriso names platform 0xEF "UEFI"; "y": bootable
    assert [(i[5], i[6], i[7]) for i in images] == [("1", "BIOS", "y"), ("2", "UEFI", "y")]
    paths = [line.split()[-1] for line in el_torito(iso) if line.startswith("El Torito img path")]
    assert paths == ["/boot/isolinux/isolinux.bin", "/boot/grub/efi.img"]
    data = iso.read_bytes()
    assert data[510:512] == b"\x55\xaa" and data[512:520] == b"EFI PART", "not a hybrid MBR + GPT"
    mbr_types = [data[446 + 16 * i + 4] for i in range(4)]
    assert 0xEF in mbr_types, "no EFI system partition in the MBR: a stick would not boot UEFI"


@needs_uefi_iso
def test_iso_efi_image_holds_grub_whose_menu_boots_the_same_files_and_args(cache, pyz, tmp_path):
    out = tmp_path / "nbi"
    nbi.create(str(cache), str(out), str(pyz), master="10.1.2.3", append="console=ttyS0")
    tree = tmp_path / "iso"
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(out / "thepusher.iso"),
                    "-extract", "/", str(tree)], check=True, capture_output=True)
    image = tree / "boot/grub/efi.img"
    listing = subprocess.run(["mdir", "-i", str(image), "-b", "::/EFI/BOOT"], check=True,
                             capture_output=True, text=True).stdout.split()
    assert listing == ["::/EFI/BOOT/BOOTX64.EFI"]
    grub = tmp_path / "BOOTX64.EFI"
    subprocess.run(["mcopy", "-i", str(image), "::/EFI/BOOT/BOOTX64.EFI", str(grub)], check=True)
    binary = grub.read_bytes()
    assert binary[:2] == b"MZ"
    args = "loglevel=3 base norestore noswap console=ttyS0 thePusher=10.1.2.3"
    cfg = efi.grub_cfg(lambda put: args + (" putImage=/dev/sda" if put else ""), "thepusher.gz")
    assert cfg.encode() in binary, "the embedded grub.cfg is not the expected one"
    assert "search --no-floppy --set=root --file /boot/thepusher.gz\n" in cfg
    assert "set default=thepusher\nset timeout=5\n" in cfg
    assert (f"    linux /boot/vmlinuz64 {args}\n"
            "    initrd /boot/corepure64.gz /boot/thepusher.gz\n") in cfg
    assert f"    linux /boot/vmlinuz64 {args} putImage=/dev/sda\n" in cfg
    for name in ("vmlinuz64", "corepure64.gz", "thepusher.gz"):
        assert (tree / "boot" / name).read_bytes() == (out / name).read_bytes()


@pytest.mark.skipif(bootfiles.iso_tools_missing() != [], reason="xorriso/isolinux not installed")
def test_iso_without_grub_efi_warns_and_boots_bios_only(cache, pyz, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(efi, "GRUB_MODULES_DIR", str(tmp_path / "no-grub"))
    out = tmp_path / "nbi"
    made = dict(nbi.create(str(cache), str(out), str(pyz)))
    assert "install grub-efi-amd64-bin for UEFI" in caplog.text
    assert made["thepusher.iso"] == "hybrid ISO for a CD or USB stick (BIOS)"
    assert [line.split()[6] for line in el_torito(out / "thepusher.iso")
            if line.startswith("El Torito boot img")] == ["BIOS"]


class Mirror(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mirror(cache, tmp_path):
    """A TinyCore mirror layout served over real HTTP: <base>/release/... and <base>/tcz/."""
    root = tmp_path / "mirror" / "15.x" / "x86_64"
    dist = root / "release" / "distribution_files"
    dist.mkdir(parents=True)
    (root / "tcz").mkdir()
    for f in cache.iterdir():
        dest = dist if f.name.startswith(("vmlinuz64", "corepure64")) else root / "tcz"
        shutil.copy(f, dest)
    handler = lambda *a, **k: Mirror(*a, directory=str(tmp_path / "mirror"), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/15.x/x86_64"
    server.shutdown()
    server.server_close()


def test_download_fetches_the_closure_and_nothing_else(mirror, tmp_path):
    _root, url = mirror
    empty = tmp_path / "empty-cache"
    assert fetch.download(url, str(empty)) == LOAD_ORDER
    fetched = {p.name for p in empty.iterdir()}
    assert "unrelated.tcz" not in fetched
    assert {"vmlinuz64", "corepure64.gz", "python3.9.tcz.dep", "ncursesw.tcz.md5.txt"} <= fetched
    assert not [n for n in fetched if n.endswith(".part")]


def test_download_refuses_a_file_that_does_not_match_its_md5(mirror, tmp_path):
    root, url = mirror
    with open(root / "tcz" / "readline.tcz", "r+b") as f:
        f.truncate(10)
    empty = tmp_path / "empty-cache"
    with pytest.raises(NbiError, match=r"tcz/readline.tcz: downloaded file does not match its .md5.txt"):
        fetch.download(url, str(empty))
    assert not (empty / "readline.tcz").exists() and not (empty / "readline.tcz.part").exists()


def test_download_names_the_url_the_mirror_does_not_have(mirror, tmp_path):
    root, url = mirror
    (root / "tcz" / "ncursesw.tcz").unlink()
    with pytest.raises(NbiError, match=r"/15.x/x86_64/tcz/ncursesw.tcz: not on the mirror \(HTTP 404\)"):
        fetch.download(url, str(tmp_path / "empty-cache"))


def test_create_nbi_command_from_the_zipapp_bakes_the_running_pyz(cache, pyz, tmp_path):
    out = tmp_path / "nbi"
    done = subprocess.run([sys.executable, str(pyz), "create-nbi", "-p", "10.1.2.3",
                           "--tinycore", str(cache), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "thepusher.gz" in done.stdout and "pxelinux.cfg/default" in done.stdout
    assert entries(out / "thepusher.gz")["opt/thepusher.pyz"].data == pyz.read_bytes()


def test_create_nbi_command_reports_a_missing_file_and_exits_1(cache, tmp_path):
    (cache / "vmlinuz64").unlink()
    done = subprocess.run([sys.executable, "-m", "thepusher", "create-nbi", "--pyz", __file__,
                           "--tinycore", str(cache), "--out", str(tmp_path / "nbi")],
                          capture_output=True, text=True, env=ENV, timeout=60)
    assert done.returncode == 1
    assert "thepusher create-nbi: vmlinuz64 is missing from" in done.stderr


def test_create_nbi_from_source_asks_for_a_pyz(cache, tmp_path):
    done = subprocess.run([sys.executable, "-m", "thepusher", "create-nbi",
                           "--tinycore", str(cache), "--out", str(tmp_path / "nbi")],
                          capture_output=True, text=True, env=ENV, timeout=60)
    assert done.returncode == 1
    assert "run it from thepusher.pyz" in done.stderr


def test_cpio_refuses_paths_that_would_escape_the_root():
    w = cpio.Writer(io.BytesIO())
    for bad in ("../etc/passwd", "a/../../b", "", "/"):
        with pytest.raises(cpio.CpioError):
            w.file(bad, b"")
    w.file("/opt/x", b"")  # leading slashes are only stripped
    with pytest.raises(cpio.CpioError, match="already in the archive"):
        w.file("opt/x", b"")


def test_cpio_reader_names_the_byte_offset_of_damage():
    raw = io.BytesIO()
    w = cpio.Writer(raw)
    w.file("a", b"x" * 10)
    w.close()
    data = raw.getvalue()
    with pytest.raises(cpio.CpioError, match="byte 0: not a newc header"):
        cpio.read(b"070707" + data[6:])
    with pytest.raises(cpio.CpioError, match="byte 112: a: archive ends inside its data"):
        cpio.read(data[:120])
    with pytest.raises(cpio.CpioError, match="ends at byte 124 without a trailer"):
        cpio.read(data[:124])
    assert stat.S_ISREG(cpio.read(data)[0].mode)


def test_append_adds_words_to_every_boot_config_before_the_master(cache, pyz, tmp_path):
    out = tmp_path / "nbi"
    nbi.create(str(cache), str(out), str(pyz), master="10.1.2.3", append="console=ttyS0,115200")
    words = "loglevel=3 base norestore noswap console=ttyS0,115200 thePusher=10.1.2.3"
    assert f"APPEND {words}\n" in (out / "pxelinux.cfg" / "default").read_text()
    assert f"APPEND {words} putImage=/dev/sda\n" in (out / "pxelinux.cfg" / "default").read_text()
    assert f"initrd=thepusher.gz {words}\n" in (out / "boot.ipxe").read_text()
    assert (out / "cmdline.txt").read_text() == words + "\n"


@pytest.mark.parametrize("words", ['a"b', "x\ny", "it's"])
def test_append_with_quotes_or_newlines_is_refused(cache, pyz, tmp_path, words):
    with pytest.raises(NbiError, match="only plain words"):
        nbi.create(str(cache), str(tmp_path / "nbi"), str(pyz), append=words)


# -- the secret (signed tasks) ---------------------------------------------------------

SECRET = "s3cret-'quoted'-$HOME-*"


def test_secret_is_baked_only_into_the_env_file_readable_by_root_alone(cache, pyz, tmp_path):
    out = tmp_path / "nbi"
    nbi.create(str(cache), str(out), str(pyz), master="10.1.2.3", secret=SECRET)
    env = entries(out / "thepusher.gz")["opt/thepusher.env"]
    assert (env.kind, oct(env.perm), env.uid, env.gid) == ("file", "0o600", 0, 0)
    assert env.data == b"THEPUSHER_MASTER=10.1.2.3\nTHEPUSHER_SECRET='s3cret-'\"'\"'quoted'\"'\"'-$HOME-*'\n"
    # the boot script sources it with sh: the secret comes back exactly
    (tmp_path / "env").write_bytes(env.data)
    sourced = subprocess.run(["sh", "-c", f'. {tmp_path / "env"}; printf %s "$THEPUSHER_SECRET"'],
                             capture_output=True, text=True, check=True).stdout
    assert sourced == SECRET
    for name in ("pxelinux.cfg/default", "boot.ipxe", "dnsmasq-proxy.conf", "dnsmasq-dhcp.conf",
                 "cmdline.txt"):
        assert "s3cret" not in (out / name).read_text(), name


def test_secret_without_a_master_still_gets_an_env_file_of_its_own(cache, pyz, tmp_path):
    nbi.create(str(cache), str(tmp_path / "nbi"), str(pyz), secret="abcdefghijkl")
    env = entries(tmp_path / "nbi" / "thepusher.gz")["opt/thepusher.env"]
    assert env.data == b"THEPUSHER_SECRET=abcdefghijkl\n" and env.perm == 0o600


@pytest.mark.parametrize("secret", ["short", "has a space in it", "tab\there-1234567"])
def test_secret_the_master_would_refuse_is_refused_before_anything_is_written(cache, pyz, tmp_path,
                                                                             secret):
    with pytest.raises(NbiError, match="at least 12 printable characters without spaces"):
        nbi.create(str(cache), str(tmp_path / "nbi"), str(pyz), secret=secret)
    assert not (tmp_path / "nbi").exists()


def test_create_nbi_command_takes_the_secret_from_the_environment_and_never_prints_it(
        cache, pyz, tmp_path):
    out = tmp_path / "nbi"
    done = subprocess.run([sys.executable, str(pyz), "create-nbi", "--tinycore", str(cache),
                           "--out", str(out)], capture_output=True, text=True, timeout=120,
                          env=dict(ENV, THEPUSHER_SECRET="from-the-env-1234"))
    assert done.returncode == 0, done.stderr
    assert "the secret (clients run only signed tasks)" in done.stdout
    assert "from-the-env-1234" not in done.stdout + done.stderr
    env = entries(out / "thepusher.gz")["opt/thepusher.env"]
    assert env.data == b"THEPUSHER_SECRET=from-the-env-1234\n" and env.perm == 0o600
