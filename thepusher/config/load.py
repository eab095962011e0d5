"""Read `thePusher-config.hcl` (in the image directory) into the model, or say every
problem in it at once.

The file format is the original tool's (see `example-config.hcl` and `docs/config.md`):
`image "name" { ... }` blocks describe images, `clientgroup "name" { ... }` blocks say
which hosts, in chain order, receive which image. Every semantic problem in the file is
collected and reported at once, each as `file:line:col: message`, so an administrator
fixes the whole file in one pass instead of one error per restart. What each key
accepts is schema.py's table; this module walks the file against it and then checks
what spans blocks (names, image references, hosts in two groups, ...).

A missing image *file* is deliberately not a load error: the master may start before
an image has been uploaded with `put-image`. `Config.file_problems()` reports those,
and files whose first bytes contradict their declared compression.
"""

import difflib
import os
from typing import Any, Dict, List, Optional, Tuple

from thepusher.config import combinations, hcl, hostsfile, identity
from thepusher.config.entry import Entry
from thepusher.config.model import Config, ConfigError, Host, Settings
from thepusher.config.schema import BLOCKS, SETTINGS, BlockSpec, Key, Nested
from thepusher.config.values import Invalid


# How messages about an unnamed block speak of it, and the name they suggest.
NOUNS = {"clientgroup": "group"}
EXAMPLE_NAMES = {"image": "disk", "clientgroup": "room1", "host": "10.0.0.21"}


def _suggest(word: str, known: List[str]) -> str:
    """'; did you mean 'x'?' for a likely typo (case-insensitive), else ''."""
    lowered = {k.lower(): k for k in known}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f"; did you mean '{lowered[close[0]]}'?" if close else ""


