"""scones.asl's modules import each other one way: no cycle, not even through a
function-local import (which only hides a cycle from the interpreter, not from a reader)."""

from __future__ import annotations

import ast
from pathlib import Path

import scones.asl

PACKAGE = "scones.asl"
PACKAGE_DIR = Path(scones.asl.__file__).parent


def _module_names(package_dir: Path) -> set[str]:
    return {path.stem for path in package_dir.glob("*.py")}


def _imported_siblings(source: str, package: str, modules: set[str]) -> set[str]:
    """Sibling modules a module imports anywhere in its body ("__init__" for the package)."""
    found: set[str] = set()

    def add(dotted: str, names: list[str]) -> None:
        # `dotted` is relative to the package: "" is the package itself.
        head = dotted.split(".")[0]
        if head in modules:
            found.add(head)
            return
        if dotted == "":
            for name in names:
                found.add(name if name in modules else "__init__")

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names]
            if node.level == 1:
                add(node.module or "", names)
            elif node.level == 0 and node.module is not None:
                if node.module == package:
                    add("", names)
                elif node.module.startswith(package + "."):
                    add(node.module[len(package) + 1 :], names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == package:
                    found.add("__init__")
                elif alias.name.startswith(package + "."):
                    add(alias.name[len(package) + 1 :], [])
    return found


def import_graph(package_dir: Path, package: str) -> dict[str, set[str]]:
    modules = _module_names(package_dir)
    return {
        name: _imported_siblings(
            (package_dir / f"{name}.py").read_text(encoding="utf-8"), package, modules
        )
        - {name}
        for name in sorted(modules)
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> list[str] | None:
        if name in visiting:
            return [*visiting[visiting.index(name) :], name]
        if name in done:
            return None
        visiting.append(name)
        for target in sorted(graph.get(name, ())):
            cycle = visit(target)
            if cycle is not None:
                return cycle
        visiting.pop()
        done.add(name)
        return None

    for name in sorted(graph):
        cycle = visit(name)
        if cycle is not None:
            return cycle
    return None


def test_scones_asl_has_no_import_cycle() -> None:
    graph = import_graph(PACKAGE_DIR, PACKAGE)
    assert len(graph) > 10  # the package's modules were found
    assert "runtime" in graph["handlers"]  # and their imports
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


def test_query_languages_sit_below_the_compiler_and_the_runtime() -> None:
    graph = import_graph(PACKAGE_DIR, PACKAGE)
    for module in ("query_jsonpath", "query_jsonata", "states", "jsonata_expressions"):
        higher = graph[module] & {"definition", "runtime", "interpreter", "handlers", "tasks"}
        assert not higher, f"{module} imports {higher}"


def test_a_function_level_import_cycle_is_found(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("def f():\n    from .high import g\n    return g\n")
    (package / "high.py").write_text("from . import low\n\ndef g():\n    return low\n")
    (package / "leaf.py").write_text("import json\n")
    graph = import_graph(package, "pkg")
    assert graph["low"] == {"high"}
    assert graph["high"] == {"low"}
    assert find_cycle(graph) in (["high", "low", "high"], ["low", "high", "low"])


def test_cycles_through_the_package_and_absolute_imports_are_found(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from .api import run\n")
    type_checking_import = "import typing\nif typing.TYPE_CHECKING:\n    import pkg.util\n"
    (package / "api.py").write_text(type_checking_import)
    (package / "util.py").write_text("from pkg import VERSION\n")
    graph = import_graph(package, "pkg")
    assert graph["api"] == {"util"}
    assert graph["util"] == {"__init__"}
    assert find_cycle(graph) == ["__init__", "api", "util", "__init__"]
