"""How a command ends: its exit status, its one fatal-error line, and the one rule from a run's end
state to an exit status, shared by the console and `canvas-tui sync` (README "Exit codes").

It sits above the engine (it reads `RunState`) and below every command, so nothing under the
commands has to import the command line (cli.py) for a number.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from enum import IntEnum
from typing import TYPE_CHECKING

from canvas_tui.engine.state import Phase, RunState
from canvas_tui.records import State

if TYPE_CHECKING:
    import asyncio
    import signal


class ExitCode(IntEnum):
    OK = 0  # every record done (or skipped on purpose)
    RECORDS_FAILED = 1  # the run finished, some records failed
    USAGE = 2  # usage, config or input error: nothing was sent
    ABORTED = 3  # the run stopped early: token rejected, unsafe URL, cancelled


def error_line(message: str) -> str:
    """The one prefix every command's fatal error uses."""
    return f"canvas-tui: error: {message}"


def stop_on_signals(
    loop: asyncio.AbstractEventLoop, first: Callable[[signal.Signals], None]
) -> None:
    """SIGINT/SIGTERM: `first` on the first one (let the requests in flight finish), exit
    ABORTED at once on the next (the journal stays consistent: WAL commits are atomic)."""
    import signal  # only the long-running commands need it, not every start-up

    stops = 0

    def stop(sig: signal.Signals) -> None:
        nonlocal stops
        stops += 1
        if stops > 1:
            os._exit(ExitCode.ABORTED)
        first(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop, sig)


def run_exit_code(state: RunState | None, *, attended: bool) -> ExitCode:
    """The exit status for a run that ended in `state` (None: no run was opened).

    An abort (token refused, unsafe URL, Canvas unreachable, the engine lost) is 3 wherever it
    happens: nobody chose it. Otherwise it depends on whether an operator watched the run:

    - attended (the console, the demo): the operator saw every failure on the screen and chose to
      cancel or quit, and the journal keeps the rest, so quitting is not an error: 0;
    - unattended (`sync`): the status is all a scheduler sees, so a run stopped early (only a
      signal cancels a sync; pending records stay for the next run) is 3, and a finished run
      with failed records is 1.
    """
    if state is None:
        return ExitCode.OK
    if state.phase is Phase.ABORTED:
        return ExitCode.ABORTED
    if attended:
        return ExitCode.OK
    if state.phase is Phase.CANCELLED:
        return ExitCode.ABORTED
    if state.counts.get(State.FAILED, 0):
        return ExitCode.RECORDS_FAILED
    return ExitCode.OK
