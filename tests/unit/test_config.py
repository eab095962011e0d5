"""The config model: what loads, what it yields, and every problem it reports (all at once)."""

import bz2
import dataclasses
import json
import gzip
import lzma
import os
import re
import textwrap
from pathlib import Path

import pytest

from thepusher.config import schema, values
from thepusher.config import hcl
from thepusher.config.describe import describe
from thepusher.config.load import load
from thepusher.config.model import ClientGroup, ConfigError, Image, Settings

REPO = Path(__file__).resolve().parents[2]
# The original tool's example config, kept here so that its test always runs; the copy
# must stay the file beside the repo (shared/compat) where that is present.
COMPAT = REPO / "tests/support/compat/thePusher-config_example.hcl"
SHARED_COMPAT = REPO.parent / "shared/compat/thePusher-config_example.hcl"

VALID = """\
image "u" {
  filename    = "u.img"
  destination = "/dev/sda"
}

clientgroup "g" {
  image = "u"
  hosts = ["10.0.0.1", "10.0.0.2"]
}
"""


def write(tmp_path: Path, text: str, name: str = "thePusher-config.hcl") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors_of(tmp_path: Path, text: str) -> list:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(str(path))
    return info.value.errors


def one_error(tmp_path: Path, text: str) -> tuple:
    """(line, col, message) of the single error `text` must produce."""
    errors = errors_of(tmp_path, text)
    assert len(errors) == 1, errors
    path = str(tmp_path / "thePusher-config.hcl")
    m = re.fullmatch(re.escape(path) + r":(\d+):(\d+): (.*)", errors[0], re.S)
    assert m, errors[0]
    return int(m.group(1)), int(m.group(2)), m.group(3)


# ---------------------------------------------------------------- the original's file


def test_the_kept_copy_of_the_original_example_is_that_file_byte_for_byte():
    if not SHARED_COMPAT.is_file():
        pytest.skip(f"{SHARED_COMPAT} is absent: nothing to compare the kept copy with")
    assert COMPAT.read_bytes() == SHARED_COMPAT.read_bytes()


def test_compat_example_from_the_original_tool_loads_unchanged(tmp_path):
    cfg = load(str(COMPAT), str(tmp_path))

    assert list(cfg.images) == ["ubuntu1604", "fedora25"]
    ubuntu = cfg.images["ubuntu1604"]
    assert ubuntu == Image(
        name="ubuntu1604",
        filename="ubuntu1604-sda1.img",
        path=str(tmp_path / "ubuntu1604-sda1.img"),
        destination="/dev/sda1",
        line=15,
        comment="Ubuntu 16.04 LTS",
        type="IMG",
        compression="NONE",
        pre_image="wget http://#MASTER#:8080/static/preimage-script-1.sh; sh preimage-script1.sh",
        post_image="sleep 5; eject ; reboot",
    )
    fedora = cfg.images["fedora25"]
    assert (fedora.filename, fedora.comment, fedora.destination, fedora.type, fedora.compression) == (
        "fedora25.img.bz2",
        "Fedora 25 2016-12-11",
        "/tmp/dat2",
        "IMG",
        "BZ2",
    )
    assert (fedora.pre_image, fedora.post_image) == ("", "")

    assert cfg.groups == {
        "test1": ClientGroup(
            "test1", "ubuntu1604", ["192.168.78.158", "192.168.78.133", "192.168.78.134"], 51
        ),
        "roomA": ClientGroup(
            "roomA", "fedora25", ["192.168.78.140", "192.168.78.141", "192.168.78.142"], 62
        ),
    }
    assert cfg.group_of("192.168.78.133").name == "test1"
    assert cfg.path == str(COMPAT)
    assert cfg.image_dir == str(tmp_path)


def test_example_config_in_the_repo_loads_cleanly_and_sets_every_key(tmp_path):
    cfg = load(str(REPO / "example-config.hcl"), str(tmp_path))
    assert cfg.images and cfg.groups
    body = hcl.parse((REPO / "example-config.hcl").read_text(encoding="utf-8"))
    for block_type, spec in schema.BLOCKS.items():
        used = {a.key for b in body.blocks if b.type == block_type for a in b.body.attributes}
        assert used == {k.hcl for k in spec.keys}, block_type
    assert {a.key for a in body.attributes} == {k.hcl for k in schema.SETTINGS}
    # the example documents the defaults: it must not quietly change them
    assert cfg.settings == Settings()


def test_example_config_uses_only_supported_types(tmp_path):
    cfg = load(str(REPO / "example-config.hcl"), str(tmp_path))
    assert {image.type for image in cfg.images.values()} <= set(schema.TYPES)
    assert not re.search(r'^\s*type\s*=\s*"tar"', (REPO / "example-config.hcl").read_text(), re.I | re.M)


def test_docs_describe_every_block_key_and_setting():
    docs = (REPO / "docs/config.md").read_text(encoding="utf-8")
    for block_type, spec in schema.BLOCKS.items():
        assert f"`{block_type}`" in docs
        for key in spec.keys:
            assert f"`{key.hcl}`" in docs, key.hcl
    for key in schema.SETTINGS:
        assert f"`{key.hcl}`" in docs, key.hcl


