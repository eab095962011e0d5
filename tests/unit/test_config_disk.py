"""`destination = "auto"` and its `disk { ... }` hints in the config: what they load to,
and every mistake in them reported at its file:line:col."""

import dataclasses
import re
import textwrap

import pytest

from thepusher.config.describe import describe
from thepusher.config.load import load
from thepusher.config.model import ConfigError, DiskHints
from thepusher.config.schema import DISK_HINTS
from thepusher.plan import DISK_HINTS as TASK_HINTS

GROUP = 'clientgroup "g" {\n  image = "u"\n  hosts = ["10.0.0.1"]\n}\n'


def image(body: str, destination: str = "auto") -> str:
    return (f'image "u" {{\n  filename = "u.img"\n  destination = "{destination}"\n'
            + textwrap.indent(textwrap.dedent(body), "  ") + "}\n" + GROUP)


def loaded(tmp_path, text: str):
    path = tmp_path / "thePusher-config.hcl"
    path.write_text(text)
    return load(str(path))


def errors(tmp_path, text: str) -> list:
    with pytest.raises(ConfigError) as info:
        loaded(tmp_path, text)
    prefix = re.escape(str(tmp_path / "thePusher-config.hcl"))
    return [re.sub(f"^{prefix}:", "", e) for e in info.value.errors]


def test_a_disk_block_gives_the_image_its_hints_with_sizes_in_bytes(tmp_path):
    cfg = loaded(tmp_path, image('''
        disk {
          min_size   = "100G"
          max_size   = "2 TB"
          model      = "Samsung SSD*"
          serial     = "S4EW*"
          wwn        = "0x5002538e*"
          rotational = false
          path       = "/dev/nvme*"
        }
    '''))
    assert cfg.images["u"].destination == "auto"
    assert cfg.images["u"].disk == DiskHints(
        min_size=100 << 30, max_size=2 * 10 ** 12, model="Samsung SSD*", serial="S4EW*",
        wwn="0x5002538e*", rotational=False, path="/dev/nvme*")


@pytest.mark.parametrize("text, size", [
    ("100G", 100 << 30), ("100 GiB", 100 << 30), ("500 GB", 500 * 10 ** 9), ("1.5T", 3 << 39),
    ("512m", 512 << 20), ("250kb", 250000), ("4096", 4096), (8192, 8192),
])
def test_sizes_count_in_1024s_with_k_m_g_t_and_in_1000s_with_kb_mb_gb_tb(tmp_path, text, size):
    value = f'"{text}"' if isinstance(text, str) else text
    cfg = loaded(tmp_path, image(f"disk {{\n  min_size = {value}\n}}\n"))
    assert cfg.images["u"].disk.min_size == size


def test_an_image_without_a_disk_block_has_hints_that_narrow_nothing(tmp_path):
    cfg = loaded(tmp_path, image("", destination="/dev/sda"))
    assert cfg.images["u"].disk == DiskHints()
    assert DiskHints().to_json() == {}


def test_hints_travel_as_only_the_keys_that_are_set():
    hints = DiskHints(min_size=5, rotational=False, path="/dev/loop*")
    assert hints.to_json() == {"min_size": 5, "rotational": False, "path": "/dev/loop*"}
    assert DiskHints(**hints.to_json()) == hints


def test_every_hint_the_config_reads_is_one_a_task_carries_with_its_type():
    fields = {f.name for f in dataclasses.fields(DiskHints)}
    assert {k.field for k in DISK_HINTS.keys} == fields == set(TASK_HINTS)
    hints = DiskHints(min_size=1, max_size=2, model="m", serial="s", wwn="w", rotational=True, path="p")
    assert {k: type(v) for k, v in hints.to_json().items()} == TASK_HINTS


