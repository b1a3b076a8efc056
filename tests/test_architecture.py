"""The layering of docs/architecture.md, enforced: a package never imports one above it.

Every import counts, at module level or inside a function: a function-local import that dodges a
cycle is still a cycle. Run on the source text (ast), so nothing is imported to check it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "scones"

# Lowest first. A package may import packages of lower layers only; packages of one layer are
# independent of each other. Keep in step with the table in docs/architecture.md.
LAYERS: list[set[str]] = [
    {"__init__", "errors"},
    {"settings", "times"},
    {"images"},
    {"store"},
    {"asl"},
    {"data"},
    {"model"},
    {"serving", "functions", "monitor"},
    {"workflow"},
    {"review", "deploy"},
    {"dashboard"},
    {"service"},
    {"demo"},
    {"cli"},
    {"__main__"},
]
LAYER_OF = {name: index for index, names in enumerate(LAYERS) for name in names}


def _top_level_name(path: Path) -> str:
    """The package (or top-level module) of scones that a source file belongs to."""
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def _imported_modules(path: Path) -> set[str]:
    """Dotted names of every scones module a file imports, anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(("scones", *path.relative_to(SRC).with_suffix("").parts))
    if path.name == "__init__.py":
        package = package.removesuffix(".__init__")
    else:
        package = package.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            # `from scones.x import y` may name a submodule y: count it too.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "scones" or name.startswith("scones.")}


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_every_package_has_a_layer() -> None:
    missing = sorted({_top_level_name(path) for path in _sources()} - set(LAYER_OF))
    assert not missing, (
        f"packages without a layer: {missing}; add them to LAYERS here and to docs/architecture.md"
    )


def test_no_package_imports_one_above_or_beside_it() -> None:
    breaks = []
    for path in _sources():
        own = _top_level_name(path)
        for module in _imported_modules(path):
            parts = module.split(".")
            target = "__init__" if len(parts) == 1 else parts[1]
            if target == own or target not in LAYER_OF or own not in LAYER_OF:
                continue
            if LAYER_OF[target] >= LAYER_OF[own]:
                breaks.append(f"{path.relative_to(SRC.parent)} imports {module}")
    assert not breaks, "imports that break the layering:\n" + "\n".join(sorted(set(breaks)))


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph, as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


@pytest.mark.parametrize(
    "package", sorted({p.parent.name for p in SRC.rglob("__init__.py") if p.parent != SRC})
)
def test_no_import_cycle_inside_a_package(package: str) -> None:
    modules = {_module_name(path): path for path in (SRC / package).rglob("*.py") if path.is_file()}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for imported in _imported_modules(path):
            # The package's own __init__ re-exports its modules: importing it is not a cycle edge.
            if imported in modules and imported != name and imported != f"scones.{package}":
                graph[name].add(imported)
    assert _cycle(graph) is None, f"import cycle in scones.{package}: {' -> '.join(_cycle(graph))}"
