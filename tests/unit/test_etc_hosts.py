"""personalize's edit of /etc/hosts (disk/personalize.py): only the 127.0.1.1 line, with
the new name where the old one was."""

import pytest

from thepusher.disk.personalize import hosts_with

DEBIAN = "127.0.0.1\tlocalhost\n127.0.1.1\tgolden.lab\tgolden\n\n# IPv6\n::1 localhost\n"


@pytest.mark.parametrize("text, old, new_line", [
    (DEBIAN, "golden", "127.0.1.1\tpc-01.lab pc-01"),
    (DEBIAN, "golden.lab", "127.0.1.1\tpc-01.lab pc-01"),  # /etc/hostname held the FQDN
    ("127.0.1.1 other # a comment\n", "golden", "127.0.1.1\tpc-01"),
    ("127.0.1.1 golden-2 golden\n", "golden", "127.0.1.1\tgolden-2 pc-01"),
    ("127.0.1.1 golden\n", "", "127.0.1.1\tpc-01"),  # no /etc/hostname before
])
def test_the_127_0_1_1_line_gets_the_new_name_and_nothing_else_changes(text, old, new_line):
    new, said = hosts_with(text, old, "pc-01")
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("127.0.1.1"))
    assert new.splitlines() == lines[:at] + [new_line] + lines[at + 1:]
    assert said == new_line.replace("\t", " ")


def test_hosts_without_a_127_0_1_1_line_stay_as_they_are():
    text = "127.0.0.1 localhost\n# 127.0.1.1 golden\n"
    assert hosts_with(text, "golden", "pc-01") == (text, "")
