"""End to end: a PC told to upload its disk at its next network boot does so.

A BIOS PC (SeaBIOS, its NIC's iPXE ROM) with 64 MiB of random data on its disk boots
from dnsmasq running create-nbi's `dnsmasq-dhcp.conf`. Before, the admin ran
`thepusher reimage --put /dev/vda ADDRESS` for a machine the master has never met
(capture only: no images, no groups). iPXE asks the master `GET /boot.ipxe`, which
answers with the kernel and both initrds from `master --boot DIR` and `putImage=/dev/vda`
on the command line; the boot script runs put-image, and the test checks that the
master stored the disk with its SHA-256 and that the mark was used once. The chain
itself, on UEFI and BIOS PCs, is tests/e2e/test_uefi.py.
"""

import ipaddress
import json
import os
import time

from tests.conftest import sha256_file
from tests.e2e.conftest import create_nbi
from tests.support.netlab import HOST_IP, PREFIX

MiB = 1 << 20
IMAGE_SIZE = 64 * MiB
TIMEOUT = 300  # ~16 s here; room for a slow CI machine


def test_bios_pc_marked_to_upload_boots_put_image_and_the_master_stores_its_disk(lab, stand_in):
    nbi = create_nbi(stand_in, lab.root / "nbi", "-p", HOST_IP, "--append", "console=ttyS0 panic=-1")
    (vm,) = lab.make_vms(1, 0)
    with open(vm.disk, "wb") as f:  # what the lab PC's disk holds: known, random
        f.write(os.urandom(IMAGE_SIZE))
    lab.ns.dnsmasq([vm.dhcp_host], conf=nbi / "dnsmasq-dhcp.conf")
    # capture only: no images, no groups; the VM uploads from the lab network's addresses
    subnet = ipaddress.ip_interface(f"{HOST_IP}/{PREFIX}").network
    (lab.images / "thePusher-config.hcl").write_text(f'put_allowed = ["{subnet}"]\n')
    lab.start_master(boot_dir=nbi)
    assert f"{vm.ip}: upload /dev/vda at next boot" in lab.cli("reimage", "--put", "/dev/vda", vm.ip)

    start = time.monotonic()
    qemu = lab.boot(vm, vm.pxe())
    lab.wait_for_poweroff([qemu], TIMEOUT)
    print(f"\n1 BIOS PC netbooted and uploaded {IMAGE_SIZE // MiB} MiB in "
          f"{time.monotonic() - start:.1f} s (boot script's Python after {lab.first('python')} s)")

    want = sha256_file(vm.disk)
    stored = lab.images / "vda"
    assert stored.exists(), lab.report("no image 'vda' on the master")
    assert sha256_file(stored) == want, lab.report("the stored image differs from the disk")
    sidecar = json.loads((lab.images / "vda.digest.json").read_text())
    assert sidecar["sha256"] == want, lab.report(f"sidecar: {sidecar}")
    # SeaBIOS's console is VGA only: what iPXE was told is in the master's log and status.
    assert f"boot {vm.ip} (mac {vm.mac}, pcbios, from {vm.ip}): put: marked: upload /dev/vda" \
        in lab.ns.log("master"), lab.report("not the master's put")
    assert lab.python_line(stand_in.python_version) in vm.console.read_text(errors="replace"), \
        lab.report(f"not {lab.python_line(stand_in.python_version)!r}")
    (pc,) = lab.status()["unassigned"]
    assert pc["next_boot"] == "" and pc["last_boot"]["boot"] == "put", lab.report(f"mark: {pc}")
