"""What every canvas-tui process does first, before it imports anything heavy."""

from __future__ import annotations

import sys


def skip_unused_imports() -> None:
    """httpx imports its own command-line client (click, pygments and rich) whenever those are
    installed, and uvicorn brings them: ~0.1 s of every start-up, the engine process's included,
    for a tool canvas-tui never runs. A None in `sys.modules` makes that one import fail, and
    httpx then defines a stub `httpx.main` instead (httpx/__init__.py catches the ImportError;
    tests/test_import_hygiene.py checks that it still does)."""
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
