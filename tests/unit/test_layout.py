"""The tree is the architecture (docs/architecture.md): these tests keep it so.

Rooms import only the rooms below them, no two modules import each other (directly
or round about), the client side loads no master module, and no module grows past
what one reader takes in.
"""

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

from tests.conftest import ENV, ROOT

PACKAGE = ROOT / "thepusher"
MAX_LINES = 400

# What each room may import besides itself: the arrows of docs/architecture.md.
# A room is a subpackage of thepusher, or one of the small shared top-level modules.
SHARED = {"plan", "units", "console", "signing"}
ALLOWED = {
    "image": {"units", "console", "syscalls"},
    "config": {"image", "units"},
    "disk": {"image", "syscalls"},
    "chain": {"image", "disk"},
    "client": {"chain", "disk", "image", "config", "syscalls"} | SHARED,
    "master": {"config", "image", "chain", "netboot"} | SHARED,
    "netboot": {"signing"},
    "plan": set(),
    "units": set(),
    "syscalls": set(),
    "console": {"units"},
    "signing": {"config"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: Set[str]) -> Set[str]:
    """The thepusher modules `path` imports, at any depth of its code (lazy imports and
    those for type checking too). `from package import module` counts as the module only:
    Python runs every package's __init__ on the way to any of its modules anyway."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return found & modules


def graph() -> Dict[str, Set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(p, set(paths)) - {name} for name, p in paths.items()}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def cycles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_round_about():
    assert cycles(graph()) == []


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_rooms_import_only_the_rooms_below_them():
    wrong = []
    for module, deps in graph().items():
        here = room(module)
        if here not in ALLOWED:  # the entry points (cli, demo, __main__) may use any room
            continue
        for dep in deps:
            there = room(dep)
            if there and there != here and there not in ALLOWED[here]:
                wrong.append(f"{module} imports {dep}")
    assert wrong == []


def test_the_client_side_loads_no_master_module():
    code = ("import sys, thepusher.cli, thepusher.client.agent, thepusher.client.upload, "
            "thepusher.client.status_table; "
            "print(sorted(m for m in sys.modules if m.startswith('thepusher.master')))")
    out = subprocess.run([sys.executable, "-c", code], env=ENV, cwd=ROOT, check=True,
                         stdout=subprocess.PIPE, universal_newlines=True).stdout
    assert out.strip() == "[]"


def test_no_module_is_longer_than_one_reading():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}