class _Loader:
    def __init__(self, path: str, image_dir: str) -> None:
        self.path = path
        self.image_dir = image_dir
        self.errors: List[Tuple[int, int, str]] = []
        self.entries: List[Entry] = []
        self.settings: Dict[str, Any] = {}
        self.setting_attrs: Dict[str, hcl.Attribute] = {}
        self.hosts_file = ""  # its path, when the config names one
        self.file_errors: List[Tuple[int, str]] = []  # line, message in the hosts file
        self.file_hosts: List[Tuple[Host, str]] = []  # the hosts file's, with their MACs

    def error(self, line: int, col: int, message: str) -> None:
        self.errors.append((line, col, message))

    def read(self, body: hcl.Body) -> None:
        settings = {k.hcl: k for k in SETTINGS}
        for attr in body.attributes:
            key = settings.get(attr.key)
            if key is None:
                hint = _suggest(attr.key, list(settings)) or (
                    f" (top-level settings: {', '.join(settings)}; image, group and host keys "
                    f"go inside {', '.join(list(BLOCKS)[:-1])} or {list(BLOCKS)[-1]} blocks)"
                )
                self.error(attr.line, attr.col, f"unknown setting '{attr.key}'{hint}")
                continue
            self.setting_attrs[key.field] = attr
            try:
                self.settings[key.field] = key.convert(attr.key, attr.value)
            except Invalid as e:
                for message in e.messages:
                    self.error(attr.line, attr.col, message)
        for block in body.blocks:
            spec = BLOCKS.get(block.type)
            if spec is None:
                self.error(
                    block.line,
                    block.col,
                    f"unknown block type '{block.type}'{_suggest(block.type, list(BLOCKS))} "
                    f"(known: {', '.join(sorted(BLOCKS))})",
                )
                continue
            self.entries.append(self.read_block(block, spec))

    def read_block(self, block: hcl.Block, spec: BlockSpec) -> Entry:
        before = len(self.errors)
        name: Optional[str] = None
        if len(block.labels) == 1 and not block.labels[0].strip():
            example = EXAMPLE_NAMES.get(block.type, "name")
            self.error(block.line, block.col,
                       f"{block.type} name is empty: give the {NOUNS.get(block.type, block.type)} "
                       f'a name, as in {block.type} "{example}" {{ ... }}')
            what = f"{block.type} block"
        elif len(block.labels) == 1:
            name = block.labels[0]
            what = f"{block.type} '{name}'"
        else:
            found = "none" if not block.labels else ", ".join(f'"{x}"' for x in block.labels)
            self.error(
                block.line,
                block.col,
                f"{block.type} block must have exactly one label, its name, "
                f'as in {block.type} "name" {{ ... }}; found {found}',
            )
            what = f"{block.type} block"
        fields, attrs = self.read_keys(block.body, spec.keys, what, spec.nested)
        blocks = self.read_nested(block.body, spec.nested, what, fields)
        for key in spec.keys:
            if key.required and key.hcl not in attrs:
                self.error(block.line, block.col, f"{what}: missing required key '{key.hcl}'")
        return Entry(block.type, name, what, block, fields, attrs, blocks,
                      complete=len(self.errors) == before)

    def read_keys(self, body: hcl.Body, spec: Tuple[Key, ...], what: str,
                  nested: Tuple[Nested, ...] = ()) -> Tuple[Dict[str, Any], Dict[str, hcl.Attribute]]:
        """A body's `key = value` lines converted by `spec`: the fields that were valid,
        and where each key stands."""
        keys = {k.hcl: k for k in spec}
        fields: Dict[str, Any] = {}
        attrs: Dict[str, hcl.Attribute] = {}
        for attr in body.attributes:
            key = keys.get(attr.key)
            if key is None:
                if attr.key in {n.hcl for n in nested}:
                    self.error(attr.line, attr.col, f"{what}: '{attr.key}' is a block: write "
                                                    f"{attr.key} {{ ... }} without '='")
                    continue
                hint = _suggest(attr.key, list(keys)) or f" (known keys: {', '.join(keys)})"
                self.error(attr.line, attr.col, f"{what}: unknown key '{attr.key}'{hint}")
                continue
            attrs[attr.key] = attr
            try:
                fields[key.field] = key.convert(attr.key, attr.value)
            except Invalid as e:
                for message in e.messages:
                    self.error(attr.line, attr.col, f"{what}: {message}")
                if e.partial is not None:
                    fields[key.field] = e.partial
        return fields, attrs

    def read_nested(self, body: hcl.Body, nested: Tuple[Nested, ...], what: str,
                    fields: Dict[str, Any]) -> Dict[str, hcl.Block]:
        """The blocks inside a block (`disk { ... }`), each built into its field of
        `fields`; returns where each stands."""
        specs = {n.hcl: n for n in nested}
        found: Dict[str, hcl.Block] = {}
        for inner in body.blocks:
            spec = specs.get(inner.type)
            if spec is None:
                allowed = f"blocks here: {', '.join(specs)}" if specs else "only key = value here"
                self.error(inner.line, inner.col, f"{what}: unexpected block '{inner.type}'"
                                                  f"{_suggest(inner.type, list(specs))} ({allowed})")
                continue
            if inner.type in found:
                self.error(inner.line, inner.col, f"{what}: a second {inner.type} block (the first "
                                                  f"is at line {found[inner.type].line}); merge them")
                continue
            found[inner.type] = inner
            if inner.labels:
                self.error(inner.line, inner.col, f"{what}: a {inner.type} block takes no name, "
                                                  f"as in {inner.type} {{ ... }}")
            inner_what = f"{what}: {inner.type}"
            before = len(self.errors)
            values, _ = self.read_keys(inner.body, spec.keys, inner_what)
            for deeper in inner.body.blocks:
                self.error(deeper.line, deeper.col,
                           f"{inner_what}: unexpected block '{deeper.type}' (only key = value here)")
            try:  # also with errors above: what spans the valid keys is reported now too
                value = spec.build(values)
            except Invalid as e:
                for message in e.messages:
                    self.error(inner.line, inner.col, f"{inner_what}: {message}")
                continue
            if len(self.errors) == before:
                fields[spec.field] = value
        return found

    def read_hosts_file(self) -> None:
        """`hosts_file`, relative to the config's directory."""
        name = self.settings.get("hosts_file")
        if not name:
            return
        path = self.hosts_file = os.path.join(os.path.dirname(self.path), name)
        try:
            self.file_hosts, problems = hostsfile.read(path)
        except (OSError, ValueError) as e:
            attr = self.setting_attrs["hosts_file"]
            reason = getattr(e, "strerror", None) or e
            self.error(attr.line, attr.col, f"cannot read hosts file {path}: {reason}")
            return
        self.file_errors.extend(problems)

    def check_identities(self) -> None:
        identity.check(self.entries, self.file_hosts, self.error,
                       lambda line, message: self.file_errors.append((line, message)))

    def check_names(self) -> None:
        first: Dict[Tuple[str, str], Entry] = {}
        for entry in self.entries:
            if entry.name is None:
                continue
            seen = first.setdefault((entry.type, entry.name), entry)
            if seen is not entry:
                entry.complete = False
                self.error(
                    entry.block.line,
                    entry.block.col,
                    f"duplicate {entry.type} '{entry.name}': already defined at line {seen.block.line}",
                )

    def check_image_refs(self) -> None:
        images = list(
            dict.fromkeys(e.name for e in self.entries if e.type == "image" and e.name is not None)
        )
        for entry in self.entries:
            ref = entry.fields.get("image") if entry.type == "clientgroup" else None
            if ref is None or ref in images:
                continue
            attr = entry.attrs["image"]
            hint = _suggest(ref, images) or (
                f" (defined images: {', '.join(images)})" if images else " (no images are defined)"
            )
            self.error(attr.line, attr.col, f"{entry.what}: image '{ref}' is not defined{hint}")

    def check_hosts(self) -> None:
        """A host is one machine in one chain: it may appear in one group only."""
        owner: Dict[str, Entry] = {}
        for entry in self.entries:
            for host in entry.fields.get("hosts", []) if entry.type == "clientgroup" else []:
                other = owner.setdefault(host, entry)
                if other is entry:
                    continue
                here, there = entry.attrs["hosts"], other.attrs["hosts"]
                self.error(
                    here.line,
                    here.col,
                    f"host {host} is in {other.what} (line {there.line}) "
                    f"and in {entry.what} (line {here.line}); a host belongs to one group only",
                )

    def config(self) -> Config:
        tables: Dict[str, Dict[str, Any]] = {spec.table: {} for spec in BLOCKS.values()}
        for entry in self.entries:
            spec = BLOCKS[entry.type]
            assert entry.name is not None and entry.complete
            tables[spec.table][entry.name] = spec.build(entry.name, entry.fields, entry.block, self.image_dir)
        tables["hosts"].update((host.address, host) for host, _mac in self.file_hosts)
        return Config(
            path=self.path, image_dir=self.image_dir, settings=Settings(**self.settings), **tables
        )


