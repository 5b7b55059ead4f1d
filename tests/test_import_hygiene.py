"""The core must import and run without Textual (STYLE.md §1).

import-linter's no-textual contract (pyproject.toml) reads the source; this imports every non-UI
module in a fresh interpreter, so it also catches what no source line names: an import by string
(cli.COMMANDS) or a dependency that pulls Textual in.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import canvas_tui

CORE_MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(canvas_tui.__path__, "canvas_tui.")
    if not m.name.startswith("canvas_tui.tui") and m.name != "canvas_tui.__main__"
)


def test_core_never_imports_textual() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {CORE_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = [m for m in sys.modules if m == 'textual' or m.startswith('textual.')]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
