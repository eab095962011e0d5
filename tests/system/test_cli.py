"""The command line as an admin meets it: zipapp, launcher, help, check-config, demo, status."""

import signal
import socket
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import ENV, ROOT, free_port, write_config, write_image
from thepusher.cli import build_parser

SUBCOMMANDS = ["master", "client", "status", "start", "retry", "put-image", "create-nbi",
               "check-config", "demo", "compress"]


@pytest.fixture(scope="module")
def pyz():
    subprocess.run(["make", "-s", "thepusher.pyz"], cwd=ROOT, check=True, capture_output=True)
    return ROOT / "thepusher.pyz"


def run(args, **kw):
    kw.setdefault("env", ENV)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=120, **kw)


@pytest.mark.parametrize("entry", ["thepusher.pyz", "thepusher.py"])
def test_every_subcommand_has_help_from_zipapp_and_launcher(pyz, entry):
    top = run([str(ROOT / entry), "--help"], cwd="/")
    assert top.returncode == 0 and all(s in top.stdout for s in SUBCOMMANDS)
    for sub in SUBCOMMANDS:
        r = run([str(ROOT / entry), sub, "--help"], cwd="/")
        assert r.returncode == 0 and r.stdout.startswith("usage: thepusher " + sub), r.stderr


def test_zipapp_members_are_stored_uncompressed_so_it_loads_without_zlib(pyz):
    with zipfile.ZipFile(pyz) as z:
        names = z.namelist()
        assert "__main__.py" in names and "thepusher/web/index.html" in names
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
        assert not [n for n in names if "__pycache__" in n]


def test_missing_subcommand_or_flag_is_a_usage_error():
    assert run(["-m", "thepusher"]).returncode == 2
    r = run(["-m", "thepusher", "master"])
    assert r.returncode == 2 and "-S/--image-storage" in r.stderr


def test_check_config_prints_groups_in_chain_order(tmp_path):
    write_image(tmp_path / "disk.img", 1024)
    cfg = write_config(tmp_path, ["10.0.0.2", "10.0.0.1"])
    r = run(["-m", "thepusher", "check-config", str(cfg)])
    assert r.returncode == 0, r.stderr
    assert r.stdout.index("10.0.0.2") < r.stdout.index("10.0.0.1")


def test_check_config_lists_each_chain_of_a_group_with_several(tmp_path):
    write_image(tmp_path / "disk.img", 1024)
    cfg = write_config(tmp_path, [f"10.0.0.{i}" for i in range(1, 6)], group="  chains = 2\n")
    r = run(["-m", "thepusher", "check-config", str(cfg)])
    assert r.returncode == 0, r.stderr
    assert "room: image img, 5 hosts in 2 chains" in r.stdout
    chain1, chain2 = r.stdout.split("chain 1:\n")[1].split("chain 2:\n")
    assert [w for w in chain1.split() if w.startswith("10.")] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert [w for w in chain2.split() if w.startswith("10.")] == ["10.0.0.4", "10.0.0.5"]


def test_check_config_reports_every_error_with_file_line_col_and_exit_1(tmp_path):
    cfg = tmp_path / "bad.hcl"
    cfg.write_text(
        'image "a" {\n  filename = "a.img"\n  destination = "/dev/sda"\n  compresion = "BZ2"\n}\n'
        'clientgroup "g" {\n  image = "b"\n  hosts = ["10.0.0.1"]\n}\n'
        'clientgroup "h" {\n  image = "a"\n  hosts = ["10.0.0.1"]\n}\n'
    )
    r = run(["-m", "thepusher", "check-config", str(cfg)])
    assert r.returncode == 1
    assert f"{cfg}:4:3:" in r.stderr and "did you mean 'compression'" in r.stderr
    assert f"{cfg}:7:" in r.stderr and "image 'b' is not defined" in r.stderr
    assert f"{cfg}:12:" in r.stderr and "10.0.0.1" in r.stderr


def test_check_config_names_missing_image_file_and_exits_1(tmp_path):
    cfg = write_config(tmp_path, ["10.0.0.1"])
    r = run(["-m", "thepusher", "check-config", str(cfg)])
    assert r.returncode == 1 and "disk.img does not exist" in r.stderr


def test_master_with_bad_config_exits_1_listing_errors(tmp_path):
    (tmp_path / "thePusher-config.hcl").write_text('image "x" {\n  filename = "a/b"\n}\n')
    r = run(["-m", "thepusher", "master", "-S", str(tmp_path), "-l", f"127.0.0.1:{free_port()}"])
    assert r.returncode == 1
    assert "thePusher-config.hcl:2:" in r.stderr and "missing required key 'destination'" in r.stderr


