"""Files that hold students' enrollment data (journal, report, failures CSV, engine log) are
the operator's alone: created 0600 in directories created 0700, whatever the umask says.

Directories that already exist are left as they are (the operator's working directory is not
ours to lock down); a file that already exists is narrowed to 0600 when it is opened.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> None:
    """Create `path` and any missing parents with mode 0700 (existing ones are kept)."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(directory, DIR_MODE)  # mkdir's mode is filtered by the umask


def touch_private(path: Path) -> None:
    """Create `path` empty with mode 0600 if it does not exist; narrow it to 0600 if it does."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        _narrow(fd)
    finally:
        os.close(fd)


def open_private(path: Path, mode: str = "w", **kwargs: Any) -> IO[Any]:
    """`open(path, mode)` for writing ("w", "a", "wb", "ab"), the file created (or narrowed to)
    0600 and its missing directories 0700."""
    private_dir(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    try:
        _narrow(fd)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def _narrow(fd: int) -> None:
    if hasattr(os, "fchmod"):  # POSIX; elsewhere the file's ACLs decide
        os.fchmod(fd, FILE_MODE)