def test_docs_table_gives_each_settings_default():
    docs = (REPO / "docs/config.md").read_text(encoding="utf-8")
    for f in dataclasses.fields(Settings):
        row = re.search(rf"^\| `{f.name}` \| `([^`]+)` \|", docs, re.M)
        assert row, f.name
        shown = row.group(1)
        if f.default is dataclasses.MISSING:  # a list
            assert json.loads(shown) == f.default_factory(), f.name
        else:
            assert (shown.strip('"') if isinstance(f.default, str) else float(shown)) == f.default, f.name


def test_every_schema_key_fills_a_field_of_its_dataclass(tmp_path):
    """Adding a key to the schema without a dataclass field must fail here, not at run time."""
    cfg = load(str(write(tmp_path, VALID + 'host "10.0.0.1" {\n  name = "pc-01"\n}\n')))
    built = {"images": cfg.images["u"], "groups": cfg.groups["g"], "hosts": cfg.hosts["10.0.0.1"]}
    for spec in schema.BLOCKS.values():
        fields = {f.name for f in dataclasses.fields(built[spec.table])}
        for key in spec.keys:
            assert key.field in fields, key
    settings = {f.name for f in dataclasses.fields(Settings)}
    assert {key.field for key in schema.SETTINGS} == settings


# ---------------------------------------------------------------- values and defaults


def test_optional_keys_take_their_defaults(tmp_path):
    image = load(str(write(tmp_path, VALID))).images["u"]
    assert (image.comment, image.type, image.compression, image.pre_image, image.post_image) == (
        "",
        "IMG",
        "NONE",
        "",
        "",
    )
    assert image.line == 1


def test_discard_is_off_unless_an_image_sets_it(tmp_path):
    assert load(str(write(tmp_path, VALID))).images["u"].discard is False
    text = VALID.replace('destination = "/dev/sda"', 'destination = "/dev/sda"\n  discard = true')
    assert load(str(write(tmp_path, text))).images["u"].discard is True


@pytest.mark.parametrize(
    "type_, compression, expected",
    [
        ("img", "none", ("IMG", "NONE")),
        ("Img", "bz2", ("IMG", "BZ2")),
        ("IMG", "gzip", ("IMG", "GZIP")),
        ("IMG", "GZ", ("IMG", "GZIP")),
        ("IMG", "gz", ("IMG", "GZIP")),
        ("IMG", "xz", ("IMG", "XZ")),
    ],
)
def test_type_and_compression_are_case_insensitive_and_stored_upper(
    tmp_path, type_, compression, expected
):
    text = VALID.replace(
        'destination = "/dev/sda"',
        f'destination = "/dev/sda"\n  type = "{type_}"\n  compression = "{compression}"',
    )
    image = load(str(write(tmp_path, text))).images["u"]
    assert (image.type, image.compression) == expected


def test_settings_default_when_the_file_sets_none(tmp_path):
    cfg = load(str(write(tmp_path, VALID)))
    assert cfg.settings == Settings()
    assert (
        cfg.settings.arm_timeout,
        cfg.settings.accept_timeout,
        cfg.settings.io_timeout,
        cfg.settings.report_timeout,
    ) == (30.0, 60.0, 30.0, 15.0)


def test_settings_given_at_top_level_are_loaded_as_float_seconds(tmp_path):
    head, tail = "arm_timeout = 5\naccept_timeout = 120\n", "io_timeout = 0.5\nreport_timeout = 86400\n"
    text = head + VALID + tail  # settings may stand before, between or after blocks
    settings = load(str(write(tmp_path, text))).settings
    assert settings == Settings(
        arm_timeout=5.0, accept_timeout=120.0, io_timeout=0.5, report_timeout=86400.0
    )
    assert all(isinstance(getattr(settings, k.field), float) for k in schema.SETTINGS
               if k.convert is values.seconds)


@pytest.mark.parametrize("written", ["TAR", "tar", "Tar"])
def test_tar_images_are_accepted_in_any_case_and_stored_upper_case(tmp_path, written):
    text = VALID.replace('destination = "/dev/sda"', f'destination = "/mnt"\n  type = "{written}"')
    assert load(str(write(tmp_path, text))).images["u"].type == "TAR"


def test_unset_settings_keep_their_defaults_next_to_given_ones(tmp_path):
    settings = load(str(write(tmp_path, "io_timeout = 90\n" + VALID))).settings
    assert settings == Settings(io_timeout=90.0)


def test_every_setting_problem_is_reported_with_the_block_errors(tmp_path):
    text = 'arm_timeout = "30"\nio_timeout = 0\nverbose = true\n' + VALID.replace(
        'destination = "/dev/sda"', 'destination = "/dev/sda"\n  type = "ZIP"'
    )
    path = str(tmp_path / "thePusher-config.hcl")
    assert errors_of(tmp_path, text) == [
        f"{path}:1:1: 'arm_timeout' must be a number of seconds, found a string",
        f"{path}:2:1: 'io_timeout' must be between 0 and 86400 seconds, found 0",
        f"{path}:3:1: unknown setting 'verbose' (top-level settings: arm_timeout, "
        "accept_timeout, io_timeout, report_timeout, replay_window, admin_token, wake_address, "
        "put_allowed, upload_token, secret, hosts_file, unknown_boot; "
        "image, group and host keys go inside "
        "image, clientgroup or host blocks)",
        f"{path}:7:3: image 'u': unsupported type 'ZIP'; supported: IMG, TAR",
    ]


