"""`personalize = "linux"` on real ext4 filesystems made with `mkfs.ext4 -d`, inside disk
images partitioned with sfdisk (GPT and MBR): the written system gets the host's name
and no clone's machine-id or SSH host keys; a disk without a Linux root ends ERROR.
Needs root (mount), as CI has."""

import json
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import write_config
from thepusher.disk import partitions, personalize
from thepusher.disk.personalize import PersonalizeError

MiB = 1 << 20
A, B = "127.0.0.11", "127.0.0.12"
OLD_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nthe golden machine's\n"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("mkfs.ext4", "sfdisk", "mount")),
    reason="needs root, mkfs.ext4 (e2fsprogs) and sfdisk (fdisk)")


def golden_tree(root: Path, systemd: bool = True) -> Path:
    """The /etc of the machine the image was taken from."""
    etc = root / "etc"
    (etc / "ssh").mkdir(parents=True)
    (etc / "hostname").write_text("golden\n")
    (etc / "hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\tgolden.lab golden\n"
                               "::1\tlocalhost ip6-localhost\n")
    (etc / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (etc / "os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n')
    (etc / "ssh/ssh_host_ed25519_key").write_text(OLD_KEY)
    (etc / "ssh/ssh_host_ed25519_key.pub").write_text("ssh-ed25519 AAAAgolden root@golden\n")
    (etc / "ssh/sshd_config").write_text("PermitRootLogin no\n")
    if systemd:
        (etc / "systemd/system").mkdir(parents=True)
    (root / "var/lib/dbus").mkdir(parents=True)
    (root / "var/lib/dbus/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    return root


def ext4(path: Path, size: int, tree: Path = None) -> bytes:
    args = ["mkfs.ext4", "-q", "-F", "-E", "root_owner=0:0"]
    subprocess.run(args + (["-d", str(tree)] if tree else []) + [str(path), str(size // 1024)],
                   check=True, capture_output=True)
    return path.read_bytes()


def disk_image(path: Path, label: str, filesystems) -> Path:
    """A disk of 1 MiB + the filesystems, partitioned with sfdisk: `label` is gpt, dos or
    dos-logical (the last filesystem in a logical partition); each filesystem is
    (size, bytes or None)."""
    size = MiB + sum(s for s, _ in filesystems) + MiB
    with open(path, "wb") as f:
        f.truncate(size)
    lines = [f"label: {'gpt' if label == 'gpt' else 'dos'}"]
    start = MiB // 512
    for i, (fs_size, _) in enumerate(filesystems):
        if label == "dos-logical" and i == len(filesystems) - 1:
            lines.append(f"start={start}, size={(fs_size + MiB) // 512}, type=5")
            start += MiB // 512
            lines.append(f"start={start}, size={fs_size // 512}, type=83")
        else:
            lines.append(f"start={start}, size={fs_size // 512}, type=83"
                         if label != "gpt" else f"start={start}, size={fs_size // 512}")
        start += fs_size // 512
    if label == "dos-logical":
        size += MiB
        with open(path, "r+b") as f:
            f.truncate(size)
    subprocess.run(["sfdisk", "-q", str(path)], input="\n".join(lines) + "\n", text=True,
                   check=True, capture_output=True)
    with open(path, "r+b") as f:
        fd = f.fileno()
        _, parts = partitions.read_table(fd)
        for part, (_, data) in zip(parts, filesystems):
            if data:
                os.pwrite(fd, data, part.start)
    return path


def linux_disk(tmp: Path, label: str = "gpt", systemd: bool = True) -> Path:
    """A 'boot' ext4 without /etc first, then the root: personalize must pick the root."""
    data = ext4(tmp / "boot.fs", 4 * MiB)
    root = ext4(tmp / "root.fs", 16 * MiB, golden_tree(tmp / "tree", systemd))
    return disk_image(tmp / "disk.img", label, [(4 * MiB, data), (16 * MiB, root)])


@contextmanager
def mounted(device: Path, number: int):
    """The test's own look at partition `number`, read-only."""
    with open(device, "rb") as f:
        part = next(p for p in partitions.read_table(f.fileno())[1] if p.number == number)
    point = tempfile.mkdtemp(prefix="thepusher-test-")
    subprocess.run(["mount", "-o", f"ro,loop,offset={part.start},sizelimit={part.size}",
                    str(device), point], check=True)
    try:
        yield Path(point)
    finally:
        subprocess.run(["umount", point], check=True)
        os.rmdir(point)


def our_mounts() -> list:
    return [line for line in Path("/proc/mounts").read_text().splitlines()
            if "thepusher-root-" in line]


def test_partition_tables_are_read_as_sfdisk_wrote_them(tmp_path):
    for label, numbers in (("gpt", [1, 2]), ("dos", [1, 2]), ("dos-logical", [1, 5])):
        disk = disk_image(tmp_path / f"{label}.img", label, [(4 * MiB, None), (8 * MiB, None)])
        dump = subprocess.run(["sfdisk", "-J", str(disk)], capture_output=True, text=True,
                              check=True).stdout
        with open(disk, "rb") as f:
            scheme, parts = partitions.read_table(f.fileno())
        assert scheme == ("GPT" if label == "gpt" else "MBR")
        assert [p.number for p in parts] == numbers
        table = {int(p["node"].rsplit("img", 1)[1]): p
                 for p in json.loads(dump)["partitiontable"]["partitions"]}
        for p in parts:
            assert (p.start, p.size) == (table[p.number]["start"] * 512,
                                         table[p.number]["size"] * 512), label


def test_personalize_makes_the_root_of_a_gpt_disk_this_host(tmp_path):
    disk = linux_disk(tmp_path)
    keygen = shutil.which("ssh-keygen") or pytest.skip("needs ssh-keygen (openssh-client)")
    done = personalize.linux(str(disk), "pc-01", keygen)
    assert done[:6] == ["root filesystem on partition 2 (GPT)", "hostname pc-01 (was golden)",
                        "/etc/hosts: 127.0.1.1 pc-01.lab pc-01", "machine-id emptied",
                        "/var/lib/dbus/machine-id removed", "1 SSH host key removed"]
    assert done[6].endswith("new SSH host keys made (ssh-keygen -A)")
    assert not our_mounts()
    with mounted(disk, 2) as root:
        assert (root / "etc/hostname").read_text() == "pc-01\n"
        assert (root / "etc/hosts").read_text() == (
            "127.0.0.1\tlocalhost\n127.0.1.1\tpc-01.lab pc-01\n::1\tlocalhost ip6-localhost\n")
        assert (root / "etc/machine-id").read_text() == ""
        assert not (root / "var/lib/dbus/machine-id").exists()
        key = (root / "etc/ssh/ssh_host_ed25519_key").read_text()
        assert key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----") and key != OLD_KEY
        assert (root / "etc/ssh/ssh_host_ed25519_key").stat().st_mode & 0o077 == 0
        assert "AAAAgolden" not in (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text()
        assert (root / "etc/ssh/sshd_config").read_text() == "PermitRootLogin no\n"
    with mounted(disk, 1) as boot:  # the first ext4 was looked at, not changed
        assert sorted(os.listdir(boot)) == ["lost+found"]


def test_without_ssh_keygen_a_first_boot_unit_makes_the_keys(tmp_path):
    disk = linux_disk(tmp_path, label="dos-logical")
    done = personalize.linux(str(disk), "pc-02", keygen="")
    assert done[0] == "root filesystem on partition 5 (MBR)"
    assert done[-2:] == ["1 SSH host key removed",
                         "new SSH host keys at first boot (thepusher-ssh-keygen.service)"]
    with mounted(disk, 5) as root:
        assert not list((root / "etc/ssh").glob("ssh_host_*"))
        unit = root / "etc/systemd/system/thepusher-ssh-keygen.service"
        assert "ExecStart=/usr/bin/ssh-keygen -A" in unit.read_text()
        assert "Before=ssh.service" in unit.read_text()
        link = root / "etc/systemd/system/multi-user.target.wants/thepusher-ssh-keygen.service"
        assert os.readlink(link) == "/etc/systemd/system/thepusher-ssh-keygen.service"


def test_keys_are_kept_when_nothing_could_make_new_ones(tmp_path):
    disk = linux_disk(tmp_path, systemd=False)
    with pytest.raises(PersonalizeError, match="no ssh-keygen on this client, no systemd in "
                                               "the image"):
        personalize.linux(str(disk), "pc-03", keygen="")
    assert not our_mounts()
    with mounted(disk, 2) as root:
        assert (root / "etc/ssh/ssh_host_ed25519_key").read_text() == OLD_KEY


def test_a_partition_image_is_personalized_as_a_whole(tmp_path):
    fs = tmp_path / "root.fs"
    ext4(fs, 16 * MiB, golden_tree(tmp_path / "tree"))
    done = personalize.linux(str(fs), "pc-04", keygen="")
    assert done[:2] == ["root filesystem on the whole device (no partition table)",
                        "hostname pc-04 (was golden)"]


def test_a_symlink_in_the_image_is_not_written_through(tmp_path):
    tree = golden_tree(tmp_path / "tree")
    (tree / "etc/hostname").unlink()
    outside = tmp_path / "client-hostname"
    outside.write_text("the client's own\n")
    (tree / "etc/hostname").symlink_to(outside)
    fs = tmp_path / "root.fs"
    ext4(fs, 16 * MiB, tree)
    with pytest.raises(PersonalizeError, match=r"/etc/hostname in the image goes through a "
                                               r"symlink \(/etc/hostname\): not followed"):
        personalize.linux(str(fs), "pc-05", keygen="")
    assert outside.read_text() == "the client's own\n"


@pytest.mark.parametrize("name, disk, message", [
    ("pc-06", "no-root", "no Linux root filesystem on {disk}: ext filesystems on partition 1 "
                         "(GPT), none with /etc/os-release or /etc/hostname"),
    ("pc-06", "random", "no Linux root filesystem on {disk}: no ext2/3/4 filesystem "
                        "(no partition table)"),
    ("", "no-root", "personalize needs this host's name, and the master's config gives it "
                    "none (a host block or the hosts file)"),
])
def test_personalize_fails_clearly_without_a_root_or_a_name(tmp_path, name, disk, message):
    if disk == "random":
        path = tmp_path / "random.img"
        path.write_bytes(os.urandom(4 * MiB))
    else:
        path = disk_image(tmp_path / "data.img", "gpt",
                          [(8 * MiB, ext4(tmp_path / "data.fs", 8 * MiB))])
    with pytest.raises(PersonalizeError) as info:
        personalize.linux(str(path), name, keygen="")
    assert str(info.value) == message.format(disk=path)
    assert not our_mounts()


# -- in a real round -----------------------------------------------------------------


def round_config(lab, hosts, filename):
    names = "".join(f'host "{h}" {{ name = "pc-{i:02}" }}\n' for i, h in enumerate(hosts, 1))
    write_config(lab.images, hosts, filename=filename, settings=names,
                 extra='  personalize = "linux"\n  verify = "readback"\n')


def test_a_round_personalizes_each_copy_and_the_master_shows_what_changed(lab, loop_devices):
    disk = linux_disk(lab.root)
    shutil.copy(disk, lab.images / "linux.img")
    device, _ = loop_devices(disk.stat().st_size + 4 * MiB)
    round_config(lab, [A, B], "linux.img")
    lab.start_master()
    clients = [lab.start_client(A, device), lab.start_client(B)]
    for c in clients:
        assert c.wait(90) == 0, lab.dump()
    status = lab.clients()
    for host, name, dest in ((A, "pc-01", Path(device)), (B, "pc-02", lab.disks / f"{B}.img")):
        assert status[host]["state"] == "DONE"
        assert status[host]["personalized"][:4] == [
            "root filesystem on partition 2 (GPT)", f"hostname {name} (was golden)",
            f"/etc/hosts: 127.0.1.1 {name}.lab {name}", "machine-id emptied"]
        with mounted(dest, 2) as root:
            assert (root / "etc/hostname").read_text() == f"{name}\n"
            assert (root / "etc/machine-id").read_text() == ""
            assert (root / "etc/ssh/ssh_host_ed25519_key").read_text() != OLD_KEY
    assert "personalized as pc-01" in clients[0].output()
    assert not our_mounts()


def test_a_round_onto_a_disk_without_a_linux_root_ends_error_with_the_reason(lab):
    data = disk_image(lab.root / "data.img", "gpt",
                      [(8 * MiB, ext4(lab.root / "data.fs", 8 * MiB))])
    shutil.copy(data, lab.images / "data.img")
    round_config(lab, [A], "data.img")
    lab.start_master()
    client = lab.start_client(A)
    assert client.wait(60) == 1, lab.dump()
    reason = (f"personalize: no Linux root filesystem on {lab.disks / (A + '.img')}: ext "
              f"filesystems on partition 1 (GPT), none with /etc/os-release or /etc/hostname")
    assert lab.clients()[A]["state"] == "ERROR"
    assert lab.clients()[A]["error"] == reason
    said = " ".join(client.output().split())  # the banner wraps its lines
    assert f"image img was written to {lab.disks / (A + '.img')} and verified, but this " \
           f"machine is not itself" in said
    assert not our_mounts()
