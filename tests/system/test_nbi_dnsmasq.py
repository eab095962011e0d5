"""create-nbi's iPXE binaries and dnsmasq examples: what each kind of client is told to
boot (BIOS PXE, UEFI PXE, iPXE itself), checked by dnsmasq's own parser (`--test`).

What dnsmasq really answers on the wire is pinned by test_nbi_dhcp.py.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

from thepusher.netboot import dnsmasq, nbi
from thepusher.netboot.tcz import NbiError

IPXE = Path("/usr/lib/ipxe")
needs_ipxe = pytest.mark.skipif(not all((IPXE / n).is_file() for n in dnsmasq.IPXE_FILES),
                                reason="Debian's ipxe package is not installed")
needs_dnsmasq = pytest.mark.skipif(shutil.which("dnsmasq") is None, reason="dnsmasq not installed")


def fake_ipxe(d: Path) -> Path:
    d.mkdir()
    for name in dnsmasq.IPXE_FILES:
        (d / name).write_bytes(b"MZ " + name.encode())
    return d


def lines(path: Path):
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


def syntax_check(path: Path) -> None:
    check = subprocess.run(["dnsmasq", "--test", f"--conf-file={path}"], capture_output=True, text=True)
    assert check.returncode == 0, f"{path.name}: {check.stderr}"


def test_ipxe_binaries_are_copied_from_the_given_directory(cache, pyz, tmp_path):
    src = fake_ipxe(tmp_path / "ipxe")
    out = tmp_path / "nbi"
    nbi.create(str(cache), str(out), str(pyz), ipxe_dir=str(src))
    for name in ("snponly.efi", "ipxe.efi", "undionly.kpxe"):
        assert (out / name).read_bytes() == (src / name).read_bytes()


def test_ipxe_directory_missing_a_binary_is_named_before_anything_is_written(cache, pyz, tmp_path):
    src = fake_ipxe(tmp_path / "ipxe")
    (src / "undionly.kpxe").unlink()
    with pytest.raises(NbiError, match=f"--ipxe {src}: undionly.kpxe is not there"):
        nbi.create(str(cache), str(tmp_path / "nbi"), str(pyz), ipxe_dir=str(src))
    assert not (tmp_path / "nbi").exists()


@needs_ipxe
def test_ipxe_binaries_default_to_debians_ipxe_package(cache, pyz, tmp_path):
    out = tmp_path / "nbi"
    nbi.create(str(cache), str(out), str(pyz))
    assert (out / "snponly.efi").read_bytes() == (IPXE / "snponly.efi").read_bytes()


def test_without_ipxe_binaries_a_warning_says_where_to_get_them_and_bios_still_boots(
        cache, pyz, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(nbi, "IPXE_DEFAULT", str(tmp_path / "no-ipxe-here"))
    out = tmp_path / "nbi"
    nbi.create(str(cache), str(out), str(pyz), master="10.1.2.3")
    warning = caplog.text
    assert "UEFI machines cannot netboot without them" in warning
    assert "apt install ipxe" in warning and "https://boot.ipxe.org/" in warning
    assert not (out / "snponly.efi").exists()
    assert 'pxe-service=tag:!ipxe,x86PC,"thepusher (BIOS)",pxelinux' in lines(out / "dnsmasq-proxy.conf")
    assert "dhcp-boot=tag:bios,tag:!ipxe,pxelinux.0" in lines(out / "dnsmasq-dhcp.conf")
    for conf in ("dnsmasq-proxy.conf", "dnsmasq-dhcp.conf"):
        assert not [line for line in lines(out / conf) if "snponly" in line], conf
        if shutil.which("dnsmasq"):
            syntax_check(out / conf)


@needs_dnsmasq
@pytest.mark.parametrize("master,url,network", [
    ("10.1.2.3", "http://10.1.2.3:8080/boot.ipxe", "10.1.2.3"),
    ("10.1.2.150:9000", "http://10.1.2.150:9000/boot.ipxe", "10.1.2.150"),
    (None, "http://192.0.2.1:8080/boot.ipxe", "192.0.2.0"),
])
def test_proxy_config_boots_each_arch_its_ipxe_and_ipxe_the_masters_script(
        cache, pyz, tmp_path, master, url, network):
    out = tmp_path / "nbi"
    nbi.create(str(cache), str(out), str(pyz), master=master, ipxe_dir=str(fake_ipxe(tmp_path / "i")))
    conf = out / "dnsmasq-proxy.conf"
    syntax_check(conf)
    host = network if master else "192.0.2.1"
    assert lines(conf) == [
        "port=0", "log-dhcp", "enable-tftp", f"tftp-root={out}",
        "dhcp-userclass=set:ipxe,iPXE", "dhcp-match=set:ipxe,175",
        f"dhcp-range={network},proxy",
        'pxe-service=tag:!ipxe,x86PC,"thepusher (BIOS)",undionly.kpxe',
        'pxe-service=tag:!ipxe,x86-64_EFI,"thepusher (UEFI)",snponly.efi',
        'pxe-service=tag:!ipxe,BC_EFI,"thepusher (UEFI)",snponly.efi',
        f"dhcp-boot=tag:ipxe,{url},,{host}",
    ]
    text = conf.read_text()
    assert '#   pxe-service=tag:!ipxe,x86PC,"thepusher (BIOS)",pxelinux\n' in text
    assert "ipxe.efi" in text
    if master is None:
        assert "replace 192.0.2.1" in text and "Replace 192.0.2.0" in text


@needs_dnsmasq
@pytest.mark.parametrize("master,url,dhcp_range", [
    ("10.1.2.3", "http://10.1.2.3:8080/boot.ipxe", "10.1.2.100,10.1.2.199,255.255.255.0,1h"),
    ("10.1.2.150:9000", "http://10.1.2.150:9000/boot.ipxe", "10.1.2.20,10.1.2.99,255.255.255.0,1h"),
    (None, "http://192.0.2.1:8080/boot.ipxe", "192.0.2.100,192.0.2.199,255.255.255.0,1h"),
])
def test_dhcp_config_hands_out_addresses_and_boots_by_client_arch(
        cache, pyz, tmp_path, master, url, dhcp_range):
    out = tmp_path / "nbi"
    nbi.create(str(cache), str(out), str(pyz), master=master, ipxe_dir=str(fake_ipxe(tmp_path / "i")))
    conf = out / "dnsmasq-dhcp.conf"
    syntax_check(conf)
    assert lines(conf) == [
        "port=0", "log-dhcp", "enable-tftp", f"tftp-root={out}",
        "dhcp-userclass=set:ipxe,iPXE", "dhcp-match=set:ipxe,175",
        f"dhcp-range={dhcp_range}",
        "dhcp-match=set:bios,option:client-arch,0",
        "dhcp-match=set:efi64,option:client-arch,7",
        "dhcp-match=set:efi64,option:client-arch,9",
        "dhcp-boot=tag:bios,tag:!ipxe,undionly.kpxe",
        "dhcp-boot=tag:efi64,tag:!ipxe,snponly.efi",
        "dhcp-match=set:efihttp,option:client-arch,16",
        "dhcp-option-force=tag:efihttp,60,HTTPClient",
        "dhcp-boot=tag:efihttp,tag:!ipxe," + url.replace("/boot.ipxe", "/boot/snponly.efi"),
        f"dhcp-boot=tag:ipxe,{url}",
    ]
    assert "#   dhcp-boot=tag:bios,tag:!ipxe,pxelinux.0\n" in conf.read_text()


def test_cmdline_txt_is_the_one_line_every_boot_config_passes(cache, pyz, tmp_path):
    out = tmp_path / "nbi"
    nbi.create(str(cache), str(out), str(pyz), append="console=ttyS0")
    assert (out / "cmdline.txt").read_text() == "loglevel=3 base norestore noswap console=ttyS0\n"
    assert "APPEND loglevel=3 base norestore noswap console=ttyS0\n" in (
        out / "pxelinux.cfg" / "default").read_text()