def test_image_path_is_absolute_inside_image_dir_which_defaults_to_the_config_dir(tmp_path, monkeypatch):
    path = write(tmp_path, VALID)
    assert load(str(path)).images["u"].path == str(tmp_path / "u.img")
    other = tmp_path / "images"
    assert load(str(path), str(other)).images["u"].path == str(other / "u.img")
    monkeypatch.chdir(tmp_path)
    cfg = load("thePusher-config.hcl")
    assert cfg.image_dir == str(tmp_path) and os.path.isabs(cfg.path)
    assert cfg.images["u"].path == str(tmp_path / "u.img")


def test_hosts_keep_chain_order_and_ipv6_is_canonicalised(tmp_path):
    text = VALID.replace(
        '["10.0.0.1", "10.0.0.2"]', '["10.0.0.9", "FD00:0::1", "10.0.0.3", "::ffff:10.0.0.4"]'
    )
    group = load(str(write(tmp_path, text))).groups["g"]
    assert group.hosts == ["10.0.0.9", "fd00::1", "10.0.0.3", "10.0.0.4"]


def test_group_of_finds_the_group_of_a_host_as_a_socket_reports_it(tmp_path):
    text = VALID + 'clientgroup "v6" {\n  image = "u"\n  hosts = ["fd00::5"]\n}\n'
    cfg = load(str(write(tmp_path, text)))
    assert cfg.group_of("10.0.0.2").name == "g"
    assert cfg.group_of("::ffff:10.0.0.1").name == "g"  # a dual-stack listener's view of an IPv4 peer
    assert cfg.group_of("FD00:0:0::5").name == "v6"
    assert cfg.group_of("10.0.0.3") is None
    assert cfg.group_of("not an address") is None


def test_heredoc_and_escapes_reach_the_scripts(tmp_path):
    text = VALID.replace(
        'destination = "/dev/sda"',
        'destination = "/dev/sda"\n  preImage = <<-EOF\n    echo "a"\n    echo b\n  EOF\n  postImage = "echo \\"#MASTER#\\"\\treboot"',
    )
    image = load(str(write(tmp_path, text))).images["u"]
    assert image.pre_image == 'echo "a"\necho b\n'
    assert image.post_image == 'echo "#MASTER#"\treboot'


# ---------------------------------------------------------------- missing files and describe


def test_missing_image_file_is_not_a_load_error_but_is_reported_by_file_problems(tmp_path):
    cfg = load(str(write(tmp_path, VALID)))
    assert cfg.file_problems() == [
        f"{tmp_path / 'thePusher-config.hcl'}:1: image 'u': file {tmp_path / 'u.img'} does not exist"
    ]
    (tmp_path / "u.img").write_bytes(b"\0" * 10)
    assert cfg.file_problems() == []


def test_a_directory_in_place_of_an_image_file_is_reported(tmp_path):
    cfg = load(str(write(tmp_path, VALID)))
    (tmp_path / "u.img").mkdir()
    [problem] = cfg.file_problems()
    assert problem.endswith(f"file {tmp_path / 'u.img'} is not a regular file")


