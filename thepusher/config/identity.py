"""Checks that span hosts, groups and images: who a host is (host blocks and the hosts
file), and whether every script and `personalize` has what it needs for every host it
runs on. A script asking for `#VAR:room#` on a host without one is found here, by
check-config, not on the machine as an empty string.
"""

import ipaddress
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

from thepusher.config.entry import Entry
from thepusher.config.model import Host, normalize_host
from thepusher.config.placeholders import SAFE_CHARACTERS, SAFE_VALUE, uses, vars_used

Report = Callable[[int, int, str], None]  # line, col, message in the config file
FileReport = Callable[[int, str], None]  # line, message in the hosts file
SCRIPTS = (("preImage", "pre_image"), ("postImage", "post_image"))


@dataclass
class _Known:
    host: Host
    where: str  # for messages about two places: "line 3" or "room.csv:4"
    report: Callable[[str], None]  # an error at its block or its line


def address_labels(entries: Sequence[Entry], error: Report) -> None:
    """A host block's label is an address a group lists: check it and normalise it,
    before duplicate names are looked for ('::ffff:10.0.0.1' is '10.0.0.1')."""
    for entry in entries:
        if entry.type != "host" or entry.name is None:
            continue
        try:
            entry.name = normalize_host(str(ipaddress.ip_address(entry.name)))
        except ValueError:
            error(entry.block.line, entry.block.col,
                  f"host block: '{entry.name}' is not an IPv4 or IPv6 address (a host block "
                  f"is labelled by the address a clientgroup lists, as in host \"10.0.0.21\")")
            entry.name, entry.complete = None, False


def check(entries: Sequence[Entry], file_hosts: List[Tuple[Host, str]], error: Report,
          file_error: FileReport) -> None:
    """Every cross-check of identities; a problem goes to `file_error` at its line of the
    hosts file, or to `error` at its place in the config."""
    known = _known(entries, file_hosts, error, file_error)
    groups = [e for e in entries if e.type == "clientgroup" and e.name is not None]
    images = {e.name: e for e in entries if e.type == "image" and e.name is not None}
    listed = {h: g for g in groups for h in g.fields.get("hosts", [])}
    for address, k in known.items():
        if address not in listed:
            k.report(f"host {address} is in no clientgroup's hosts")
    _names(known)
    _macs(groups, file_hosts, file_error)
    for image in images.values():
        _image(image, [g for g in groups if g.fields.get("image") == image.name], known, error)


def _known(entries: Sequence[Entry], file_hosts: List[Tuple[Host, str]], error: Report,
           file_error: FileReport) -> Dict[str, _Known]:
    known: Dict[str, _Known] = {}
    for entry in entries:
        if entry.type == "host" and entry.name is not None and entry.name not in known:
            host = Host(address=entry.name, line=entry.block.line, **entry.fields)
            block = entry.block
            known[entry.name] = _Known(host, f"line {block.line}",
                                       lambda m, b=block: error(b.line, b.col, m))
    for host, _mac in file_hosts:
        if host.address in known:
            file_error(host.line, f"host {host.address} also has a host block "
                                  f"({known[host.address].where} of the config): give it in "
                                  f"one place")
            continue
        known[host.address] = _Known(host, f"{host.source}:{host.line}",
                                     lambda m, n=host.line: file_error(n, m))
    return known


def _names(known: Dict[str, _Known]) -> None:
    """Two machines with one name would be one machine twice on the network."""
    first: Dict[str, _Known] = {}
    for k in known.values():
        if not k.host.name:
            continue
        other = first.setdefault(k.host.name.lower(), k)
        if other is not k:
            k.report(f"name '{k.host.name}' is already {other.host.address}'s ({other.where})")


def _macs(groups: List[Entry], file_hosts: List[Tuple[Host, str]],
          file_error: FileReport) -> None:
    """A hosts file's MACs join their group's `macs` (Wake-on-LAN, #MAC#)."""
    group_of = {h: g for g in groups for h in g.fields.get("hosts", [])}
    for host, mac in file_hosts:
        group = group_of.get(host.address)
        if not mac or group is None:
            continue
        macs = group.fields.setdefault("macs", {})
        if macs.get(host.address, mac) != mac:
            file_error(host.line, f"mac {mac} of {host.address}, but the macs of "
                                  f"{group.what} say {macs[host.address]}")
            continue
        macs[host.address] = mac


def _image(image: Entry, groups: List[Entry], known: Dict[str, _Known], error: Report) -> None:
    f, attrs = image.fields, image.attrs
    for key, field in SCRIPTS:
        script = f.get(field, "")
        if key not in attrs or not script:
            continue
        at = attrs[key]
        names = [("IMAGE", image.name or "", image.what)]
        names += [("GROUP", g.name or "", g.what) for g in groups]
        for word, value, what in names:
            if uses(script, word) and not SAFE_VALUE.match(value):
                error(at.line, at.col,
                      f"{image.what}: {key} uses #{word}#, but {what} has characters a shell "
                      f"would read (only {SAFE_CHARACTERS}); rename it, or use "
                      f"\"$THEPUSHER_{word}\" in the script")
        for name in vars_used(script):
            for group in groups:
                lacking = [h for h in group.fields.get("hosts", [])
                           if h not in known or name not in known[h].host.vars]
                if lacking:
                    error(at.line, at.col,
                          f"{image.what}: {key} uses #VAR:{name}#, but {_hosts(lacking)} of "
                          f"{group.what} {'has' if len(lacking) == 1 else 'have'} no var "
                          f"'{name}' (give it in a host block or the hosts file)")
    if f.get("personalize") and "personalize" in attrs:
        at = attrs["personalize"]
        if f.get("type") == "TAR":
            error(at.line, at.col, f"{image.what}: personalize = \"{f['personalize']}\" changes "
                                   f"a written disk; a TAR image is extracted into files "
                                   f"(do it in postImage)")
        for group in groups:
            nameless = [h for h in group.fields.get("hosts", [])
                        if h not in known or not known[h].host.name]
            if nameless:
                error(at.line, at.col,
                      f"{image.what}: personalize = \"{f['personalize']}\" writes each host's "
                      f"name, and {_hosts(nameless)} of {group.what} "
                      f"{'has' if len(nameless) == 1 else 'have'} none (give it in a host "
                      f"block or the hosts file)")


def _hosts(hosts: List[str]) -> str:
    shown = ", ".join(hosts[:5]) + (f" and {len(hosts) - 5} more" if len(hosts) > 5 else "")
    return f"host{'s' if len(hosts) > 1 else ''} {shown}"
