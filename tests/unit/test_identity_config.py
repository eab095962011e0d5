"""Who each host is: host blocks and the hosts file, and what check-config says when a
script or `personalize` needs something a host lacks (issue 18, per-host identity)."""

import re
import textwrap
from pathlib import Path

import pytest

from thepusher.config.describe import describe
from thepusher.config.load import load
from thepusher.config.model import ConfigError, Host

IMAGE = """\
image "u" {
  filename    = "u.img"
  destination = "/dev/sda"
%s}
"""
GROUP = """\
clientgroup "g" {
  image = "u"
  hosts = ["10.0.0.1", "10.0.0.2"]
}
"""


def config(tmp_path: Path, text: str, image: str = "", csv: str = "") -> Path:
    if csv:
        (tmp_path / "room.csv").write_text(textwrap.dedent(csv), encoding="utf-8")
    path = tmp_path / "thePusher-config.hcl"
    path.write_text(textwrap.dedent(text) + IMAGE % textwrap.dedent(image) + GROUP,
                    encoding="utf-8")
    return path


def errors(tmp_path: Path, text: str, image: str = "", csv: str = "") -> list:
    with pytest.raises(ConfigError) as info:
        load(str(config(tmp_path, text, image, csv)))
    return info.value.errors


def at(tmp_path: Path, name: str = "thePusher-config.hcl") -> str:
    return re.escape(str(tmp_path / name))


# ---------------------------------------------------------------- host blocks


def test_host_blocks_give_names_and_vars_by_normalised_address(tmp_path):
    cfg = load(str(config(tmp_path, """\
        host "10.0.0.1" {
          name = "pc-01"
          vars = { room = "B12", seat = "01" }
        }
        host "::ffff:10.0.0.2" { name = "PC-02" }
        """)))
    assert cfg.hosts == {
        "10.0.0.1": Host("10.0.0.1", 1, "pc-01", {"room": "B12", "seat": "01"}),
        "10.0.0.2": Host("10.0.0.2", 5, "PC-02", {}),
    }


def test_a_config_without_hosts_has_none_and_an_empty_hosts_file_setting(tmp_path):
    cfg = load(str(config(tmp_path, "")))
    assert cfg.hosts == {} and cfg.settings.hosts_file == ""


@pytest.mark.parametrize("name", ["pc_01", "pc-01.lab", "-pc", "pc-", "a" * 64, "", "pc 1", "pc;x"])
def test_a_name_that_is_not_one_hostname_label_is_refused_at_its_line(tmp_path, name):
    (message,) = errors(tmp_path, f'host "10.0.0.1" {{\n  name = "{name}"\n}}\n')
    assert re.fullmatch(at(tmp_path) + r":2:3: host '10\.0\.0\.1': 'name' must be a hostname: "
                        r"1 to 63 letters, digits and inner hyphens .*", message)


def test_a_63_letter_name_with_inner_hyphens_is_a_hostname(tmp_path):
    name = "a-" * 31 + "b"
    assert load(str(config(tmp_path, f'host "10.0.0.1" {{ name = "{name}" }}\n'))).hosts[
        "10.0.0.1"].name == name


def test_host_block_problems_are_named_where_they_stand(tmp_path):
    found = errors(tmp_path, """\
        host "pc-3" { name = "x" }
        host "10.0.0.9" { name = "pc-09" }
        host "10.0.0.1" { name = "pc-01" }
        host "10.0.0.2" { name = "PC-01" }
        host "10.0.0.1" { name = "pc-03" }
        """)
    assert found == [
        f"{tmp_path}/thePusher-config.hcl:1:1: host block: 'pc-3' is not an IPv4 or IPv6 "
        f"address (a host block is labelled by the address a clientgroup lists, as in "
        f"host \"10.0.0.21\")",
        f"{tmp_path}/thePusher-config.hcl:2:1: host 10.0.0.9 is in no clientgroup's hosts",
        f"{tmp_path}/thePusher-config.hcl:4:1: name 'PC-01' is already 10.0.0.1's (line 3)",
        f"{tmp_path}/thePusher-config.hcl:5:1: duplicate host '10.0.0.1': already defined at "
        f"line 3",
    ]


