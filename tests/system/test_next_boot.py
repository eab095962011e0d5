"""The per-host boot decision (`GET /boot.ipxe`, `master --boot DIR`), with a real
master and real clients: what a machine that network-boots first is told to boot, the
admin's "re-image at next boot" marks (CLI and API), their life across a master restart
and a round, and the boot files served over HTTP.

iPXE itself is played by HTTP requests from the machine's address; the e2e test
(tests/e2e/test_uefi.py) runs the same with real firmware and iPXE.
"""

import http.client
import json
from pathlib import Path
from typing import Tuple

import pytest

from tests.conftest import write_config, write_image

MiB = 1 << 20
A, B, C = "127.0.0.11", "127.0.0.12", "127.0.0.13"
MACS = {A: "52:54:00:00:00:11", B: "52:54:00:00:00:12", C: "52:54:00:00:00:13"}
CMDLINE = "loglevel=3 base norestore noswap console=ttyS0"
KERNEL = b"kernel bytes " * 1000


def boot_dir(root: Path) -> Path:
    """What create-nbi writes, as far as the master reads it."""
    d = root / "nbi"
    d.mkdir()
    (d / "vmlinuz64").write_bytes(KERNEL)
    (d / "corepure64.gz").write_bytes(b"core")
    (d / "thepusher.gz").write_bytes(b"overlay")
    (d / "cmdline.txt").write_text(CMDLINE + "\n")
    return d


def setup(lab, start="all", settings="", hosts=(A, B)):
    write_image(lab.images / "disk.img", 1 * MiB)
    macs = ", ".join(f'"{h}" = "{MACS[h]}"' for h in hosts)
    write_config(lab.images, list(hosts), settings=settings,
                 group=f'  start = "{start}"\n  macs = {{ {macs} }}\n')
    lab.start_master("--boot", str(boot_dir(lab.root)))