def test_describe_lists_images_with_sizes_and_groups_in_chain_order(tmp_path):
    text = VALID.replace(
        'destination = "/dev/sda"',
        'destination = "/dev/sda"\n  comment = "Lab image"\n  compression = "gz"\n  preImage = "echo hi"',
    )
    text += 'image "missing" {\n  filename = "m.img"\n  destination = "/dev/sdb"\n}\n'
    (tmp_path / "u.img").write_bytes(b"x" * (3 * 1024 * 1024 // 2))
    out = describe(load(str(write(tmp_path, text))))
    assert "u.img (1.5 MiB)" in out
    assert "m.img (missing)" in out
    assert "Lab image" in out and "GZIP" in out and "/dev/sda" in out and "echo hi" in out
    assert out.index("10.0.0.1") < out.index("10.0.0.2")
    assert "g: image u, 2 hosts in chain order" in out


# ---------------------------------------------------------------- errors, all at once

ALL_WRONG = """\
image "a" {
  filename    = "a.img"
  destination = "/dev/sda"
  compresion  = "BZ2"
}
image "a" {
  filename    = "../etc/passwd"
  destination = "/dev/sda"
  type        = "ISO"
}
image "b" {
  comment = 42
}
clientgroup "g1" {
  image = "nope"
  hosts = ["10.0.0.1", "10.0.0.300"]
}
clientgroup "g2" {
  image = "a"
  hosts = ["10.0.0.2", "10.0.0.1", "10.0.0.2"]
}
"""


def test_all_problems_are_reported_at_once_in_file_order_with_positions(tmp_path):
    errors = errors_of(tmp_path, ALL_WRONG)
    path = str(tmp_path / "thePusher-config.hcl")
    positions = [
        tuple(map(int, re.match(re.escape(path) + r":(\d+):(\d+): ", e).groups())) for e in errors
    ]
    assert positions == sorted(positions)
    expected = [
        (4, 3, "unknown key 'compresion'; did you mean 'compression'?"),
        (6, 1, "duplicate image 'a': already defined at line 1"),
        (7, 3, "'filename' must be a plain file name"),
        (9, 3, "unsupported type 'ISO'; supported: IMG"),
        (11, 1, "image 'b': missing required key 'filename'"),
        (11, 1, "image 'b': missing required key 'destination'"),
        (12, 3, "image 'b': 'comment' must be a string, found a number"),
        (15, 3, "clientgroup 'g1': image 'nope' is not defined"),
        (16, 3, "hosts entry '10.0.0.300' is not an IPv4 or IPv6 address"),
        (20, 3, "host 10.0.0.2 is listed twice in hosts"),
        (20, 3, "host 10.0.0.1 is in clientgroup 'g1' (line 16) and in clientgroup 'g2' (line 20)"),
    ]
    for line, col, fragment in expected:
        assert any(pos == (line, col) and fragment in e for pos, e in zip(positions, errors)), (
            fragment,
            errors,
        )
    assert len(errors) == len(expected), errors


def test_config_error_str_is_one_error_per_line(tmp_path):
    errors = errors_of(tmp_path, ALL_WRONG)
    assert str(ConfigError(errors)) == "\n".join(errors)
    assert ConfigError("single").errors == ["single"]


@pytest.mark.parametrize(
    "text, line, col, message",
    [
        pytest.param(
            'imgae "u" {\n}\n',
            1,
            1,
            "unknown block type 'imgae'; did you mean 'image'? (known: clientgroup, host, image)",
            id="unknown-block-type",
        ),
        pytest.param(
            "debug = true\n",
            1,
            1,
            "unknown setting 'debug' (top-level settings: arm_timeout, accept_timeout, io_timeout, "
            "report_timeout, replay_window, admin_token, wake_address, put_allowed, upload_token, "
            "secret, hosts_file, unknown_boot; image, group and host keys go inside image, clientgroup or host "
            "blocks)",
            id="unknown-setting",
        ),
        pytest.param(
            VALID + '\n  filename = "u.img"\n',
            11,
            3,
            "unknown setting 'filename' (top-level settings: arm_timeout, accept_timeout, "
            "io_timeout, report_timeout, replay_window, admin_token, wake_address, put_allowed, "
            "upload_token, secret, hosts_file, unknown_boot; "
            "image, group and host keys go inside image, clientgroup or host blocks)",
            id="image-key-at-top-level",
        ),
        pytest.param(
            "io_timout = 10\n" + VALID,
            1,
            1,
            "unknown setting 'io_timout'; did you mean 'io_timeout'?",
            id="unknown-setting-with-suggestion",
        ),
        pytest.param(
            "Report_Timeout = 10\n",
            1,
            1,
            "unknown setting 'Report_Timeout'; did you mean 'report_timeout'?",
            id="setting-names-are-case-sensitive",
        ),
        pytest.param(
            VALID + "arm_timeout = true\n",
            10,
            1,
            "'arm_timeout' must be a number of seconds, found a bool",
            id="setting-bool",
        ),
        pytest.param(
            "accept_timeout = [60]\n",
            1,
            1,
            "'accept_timeout' must be a number of seconds, found a list",
            id="setting-list",
        ),
        pytest.param(
            'io_timeout = "30"\n',
            1,
            1,
            "'io_timeout' must be a number of seconds, found a string",
            id="setting-quoted-number",
        ),
        pytest.param(
            "report_timeout = null\n",
            1,
            1,
            "'report_timeout' must be a number of seconds, found null",
            id="setting-null",
        ),
        pytest.param(
            "arm_timeout = 0\n",
            1,
            1,
            "'arm_timeout' must be between 0 and 86400 seconds, found 0",
            id="setting-zero",
        ),
        pytest.param(
            VALID + "  io_timeout = -5\n",
            10,
            3,
            "'io_timeout' must be between 0 and 86400 seconds, found -5",
            id="setting-negative",
        ),
        pytest.param(
            "report_timeout = 86400.5\n",
            1,
            1,
            "'report_timeout' must be between 0 and 86400 seconds, found 86400.5",
            id="setting-above-a-day",
        ),
        pytest.param(
            'image "u" {\n  filename = "u.img"\n  destination = "/dev/sda"\n  postimage = "reboot"\n}\n',
            4,
            3,
            "image 'u': unknown key 'postimage'; did you mean 'postImage'?",
            id="unknown-key-with-suggestion",
        ),
        pytest.param(
            'image "u" {\n  filename = "u.img"\n  destination = "/dev/sda"\n  zzz = 1\n}\n',
            4,
            3,
            "image 'u': unknown key 'zzz' (known keys: filename, comment, destination, type, "
            "compression, preImage, postImage, verify, grow, discard, personalize)",
            id="unknown-key-without-suggestion",
        ),
        pytest.param(
            'image "u" {\n  filename = ["u.img"]\n  destination = "/dev/sda"\n}\n',
            2,
            3,
            "image 'u': 'filename' must be a string, found a list",
            id="wrong-type-list",
        ),
        pytest.param(
            'image "u" {\n  filename = "u.img"\n  destination = "/dev/sda"\n  grow = "yes"\n}\n',
            4,
            3,
            "image 'u': 'grow' must be true or false, found a string",
            id="grow-not-a-bool",
        ),
        pytest.param(
            'image "u" {\n  filename = "u.tar"\n  destination = "/mnt"\n  type = "TAR"\n'
            '  grow = true\n}\n',
            5,
            3,
            "image 'u': grow = true grows a disk image's last partition; a TAR image is "
            "extracted into files (leave grow out for TAR)",
            id="grow-for-tar",
        ),
        pytest.param(
            'image "u" {\n  filename = "u.img"\n  destination = "/dev/sda"\n  discard = 1\n}\n',
            4,
            3,
            "image 'u': 'discard' must be true or false, found a number",
            id="discard-not-a-bool",
        ),
        pytest.param(
            'image "u" {\n  filename = "u.tar"\n  destination = "/mnt"\n  type = "TAR"\n'
            '  discard = true\n}\n',
            5,
            3,
            "image 'u': discard = true discards a disk image's free ranges; a TAR image is "
            "extracted into files (leave discard out for TAR)",
            id="discard-for-tar",
        ),
        pytest.param(
            'image "u" {\n  filename = "u.img"\n  destination = true\n}\n',
            3,
            3,
            "image 'u': 'destination' must be a string, found a bool",
            id="wrong-type-bool",
        ),
        pytest.param(
            'image "u" {\n  filename = "u.img"\n  destination = ""\n}\n',
            3,
            3,
            "image 'u': 'destination' must not be empty",
            id="empty-required-string",
        ),
        pytest.param(
            'image "u" {\n  filename = "u.img"\n}\n',
            1,
            1,
            "image 'u': missing required key 'destination'",
            id="missing-required-key",
        ),
        pytest.param(
            'image {\n  filename = "u.img"\n  destination = "/dev/sda"\n}\n',
            1,
            1,
            'image block must have exactly one label, its name, as in image "name" { ... }; found none',
            id="no-label",
        ),
        pytest.param(
            'image "u" {\n  filename = "u.img"\n  destination = "/dev/sda"\n}\n'
            'clientgroup " " {\n  image = "u"\n  hosts = ["10.0.0.1"]\n}\n',
            5,
            1,
            'clientgroup name is empty: give the group a name, as in clientgroup "room1" { ... }',
            id="empty-group-name",
        ),
        pytest.param(
            'image "" {\n  filename = "u.img"\n  destination = "/dev/sda"\n}\n',
            1,
            1,
            'image name is empty: give the image a name, as in image "disk" { ... }',
            id="empty-image-name",
        ),
        pytest.param(
            'image "u" "v" {\n  filename = "u.img"\n  destination = "/dev/sda"\n}\n',
            1,
            1,
            'image block must have exactly one label, its name, as in image "name" { ... }; found "u", "v"',
            id="two-labels",
        ),
        pytest.param(
            'image "u" {\n  filename = "u.img"\n  destination = "/dev/sda"\n  extra {\n  }\n}\n',
            4,
            3,
            "image 'u': unexpected block 'extra' (blocks here: disk)",
            id="nested-block",
        ),
        pytest.param(
            'image "u" {\n  filename = "u.img"\n  destination = "/dev/sda"\n  compression = "zip"\n}\n',
            4,
            3,
            "image 'u': unsupported compression 'zip'; supported: NONE, BZ2, GZIP, XZ, GZ (= GZIP)",
            id="unsupported-compression",
        ),
        pytest.param(
            'image "u" {\n  filename = "u.img"\n  destination = "/dev/sda"\n  type = "iso"\n}\n',
            4,
            3,
            "image 'u': unsupported type 'iso'; supported: IMG, TAR",
            id="unsupported-type",
        ),
        pytest.param(
            'image "u" {\n  filename = "sub/u.img"\n  destination = "/dev/sda"\n}\n',
            2,
            3,
            "image 'u': 'filename' must be a plain file name inside the image directory "
            "(no path separators, not '.' or '..'), found 'sub/u.img'",
            id="filename-with-separator",
        ),
        pytest.param(
            'image "u" {\n  filename = ".."\n  destination = "/dev/sda"\n}\n',
            2,
            3,
            "image 'u': 'filename' must be a plain file name inside the image directory "
            "(no path separators, not '.' or '..'), found '..'",
            id="filename-dotdot",
        ),
        pytest.param(
            'image "u" {\n  filename = "/abs/u.img"\n  destination = "/dev/sda"\n}\n',
            2,
            3,
            "image 'u': 'filename' must be a plain file name inside the image directory "
            "(no path separators, not '.' or '..'), found '/abs/u.img'",
            id="filename-absolute",
        ),
        pytest.param(
            VALID + 'image "u" {\n  filename = "v.img"\n  destination = "/dev/sdb"\n}\n',
            10,
            1,
            "duplicate image 'u': already defined at line 1",
            id="duplicate-image",
        ),
        pytest.param(
            VALID + 'clientgroup "g" {\n  image = "u"\n  hosts = ["10.0.0.3"]\n}\n',
            10,
            1,
            "duplicate clientgroup 'g': already defined at line 6",
            id="duplicate-group",
        ),
        pytest.param(
            VALID.replace('image = "u"', 'image = "U1"'),
            7,
            3,
            "clientgroup 'g': image 'U1' is not defined; did you mean 'u'?",
            id="unknown-image-with-suggestion",
        ),
        pytest.param(
            VALID.replace('image = "u"', 'image = "fedora"'),
            7,
            3,
            "clientgroup 'g': image 'fedora' is not defined (defined images: u)",
            id="unknown-image",
        ),
        pytest.param(
            'clientgroup "g" {\n  image = "u"\n  hosts = ["10.0.0.1"]\n}\n',
            2,
            3,
            "clientgroup 'g': image 'u' is not defined (no images are defined)",
            id="unknown-image-none-defined",
        ),
        pytest.param(
            VALID
            + 'clientgroup "h" {\n  image = "u"\n  hosts = ["10.0.0.7",\n           "10.0.0.2"]\n}\n',
            12,
            3,
            "host 10.0.0.2 is in clientgroup 'g' (line 8) and in clientgroup 'h' (line 12); "
            "a host belongs to one group only",
            id="host-in-two-groups",
        ),
        pytest.param(
            VALID.replace('"10.0.0.2"]', '"10.0.0.2", "10.0.0.1"]'),
            8,
            3,
            "clientgroup 'g': host 10.0.0.1 is listed twice in hosts",
            id="host-twice-in-a-group",
        ),
        pytest.param(
            VALID.replace('"10.0.0.2"]', '"::1", "0:0::1"]'),
            8,
            3,
            "clientgroup 'g': host ::1 is listed twice in hosts",
            id="host-twice-in-two-spellings",
        ),
        pytest.param(
            VALID.replace('"10.0.0.2"]', '"pc-12.lab"]'),
            8,
            3,
            "clientgroup 'g': hosts entry 'pc-12.lab' is not an IPv4 or IPv6 address",
            id="host-not-an-ip",
        ),
        pytest.param(
            VALID.replace('"10.0.0.2"]', '"10.0.0.256"]'),
            8,
            3,
            "clientgroup 'g': hosts entry '10.0.0.256' is not an IPv4 or IPv6 address",
            id="host-invalid-ipv4",
        ),
        pytest.param(
            VALID.replace('["10.0.0.1", "10.0.0.2"]', "[]"),
            8,
            3,
            "clientgroup 'g': 'hosts' must not be empty",
            id="hosts-empty",
        ),
        pytest.param(
            VALID.replace('["10.0.0.1", "10.0.0.2"]', '"10.0.0.1"'),
            8,
            3,
            "clientgroup 'g': 'hosts' must be a list of address strings, found a string",
            id="hosts-not-a-list",
        ),
        pytest.param(
            VALID.replace('"10.0.0.2"]', "17]"),
            8,
            3,
            "clientgroup 'g': hosts entries must be address strings, found a number",
            id="hosts-entry-not-a-string",
        ),
        pytest.param(
            'clientgroup "g" {\n  image = "u"\n}\n'
            'image "u" {\n  filename = "u.img"\n  destination = "/d"\n}\n',
            1,
            1,
            "clientgroup 'g': missing required key 'hosts'",
            id="missing-hosts",
        ),
    ],
)
def test_each_kind_of_problem_is_reported_with_its_position(tmp_path, text, line, col, message):
    assert one_error(tmp_path, text) == (line, col, message)


def test_images_may_be_defined_after_the_groups_using_them(tmp_path):
    text = (
        'clientgroup "g" {\n  image = "u"\n  hosts = ["10.0.0.1"]\n}\n'
        'image "u" {\n  filename = "u.img"\n  destination = "/d"\n}\n'
    )
    assert load(str(write(tmp_path, text))).groups["g"].image == "u"


def test_a_group_naming_a_broken_image_does_not_also_report_it_undefined(tmp_path):
    text = VALID.replace('filename    = "u.img"', 'filename = "a/u.img"')
    errors = errors_of(tmp_path, text)
    assert len(errors) == 1 and "plain file name" in errors[0]


def test_syntax_error_becomes_a_config_error_with_that_one_message(tmp_path):
    path = write(tmp_path, 'image "u" {\n  hosts ["10.0.0.1"]\n}\n')
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert info.value.errors == [f"{path}:2:9: expected '=' after key 'hosts', found '['"]


def test_missing_config_file_names_the_path_and_the_os_error(tmp_path):
    path = tmp_path / "nowhere" / "thePusher-config.hcl"
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert info.value.errors == [f"cannot read config file {path}: No such file or directory"]


def test_directory_as_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(str(tmp_path))
    assert str(tmp_path) in str(info.value)


def test_config_that_is_not_utf8_is_a_config_error_with_its_position(tmp_path):
    path = tmp_path / "thePusher-config.hcl"
    path.write_bytes(b'image "u" {\n  comment = "caf\xe9"\n}\n')
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert info.value.errors == [f"{path}:2:17: not UTF-8 text (byte 0xe9)"]


def test_config_error_lists_are_independent_of_the_callers_list():
    source = ["a"]
    err = ConfigError(source)
    source.append("b")
    assert err.errors == ["a"]


# ---------------------------------------------------------------- property

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover

    def test_property_tests_need_hypothesis():
        pytest.importorskip("hypothesis")

else:

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=300))
    def test_any_file_content_gives_a_config_or_a_config_error(tmp_path_factory, data):
        path = tmp_path_factory.mktemp("cfg") / "thePusher-config.hcl"
        path.write_bytes(data)
        try:
            load(str(path))
        except ConfigError as e:
            assert e.errors and all(isinstance(x, str) for x in e.errors)


