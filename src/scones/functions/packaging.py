"""``scones functions package``: one self-contained Lambda zip per function.

Each zip holds the handler module at its root (handler ``<module>.handler``), so it deploys
as-is to the AWS Lambda Python runtime, which provides the standard library and boto3. The
zips are reproducible: fixed timestamps and permissions, so the same code gives the same
bytes (and the same CodeSha256 on AWS).
"""

from __future__ import annotations

import ast
import os
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from scones.errors import SconesError

# module name -> the AWS function name the seed used
FUNCTIONS: dict[str, str] = {
    "serialize_image_data": "serializeImageData",
    "classify_image": "classifyImage",
    "filter_inferences": "filterInferences",
}
# What the Lambda Python runtime provides besides the standard library.
RUNTIME_PACKAGES = frozenset({"boto3", "botocore"})
_ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


class PackagingError(SconesError):
    """A function cannot be packaged as a self-contained Lambda zip."""


@dataclass(frozen=True)
class FunctionPackage:
    """One Lambda function's deployment zip."""

    module: str
    function_name: str
    handler: str
    path: Path
    size: int

    def to_dict(self) -> dict[str, str | int]:
        """A JSON-ready row (`scones functions package --json`)."""
        return {
            "function": self.function_name,
            "module": self.module,
            "handler": self.handler,
            "zip": str(self.path),
            "bytes": self.size,
        }


def function_source(module: str) -> str:
    if module not in FUNCTIONS:
        raise PackagingError(f"unknown function module {module!r}; known: {sorted(FUNCTIONS)}")
    return resources.files("scones.functions").joinpath(f"{module}.py").read_text("utf-8")


def foreign_imports(source: str) -> list[str]:
    """Top-level packages imported anywhere in ``source`` that a bare Lambda runtime lacks."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    allowed = set(sys.stdlib_module_names) | RUNTIME_PACKAGES | {"__future__"}
    return sorted(names - allowed)


def module_level_foreign_imports(source: str) -> list[str]:
    """Like :func:`foreign_imports`, but only imports that run when the module is imported."""
    tree = ast.parse(source)
    top = ast.Module(
        body=[n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)], type_ignores=[]
    )
    return foreign_imports(ast.unparse(top))


def package_functions(out_dir: Path) -> list[FunctionPackage]:
    """Write ``<module>.zip`` for every function into ``out_dir``; returns what was written."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise PackagingError(f"--out {str(out_dir)!r} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    packages = []
    for module, function_name in FUNCTIONS.items():
        source = function_source(module)
        # The serializer's local path imports scones lazily; nothing else may leave the runtime.
        foreign = module_level_foreign_imports(source)
        if foreign:
            raise PackagingError(
                f"function {module!r} imports {foreign} at module level; a Lambda zip "
                "has only the standard library and boto3"
            )
        path = out_dir / f"{module}.zip"
        _write_zip_atomically(path, {f"{module}.py": source.encode("utf-8")})
        packages.append(
            FunctionPackage(module, function_name, f"{module}.handler", path, path.stat().st_size)
        )
    return packages


def _write_zip_atomically(path: Path, members: dict[str, bytes]) -> None:
    # A reader (or a deploy tool) never sees a half-written zip.
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as raw, zipfile.ZipFile(raw, "w") as archive:
            for name in sorted(members):
                info = zipfile.ZipInfo(name, date_time=_ZIP_TIMESTAMP)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, members[name])
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