def test_master_without_image_dir_says_so(tmp_path):
    r = run(["-m", "thepusher", "master", "-S", str(tmp_path / "nope")])
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_master_given_a_file_for_its_image_dir_says_it_is_not_a_directory(tmp_path):
    (tmp_path / "disk.img").write_bytes(b"x")
    r = run(["-m", "thepusher", "master", "-S", str(tmp_path / "disk.img")])
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"image directory {tmp_path / 'disk.img'} is not a directory" in r.stderr


def test_master_on_a_port_in_use_names_the_address_and_exits_1(tmp_path):
    write_image(tmp_path / "disk.img", 1 << 16)
    write_config(tmp_path, ["127.0.0.11"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run(["-m", "thepusher", "master", "-S", str(tmp_path), "-l", f"127.0.0.1:{port}"])
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in r.stderr


def test_master_start_line_counts_images_and_groups_in_words(lab):
    write_image(lab.images / "disk.img", 1 << 16)
    write_config(lab.images, ["127.0.0.11"])
    master = lab.start_master()
    lab.wait_for(lambda: "master on http://" in master.output(), 10, "the start line")
    assert ": 1 image, 1 group)" in master.output()


@pytest.mark.parametrize("argv, verbose", [
    (["status", "-p", "m:1"], False),
    (["-v", "status", "-p", "m:1"], True),
    (["status", "-v", "-p", "m:1"], True),
    (["status", "-p", "m:1", "--verbose"], True),
    (["check-config", "x.hcl", "-v"], True),
])
def test_verbose_is_taken_before_or_after_the_command(argv, verbose):
    assert build_parser().parse_args(argv).verbose is verbose


def test_demo_runs_a_round_and_verifies_every_copy(pyz, tmp_path):
    r = run([str(pyz), "demo", "--clients", "2", "--size", "8M", "--port", str(free_port()),
             "--dir", str(tmp_path)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "every copy verified" in r.stdout
    assert r.stdout.count("copy identical") == 2


def test_status_prints_each_client_with_state(lab):
    write_image(lab.images / "disk.img", 1 << 20)
    write_config(lab.images, ["127.0.0.11", "127.0.0.12"])
    lab.start_master()
    c = lab.start_client("127.0.0.11")
    lab.wait_for(lambda: lab.clients()["127.0.0.11"]["state"] == "WAIT", 20, "WAIT")
    r = run(["-m", "thepusher", "status", "-p", f"127.0.0.1:{lab.port}"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any("127.0.0.11" in line and "WAIT" in line for line in lines)
    assert any("127.0.0.12" in line and "NONE" in line for line in lines)
    c.stop()


@pytest.mark.parametrize("args, message", [
    (["status", "-p", "127.0.0.1:abc"], "argument -p/--master: '127.0.0.1:abc': port 'abc' is not a number"),
    (["status", "-p", "127.0.0.1:8080/x"], "argument -p/--master: '127.0.0.1:8080/x': port '8080/x' is not a number"),
    (["status", "-p", "127.0.0.1:0"], "port 0 is not a TCP port (1 to 65535)"),
    (["status", "-p", ":8080"], "argument -p/--master: ':8080': no host before the port"),
    (["start", "room", "-p", "[::1]:x"], "argument -p/--master: '[::1]:x': port 'x' is not a number"),
    (["put-image", "-i", "/dev/null", "-p", "m:99999"], "port 99999 is not a TCP port (1 to 65535)"),
    (["client", "-p", "127.0.0.1:1", "--data-port", "99999"],
     "argument --data-port: 99999 is not a TCP port (0 to 65535)"),
    (["client", "-p", "127.0.0.1:1", "--data-port", "-1"],
     "argument --data-port: -1 is not a TCP port (0 to 65535)"),
    (["demo", "--port", "99999"], "argument --port: 99999 is not a TCP port (0 to 65535)"),
])
def test_bad_address_or_port_is_one_usage_line_never_a_traceback(args, message):
    r = run(["-m", "thepusher", *args])
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and message in last and last.startswith("thepusher "), r.stderr
    assert "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("form", ["127.0.0.1:{port}/", "http://127.0.0.1:{port}/", "http://127.0.0.1:{port}"])
def test_status_takes_the_url_the_master_prints(lab, form):
    write_image(lab.images / "disk.img", 1 << 20)
    write_config(lab.images, ["127.0.0.11"])
    lab.start_master()
    r = run(["-m", "thepusher", "status", "-p", form.format(port=lab.port)])
    assert r.returncode == 0 and "127.0.0.11" in r.stdout, r.stderr


def test_status_with_unreachable_master_exits_1():
    r = run(["-m", "thepusher", "status", "-p", f"127.0.0.1:{free_port()}"])
    assert r.returncode == 1 and "master 127.0.0.1" in r.stderr


@pytest.mark.parametrize("broken, code", [
    ((), 0),
    (("127.0.0.12",), 2),
    (("127.0.0.11", "127.0.0.12"), 1),
], ids=["all-done", "some-failed", "all-failed"])
def test_status_exit_code_is_0_all_done_2_some_failed_1_all_failed(lab, broken, code):
    hosts = ["127.0.0.11", "127.0.0.12"]
    write_image(lab.images / "disk.img", 1 << 20)
    write_config(lab.images, hosts)
    lab.start_master()
    assert lab.cli("status").returncode == 0  # no round has finished: nothing failed yet
    clients = [
        lab.start_client(h, str(lab.disks / "missing" / h) if h in broken else None)
        for h in hosts
    ]
    for c in clients:
        c.wait(30)
    lab.wait_for(lambda: lab.status()["history"], 20, "the round to finish")
    r = lab.cli("status")
    assert r.returncode == code, r.stdout + r.stderr
    for h in broken:
        assert any(h in line and "ERROR" in line for line in r.stdout.splitlines())


def test_status_table_shows_group_totals_eta_and_a_held_group():
    from thepusher.client.status_table import render

    client = {"host": "10.0.0.11", "position": 1, "state": "BUSY", "bytes_done": 1 << 30,
              "bytes_total": 4 << 30, "rate": 100e6, "eta_seconds": 95.0, "error": "", "mac": ""}
    status = {"images": [], "unassigned": [], "groups": [{
        "name": "room", "image": "img", "held": True, "clients": [client],
        "round": {"number": 2, "phase": "streaming", "error": "", "left_out": []},
        "totals": {"bytes_done": 1 << 30, "bytes_total": 4 << 30, "rate": 100e6, "eta_seconds": 95.0},
    }]}
    text = render(status)
    assert "  1.0 GiB of 4.0 GiB, 100.0 MB/s, ETA 1m35s" in text
    assert "held after an abort" in text
    assert "100.0 MB/s  1m35s" in text


def test_status_table_headers_stand_over_their_columns_whatever_the_state_text():
    from thepusher.client.status_table import render

    def client(position, state, verified_by=""):
        return {"host": f"10.0.0.{10 + position}", "position": position, "state": state,
                "bytes_done": 3 << 30, "bytes_total": 4 << 30, "rate": 0, "eta_seconds": None,
                "error": "", "mac": "", "verified_by": verified_by}

    status = {"images": [], "unassigned": [], "groups": [{
        "name": "room", "image": "img", "held": False, "totals": None,
        "clients": [client(1, "DONE", "readback"), client(2, "BUSY")],
        "round": {"number": 1, "phase": "finished", "error": "", "left_out": []},
    }]}
    header, *rows = [line for line in render(status).splitlines() if line.startswith("  ")]
    end = header.index("progress") + len("progress")
    for row in rows:
        assert row[end - 1] == "%" and row[end:end + 1] in (" ", ""), (header, row)
    assert header.index("state") == rows[0].index("DONE")


def test_make_demo_passes_demo_args_so_the_page_can_stay_up():
    r = subprocess.run(["make", "-n", "demo", "DEMO_ARGS=--keep"], cwd=ROOT, capture_output=True,
                       text=True, check=True)
    assert "thepusher.pyz demo --clients 3 --size 256M --keep" in r.stdout


def test_demo_on_a_taken_port_says_so_exits_1_and_leaves_no_work_dir(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run(["-m", "thepusher", "demo", "--clients", "1", "--size", "1M", "--port", str(port)],
                env=dict(ENV, TMPDIR=str(tmp_path)))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_demo_interrupted_mid_round_exits_130_and_removes_its_work_dir(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "thepusher", "demo", "--clients", "2", "--size", "64M", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(ENV, TMPDIR=str(tmp_path)))
    for line in proc.stdout:  # the clients are started right after this line
        if "demo: master on" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    assert "interrupted" in err
    assert list(tmp_path.iterdir()) == []
    left = subprocess.run(["pgrep", "-af", str(tmp_path)], capture_output=True, text=True).stdout
    subprocess.run(["pkill", "-f", str(tmp_path)])  # a failed run leaves nothing running either
    assert left == "", f"processes of the demo still running: {left}"


def test_every_command_has_a_description_and_every_option_its_help_and_default():
    import argparse

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, command in commands.choices.items():
        if not command.description:
            missing.append(f"{name}: no description")
        for action in command._actions:
            if isinstance(action, argparse._HelpAction) or action.dest == "verbose":
                continue
            what = f"{name} {'/'.join(action.option_strings) or action.dest}"
            if not action.help:
                missing.append(f"{what}: no help")
            elif (action.option_strings and action.default not in (None, False, "")
                  and "default" not in action.help):
                missing.append(f"{what}: its default {action.default!r} is not in its help")
    assert missing == []