# ---------------------------------------------------------------- start policies


def group_with(keys: str) -> str:
    """VALID with `keys` (one per line, unindented) added to its clientgroup, from line 9."""
    return VALID.replace('  hosts = ["10.0.0.1", "10.0.0.2"]\n',
                         '  hosts = ["10.0.0.1", "10.0.0.2"]\n' + textwrap.indent(keys, "  "))


def test_start_policy_defaults_to_the_original_start_when_all_are_ready(tmp_path):
    group = load(str(write(tmp_path, VALID))).groups["g"]
    assert (group.start, group.wait, group.min_clients, group.retries) == ("all", None, 1, 0)


@pytest.mark.parametrize("value, seconds", [
    ('"90s"', 90.0), ('"5m"', 300.0), ('"1h"', 3600.0), ('"1.5H"', 5400.0), ('"45"', 45.0),
    ("20", 20.0), ("0.5", 0.5), ('" 2m "', 120.0),
])
def test_wait_is_a_duration_in_seconds_minutes_hours_or_a_number(tmp_path, value, seconds):
    group = load(str(write(tmp_path, group_with(f"wait = {value}\n")))).groups["g"]
    assert group.wait == seconds and group.min_clients == 1


def test_all_start_policy_keys_are_loaded(tmp_path):
    text = group_with('start = "ALL"\nwait = "2m"\nmin_clients = 2\nretries = 3\n')
    group = load(str(write(tmp_path, text))).groups["g"]
    assert (group.start, group.wait, group.min_clients, group.retries) == ("all", 120.0, 2, 3)
    assert group.start_rule() == (
        "when all hosts are ready, or 120 s after the first is ready with at least 2; "
        "a failed host gets up to 3 automatic retries"
    )


