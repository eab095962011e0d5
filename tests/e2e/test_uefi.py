"""UEFI netboot end to end, and a room that re-images itself at its next boot.

Two UEFI-only PCs (OVMF, q35, set to network boot first and then their disk) and one
BIOS PC (SeaBIOS with its NIC's iPXE ROM) boot from dnsmasq running the
`dnsmasq-dhcp.conf` that create-nbi wrote: OVMF's PXE loads `snponly.efi` over TFTP,
iPXE asks the master `GET /boot.ipxe`, which chains itself with the machine's MAC and
firmware and answers "image" (their group has not been imaged yet); kernel and both
initrds come over HTTP from `master --boot DIR`. The three are imaged in one chain and
every disk is checked from the host, and each client's Python (python3.9.tcz's) and
postImage (with #MASTER# filled in) from its console.

Then one UEFI PC boots again, as it would every morning: nothing is pending, so the
master says "boot the local disk" (`exit 1`), and its firmware goes on: UEFI HTTP Boot
loads iPXE from the master (`/boot/snponly.efi`), which is told the same, and then the
disk, whose GRUB says so on the serial console. The admin runs `thepusher reimage HOST`; at
its next boot the same PC is imaged again (its disk was scribbled on meanwhile), alone:
the group does not wait for its other, unmarked hosts. The mark is then gone.
"""

import time

from tests.conftest import sha256_file
from tests.e2e import bootable
from tests.e2e.conftest import create_nbi
from tests.support.netlab import HOST_IP

MiB = 1 << 20
IMAGE_SIZE = 64 * MiB
TIMEOUT = 420  # ~90 s here for the chain; room for a slow CI machine
LOCAL = "thepusher-e2e: the local disk booted"


def console(vm) -> str:
    return vm.console.read_text(errors="replace") if vm.console.exists() else ""


def test_two_uefi_and_one_bios_pc_netboot_into_one_chain_then_boot_local_until_marked(lab, stand_in):
    nbi = create_nbi(stand_in, lab.root / "nbi", "-p", HOST_IP, "--append", "console=ttyS0 panic=-1")
    for name in ("snponly.efi", "dnsmasq-dhcp.conf"):
        assert (nbi / name).exists(), f"create-nbi wrote no {name} (is Debian's ipxe installed?)"
    vms = lab.make_vms(3, IMAGE_SIZE)
    uefi, bios = vms[:2], vms[2]
    lab.ns.dnsmasq([vm.dhcp_host for vm in vms], conf=nbi / "dnsmasq-dhcp.conf")
    image = lab.images / "disk.img"
    bootable.make(image, IMAGE_SIZE, LOCAL)
    hosts = ", ".join(f'"{vm.ip}"' for vm in vms)
    macs = ", ".join(f'"{vm.ip}" = "{vm.mac}"' for vm in vms)
    (lab.images / "thePusher-config.hcl").write_text(
        'image "img" {\n'
        '  filename    = "disk.img"\n'
        '  destination = "/dev/vda"\n'
        '  postImage   = "echo e2e-postImage master=#MASTER#; sync; poweroff -f"\n'
        '}\n'
        f'clientgroup "room" {{\n  image = "img"\n  hosts = [{hosts}]\n  macs = {{ {macs} }}\n}}\n')
    lab.start_master(boot_dir=nbi)
    want = sha256_file(image)

    start = time.monotonic()
    qemus = [lab.boot(vm, vm.uefi()) for vm in uefi] + [lab.boot(bios, bios.pxe())]
    lab.wait_for_poweroff(qemus, TIMEOUT)
    print(f"\n2 UEFI + 1 BIOS PCs netbooted, imaged {IMAGE_SIZE // MiB} MiB and powered off in "
          f"{time.monotonic() - start:.1f} s")
    clients = {c["host"]: c for g in lab.status()["groups"] for c in g["clients"]}
    for vm in vms:
        state = clients[vm.ip]
        assert state["state"] == "DONE" and state["sha256"] == want, lab.report(f"{vm.name}: {state}")
        assert sha256_file(vm.disk) == want, lab.report(f"{vm.name}: disk differs")
        platform = "efi" if vm in uefi else "pcbios"
        assert state["last_boot"]["boot"] == "image" and state["last_boot"]["platform"] == platform, \
            lab.report(f"{vm.name}: {state['last_boot']}")
        # The client ran on python3.9.tcz's interpreter, and powered off by the image's
        # postImage with #MASTER# filled in.
        assert lab.python_line(stand_in.python_version) in console(vm), lab.report(f"{vm.name}: Python")
        assert f"e2e-postImage master={HOST_IP}" in console(vm), lab.report(f"{vm.name}: postImage")
    assert lab.status()["history"][-1]["chain"] == [vm.ip for vm in vms], lab.report("chain")
    assert "Start PXE over IPv4" in console(uefi[0]) and "snponly.efi" in console(uefi[0]), \
        lab.report("vm1 did not load iPXE by the firmware's PXE")

    # Next morning: nothing pending, the firmware goes on to the disk.
    pc = uefi[0]
    pc.console.write_text("")
    start = time.monotonic()
    lab.wait_for_poweroff([lab.boot(pc, pc.uefi())], TIMEOUT)
    print(f"{pc.name} booted its local disk through the master's decision in "
          f"{time.monotonic() - start:.1f} s")
    text = console(pc)
    assert "boot the local disk: nothing pending" in text and LOCAL in text, lab.report("local boot")
    assert "Linux version" not in text, lab.report(f"{pc.name} booted thepusher, not its disk")
    # Asked twice: by the iPXE of its PXE boot, then by the iPXE its UEFI HTTP Boot loaded
    # from the master's /boot/ (answered by dnsmasq-dhcp.conf); both times its disk.
    local = f"boot {pc.ip} (mac {pc.mac}, efi, from {pc.ip}): local: nothing pending"
    assert lab.ns.log("master").count(local) == 2, lab.report("the master's decisions")
    assert any("starting Boot" in line and "UEFI HTTPv4" in line for line in text.splitlines()), \
        lab.report("no UEFI HTTP Boot of iPXE")

    # Marked: imaged again at its next boot, alone, and then the mark is gone.
    with open(pc.disk, "r+b") as f:
        f.seek(32 * MiB)
        f.write(b"old data" * 4096)
    assert f"{pc.ip}: re-image at next boot" in lab.cli("reimage", pc.ip)
    pc.console.write_text("")
    start = time.monotonic()
    lab.wait_for_poweroff([lab.boot(pc, pc.uefi())], TIMEOUT)
    print(f"{pc.name}, marked, was imaged again in {time.monotonic() - start:.1f} s")
    assert "marked: re-image at next boot" in console(pc), lab.report("reimage boot")
    assert sha256_file(pc.disk) == want, lab.report(f"{pc.name}: disk differs after re-imaging")
    status = lab.status()
    assert status["history"][-1]["chain"] == [pc.ip], lab.report("the re-imaging round")
    assert status["history"][-1]["outcome"] == {pc.ip: "DONE"}
    assert {c["host"]: c for c in status["groups"][0]["clients"]}[pc.ip]["next_boot"] == ""