def load(path: str, image_dir: Optional[str] = None) -> Config:
    """Read and check a config file; raise ConfigError listing every problem in it.

    `image_dir` (the master's -S) defaults to the directory holding the config file.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError([f"cannot read config file {path}: {e.strerror or e}"]) from None
    except ValueError as e:  # e.g. a NUL byte in the path
        raise ConfigError([f"cannot read config file {path!r}: {e}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigError(
            [f"{path}:{line}:{col}: not UTF-8 text (byte 0x{data[e.start]:02x})"]
        ) from None
    try:
        body = hcl.parse(text, path)
    except hcl.HCLError as e:
        raise ConfigError([str(e)]) from None
    if image_dir is None:
        image_dir = os.path.dirname(path)
    loader = _Loader(os.path.abspath(path), os.path.abspath(image_dir))
    loader.read(body)
    identity.address_labels(loader.entries, loader.error)
    loader.check_names()
    loader.check_image_refs()
    loader.check_hosts()
    combinations.check(loader.entries, loader.error)
    loader.read_hosts_file()
    loader.check_identities()
    if loader.errors or loader.file_errors:
        raise ConfigError(
            [
                f"{path}:{line}:{col}: {msg}"
                for line, col, msg in sorted(loader.errors, key=lambda e: e[:2])
            ] + [f"{loader.hosts_file}:{line}: {msg}" for line, msg in sorted(loader.file_errors)]
        )
    return loader.config()
