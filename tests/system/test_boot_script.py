"""The netboot boot script (tinycore/thepusher-boot.sh) reading a real /proc/cmdline.

Each case runs the script in its own mount and network namespace: a file bind-mounted
over /proc/cmdline stands for the kernel command line, a tmpfs on /opt holds what the
overlay puts there, and a namespace with only a default route via lo stands for a
network whose DHCP lease has arrived. The thepusher.pyz in /opt is a stand-in zipapp that
prints the arguments it was started with, so the test sees what the script ran.
"""

import os
import shutil
import subprocess
import sys
import zipapp
from pathlib import Path
from typing import Optional

import pytest

from tests.conftest import ROOT
from thepusher.netboot import overlay

SCRIPT = ROOT / "tinycore" / "thepusher-boot.sh"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")

STAND_IN = """\
import os, sys
print("RAN:", " ".join(sys.argv[1:]), flush=True)
if "THEPUSHER_SECRET" in os.environ:
    print("ENV SECRET:", repr(os.environ["THEPUSHER_SECRET"]), flush=True)
if os.environ.get("THEPUSHER_UPLOAD_TOKEN"):
    print("ENV UPLOAD TOKEN:", repr(os.environ["THEPUSHER_UPLOAD_TOKEN"]), flush=True)
sys.exit(int(open("/opt/exit-code").read()) if __import__("os").path.exists("/opt/exit-code") else 0)
"""


def boot(tmp_path: Path, cmdline: str, baked: Optional[str] = None, pyz: bool = True,
         exit_code: int = 0, env_file: Optional[bytes] = None) -> subprocess.CompletedProcess:
    opt = tmp_path / "opt"
    opt.mkdir()
    if pyz:
        src = tmp_path / "app"
        src.mkdir()
        (src / "__main__.py").write_text(STAND_IN)
        zipapp.create_archive(src, opt / "thepusher.pyz")
    if baked:
        (opt / "thepusher.env").write_text(f"THEPUSHER_MASTER={baked}\n")
    if env_file is not None:  # what create-nbi writes
        (opt / "thepusher.env").write_bytes(env_file)
    if exit_code:
        (opt / "exit-code").write_text(str(exit_code))
    shutil.copy(SCRIPT, opt / "thepusher-boot.sh")
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").symlink_to(sys.executable)
    inner = (f"ip link set lo up && ip route add default dev lo && "
             f"mount --bind {tmp_path / 'cmdline'} /proc/cmdline && "
             f"mount --bind {opt} /opt && exec sh /opt/thepusher-boot.sh")
    env = {"PATH": f"{bindir}:/usr/sbin:/usr/bin:/sbin:/bin"}
    return subprocess.run(["unshare", "--mount", "--net", "sh", "-c", inner], env=env,
                          capture_output=True, text=True, timeout=60)


def test_without_any_master_it_refuses_and_says_how_to_give_one(tmp_path):
    done = boot(tmp_path, "loglevel=3 base norestore noswap")
    assert done.returncode == 1
    assert "NO MASTER KNOWN" in done.stdout
    assert "thePusher=MASTER_IP" in done.stdout
    assert "RAN:" not in done.stdout


def test_baked_in_master_is_used_when_the_command_line_names_none(tmp_path):
    done = boot(tmp_path, "base norestore noswap", baked="10.9.9.9")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "RAN: client -p 10.9.9.9" in done.stdout


def test_it_names_the_python_it_runs_the_client_with(tmp_path):
    done = boot(tmp_path, "thePusher=10.0.0.1")
    version = ".".join(map(str, sys.version_info[:3]))
    assert f"thepusher: python: {tmp_path / 'bin' / 'python3'} (Python {version})" in done.stdout


def test_command_line_master_wins_over_the_baked_one_and_the_last_word_wins(tmp_path):
    done = boot(tmp_path, "thePusher=10.0.0.1 base thePusher=10.0.0.2:8090", baked="10.9.9.9")
    assert "RAN: client -p 10.0.0.2:8090" in done.stdout


def test_put_image_uploads_the_named_device_instead_of_receiving(tmp_path):
    done = boot(tmp_path, "thePusher=10.0.0.1 putImage=/dev/vda")
    assert done.returncode == 0
    assert "RAN: put-image -p 10.0.0.1 -i /dev/vda" in done.stdout
    assert "DONE - /dev/vda is stored on 10.0.0.1" in done.stdout
    assert "RAN: client" not in done.stdout


