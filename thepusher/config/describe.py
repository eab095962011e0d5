"""`thepusher check-config`: what a loaded config would deploy where, for a person."""

import os

from thepusher.config.model import Config, DiskHints
from thepusher.config.schema import TIMEOUTS


def _size(path: str) -> str:
    try:
        size = os.stat(path).st_size
    except OSError:
        return "missing"
    if not os.path.isfile(path):
        return "not a regular file"
    return _bytes(size)


def _bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # not reached


def _identity(cfg: Config, address: str) -> str:
    """'  pc-01  room=B12  disk: serial "S4X*"' for a host with a name, vars or disk
    hints, else ''."""
    host = cfg.hosts.get(address)
    if host is None:
        return ""
    words = [host.name or "(no name)"] + [f"{k}={v}" for k, v in host.vars.items()]
    if host.disk.to_json():
        words.append(f"disk: {_hints(host.disk)}")
    return "  " + "  ".join(words)


def _hints(hints: DiskHints) -> str:
    """'min_size 100.0 GiB, model "Samsung*"': the hints as check-config shows them."""
    shown = []
    for key, value in hints.to_json().items():
        if key.endswith("_size"):
            shown.append(f"{key} {_bytes(value)}")
        elif isinstance(value, bool):
            shown.append(f"{key} {str(value).lower()}")
        else:
            shown.append(f'{key} "{value}"')
    return ", ".join(shown)


def describe(cfg: Config) -> str:
    """A human summary for `thepusher check-config`: what would be deployed where."""
    out = [f"config     {cfg.path}", f"image dir  {cfg.image_dir}"]
    timeouts = ", ".join(f"{k.hcl} {getattr(cfg.settings, k.field):g} s" for k in TIMEOUTS)
    admin = "admin token set" if cfg.settings.admin_token else "no admin token (control from the master's host only)"
    out += [f"timeouts   {timeouts}", f"replay     {cfg.settings.replay_window:g} MiB",
            f"control    {admin}; Wake-on-LAN to {cfg.settings.wake_address}"]
    if cfg.settings.hosts_file:
        out.append(f"hosts file {cfg.settings.hosts_file}")
    out.append("")
    out.append(f"images ({len(cfg.images)}):")
    for image in cfg.images.values():
        out.append(f"  {image.name}")
        if image.comment:
            out.append(f"    comment      {image.comment}")
        out.append(f"    file         {image.filename} ({_size(image.path)})")
        out.append(f"    type         {image.type}, compression {image.compression}, "
                   f"verify {image.verify}")
        out.append(f"    destination  {image.destination}")
        if image.personalize:
            out.append(f"    personalize  {image.personalize} (each host's name, machine-id, "
                       f"SSH host keys)")
        if image.disk.to_json():
            out.append(f"    disk         {_hints(image.disk)}")
        for label, script in (("preImage", image.pre_image), ("postImage", image.post_image)):
            lines = script.rstrip("\n").split("\n") if script.strip() else []
            for i, text in enumerate(lines):
                out.append(f"    {label if i == 0 else '':<12} {text}")
    out.append("")
    out.append(f"client groups ({len(cfg.groups)}):")
    for group in cfg.groups.values():
        count = f"{len(group.hosts)} host{'s' if len(group.hosts) != 1 else ''}"
        chains = group.split(group.hosts)
        shape = "in chain order" if len(chains) == 1 else f"in {len(chains)} chains"
        out.append(f"  {group.name}: image {group.image}, {count} {shape}")
        out.append(f"    starts {group.start_rule()}")
        for n, chain in enumerate(chains, 1):
            if len(chains) > 1:
                out.append(f"    chain {n}:")
            for i, host in enumerate(chain, 1):
                out.append(f"    {i:>3}. {host}{_identity(cfg, host)}")
    return "\n".join(out)
