"""A room's hosts as a table (`hosts_file = "room-b12.csv"`), for rooms whose names and
numbers live in a spreadsheet rather than in one `host` block per machine.

One host per line; the first line names the columns: `ip` (required), `name` and `mac`
(optional), every other column a var (`room` -> #VAR:room#). Cells are separated by
commas, or by semicolons or tabs when the header is (spreadsheets in some languages
save that way). Blank lines and lines starting with `#` are skipped; an empty cell sets
nothing, so a script asking for that var on that host is a config error, not "". Every
problem is named `file:line: message`, all at once, as in the config itself.
"""

import csv
import ipaddress
from typing import Dict, List, Optional, Tuple

from thepusher.config.model import Host, normalize_host, normalize_mac
from thepusher.config.placeholders import hostname_problem, var_problem

KNOWN = ("ip", "name", "mac")
Problem = Tuple[int, str]  # line, message


def read(path: str) -> Tuple[List[Tuple[Host, str]], List[Problem]]:
    """The file's hosts, each with its MAC ("" if none given), and its problems by line.
    OSError when it cannot be read at all."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        return [], [(line, f"not UTF-8 text (byte 0x{data[e.start]:02x})")]
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return [], [(1, "no header line (such as ip,name,room) and no hosts")]
    problems: List[Problem] = []
    header_line, header = lines[0]
    delimiter = next((d for d in (",", ";", "\t") if d in header), ",")
    columns = [c.strip() for c in _cells(header, delimiter)]
    columns = [c.lower() if c.lower() in KNOWN else c for c in columns]
    for i, column in enumerate(columns):
        problem = None if column in KNOWN else var_problem(column, "", columns[:i])
        if column in columns[:i]:
            problem = f"column {column!r} is there twice"
        if problem:
            problems.append((header_line, problem))
    if "ip" not in columns:
        problems.append((header_line, f"the first line must name the columns, one of "
                        f"them ip (as in ip,name,room); found {header.strip()!r}"))
    if problems:
        return [], problems
    hosts: List[Tuple[Host, str]] = []
    seen: Dict[str, int] = {}
    for n, line in lines[1:]:
        cells = [c.strip() for c in _cells(line, delimiter)]
        if len(cells) != len(columns):
            problems.append((n, f"{len(cells)} cell{'s' if len(cells) != 1 else ''}, but "
                            f"the header names "
                            f"{len(columns)} ({delimiter.join(columns)})"))
            continue
        row = dict(zip(columns, cells))
        found = _host(path, n, row, problems)
        if found is None:
            continue
        if found[0].address in seen:
            problems.append((n, f"host {found[0].address} is already on line "
                            f"{seen[found[0].address]}"))
            continue
        seen[found[0].address] = n
        hosts.append(found)
    return hosts, problems


def _cells(line: str, delimiter: str) -> List[str]:
    return next(csv.reader([line], delimiter=delimiter, skipinitialspace=True), [])


def _host(path: str, n: int, row: Dict[str, str],
          problems: List[Problem]) -> Optional[Tuple[Host, str]]:
    """One line's Host and MAC, or None with its problems added."""
    before = len(problems)
    try:
        address = normalize_host(str(ipaddress.ip_address(row["ip"])))
    except ValueError:
        problems.append((n, f"ip {row['ip']!r} is not an IPv4 or IPv6 address"))
        address = row["ip"]
    name = row.get("name", "")
    if name and hostname_problem(name):
        problems.append((n, f"name {hostname_problem(name)}"))
    mac = row.get("mac", "")
    if mac and normalize_mac(mac) is None:
        problems.append((n, f"mac {mac!r} must look like 52:54:00:12:34:56"))
    host_vars = {k: v for k, v in row.items() if k not in KNOWN and v}
    for key, value in host_vars.items():
        problem = var_problem(key, value)
        if problem:
            problems.append((n, problem))
    if len(problems) > before:
        return None
    host = Host(address=address, line=n, name=name, vars=host_vars, source=path)
    return host, normalize_mac(mac) if mac else ""