def test_put_image_options_from_the_command_line_become_put_image_flags(tmp_path):
    done = boot(tmp_path, "thePusher=10.0.0.1 putImage=/dev/vda putImageOptions=force,whole")
    assert done.returncode == 0
    assert "RAN: put-image -p 10.0.0.1 -i /dev/vda --force --whole" in done.stdout


def test_an_unknown_put_image_option_stops_before_anything_runs(tmp_path):
    done = boot(tmp_path, "thePusher=10.0.0.1 putImage=/dev/vda putImageOptions=force,all", exit_code=1)
    assert done.returncode == 1
    assert "putImageOptions=force,all: 'all' is not force or whole" in done.stdout
    assert "RAN:" not in done.stdout


def test_put_image_auto_leaves_the_choice_to_put_image_and_says_so(tmp_path):
    done = boot(tmp_path, "thePusher=10.0.0.1 putImage=auto")
    assert done.returncode == 0
    assert "RAN: put-image -p 10.0.0.1 -i auto" in done.stdout
    assert "DONE - the disk putImage=auto chose (named above) is stored on 10.0.0.1" in done.stdout


def test_failed_upload_is_shown_as_error_and_not_retried_blindly(tmp_path):
    done = boot(tmp_path, "thePusher=10.0.0.1 putImage=/dev/vda", exit_code=1)
    assert done.returncode == 1
    assert "ERROR - /dev/vda was not stored on 10.0.0.1" in done.stdout
    assert done.stdout.count("RAN:") == 1


def test_missing_zipapp_is_reported_on_the_console(tmp_path):
    done = boot(tmp_path, "thePusher=10.0.0.1", pyz=False)
    assert done.returncode == 1
    assert "/opt/thepusher.pyz IS MISSING" in done.stdout


# -- the secret (signed tasks) ---------------------------------------------------------

SECRET = "s3cret-'quoted'-$HOME-*"  # quotes, a dollar and a glob: all must arrive intact


def test_baked_secret_reaches_the_client_in_its_environment_never_in_argv_or_output(tmp_path):
    done = boot(tmp_path, "base norestore noswap",
                env_file=overlay.env_file("10.9.9.9", SECRET))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ENV SECRET: {SECRET!r}" in done.stdout
    ran = [line for line in done.stdout.splitlines() if line.startswith("RAN:")]
    assert ran == ["RAN: client -p 10.9.9.9"]
    script_said = done.stdout.replace(f"ENV SECRET: {SECRET!r}", "") + done.stderr
    assert "s3cret" not in script_said
    assert "only tasks it signed with the secret are run" in done.stdout


def test_command_line_secret_wins_over_the_baked_one(tmp_path):
    done = boot(tmp_path, "thePusherSecret=first-one-1234 base thePusherSecret=typed-at-prompt-99",
                env_file=overlay.env_file("10.9.9.9", SECRET))
    assert "ENV SECRET: 'typed-at-prompt-99'" in done.stdout
    assert done.stdout.count("typed-at-prompt-99") == 1


def test_without_a_secret_the_client_gets_an_empty_one_and_the_script_says_nothing_of_it(tmp_path):
    done = boot(tmp_path, "thePusher=10.0.0.1")
    assert "ENV SECRET: ''" in done.stdout
    assert "signed" not in done.stdout


def test_upload_token_on_the_command_line_reaches_put_image_in_its_environment_only(tmp_path):
    done = boot(tmp_path, "thePusher=10.0.0.1 putImage=/dev/vda thePusherUploadToken=upload-token-77")
    assert "RAN: put-image -p 10.0.0.1 -i /dev/vda" in done.stdout
    assert "ENV UPLOAD TOKEN: 'upload-token-77'" in done.stdout
    assert done.stdout.count("upload-token-77") == 1  # the stand-in's line: never in argv or said


def test_put_image_is_not_given_the_secret(tmp_path):
    done = boot(tmp_path, "thePusher=10.0.0.1 putImage=/dev/vda thePusherSecret=typed-at-prompt-99")
    assert "RAN: put-image -p 10.0.0.1 -i /dev/vda" in done.stdout
    assert "typed-at-prompt-99" not in done.stdout