@pytest.mark.parametrize("body, expected", [
    ("disk {\n  modell = \"x\"\n}\n",
     "5:5: image 'u': disk: unknown key 'modell'; did you mean 'model'?"),
    ("disk {\n  min_size = \"lots\"\n}\n",
     "5:5: image 'u': disk: 'min_size' must be a size such as \"100G\", \"500 GB\" or "
     "\"1.5TiB\" (K, M, G, T count 1024s, KB, MB, GB, TB 1000s), found 'lots'"),
    ("disk {\n  max_size = 0\n}\n", "5:5: image 'u': disk: 'max_size' must be more than 0 bytes, found 0"),
    ("disk {\n  rotational = \"yes\"\n}\n",
     "5:5: image 'u': disk: 'rotational' must be true or false, found a string"),
    ("disk {\n  serial = 12\n}\n", "5:5: image 'u': disk: 'serial' must be a string, found a number"),
    ("disk {\n  path = \"\"\n}\n", "5:5: image 'u': disk: 'path' must not be empty"),
    ("disk {\n  min_size = \"2T\"\n  max_size = \"1T\"\n}\n",
     "4:3: image 'u': disk: min_size (2199023255552 bytes) is larger than max_size "
     "(1099511627776 bytes): no disk can fit"),
    ("disk \"a\" {\n}\n", "4:3: image 'u': a disk block takes no name, as in disk { ... }"),
    ("disk {\n}\ndisk {\n}\n", "6:3: image 'u': a second disk block (the first is at line 4); merge them"),
    ("disk = { min_size = 5 }\n", "4:3: image 'u': 'disk' is a block: write disk { ... } without '='"),
    ("disks {\n}\n", "4:3: image 'u': unexpected block 'disks'; did you mean 'disk'? (blocks here: disk)"),
    ("disk {\n  inner {\n  }\n}\n",
     "5:5: image 'u': disk: unexpected block 'inner' (only key = value here)"),
])
def test_each_mistake_in_a_disk_block_is_reported_where_it_stands(tmp_path, body, expected):
    assert errors(tmp_path, image(body)) == [expected]


def test_hints_with_a_fixed_destination_are_refused_as_doing_nothing(tmp_path):
    assert errors(tmp_path, image("disk {\n  model = \"x\"\n}\n", destination="/dev/sda")) == [
        "4:3: image 'u': a disk block narrows destination = \"auto\", but the destination is "
        "\"/dev/sda\" (set destination = \"auto\" or remove the block)"]


def test_auto_is_refused_for_a_tar_image_that_needs_a_directory(tmp_path):
    assert errors(tmp_path, image("type = \"TAR\"\n")) == [
        "3:3: image 'u': destination = \"auto\" chooses a disk; a TAR image is extracted into "
        "a directory: give its path"]


def test_check_config_shows_the_hints_of_an_auto_destination(tmp_path):
    cfg = loaded(tmp_path, image("disk {\n  min_size = \"100G\"\n  model = \"Samsung*\"\n"
                                 "  rotational = false\n}\n"))
    assert '    disk         min_size 100.0 GiB, model "Samsung*", rotational false' \
        in describe(cfg).splitlines()


HOST_DISK = 'host "10.0.0.1" {\n  disk {\n    serial = "S4X*"\n    min_size = "100G"\n  }\n}\n'


def test_a_hosts_disk_block_puts_its_hints_over_those_of_its_image(tmp_path):
    cfg = loaded(tmp_path, image('disk {\n  min_size = "50G"\n  rotational = false\n}\n')
                 + HOST_DISK)
    host = cfg.hosts["10.0.0.1"]
    assert host.disk == DiskHints(min_size=100 << 30, serial="S4X*")
    assert cfg.images["u"].disk.under(host.disk) == DiskHints(
        min_size=100 << 30, serial="S4X*", rotational=False)
    assert 'disk: min_size 100.0 GiB, serial "S4X*"' in describe(cfg)


def test_a_hosts_disk_block_for_an_image_written_to_a_path_is_refused_at_the_block(tmp_path):
    assert errors(tmp_path, image("", destination="/dev/sda") + HOST_DISK) == [
        "10:3: host '10.0.0.1': a disk block narrows destination = \"auto\", but image 'u' of "
        "its clientgroup 'g' writes to \"/dev/sda\" (set destination = \"auto\" there or "
        "remove the block)"]