@pytest.mark.parametrize("keys, line, message", [
    ('start = "later"\n', 9, "clientgroup 'g': unsupported start 'later'; supported: all, manual"),
    ('wait = "5 min"\n', 9,
     "clientgroup 'g': 'wait' must be a duration such as \"90s\", \"5m\", \"1h\" or a number of "
     "seconds, found '5 min'"),
    ("wait = true\n", 9,
     "clientgroup 'g': 'wait' must be a duration such as \"90s\", \"5m\", \"1h\" or a number of "
     "seconds, found a bool"),
    ("wait = 0\n", 9, "clientgroup 'g': 'wait' must be between 0 and 86400 seconds (one day), found 0"),
    ('wait = "2d"\n', 9,
     "clientgroup 'g': 'wait' must be a duration such as \"90s\", \"5m\", \"1h\" or a number of "
     "seconds, found '2d'"),
    ('wait = "25h"\n', 9,
     "clientgroup 'g': 'wait' must be between 0 and 86400 seconds (one day), found '25h'"),
    ('wait = "1m"\nmin_clients = 1.5\n', 10, "clientgroup 'g': 'min_clients' must be a whole number, found 1.5"),
    ('wait = "1m"\nmin_clients = 0\n', 10, "clientgroup 'g': 'min_clients' must be at least 1, found 0"),
    ('retries = -1\n', 9, "clientgroup 'g': 'retries' must be at least 0, found -1"),
    ('retries = "2"\n', 9, "clientgroup 'g': 'retries' must be a whole number, found a string"),
    ("min_clients = 2\n", 9,
     "clientgroup 'g': 'min_clients' needs 'wait': without a wait, the group starts only when "
     "all its hosts are ready"),
    ('wait = "1m"\nmin_clients = 3\n', 10, "clientgroup 'g': 'min_clients' is 3 but the group has 2 hosts"),
    ("chains = 3\n", 9, "clientgroup 'g': 'chains' is 3 but the group has 2 hosts: a chain needs one"),
    ("chains = 0\n", 9, "clientgroup 'g': 'chains' must be at least 1, found 0"),
    ('start = "manual"\nwait = "1m"\n', 10,
     "clientgroup 'g': 'wait' has no effect with start = \"manual\" (rounds start only with "
     "thepusher start)"),
    ('start = "manual"\nretries = 1\n', 10,
     "clientgroup 'g': 'retries' has no effect with start = \"manual\" (follow-up rounds start "
     "only with thepusher retry)"),
], ids=[
    "unknown-start", "wait-words", "wait-bool", "wait-zero", "wait-unknown-unit", "wait-over-a-day",
    "min-clients-fraction", "min-clients-zero", "retries-negative", "retries-string",
    "min-clients-without-wait", "min-clients-over-hosts", "chains-over-hosts", "chains-zero",
    "manual-with-wait", "manual-with-retries",
])
def test_start_policy_problems_are_reported_with_their_position(tmp_path, keys, line, message):
    assert one_error(tmp_path, group_with(keys)) == (line, 3, message)


