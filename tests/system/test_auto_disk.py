"""`destination = "auto"` on real loop devices, with a real master and client: the
client lists its disks when it registers, chooses the one disk the hints leave, and
with two it writes nothing and the master shows why. Also `put-image -i auto` and the
master's checks of a client's disk list.

The hints' sizes (12.5 to 14.5 MiB) hold no loop device another test makes (1, 4, 8,
12, 32 MiB), so that a `path = "/dev/loop*"` hint finds only this test's devices even
while other tests, or another test run, hold loop devices of their own."""

import subprocess

import pytest

from tests.conftest import ENV, Proc, thepusher, write_image
from thepusher.client.choose import NoDisk, choose
from thepusher.config.model import DiskHints
from thepusher.disk.inventory import inventory

MiB = 1 << 20
A = "127.0.0.11"
IMAGE = 4 * MiB


def config(lab, hints: str = "", destination: str = "auto") -> None:
    disk = f"  disk {{\n{hints}  }}\n" if hints else ""
    (lab.images / "thePusher-config.hcl").write_text(
        f'image "img" {{\n  filename = "disk.img"\n  destination = "{destination}"\n{disk}}}\n'
        f'clientgroup "room" {{\n  image = "img"\n  hosts = ["{A}"]\n}}\n')


def start_client(lab) -> Proc:
    """A client with no --destination: it writes where the config's destination says."""
    p = Proc(f"client-{A}", ["-v", "client", "-p", f"127.0.0.1:{lab.port}", "--bind", A,
                             "--data-port", "0"], lab.logs)
    lab.procs.append(p)
    return p


def untouched(backing) -> bool:
    """The loop_devices fixture fills each backing file with 0xff: still all of it?"""
    return backing.read_bytes() == b"\xff" * backing.stat().st_size


def auto_round(lab, max_size: str, exit_code: int) -> Proc:
    """An auto round on the loop devices of 12.5 MiB to `max_size`; the client, ended."""
    write_image(lab.images / "disk.img", IMAGE)
    config(lab, f'    path = "/dev/loop*"\n    min_size = "12.5M"\n    max_size = "{max_size}"\n')
    lab.start_master()
    client = start_client(lab)
    assert client.wait(60) == exit_code, lab.dump()
    return client


def test_auto_writes_the_one_loop_device_the_hints_match_and_ends_done(lab, loop_devices):
    small, small_backing = loop_devices(9 * MiB)
    target, target_backing = loop_devices(13 * MiB)
    large, large_backing = loop_devices(20 * MiB)
    client = auto_round(lab, "13.5M", 0)
    me = lab.clients()[A]
    assert (me["state"], me["destination"], me["disk_size"]) == ("DONE", target, 13 * MiB)
    assert target_backing.read_bytes()[:IMAGE] == (lab.images / "disk.img").read_bytes()
    assert untouched(small_backing) and untouched(large_backing)
    assert f'destination "auto": {target} (13.0 MiB, loop) is the one disk that fits' in client.output()
    # /api/status shows what the client listed when it registered
    listed = {d["path"]: d for d in me["disks"]}
    for device, size in ((small, 9 * MiB), (target, 13 * MiB), (large, 20 * MiB)):
        assert listed[device]["size"] == size
        assert (listed[device]["transport"], listed[device]["boot"]) == ("loop", False)
        assert listed[device]["logical_sector_size"] == 512


def test_hints_matching_two_loop_devices_end_error_before_the_round_with_both_listed(
        lab, loop_devices):
    first, first_backing = loop_devices(13 * MiB)
    second, second_backing = loop_devices(14 * MiB)
    client = auto_round(lab, "14.5M", 1)
    me = lab.clients()[A]
    assert me["state"] == "ERROR"
    assert me["error"].startswith('destination "auto": 2 disks fit, so none is written: ')
    assert f"{first} (13.0 MiB, loop)" in me["error"] and f"{second} (14.0 MiB, loop)" in me["error"]
    assert "Add a hint to the image's disk block that only one of them matches" in me["error"]
    assert lab.round() is None  # no round ever started
    assert untouched(first_backing) and untouched(second_backing)
    assert "Traceback" not in client.output()