def get(lab, path: str, source: str = "127.0.0.1", method: str = "GET") -> Tuple[int, str, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", lab.port, timeout=10, source_address=(source, 0))
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace"), dict(resp.getheaders())
    finally:
        conn.close()


def boot(lab, mac: str, platform: str = "efi", source: str = "127.0.0.99") -> str:
    status, text, _ = get(lab, f"/boot.ipxe?mac={mac.replace(':', '-')}&platform={platform}", source)
    assert status == 200, text
    assert text.startswith("#!ipxe\n")
    return text


def imaging(text: str) -> bool:
    return "kernel /boot/vmlinuz64" in text


def run_round(lab, hosts):
    clients = [lab.start_client(h) for h in hosts]
    for c in clients:
        assert c.wait(60) == 0, lab.dump()


def test_without_a_mac_ipxe_is_told_to_ask_again_with_its_mac_and_firmware(lab):
    setup(lab)
    status, text, _ = get(lab, "/boot.ipxe")
    assert status == 200
    # The master's address as iPXE reached it; hyphens, as iPXE reads a colon as a scheme.
    assert (f"chain http://127.0.0.1:{lab.port}/boot.ipxe?mac=${{netX/mac:hexhyp}}"
            "&platform=${platform} || exit 1") in text


def test_a_host_its_group_waits_for_boots_thepusher_with_the_nbi_command_line(lab):
    setup(lab)
    text = boot(lab, MACS[A])
    assert imaging(text), text
    assert (f"kernel /boot/vmlinuz64 initrd=corepure64.gz initrd=thepusher.gz {CMDLINE} "
            f"thePusher=127.0.0.1:{lab.port}\n") in text
    assert "initrd /boot/corepure64.gz\ninitrd /boot/thepusher.gz\nboot\n" in text
    assert "group room waits for it to be imaged" in text
    master = lab.procs[0].output()
    assert f"boot {A} (mac {MACS[A]}, efi, from 127.0.0.99): image: group room waits" in master
    last = lab.clients()[A]["last_boot"]
    assert last["boot"] == "image" and last["platform"] == "efi"


def test_a_done_host_boots_its_disk_uefi_by_exit_bios_by_sanboot(lab):
    setup(lab)
    run_round(lab, [A, B])
    efi = boot(lab, MACS[A], "efi")
    assert not imaging(efi)
    assert efi.endswith("exit 1\n") and "its last round ended DONE" in efi
    bios = boot(lab, MACS[B], "pcbios")
    assert bios.endswith("sanboot --no-describe --drive 0x80 || exit 1\n"), bios


def test_unknown_macs_boot_their_disk_unless_unknown_boot_says_image(lab):
    setup(lab)
    assert not imaging(boot(lab, "52:54:00:99:99:99"))
    assert "unknown MAC: unknown_boot = \"local\"" in lab.procs[0].output()
    lab.kill_master()
    path = lab.images / "thePusher-config.hcl"
    path.write_text('unknown_boot = "image"\n' + path.read_text())
    lab.start_master("--boot", str(lab.root / "nbi"))
    assert imaging(boot(lab, "52:54:00:99:99:99"))


def test_a_host_is_found_by_its_address_when_its_mac_is_not_known(lab):
    setup(lab, hosts=(A,))
    assert imaging(boot(lab, "52:54:00:aa:aa:aa", source=A))


def test_reimage_mark_images_a_done_host_survives_a_restart_and_ends_with_its_round(lab):
    setup(lab, hosts=(A, B, C))
    run_round(lab, [A, B, C])
    assert not imaging(boot(lab, MACS[A]))
    done = lab.cli("reimage", A)
    assert done.returncode == 0, done.stderr
    assert f"{A}: re-image at next boot" in done.stdout
    assert lab.clients()[A]["next_boot"] == "image"
    lab.kill_master()
    lab.start_master("--boot", str(lab.root / "nbi"))
    text = boot(lab, MACS[A])
    assert imaging(text) and "marked: re-image at next boot" in text
    assert not imaging(boot(lab, MACS[B])), "an unmarked DONE host must boot its disk"
    # The marked host alone makes the group's round: the others are DONE and not marked.
    run_round(lab, [A])
    history = lab.status()["history"]
    assert history[-1]["chain"] == [A] and history[-1]["outcome"] == {A: "DONE"}
    assert lab.clients()[A]["next_boot"] == ""
    assert not imaging(boot(lab, MACS[A]))


def test_a_group_mark_reimages_every_host_and_clear_removes_it(lab):
    setup(lab, start="manual")
    text = boot(lab, MACS[A])
    assert not imaging(text) and "starts by hand" in text
    assert lab.cli("reimage", "room").returncode == 0
    assert imaging(boot(lab, MACS[A])) and imaging(boot(lab, MACS[B]))
    done = lab.cli("reimage", "--clear", "room")
    assert done.returncode == 0 and "no mark" in done.stdout
    assert not imaging(boot(lab, MACS[A]))


def test_put_mark_uploads_once_then_the_master_decides_again(lab):
    setup(lab)
    run_round(lab, [A, B])
    assert lab.cli("reimage", "--put", "/dev/nvme0n1", A).returncode == 0
    text = boot(lab, MACS[A])
    assert imaging(text) and f"thePusher=127.0.0.1:{lab.port} putImage=/dev/nvme0n1\n" in text
    assert not imaging(boot(lab, MACS[A]))


@pytest.mark.parametrize("body, status, message", [
    ({"targets": ["nosuch"], "boot": "image"}, 404, "nosuch is neither a group nor a host address"),
    ({"targets": [A], "boot": "wipe"}, 400, 'boot must be "image", "put" or "clear"'),
    ({"targets": [A], "boot": "put", "device": "sda; reboot"}, 400, "put needs a device"),
    ({"targets": [], "boot": "image"}, 400, "targets must be a list"),
])
def test_bad_marks_are_refused_and_change_nothing(lab, body, status, message):
    setup(lab)
    code, answer = lab.call("POST", "/api/next-boot", body)
    assert code == status and message in answer["error"]
    assert all(c["next_boot"] == "" for c in lab.clients().values())


def test_marks_need_the_admin(lab):
    setup(lab, settings='admin_token = "a-long-admin-token"\n')
    code, answer = lab.call("POST", "/api/next-boot", {"targets": ["room"], "boot": "image"}, source=A)
    assert code == 401 and "admin token" in answer["error"], answer
    assert lab.clients()[A]["next_boot"] == ""


def test_boot_files_are_served_with_their_size_and_nothing_outside(lab):
    setup(lab)
    status, text, headers = get(lab, "/boot/vmlinuz64")
    assert status == 200 and text.encode() == KERNEL
    status, text, headers = get(lab, "/boot/vmlinuz64", method="HEAD")
    assert status == 200 and text == "" and headers["Content-Length"] == str(len(KERNEL))
    for path in ("/boot/../images/thePusher-config.hcl", "/boot/%2e%2e/images/disk.img",
                 "/boot/nosuch"):
        assert get(lab, path)[0] == 404, path


@pytest.mark.parametrize("query, message", [
    ("mac=zz", "is not a MAC address"),
])
def test_a_bad_boot_question_gets_a_400(lab, query, message):
    setup(lab)
    status, text, _ = get(lab, f"/boot.ipxe?{query}")
    assert status == 400 and message in json.loads(text)["error"]


def test_a_boot_directory_that_is_not_create_nbis_output_is_refused_at_start(lab, tmp_path):
    write_image(lab.images / "disk.img", 1 * MiB)
    write_config(lab.images, [A])
    with pytest.raises(AssertionError, match="lacks vmlinuz64, corepure64.gz, thepusher.gz, "
                                             "cmdline.txt: give it the directory create-nbi wrote"):
        lab.start_master("--boot", str(tmp_path))


def test_without_boot_dir_a_pending_host_is_told_why_and_boots_its_disk(lab):
    write_image(lab.images / "disk.img", 1 * MiB)
    write_config(lab.images, [A], group=f'  macs = {{ "{A}" = "{MACS[A]}" }}\n')
    lab.start_master()
    text = boot(lab, MACS[A])
    assert not imaging(text) and "no --boot DIR" in text


def test_a_marked_unassigned_host_boots_thepusher_and_a_put_mark_waits_for_boot_files(lab):
    write_image(lab.images / "disk.img", 1 * MiB)
    write_config(lab.images, [A])
    lab.start_master()
    assert lab.call("POST", "/api/register", {"data_port": 9, "mac": MACS[C]}, source=C)[0] == 200
    assert lab.cli("reimage", "--put", "auto", C).returncode == 0
    text = boot(lab, MACS[C])
    assert not imaging(text) and "no --boot DIR" in text
    assert lab.status()["unassigned"][0]["next_boot"] == "put:auto", "the mark was used up"
    lab.kill_master()
    lab.start_master("--boot", str(boot_dir(lab.root)))
    assert "putImage=auto" in boot(lab, MACS[C])


def test_a_machine_the_master_never_met_is_marked_by_its_address(lab):
    setup(lab)
    assert lab.cli("reimage", "--put", "/dev/sda", "127.0.0.77").returncode == 0
    assert "putImage=/dev/sda" in boot(lab, "52:54:00:77:77:77", source="127.0.0.77")


def test_a_master_reached_on_port_80_is_named_with_it(lab):
    setup(lab)
    conn = http.client.HTTPConnection("127.0.0.1", lab.port, timeout=10)
    conn.request("GET", f"/boot.ipxe?mac={MACS[A]}", headers={"Host": "10.9.8.7"})
    text = conn.getresponse().read().decode()
    assert "thePusher=10.9.8.7:80\n" in text, text
