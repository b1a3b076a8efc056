"""The serving package imports the project's own modules plainly: they are always installed,
so an ImportError fallback around them is dead code that hides a broken install."""

from __future__ import annotations

import ast
from pathlib import Path

import scones.serving

SERVING = Path(scones.serving.__file__).parent
_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(kind, ast.Name) and kind.id in _IMPORT_ERRORS for kind in kinds)


def _imports_scones(statements: list[ast.stmt]) -> bool:
    for statement in statements:
        for node in ast.walk(statement):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("scones"):
                return True
            if isinstance(node, ast.Import) and any(
                alias.name.startswith("scones") for alias in node.names
            ):
                return True
    return False


def test_no_import_error_fallback_around_scones_modules() -> None:
    modules = sorted(SERVING.glob("*.py"))
    assert len(modules) > 5  # the package was found
    offenders = []
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Try)
                and any(_catches_import_error(handler) for handler in node.handlers)
                and _imports_scones(node.body)
            ):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
