"""How a command ends: its exit status, and the line its fatal error prints."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # every record done (or skipped on purpose)
    RECORDS_FAILED = 1  # the run finished, some records failed
    USAGE = 2  # usage, config or input error: nothing was sent
    ABORTED = 3  # the run stopped early: token rejected, unsafe URL, cancelled


def error_line(message: str) -> str:
    """The one prefix every command's fatal error uses."""
    return f"canvas-tui: error: {message}"
