"""The package's shape, read from its source: no import cycle, no module past 400 lines.

Every import counts (module level, inside functions, under ``TYPE_CHECKING``): a cycle through
a function-level import is still two modules that each need the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "monps_store"
MAX_LINES = 400


def modules(root: Path = ROOT) -> dict[str, Path]:
    """The package's modules by dotted name (a package by its ``__init__.py``)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that module ``name`` (at ``path``) imports: ``from a import b``
    is the module ``a.b`` when there is one, else ``a``; relative imports are resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            # The longest of our modules it names: `from a import name` is `a` for a name that
            # is not a module, and a module outside the package is no part of the graph.
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    found = modules(root)
    return {name: imported(name, path, set(found)) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[tuple[list[str], set[str]]]:
    """For each group of modules that import each other, directly or not (Tarjan's strongly
    connected components): one cycle (its first module repeated last) and the whole group."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for child in sorted(graph[node]):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [(_cycle_in(graph, group), group) for group in groups]


def _cycle_in(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    # The shortest way back to the group's first module (breadth first, inside the group).
    start = min(group)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & group):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle in {group}")


def test_the_graph_reader_sees_every_kind_of_import(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "from pkg import a\n",
        "a.py": "import os\nfrom pkg.b import helper\n",
        "b.py": "def helper():\n    from pkg import sub\n",
        "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub import d\n",
        "sub/__init__.py": "from . import d\nfrom .. import c\n",
        "sub/d.py": "from ..a import name\nimport pkg.sub.d\n",
    }
    for name, text in files.items():
        (package / name).write_text(text)
    assert import_graph(package) == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b"},                  # from a module import a name: that module
        "pkg.b": {"pkg.sub"},                # inside a function; a subpackage
        "pkg.c": {"pkg.sub.d"},              # under TYPE_CHECKING
        "pkg.sub": {"pkg.sub.d", "pkg.c"},   # relative, one and two levels
        "pkg.sub.d": {"pkg.a"},              # itself left out
    }
    assert cycles(import_graph(package)) == [
        (["pkg.a", "pkg.b", "pkg.sub", "pkg.sub.d", "pkg.a"],
         {"pkg.a", "pkg.b", "pkg.c", "pkg.sub", "pkg.sub.d"})]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(
        " -> ".join(cycle) + (f" (and {', '.join(sorted(group - set(cycle)))} in the same knot)"
                              if group - set(cycle) else "")
        for cycle, group in found)


def test_no_module_of_the_package_is_over_400_lines():
    long = {name: length for name, path in modules().items()
            if (length := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split one along a seam): " + ", ".join(
        f"{name} ({length})" for name, length in sorted(long.items()))


def private_uses(root: Path = ROOT) -> list[str]:
    """Where a module of the package reads another module's underscored name: ``from
    monps_store.x import _name``, or ``x._name`` for a package module ``x`` it imported."""
    found = []
    for name, path in modules(root).items():
        tree = ast.parse(path.read_text(), str(path))
        ours: set[str] = set()  # local names bound to the package's modules
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(root.name):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{name}: from {node.module} import {alias.name}")
                    ours.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                ours |= {(a.asname or a.name).split(".")[0] for a in node.names
                         if a.name.startswith(root.name)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in ours and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                found.append(f"{name}: {node.value.id}.{node.attr}")
    return found


# peewee's own per-thread state, which the legacy bridge drives on purpose (see legacy.py).
_PEEWEE_STATE = {"monps_store.legacy: db._state"}


def test_no_module_reads_another_modules_private_names():
    found = [use for use in private_uses() if use not in _PEEWEE_STATE]
    assert not found, "private names read across modules:\n" + "\n".join(found)


def test_every_subpackage_is_listed_for_the_wheel():
    # pyproject.toml names the packages a plain `pip install .` ships: one left out installs
    # fine and fails at import, away from a checkout.
    import tomllib

    listed = set(tomllib.loads((ROOT.parent / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    found = {name for name, path in modules().items() if path.name == "__init__.py"}
    assert found <= listed, f"not in pyproject's packages: {sorted(found - listed)}"