@pytest.mark.parametrize("vars_, problem", [
    ('{ room = "B 12" }', r"var 'room' = 'B 12': only letters, digits and \. _ , : / @ \+ -"),
    ('{ room = "$(reboot)" }', r"var 'room' = '\$\(reboot\)': only letters"),
    ('{ "bad-name" = "x" }', r"var name 'bad-name' must be letters, digits and '_'"),
    ('{ "1st" = "x" }', r"var name '1st' must be letters, digits and '_', not starting with"),
    ('{ room = "a", ROOM = "b" }', r"vars 'room' and 'ROOM' are both the variable "
                                   r"THEPUSHER_VAR_ROOM"),
    ('{ seats = 24 }', r"var 'seats' must be a string"),
    ('"B12"', r"'vars' must be an object of name = \"value\", found a string"),
])
def test_vars_that_would_break_a_shell_or_an_environment_name_are_refused(tmp_path, vars_,
                                                                          problem):
    (message,) = errors(tmp_path, f'host "10.0.0.1" {{\n  vars = {vars_}\n}}\n')
    assert re.match(at(tmp_path) + r":2:3: host '10\.0\.0\.1': " + r"(vars: )?" + problem,
                    message), message


# ---------------------------------------------------------------- the hosts file


ROOM_CSV = """\
# room B12, row by row
ip,name,mac,room,seat

10.0.0.1,pc-01,52-54-00-00-00-01,B12,01
10.0.0.2, pc-02 ,,B12,
"""


def test_a_hosts_file_gives_names_vars_and_macs_for_wake_on_lan(tmp_path):
    cfg = load(str(config(tmp_path, 'hosts_file = "room.csv"\n', csv=ROOM_CSV)))
    source = str(tmp_path / "room.csv")
    assert cfg.hosts == {
        "10.0.0.1": Host("10.0.0.1", 4, "pc-01", {"room": "B12", "seat": "01"}, source),
        "10.0.0.2": Host("10.0.0.2", 5, "pc-02", {"room": "B12"}, source),  # empty: not set
    }
    assert cfg.groups["g"].macs == {"10.0.0.1": "52:54:00:00:00:01"}
    assert "10.0.0.1  pc-01  room=B12  seat=01" in describe(cfg)


def test_a_hosts_file_is_read_relative_to_the_config_not_the_working_directory(
        tmp_path, monkeypatch):
    sub = tmp_path / "images"
    sub.mkdir()
    path = config(sub, 'hosts_file = "room.csv"\n', csv=ROOM_CSV)
    monkeypatch.chdir(tmp_path)
    assert load(str(path.relative_to(tmp_path))).hosts["10.0.0.1"].name == "pc-01"


def test_semicolons_from_a_spreadsheet_work_as_well_as_commas(tmp_path):
    csv = "ip;name;room\n10.0.0.1;pc-01;B12\n"
    cfg = load(str(config(tmp_path, 'hosts_file = "room.csv"\n', csv=csv)))
    assert cfg.hosts["10.0.0.1"].vars == {"room": "B12"}


def test_every_hosts_file_problem_is_named_by_file_and_line(tmp_path):
    csv = """\
        ip,name,mac,room
        10.0.0.1,pc-01,,B12
        nope,-x,zz,B$1
        10.0.0.1,pc-07,,
        10.0.0.2,pc-01,,
        10.0.0.9
        10.0.0.8,pc-08,,
        """
    found = errors(tmp_path, 'hosts_file = "room.csv"\n', csv=csv)
    f = f"{tmp_path}/room.csv"
    assert found == [
        f"{f}:3: ip 'nope' is not an IPv4 or IPv6 address",
        f"{f}:3: mac 'zz' must look like 52:54:00:12:34:56",
        f"{f}:3: name must be a hostname: 1 to 63 letters, digits and inner hyphens (no dots, "
        f"spaces or '_'), found '-x'",
        f"{f}:3: var 'room' = 'B$1': only letters, digits and . _ , : / @ + - (scripts get it "
        f"unquoted, so nothing a shell would read as more than letters)",
        f"{f}:4: host 10.0.0.1 is already on line 2",
        f"{f}:5: name 'pc-01' is already 10.0.0.1's ({f}:2)",
        f"{f}:6: 1 cell, but the header names 4 (ip,name,mac,room)",
        f"{f}:7: host 10.0.0.8 is in no clientgroup's hosts",
    ]


@pytest.mark.parametrize("csv, problem", [
    ("name,room\npc-01,B12\n", r"1: the first line must name the columns, one of them ip"),
    ("ip,name,Name\n", r"1: column 'name' is there twice"),
    ("ip,room,ROOM\n", r"1: vars 'room' and 'ROOM' are both the variable THEPUSHER_VAR_ROOM"),
    ("ip,seat no\n", r"1: var name 'seat no' must be letters"),
    ("# nothing\n\n", r"1: no header line"),
])
def test_a_bad_header_is_named_at_its_line(tmp_path, csv, problem):
    (message,) = errors(tmp_path, 'hosts_file = "room.csv"\n', csv=csv)
    assert re.match(at(tmp_path, "room.csv") + ":" + problem, message), message


