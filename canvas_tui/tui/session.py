"""What the console needs from an engine session: `engine.session.open_session` returns one that
runs the engine in the console's process, `engine.remote.start_engine` one in a process of its own.

A Protocol rather than an import so the console's typing does not depend on engine internals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar

from canvas_tui.engine.state import RecordStore, RunCommands, RunControl

if TYPE_CHECKING:
    from canvas_tui.engine.plan.executor import SyncDecision

P = ParamSpec("P")
R = TypeVar("R")


class ConsoleSession(Protocol):
    @property
    def runner(self) -> RunControl: ...

    @property
    def store(self) -> RecordStore: ...

    @property
    def client(self) -> Any: ...  # CanvasClient; read-only: only reads (None if unconfigured)

    @property
    def journal_path(self) -> Path: ...

    @property
    def resumed(self) -> bool: ...  # the journal already held a loaded run

    async def load(self, on_progress: Callable[[int], None] | None = None) -> Any: ...

    async def run(self) -> Any: ...

    async def plan(self, requested: bool | None = True) -> SyncDecision: ...

    # the channel taken and why, when the plan goes (partly) by a SIS import
    async def apply_plan(self, decision: SyncDecision) -> str | None: ...

    # A RunControl command, awaited: `await session.command(RunCommands.skip, record_id)`. The
    # console sends every command this way, so an engine in another process never stalls it.
    async def command(
        self,
        command: Callable[Concatenate[RunCommands, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R: ...

    async def close(self) -> None: ...


# Opens the session inside the app's event loop (httpx and the governor bind to it there).
SessionOpener = Callable[[], Awaitable[ConsoleSession]]
