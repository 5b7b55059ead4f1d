"""Output paths are checked before anything is sent: a report that cannot be written must not be
found out after every record has gone to Canvas (issue 12, item 2)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


class OutputPathError(Exception):
    """An output file cannot be written; the message names the option, the path and why."""


def output_path_problem(path: Path) -> str | None:
    """Why `path` cannot be created or overwritten as a file, or None when it can. Directories
    that do not exist yet are fine when the nearest existing one is writable (they get made)."""
    if path.is_dir():
        return "is a directory; give a file name"
    if path.exists():
        return None if os.access(path, os.W_OK) else "exists and cannot be written (permissions)"
    parent = path.parent
    while not parent.exists():
        if parent == parent.parent:
            return "has no existing parent directory"
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot be created: {parent} is a file, not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot be created: directory {parent} is not writable"
    return None


def journal_path_problem(path: Path) -> str | None:
    """As `output_path_problem`, and SQLite writes its -wal/-shm files beside the journal."""
    problem = output_path_problem(path)
    if problem is None and path.exists() and not os.access(path.parent, os.W_OK | os.X_OK):
        return f"its directory {path.parent} is not writable (SQLite keeps a -wal file beside it)"
    return problem


def check_output_paths(
    paths: Iterable[tuple[str, Path | None]], *, journal: Path | None = None
) -> None:
    """Raise OutputPathError for the first (label, path) that cannot be written."""
    if journal is not None:
        problem = journal_path_problem(journal)
        if problem is not None:
            raise OutputPathError(f"journal {journal}: {problem}")
    for label, path in paths:
        if path is None:
            continue
        problem = output_path_problem(path)
        if problem is not None:
            raise OutputPathError(f"{label} {path}: {problem}")