def test_a_missing_hosts_file_is_an_error_at_the_setting(tmp_path):
    (message,) = errors(tmp_path, '\nhosts_file = "nope.csv"\n')
    assert message == (f"{tmp_path}/thePusher-config.hcl:2:1: cannot read hosts file "
                       f"{tmp_path}/nope.csv: No such file or directory")


def test_a_host_in_the_file_and_in_a_block_or_with_another_mac_is_refused(tmp_path):
    text = '''\
        hosts_file = "room.csv"
        host "10.0.0.2" { name = "pc-02" }
        '''
    found = errors(tmp_path, text, csv="ip,name,mac\n10.0.0.2,pc-22,\n10.0.0.1,pc-01,"
                                       "52:54:00:00:00:09\n")
    assert found[0] == (f"{tmp_path}/room.csv:2: host 10.0.0.2 also has a host block (line 2 of "
                        f"the config): give it in one place")
    text = 'hosts_file = "room.csv"\n'
    group_macs = GROUP.replace("]\n", ']\n  macs = { "10.0.0.1" = "52:54:00:00:00:01" }\n')
    path = config(tmp_path, text, csv="ip,mac\n10.0.0.1,52:54:00:00:00:09\n")
    path.write_text(path.read_text().replace(GROUP, group_macs))
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert info.value.errors == [f"{tmp_path}/room.csv:2: mac 52:54:00:00:00:09 of 10.0.0.1, "
                                 f"but the macs of clientgroup 'g' say 52:54:00:00:00:01"]


# ---------------------------------------------------------------- scripts and personalize


def test_a_script_asking_for_a_var_a_host_lacks_names_the_host_and_the_script_line(tmp_path):
    text = 'host "10.0.0.1" { vars = { room = "B12" } }\n'
    image = 'preImage = "echo ok"\npostImage = "echo #VAR:room# #VAR:seat#"\n'
    found = errors(tmp_path, text, image)
    line = f"{tmp_path}/thePusher-config.hcl:6:1: image 'u': postImage uses"
    assert found == [
        f"{line} #VAR:room#, but host 10.0.0.2 of clientgroup 'g' has no var 'room' (give it "
        f"in a host block or the hosts file)",
        f"{line} #VAR:seat#, but hosts 10.0.0.1, 10.0.0.2 of clientgroup 'g' have no var "
        f"'seat' (give it in a host block or the hosts file)",
    ]


def test_scripts_with_vars_every_host_has_load(tmp_path):
    csv = "ip,room\n10.0.0.1,B12\n10.0.0.2,B13\n"
    cfg = load(str(config(tmp_path, 'hosts_file = "room.csv"\n',
                          'preImage = "echo #VAR:room# #HOSTNAME# #GROUP# #IMAGE#"\n', csv)))
    assert cfg.images["u"].pre_image == "echo #VAR:room# #HOSTNAME# #GROUP# #IMAGE#"


def test_group_and_image_names_a_shell_would_read_are_refused_only_where_a_script_uses_them(
        tmp_path):
    path = config(tmp_path, "", 'preImage = "echo #GROUP#"\npostImage = "echo ok"\n')
    path.write_text(path.read_text().replace('"g"', '"room b"'))
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert info.value.errors == [
        f"{path}:4:1: image 'u': preImage uses #GROUP#, but clientgroup 'room b' has "
        f"characters a shell would read (only letters, digits and . _ , : / @ + -); rename it, "
        f"or use \"$THEPUSHER_GROUP\" in the script"]
    path.write_text(path.read_text().replace("#GROUP#", "$THEPUSHER_GROUP"))
    assert load(str(path)).groups["room b"].hosts == ["10.0.0.1", "10.0.0.2"]


def test_personalize_needs_a_name_for_every_host_and_an_image_written_raw(tmp_path):
    text = 'host "10.0.0.1" { name = "pc-01" }\n'
    found = errors(tmp_path, text, 'type = "TAR"\npersonalize = "Linux"\n')
    line = f"{tmp_path}/thePusher-config.hcl:6:1: image 'u': personalize = \"linux\""
    assert found == [
        f"{line} changes a written disk; a TAR image is extracted into files (do it in "
        f"postImage)",
        f"{line} writes each host's name, and host 10.0.0.2 of clientgroup 'g' has none "
        f"(give it in a host block or the hosts file)",
    ]
    (message,) = errors(tmp_path, text, 'personalize = "windows"\n')
    assert message.endswith("image 'u': unsupported personalize 'windows'; supported: linux")


def test_personalize_with_every_host_named_loads(tmp_path):
    text = 'host "10.0.0.1" { name = "pc-01" }\nhost "10.0.0.2" { name = "pc-02" }\n'
    cfg = load(str(config(tmp_path, text, 'personalize = "linux"\n')))
    assert cfg.images["u"].personalize == "linux"
    assert "personalize  linux" in describe(cfg)
