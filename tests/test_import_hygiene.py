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


def _loaded(code: str) -> set[str]:
    """The top-level packages and canvas_tui modules a fresh interpreter holds after `code`."""
    script = code + "\nimport sys\nprint(' '.join(sys.modules))\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_the_console_process_imports_no_engine_stack() -> None:
    """What `canvas-tui` imports before its first frame (tui/launch.py): the engine's HTTP
    client, plan and SQL sources load in the engine process only (issue 14: start-up time)."""
    loaded = _loaded(
        "from canvas_tui.startup import skip_unused_imports\n"
        "skip_unused_imports()\n"
        "import canvas_tui.cli, canvas_tui.tui.launch, canvas_tui.tui.app\n"
        "from canvas_tui.config import load_config\n"
        "from canvas_tui.engine.remote import spawn_engine\n"
        "from canvas_tui.sources import open_source\n"
    )
    unwanted = {
        "sqlalchemy",
        "tenacity",
        "click",
        "pygments",
        "canvas_tui.canvas.client",
        "canvas_tui.engine.session",
        "canvas_tui.engine.runner",
        "canvas_tui.engine.plan.executor",
        "canvas_tui.sources.sql",
    }
    assert not unwanted & loaded


def test_the_engine_process_imports_no_ui_and_no_plan_until_asked() -> None:
    loaded = _loaded(
        "from canvas_tui.startup import skip_unused_imports\n"
        "skip_unused_imports()\n"
        "import canvas_tui.engine.worker\n"
    )
    unwanted = {"textual", "rich", "sqlalchemy", "click", "canvas_tui.engine.plan.executor"}
    assert not unwanted & loaded


def test_sqlalchemy_loads_only_for_a_sql_source() -> None:
    loaded = _loaded("import canvas_tui.sources, canvas_tui.config")
    assert "sqlalchemy" not in loaded
    loaded = _loaded("from canvas_tui.sources import SqlSource, mask_url")
    assert "sqlalchemy" in loaded and "canvas_tui.sources.sql" in loaded


def test_httpx_works_without_its_command_line_client() -> None:
    """skip_unused_imports relies on httpx catching the ImportError of its CLI module."""
    code = (
        "from canvas_tui.startup import skip_unused_imports\n"
        "skip_unused_imports()\n"
        "import httpx\n"
        "assert httpx.AsyncClient and httpx.URL('https://canvas.example.edu').host\n"
        "assert callable(httpx.main)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
