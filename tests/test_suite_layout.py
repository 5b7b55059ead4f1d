"""The suite's own rules: a test module imports shared code only from helper modules and conftest
files (never from another test module, whose tests would then run twice or not be found), and no
two test modules share a name (a failure names the file without its directory)."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__snapshots__" not in p.parts)


def _imported(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (function-level imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_no_module_imports_a_test_module() -> None:
    offenders = {
        str(path.relative_to(TESTS)): sorted(
            name
            for name in _imported(path)
            if name.startswith("tests.") and name.rsplit(".", 1)[-1].startswith("test_")
        )
        for path in _modules()
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_test_module_names_are_unique() -> None:
    names = Counter(path.name for path in _modules() if path.name.startswith("test_"))
    assert [name for name, count in names.items() if count > 1] == []
