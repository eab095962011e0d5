"""dnsmasq examples for netbooting BIOS and UEFI machines: proxy-DHCP and full DHCP.

Three kinds of client ask for a boot file, and each must get a different one:

- a BIOS PXE ROM (DHCP option 93, client-arch, 0): iPXE's `undionly.kpxe`, or `pxelinux.0`;
- a UEFI PXE firmware (client-arch 7 or 9, both x86-64 UEFI in the wild): `snponly.efi`;
- iPXE itself, once loaded (user class "iPXE", and it sends its own option 175): the
  master's HTTP script, so that the master decides per host what the machine boots.

Without the iPXE test a UEFI machine would load snponly.efi, whose DHCP request would
get snponly.efi again, forever. TFTP only carries the small first-stage binaries; the
kernel and initrds come over HTTP from the master.
"""

import ipaddress
from typing import Optional

BIOS_IPXE = "undionly.kpxe"
UEFI_IPXE = "snponly.efi"
UEFI_IPXE_FULL = "ipxe.efi"
IPXE_FILES = (UEFI_IPXE, UEFI_IPXE_FULL, BIOS_IPXE)
DEFAULT_PORT = 8080
PLACEHOLDER_NET = "192.0.2.0"
PLACEHOLDER_MASTER = "192.0.2.1"
PROXY = "dnsmasq-proxy.conf"
DHCP = "dnsmasq-dhcp.conf"


def master_url(master: Optional[str]) -> str:
    """Where iPXE fetches its script: the master's own HTTP port (8080 unless -p says)."""
    host, port = _split(master)
    return f"http://{host or PLACEHOLDER_MASTER}:{port}/boot.ipxe"


def _split(master: Optional[str]):
    if not master:
        return None, DEFAULT_PORT
    host, _, port = master.partition(":")
    return host, int(port) if port else DEFAULT_PORT


def _ipv4(host: Optional[str]) -> Optional[ipaddress.IPv4Address]:
    try:
        return ipaddress.IPv4Address(host or "")
    except ValueError:
        return None


def _header(kind: str, master: Optional[str], tftp_root: str) -> str:
    host, _ = _split(master)
    note = ("" if host else
            f"# No master was given to create-nbi: replace {PLACEHOLDER_MASTER} below with the\n"
            "# master's address (and the network in dhcp-range with the clients' network).\n")
    return (
        f"# {kind}, made by thepusher create-nbi.\n"
        "# Run: dnsmasq --no-daemon --conf-file=THIS_FILE (as root: DHCP and TFTP ports).\n"
        + note
        + "port=0\n"
        "log-dhcp\n"
        "enable-tftp\n"
        f"tftp-root={tftp_root}\n"
        "# iPXE says who it is: DHCP user class \"iPXE\", and its own option 175.\n"
        "dhcp-userclass=set:ipxe,iPXE\n"
        "dhcp-match=set:ipxe,175\n"
    )


def proxy_conf(master: Optional[str], tftp_root: str, ipxe: bool) -> str:
    """Proxy-DHCP: the room's DHCP server keeps handing out addresses; dnsmasq adds only
    the boot answer (the common case in schools: nothing else needs changing).

    In proxy mode dnsmasq answers with its pxe-service lines, chosen by the client's
    architecture (option 93 is what the CSA field matches); dhcp-boot is used only when
    no pxe-service applies, which the `tag:!ipxe` on every pxe-service arranges for iPXE.
    The server address on that dhcp-boot line matters: iPXE ignores a proxy offer without
    one.
    """
    host, _ = _split(master)
    network = host if _ipv4(host) else PLACEHOLDER_NET
    hint = "" if _ipv4(host) else f"# Replace {PLACEHOLDER_NET} with an address of the clients' network.\n"
    text = (
        _header("dnsmasq-proxy.conf: proxy-DHCP + TFTP beside the existing DHCP server", master,
                tftp_root)
        + hint
        + f"dhcp-range={network},proxy\n"
        + _bios_lines(ipxe, proxy=True)
        + _uefi_lines(ipxe, proxy=True)
        + "# iPXE (from either of the above, or a NIC's own iPXE ROM) gets the master's script;\n"
        "# the master decides per machine what it boots.\n"
        f"dhcp-boot=tag:ipxe,{master_url(master)},,{host or PLACEHOLDER_MASTER}\n"
    )
    return text


