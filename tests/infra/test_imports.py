"""The import graph of our own code: no cycle, no private name taken from another package.

Read statically with `ast` (no import is executed), over every module of every top-level package and
over every import statement in it: at the top, under `if TYPE_CHECKING:` and inside functions. A lazy
import hides a dependency from a reader but not from this graph, so a cycle cannot be broken by moving
one of its imports into a function.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("contracts", "stacks", "infra", "ml", "local", "runbooks", "policies", "mlplat")


@dataclass(frozen=True)
class Import:
    line: int
    target: str  # the module imported (dotted), one of ours
    names: tuple[str, ...]  # the names taken from it (`from target import a, b`), empty for `import target`


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(path, root)] = path
    return found


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(name: str, path: Path, known: set[str]) -> list[Import]:
    """Every import of one of `known` in the module, wherever the statement is."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(node.lineno, alias.name, ()) for alias in node.names if alias.name in known]
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, name, path.name == "__init__.py")
            for alias in node.names:
                # `from package import module` imports the module; `from module import name`, the module
                if f"{source}.{alias.name}" in known:
                    found.append(Import(node.lineno, f"{source}.{alias.name}", ()))
                elif source in known:
                    found.append(Import(node.lineno, source, (alias.name,)))
    return found


def graph(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    mods = modules(root, packages)
    return {name: {i.target for i in imports_of(name, path, set(mods))} - {name} for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(edges) + 100))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)


def _package(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


def private_imports(root: Path, folders: tuple[str, ...] | None = None) -> list[str]:
    """`from X import _name` where X is one of our modules outside the importer's own package."""
    folders = PACKAGES if folders is None else folders
    mods = modules(root, PACKAGES)
    problems = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            name = module_name(path, root)
            own = _package(name, path.name == "__init__.py")
            for imp in imports_of(name, path, set(mods)):
                theirs = _package(imp.target, mods[imp.target].name == "__init__.py")
                private = [n for n in imp.names if n.startswith("_") and not n.startswith("__")]
                if private and theirs != own:
                    problems.append(f"{path.relative_to(root)}:{imp.line} imports {', '.join(private)} "
                                    f"from {imp.target} (private to {theirs})")
    return problems


def test_no_import_cycle():
    assert cycles(graph(ROOT)) == []


def test_no_module_imports_a_private_name_of_another_package():
    """Product code only: a unit test may reach into the internals of the module it tests."""
    assert private_imports(ROOT) == []


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_cycle_check_sees_function_level_and_type_checking_imports(tmp_path):
    """The checker is not vacuous: a cycle closed by a lazy import or a TYPE_CHECKING import is found."""
    _write(tmp_path, {
        "app/__init__.py": "", "app/a/__init__.py": "", "app/b/__init__.py": "",
        "app/a/card.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app.b.reg import Result\n",
        "app/b/reg.py": "def f():\n    from app.a import card\n    return card\n",
        "app/b/ok.py": "from . import reg\n",
        "lib/__init__.py": "", "lib/x.py": "import app.b.ok\n",
    })
    edges = graph(tmp_path, ("app", "lib"))
    assert edges["app.b.ok"] == {"app.b.reg"} and edges["lib.x"] == {"app.b.ok"}
    assert cycles(edges) == [["app.a.card", "app.b.reg"]]


@pytest.mark.parametrize("text, expected", [
    ("from app.b.reg import _helper\n", ["app/a/card.py:1 imports _helper from app.b.reg (private to app.b)"]),
    ("from app.b.reg import helper, __version__\n", []),
    ("from app.a.util import _own\n", []),  # the same package: its own business
])
def test_private_import_check(tmp_path, monkeypatch, text, expected):
    monkeypatch.setattr(sys.modules[__name__], "PACKAGES", ("app",))
    _write(tmp_path, {"app/__init__.py": "", "app/a/__init__.py": "", "app/b/__init__.py": "", "app/b/reg.py": "",
                      "app/a/util.py": "", "app/a/card.py": text})
    assert private_imports(tmp_path, ("app",)) == expected