@pytest.mark.parametrize("hosts, k, lengths", [
    (1, 1, [1]), (10, 1, [10]), (10, 4, [3, 3, 2, 2]), (8, 4, [2, 2, 2, 2]), (17, 4, [5, 4, 4, 4]),
    (3, 4, [1, 1, 1]), (500, 7, [72, 72, 72, 71, 71, 71, 71]),
])
def test_chains_cut_hosts_in_order_into_runs_differing_by_at_most_one(hosts, k, lengths):
    names = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(hosts)]
    chains = ClientGroup("g", "i", names, 1, chains=k).split(names)
    assert [len(c) for c in chains] == lengths
    assert [h for c in chains for h in c] == names


def test_manual_start_with_retries_0_is_fine(tmp_path):
    text = group_with('start = "manual"\nretries = 0\n')
    assert load(str(write(tmp_path, text))).groups["g"].start == "manual"


@pytest.mark.parametrize("setting, message", [
    ('admin_token = "short"', "'admin_token' must be at least 12 printable characters without spaces"),
    ('admin_token = "has a space in it"', "'admin_token' must be at least 12 printable"),
    ('wake_address = "broadcast"', "'wake_address' must be an IPv4 address with an optional :PORT"),
    ('wake_address = "10.0.0.255:99999"', "'wake_address': port '99999' is not a UDP port"),
    ('put_allowed = "10.0.0.0/24"', "'put_allowed' must be a list of addresses or networks"),
    ('put_allowed = ["10.0.0.0/33"]', "'put_allowed': '10.0.0.0/33' is not an IP address or network"),
    ('upload_token = "short"', "'upload_token' must be at least 12 printable characters"),
    ('secret = "has a space in it"', "'secret' must be at least 12 printable characters"),
])
def test_bad_admin_token_or_wake_address_is_named_at_its_line(tmp_path, setting, message):
    line, col, got = one_error(tmp_path, setting + "\n" + VALID)
    assert (line, col) == (1, 1) and got.startswith(message), got