def test_register_refuses_a_disk_list_it_cannot_show_saying_what_is_wrong(lab):
    (lab.images / "disk.img").write_bytes(b"x")
    config(lab, destination="/dev/null")
    lab.start_master()
    disk = {"path": "/dev/sda", "size": 500107862016, "model": "WDC", "future_field": 1}
    for disks, message in [
        ("sda", "field 'disks' must be a list of disk objects, got str"),
        ([disk, "sdb"], "field 'disks', disk 2 must be an object, got str"),
        ([{"path": "/dev/sda"}], "field 'disks', disk 1: missing 'size'"),
        ([dict(disk, size="500G")], "field 'disks', disk 1: 'size' must be int, got str"),
        ([dict(disk, size=-1)], "field 'disks', disk 1: 'size' is out of range"),
        ([dict(disk, rotational=1)], "field 'disks', disk 1: 'rotational' must be bool, got int"),
        ([dict(disk, model="x" * 201)], "field 'disks', disk 1: 'model' is longer than 200 characters"),
        ([disk] * 65, "field 'disks' lists 65 disks; at most 64"),
    ]:
        status, answer = lab.call("POST", "/api/register", {"data_port": 9, "disks": disks}, A)
        assert (status, answer.get("error")) == (400, message)
    status, _ = lab.call("POST", "/api/register", {"data_port": 9, "disks": [disk]}, A)
    assert status == 200
    assert lab.clients()[A]["disks"] == [{
        "path": "/dev/sda", "size": 500107862016, "logical_sector_size": 512,
        "physical_sector_size": 512, "model": "WDC", "serial": "", "wwn": "", "rotational": False,
        "removable": False, "transport": "", "read_only": False, "boot": False, "mounted": ""}]


def test_put_image_auto_names_every_disk_and_uploads_nothing_when_none_fits(lab):
    try:
        choose(inventory(), DiskHints())
    except NoDisk:
        pass
    else:
        pytest.skip("this machine has a disk -i auto would upload")
    (lab.images / "disk.img").write_bytes(b"x")
    config(lab)
    lab.start_master()
    before = sorted(p.name for p in lab.images.iterdir())
    r = subprocess.run(thepusher("put-image", "-i", "auto", "-p", f"127.0.0.1:{lab.port}"),
                       env=ENV, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("thepusher put-image: -i auto: "), r.stderr
    assert "Give -i the disk to upload" in lines[0]
    assert sorted(p.name for p in lab.images.iterdir()) == before


def test_a_client_too_old_for_auto_gets_no_task_and_is_error_saying_why(lab):
    (lab.images / "disk.img").write_bytes(b"x")
    config(lab)
    lab.start_master()
    status, answer = lab.call("POST", "/api/register", {"data_port": 9}, A)  # no `disks`
    assert (status, answer["task"]) == (200, None)
    me = lab.clients()[A]
    assert me["state"] == "ERROR"
    assert me["error"].startswith("its client lists no disks, so it is older than "
                                  'destination = "auto"')
    status, answer = lab.call("POST", "/api/register", {"data_port": 9, "disks": []}, A)
    assert (status, answer["task"]["destination"]) == (200, "auto")
    assert lab.clients()[A]["state"] == "NONE"


def test_a_hosts_own_disk_hints_reach_its_task_over_its_images_and_only_its(lab):
    (lab.images / "disk.img").write_bytes(b"x")
    B = "127.0.0.12"
    (lab.images / "thePusher-config.hcl").write_text(
        'image "img" {\n  filename = "disk.img"\n  destination = "auto"\n'
        '  disk {\n    min_size = "50G"\n    rotational = false\n  }\n}\n'
        f'clientgroup "room" {{\n  image = "img"\n  hosts = ["{A}", "{B}"]\n}}\n'
        f'host "{A}" {{\n  disk {{\n    serial = "S4X*"\n    min_size = "100G"\n  }}\n}}\n')
    lab.start_master()
    tasks = {h: lab.call("POST", "/api/register", {"data_port": 9, "disks": []}, h)[1]["task"]
             for h in (A, B)}
    assert tasks[A]["disk"] == {"min_size": 100 << 30, "serial": "S4X*", "rotational": False}
    assert tasks[B]["disk"] == {"min_size": 50 << 30, "rotational": False}
