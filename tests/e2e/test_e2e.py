"""End to end: real VMs boot a netboot image made by `create-nbi` and run thepusher
against a real master.

1. Three VMs boot the combined initrd (kernel loaded by QEMU) with the master baked in
   by `create-nbi -p` and PXELINUX's command line, get fixed addresses from dnsmasq,
   register, receive a 64 MiB image through the chain master -> vm1 -> vm2 -> vm3, and
   power off through the image's postImage. The host then hashes every virtual disk.
2. One VM PXE-boots through iPXE: dnsmasq's TFTP hands it a one-line script that chains
   the generated boot.ipxe from the master's /static/, which loads the kernel and both
   initrds over HTTP; `--append ... putImage=/dev/vda` makes it upload its disk.
"""

import ipaddress
import json
import os
import time

from tests.conftest import sha256_file, write_image
from tests.e2e.conftest import create_nbi, pxelinux_append
from tests.support.netlab import HOST_IP, MASTER, PREFIX

MiB = 1 << 20
IMAGE_SIZE = 64 * MiB
TIMEOUT = 300  # ~15 s here; room for a slow CI machine


def test_three_vms_get_the_image_through_the_chain(lab, stand_in):
    nbi = create_nbi(stand_in, lab.root / "nbi", "-p", HOST_IP)
    vms = lab.make_vms(3, IMAGE_SIZE)
    lab.ns.dnsmasq([vm.dhcp_host for vm in vms])
    image = lab.images / "disk.img"
    write_image(image, IMAGE_SIZE)
    hosts = ", ".join(f'"{vm.ip}"' for vm in vms)
    (lab.images / "thePusher-config.hcl").write_text(
        'image "img" {\n'
        '  filename    = "disk.img"\n'
        '  destination = "/dev/vda"\n'
        '  postImage   = "echo e2e-postImage master=#MASTER#; sync; poweroff -f"\n'
        '}\n'
        f'clientgroup "room" {{\n  image = "img"\n  hosts = [{hosts}]\n}}\n')
    lab.start_master()

    start = time.monotonic()
    cmdline = pxelinux_append(nbi)
    assert "thePusher=" in cmdline
    qemus = [lab.boot(vm, vm.direct(stand_in.vmlinux, nbi / "thepusher-core.gz", cmdline))
             for vm in vms]
    lab.wait_for_poweroff(qemus, TIMEOUT)
    print(f"\n3 VMs booted, imaged {IMAGE_SIZE // MiB} MiB and powered off in "
          f"{time.monotonic() - start:.1f} s (boot script's Python after {lab.first('python')} s, "
          f"first registration after {lab.first('registered')} s)")

    want = sha256_file(image)
    clients = {c["host"]: c for g in lab.status()["groups"] for c in g["clients"]}
    for vm in vms:
        state = clients.get(vm.ip)
        assert state and state["state"] == "DONE" and state["sha256"] == want, \
            lab.report(f"{vm.name}: {state}")
        assert sha256_file(vm.disk) == want, lab.report(f"{vm.name}: disk differs")
        # Powered off by the image's postImage, with #MASTER# filled in.
        console = vm.console.read_text(errors="replace")
        assert f"e2e-postImage master={HOST_IP}" in console, \
            lab.report(f"{vm.name} did not run postImage")
        # The client ran on python3.9.tcz's interpreter, as on TinyCore.
        assert lab.python_line(stand_in.python_version) in console, \
            lab.report(f"{vm.name}: not {lab.python_line(stand_in.python_version)!r}")
    assert lab.status()["history"][-1]["chain"] == [vm.ip for vm in vms], lab.report("chain")


def test_pxe_booted_vm_uploads_its_disk_with_put_image(lab, stand_in):
    nbi = create_nbi(stand_in, lab.root / "nbi", "-p", HOST_IP,
                     "--append", "console=ttyS0 panic=-1 putImage=/dev/vda")
    (vm,) = lab.make_vms(1, 0)
    with open(vm.disk, "wb") as f:  # what the lab PC's disk holds: known, random
        f.write(os.urandom(IMAGE_SIZE))
    tftp = lab.root / "tftp"
    tftp.mkdir()
    (tftp / "chain.ipxe").write_text(f"#!ipxe\nchain http://{MASTER}/static/boot.ipxe\n")
    lab.ns.dnsmasq([vm.dhcp_host], tftp_root=tftp, boot_file="chain.ipxe")
    # capture only: no images, no groups; the VM uploads from the lab network's addresses
    subnet = ipaddress.ip_interface(f"{HOST_IP}/{PREFIX}").network
    (lab.images / "thePusher-config.hcl").write_text(f'put_allowed = ["{subnet}"]\n')
    lab.start_master(static_dir=nbi)

    start = time.monotonic()
    qemu = lab.boot(vm, vm.pxe())
    lab.wait_for_poweroff([qemu], TIMEOUT)
    print(f"\n1 VM PXE-booted and uploaded {IMAGE_SIZE // MiB} MiB in "
          f"{time.monotonic() - start:.1f} s (boot script's Python after {lab.first('python')} s)")

    want = sha256_file(vm.disk)
    stored = lab.images / "vda"
    assert stored.exists(), lab.report("no image 'vda' on the master")
    assert sha256_file(stored) == want, lab.report("the stored image differs from the disk")
    sidecar = json.loads((lab.images / "vda.digest.json").read_text())
    assert sidecar["sha256"] == want, lab.report(f"sidecar: {sidecar}")
    assert lab.python_line(stand_in.python_version) in vm.console.read_text(errors="replace"), \
        lab.report(f"not {lab.python_line(stand_in.python_version)!r}")
