"""What dnsmasq really answers with create-nbi's configs: a real dnsmasq on one end of a
veth pair in a network namespace, a PXE client's DHCP packets (tests/support/dhcp_probe.py)
from the other, one per kind of client. Linux, root (namespaces, port 67).
"""

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.netlab import Netns
from tests.system.test_nbi_dnsmasq import fake_ipxe
from thepusher.netboot import nbi

SERVER = "10.9.0.1"
CLIENT = "10.9.0.50"
URL = f"http://{SERVER}:8080/boot.ipxe"
PROBE = str(ROOT / "tests" / "support" / "dhcp_probe.py")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("dnsmasq", "unshare", "nsenter", "ip")),
    reason="needs root, dnsmasq, unshare, nsenter and ip")


class Net:
    """dnsmasq's namespace (veth0, SERVER) and the client's (veth1, CLIENT), one veth pair:
    two namespaces, since a packet from one of its own addresses is dropped as martian."""

    def __init__(self, logs: Path) -> None:
        self.server = Netns(logs)
        self.client = Netns(logs)

    def build(self) -> None:
        self.server.run("ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
        self.server.run("ip", "link", "set", "veth1", "netns", str(self.client.procs[0].pid))
        for ns, dev, addr in ((self.server, "veth0", SERVER), (self.client, "veth1", CLIENT)):
            ns.run("ip", "link", "set", "lo", "up")
            ns.run("ip", "addr", "add", f"{addr}/24", "dev", dev)
            ns.run("ip", "link", "set", dev, "up")

    def close(self) -> None:
        self.client.close()
        self.server.close()


@pytest.fixture
def net(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    lab = Net(logs)
    try:
        lab.build()
        yield lab
    finally:
        lab.close()


def start_dnsmasq(net: Net, conf: Path, logs: Path) -> None:
    ns = net.server
    ns.spawn("dnsmasq", ["dnsmasq", "--no-daemon", f"--conf-file={conf}", "--interface=veth0",
                         "--bind-interfaces", "--log-facility=-", "--pid-file=",
                         f"--dhcp-leasefile={logs / 'leases'}"])
    deadline = time.monotonic() + 10
    while "started, version" not in ns.log("dnsmasq"):
        assert time.monotonic() < deadline, ns.log("dnsmasq")
        time.sleep(0.1)


def ask(net: Net, arch: int, *args: str) -> dict:
    try:
        return json.loads(net.client.run(sys.executable, PROBE, "veth1", str(arch), *args, timeout=20))
    except RuntimeError as e:
        raise AssertionError(f"no answer ({e}); dnsmasq said:\n{net.server.log('dnsmasq')}") from None


@pytest.fixture
def out(cache, pyz, tmp_path):
    d = tmp_path / "nbi"
    nbi.create(str(cache), str(d), str(pyz), master=SERVER, ipxe_dir=str(fake_ipxe(tmp_path / "i")))
    return d


def test_dhcp_mode_offers_each_client_arch_its_boot_file_and_ipxe_the_masters_url(net, out, tmp_path):
    start_dnsmasq(net, out / "dnsmasq-dhcp.conf", tmp_path / "logs")
    bios, uefi7, uefi9 = ask(net, 0), ask(net, 7), ask(net, 9)
    assert (bios["file"], uefi7["file"], uefi9["file"]) == ("undionly.kpxe", "snponly.efi", "snponly.efi")
    assert uefi7["siaddr"] == SERVER and uefi7["yiaddr"].startswith("10.9.0.")
    assert ask(net, 0, "--ipxe")["file"] == URL
    assert ask(net, 7, "--ipxe")["file"] == URL
    # UEFI HTTP Boot (arch 16) loads iPXE over HTTP from the master's /boot/.
    assert ask(net, 16)["file"] == URL.replace("/boot.ipxe", "/boot/snponly.efi")


def test_proxy_mode_sends_uefi_to_port_4011_for_snponly_and_ipxe_to_the_master(net, out, tmp_path):
    start_dnsmasq(net, out / "dnsmasq-proxy.conf", tmp_path / "logs")
    for arch in (7, 9):
        offer = ask(net, arch)
        assert (offer["siaddr"], offer["file"], offer["yiaddr"]) == (SERVER, "", "0.0.0.0")
        ack = ask(net, arch, "--to", f"{SERVER}:4011", "--ciaddr", CLIENT)
        assert ack["file"] == "snponly.efi", ack
    for arch in (0, 7):
        offer = ask(net, arch, "--ipxe")
        assert (offer["siaddr"], offer["file"]) == (SERVER, URL), offer


def test_proxy_mode_boot_menu_gives_bios_pxe_roms_undionly(net, out, tmp_path):
    start_dnsmasq(net, out / "dnsmasq-proxy.conf", tmp_path / "logs")
    offer = ask(net, 0)
    assert offer["file"] == "" and offer["menu_item"], offer
    ack = ask(net, 0, "--to", f"{SERVER}:4011", "--ciaddr", CLIENT,
              "--boot-item", str(offer["menu_item"]))
    assert ack["file"] == "undionly.kpxe", ack