def test_control_settings_are_loaded(tmp_path):
    text = 'admin_token = "correct-horse-battery"\nwake_address = "10.0.0.255"\n' + VALID
    settings = load(str(write(tmp_path, text))).settings
    assert settings.admin_token == "correct-horse-battery"
    assert settings.wake_address == "10.0.0.255"


def test_group_macs_are_normalised_per_host(tmp_path):
    text = VALID.replace('hosts = ["10.0.0.1", "10.0.0.2"]',
                         'hosts = ["10.0.0.1", "10.0.0.2"]\n  macs = { "10.0.0.2" = "52-54-00-AB-CD-EF" }')
    assert load(str(write(tmp_path, text))).groups["g"].macs == {"10.0.0.2": "52:54:00:ab:cd:ef"}


@pytest.mark.parametrize("macs, message", [
    ('{ "10.0.0.9" = "52:54:00:ab:cd:ef" }', "clientgroup 'g': macs names 10.0.0.9, which is not in its hosts"),
    ('{ "10.0.0.1" = "52:54:00:ab:cd" }', 'clientgroup \'g\': macs: the MAC of 10.0.0.1 must look like "52:54:00:12:34:56"'),
    ('{ "pc1" = "52:54:00:ab:cd:ef" }', "clientgroup 'g': macs: 'pc1' is not an IPv4 or IPv6 address"),
    ('["52:54:00:ab:cd:ef"]', "clientgroup 'g': 'macs' must be an object"),
])
def test_bad_macs_are_named_at_their_line(tmp_path, macs, message):
    text = VALID.replace('hosts = ["10.0.0.1", "10.0.0.2"]',
                         f'hosts = ["10.0.0.1", "10.0.0.2"]\n  macs = {macs}')
    line, col, got = one_error(tmp_path, text)
    assert (line, col) == (9, 3) and got.startswith(message), (line, col, got)


@pytest.mark.parametrize("declared, content, problem", [
    ("NONE", bz2.compress(b"x" * 100), 'starts like BZ2 data (42 5a 68 39 31 41) but compression is "NONE"; set compression = "BZ2"'),
    ("BZ2", gzip.compress(b"x"), 'is GZIP data (1f 8b 08'),
    ("GZIP", lzma.compress(b"x"), 'is XZ data (fd 37 7a 58 5a 00) but compression is "GZIP"; set compression = "XZ"'),
    ("XZ", b"\0" * 512, 'is not XZ data (it starts with 00 00 00 00 00 00); set compression = "NONE" if it is a raw image'),
    ("BZ2", b"", "is empty (0 bytes): nothing to deploy"),
])
def test_image_file_contradicting_its_declared_compression_is_named(tmp_path, declared, content, problem):
    cfg = load(str(write(tmp_path, VALID.replace(
        'destination = "/dev/sda"', f'destination = "/dev/sda"\n  compression = "{declared}"'))))
    (tmp_path / "u.img").write_bytes(content)
    [line] = cfg.file_problems()
    assert line.startswith(f"{tmp_path / 'thePusher-config.hcl'}:1: image 'u': file {tmp_path / 'u.img'} {problem}"), line


@pytest.mark.parametrize("declared, content", [
    ("NONE", b"\xeb\x63\x90" + b"\0" * 509),  # an MBR
    ("BZ2", bz2.compress(b"x")),
    ("GZIP", gzip.compress(b"x")),
    ("XZ", lzma.compress(b"x")),
    ("NONE", b"BZh0 is not a bzip2 block size"),
    ("NONE", b"BZh"),
])
def test_image_file_matching_its_declaration_has_no_problem(tmp_path, declared, content):
    cfg = load(str(write(tmp_path, VALID.replace(
        'destination = "/dev/sda"', f'destination = "/dev/sda"\n  compression = "{declared}"'))))
    (tmp_path / "u.img").write_bytes(content)
    assert cfg.file_problems() == []