def dhcp_conf(master: Optional[str], tftp_root: str, ipxe: bool) -> str:
    """Full DHCP: dnsmasq is the network's DHCP server (an imaging network of its own).

    No pxe-service here: plain dhcp-boot answers by tag are what every PXE ROM, UEFI
    firmware and iPXE understand, and the arch tags come from option 93.
    """
    host, _ = _split(master)
    address = _ipv4(host)
    if address is not None:
        net = ipaddress.IPv4Network(f"{address}/24", strict=False)
        low, high = (20, 99) if 100 <= int(address) - int(net.network_address) <= 199 else (100, 199)
        first, last = net.network_address + low, net.network_address + high
        note = (f"# Addresses for the clients in the master's /24 ({net}), leaving out the\n"
                "# master: adjust the range (and the netmask) to your network.\n")
    else:
        first, last = "192.0.2.100", "192.0.2.199"
        note = ("# Replace 192.0.2.100-199 with free addresses of the clients' network (the\n"
                "# dnsmasq machine needs an address in it).\n")
    return (
        _header("dnsmasq-dhcp.conf: dnsmasq is the DHCP server (+ TFTP)", master, tftp_root)
        + note
        + f"dhcp-range={first},{last},255.255.255.0,1h\n"
        "# Only if the clients need a router or DNS besides the master, e.g.:\n"
        "#   dhcp-option=option:router,GATEWAY\n"
        "# The client's architecture, DHCP option 93: 0 = BIOS, 7 and 9 = x86-64 UEFI.\n"
        "dhcp-match=set:bios,option:client-arch,0\n"
        "dhcp-match=set:efi64,option:client-arch,7\n"
        "dhcp-match=set:efi64,option:client-arch,9\n"
        + _bios_lines(ipxe, proxy=False)
        + _uefi_lines(ipxe, proxy=False)
        + _http_boot_lines(master, ipxe)
        + "# iPXE (from either of the above, or a NIC's own iPXE ROM) gets the master's script;\n"
        "# the master decides per machine what it boots.\n"
        f"dhcp-boot=tag:ipxe,{master_url(master)}\n"
    )


def _http_boot_lines(master: Optional[str], ipxe: bool) -> str:
    """UEFI HTTP Boot (client-arch 16, vendor class HTTPClient): the firmware loads iPXE
    over HTTP from the master's /boot/ (master --boot), no TFTP. Answered even where PXE
    comes first: a firmware whose PXE boot ended (the master said "boot the local disk")
    tries HTTP Boot next, and would wait a minute for an answer before its disk."""
    host, port = _split(master)
    lines = ("dhcp-match=set:efihttp,option:client-arch,16\n"
             "dhcp-option-force=tag:efihttp,60,HTTPClient\n"
             f"dhcp-boot=tag:efihttp,tag:!ipxe,http://{host or PLACEHOLDER_MASTER}:{port}/boot/{UEFI_IPXE}\n")
    text = "# UEFI HTTP Boot (client-arch 16): iPXE over HTTP from the master (master --boot).\n"
    if ipxe:
        return text + lines
    return text + "".join(f"#   {line}\n" for line in lines.splitlines())


def _bios_lines(ipxe: bool, proxy: bool) -> str:
    if proxy:
        def line(name: str) -> str:  # "pxelinux": dnsmasq adds the PXE layer suffix .0
            return f'pxe-service=tag:!ipxe,x86PC,"thepusher (BIOS)",{name}\n'
    else:
        def line(name: str) -> str:
            return f"dhcp-boot=tag:bios,tag:!ipxe,{name}\n"
    pxelinux = "pxelinux" if proxy else "pxelinux.0"
    if ipxe:
        return ("# BIOS PXE ROMs load iPXE, which then asks again. To boot PXELINUX instead\n"
                "# (pxelinux.cfg/default, no per-host decision by the master), use instead:\n"
                f"#   {line(pxelinux)}"
                + line(BIOS_IPXE))
    return ("# BIOS PXE ROMs boot PXELINUX (pxelinux.cfg/default). With iPXE's undionly.kpxe in\n"
            "# the TFTP root (create-nbi --ipxe), the master could decide per host instead:\n"
            f"#   {line(BIOS_IPXE)}"
            + line(pxelinux))


def _uefi_lines(ipxe: bool, proxy: bool) -> str:
    if proxy:
        lines = "".join(f'pxe-service=tag:!ipxe,{csa},"thepusher (UEFI)",{UEFI_IPXE}\n'
                        for csa in ("x86-64_EFI", "BC_EFI"))  # client-arch 7 and 9
    else:
        lines = f"dhcp-boot=tag:efi64,tag:!ipxe,{UEFI_IPXE}\n"
    text = ("# UEFI PXE firmware loads iPXE (snponly.efi: it drives the NIC through the\n"
            f"# firmware's own network driver; if that driver is broken, use {UEFI_IPXE_FULL}).\n")
    if ipxe:
        return text + lines
    return (text + "# create-nbi found no iPXE binaries: UEFI machines cannot netboot until\n"
            f"# {UEFI_IPXE} is in the TFTP root (apt install ipxe, then create-nbi again):\n"
            + "".join(f"#   {line}\n" for line in lines.splitlines()))
