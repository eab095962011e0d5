"""Per-host identity in real rounds (issue 18): real master and clients on 127.0.0.x run
real preImage/postImage scripts that write what they were given to files."""

import os
import time

from tests.conftest import write_config, write_image
from thepusher.client.scripts import personalize_copy, run_script
from thepusher.disk import personalize
from thepusher.plan import Task

MiB = 1 << 20
A, B = "127.0.0.11", "127.0.0.12"

SCRIPT = """<<EOF
echo "#HOSTNAME# #IP# #MAC# #GROUP# #IMAGE# #VAR:room# #MASTER#" > {out}/{stage}-#IP#
env | grep '^THEPUSHER_' | sort > {out}/{stage}-env-#IP#
EOF
"""


def given_env(path) -> list:
    """The THEPUSHER_* lines a script saw, less those it inherited from this test's own
    environment (make test sets THEPUSHER_FAULT_RUNS, say)."""
    return [line for line in path.read_text().splitlines()
            if line.partition("=")[0] not in os.environ]


def test_scripts_get_each_hosts_words_and_thepusher_environment(lab):
    out = lab.root / "out"
    out.mkdir()
    write_image(lab.images / "disk.img", 2 * MiB)
    (lab.images / "room.csv").write_text(f"ip,name,room,seat\n{B},,B13,07\n")
    hosts = f'hosts_file = "room.csv"\nhost "{A}" {{\n  name = "pc-01"\n  vars = {{ room = "B12" }}\n}}\n'
    scripts = (f"preImage = {SCRIPT.format(out=out, stage='pre')}"
               f"postImage = {SCRIPT.format(out=out, stage='post')}")
    write_config(lab.images, [A, B], extra=scripts, settings=hosts)
    lab.start_master()
    clients = [lab.start_client(h) for h in (A, B)]
    for c in clients:
        assert c.wait(60) == 0, lab.dump()
    mac = {h: c["mac"] for h, c in lab.clients().items()}
    assert mac[A] and mac[A] != "00:00:00:00:00:00"  # what the client registered with
    for stage in ("pre", "post"):
        assert (out / f"{stage}-{A}").read_text() == \
            f"pc-01 {A} {mac[A]} room img B12 127.0.0.1\n"
        # no name: the address with dashes
        assert (out / f"{stage}-{B}").read_text() == \
            f"127-0-0-12 {B} {mac[B]} room img B13 127.0.0.1\n"
        assert given_env(out / f"{stage}-env-{A}") == [
            "THEPUSHER_GROUP=room", "THEPUSHER_HOSTNAME=pc-01", "THEPUSHER_IMAGE=img",
            f"THEPUSHER_IP={A}", f"THEPUSHER_MAC={mac[A]}", "THEPUSHER_MASTER=127.0.0.1",
            "THEPUSHER_VAR_ROOM=B12"]
        assert given_env(out / f"{stage}-env-{B}") == [
            "THEPUSHER_GROUP=room", "THEPUSHER_HOSTNAME=127-0-0-12", "THEPUSHER_IMAGE=img",
            f"THEPUSHER_IP={B}", f"THEPUSHER_MAC={mac[B]}", "THEPUSHER_MASTER=127.0.0.1",
            "THEPUSHER_VAR_ROOM=B13", "THEPUSHER_VAR_SEAT=07"]


def test_the_task_says_who_the_host_is_with_the_mac_it_registered_with_else_the_configured(lab):
    write_image(lab.images / "disk.img", MiB)
    (lab.images / "room.csv").write_text(f"ip,name,mac,room\n{A},pc-01,52:54:00:00:00:01,B12\n")
    write_config(lab.images, [A, B], settings='hosts_file = "room.csv"\n')
    lab.start_master()
    for mac, expected in (("", "52:54:00:00:00:01"), ("00:00:00:00:00:00", "52:54:00:00:00:01"),
                          ("52:54:00:99:99:99", "52:54:00:99:99:99")):
        status, answer = lab.call("POST", "/api/register", {"data_port": 9, "mac": mac}, source=A)
        assert status == 200, answer
        task = answer["task"]
        assert (task["hostname"], task["address"], task["mac"], task["vars"],
                task["personalize"]) == ("pc-01", A, expected, {"room": "B12"}, "")
    status, answer = lab.call("POST", "/api/register", {"data_port": 9, "mac": ""}, source=B)
    assert (answer["task"]["hostname"], answer["task"]["mac"], answer["task"]["vars"]) == \
        ("", "", {})


def test_a_script_naming_a_var_the_host_lacks_is_not_run(tmp_path):
    """A host added to a group at run time has no vars: its script fails, unrun."""
    marker = tmp_path / "ran"
    words = {"MASTER": "m", "HOSTNAME": "h", "IP": "10.0.0.5", "MAC": "", "GROUP": "g",
             "IMAGE": "i"}
    error = run_script("preImage", f"touch {marker} #VAR:room#", words)
    assert error == ("preImage uses #VAR:room#, but the master's config gives this host "
                     "(10.0.0.5) no var 'room'; preImage was not run")
    assert not marker.exists()
    assert run_script("preImage", f"touch {marker}", words) is None and marker.exists()


TASK = Task(group="g", image="i", comment="", destination="/dev/sda", type="IMG",
            compression="NONE", verify="write", pre_image="", post_image="",
            hostname="pc-01", personalize="linux")


def test_the_client_keeps_reporting_while_it_personalizes(monkeypatch):
    """Mounting and making SSH keys take seconds: the master must not take them for a
    lost client (report_timeout)."""
    monkeypatch.setattr(personalize, "linux", lambda dest, name: time.sleep(0.5) or
                        [f"hostname {name} on {dest}"])
    beats = []
    assert personalize_copy(TASK, "/dev/sdz", 0.1, lambda: beats.append(1)) == \
        (["hostname pc-01 on /dev/sdz"], None)
    assert len(beats) >= 3


def test_a_personalize_failure_is_the_clients_error(monkeypatch):
    def refuse(dest, name):
        raise personalize.PersonalizeError(f"no Linux root filesystem on {dest}: ...")
    monkeypatch.setattr(personalize, "linux", refuse)
    assert personalize_copy(TASK, "/dev/sdz", 0.1, lambda: None) == \
        ([], "personalize: no Linux root filesystem on /dev/sdz: ...")
