"""The typed contract between the console app and its screens, widgets and palette provider.

Screens never reach into the app by name: `ConsoleHost` lists, as public typed members, exactly
what they may use of it, and `ConsoleAware.console_app` hands it to them. `ConsoleApp` is checked
against the protocol by mypy (tui/app.py), so a renamed member fails the type check, not a run.
The app talks back through `ConsoleScreen`: the refresh tick and the record the operator is on.

A protocol rather than the app class, so screens need not import the app (which imports them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

from textual.screen import Screen

from canvas_tui.engine.state import RecordRow, RecordStore, RunState

if TYPE_CHECKING:
    from textual.app import App

    from canvas_tui.tui.session import ConsoleSession


class RosterReader(Protocol):
    """The Canvas reads the roster inspector makes: a `CanvasClient`, or the engine process's
    proxy for one (engine/remote.py `RemoteClient`)."""

    async def get_course(self, course: str) -> dict[str, Any]: ...

    async def list_enrollments(
        self, *, on_page: Callable[[int, int], None] | None = None, **filters: Any
    ) -> list[dict[str, Any]]: ...

    async def list_course_sections(self, course: str) -> list[dict[str, Any]]: ...


class ConsoleHost(Protocol):
    """What the console app offers its screens, widgets and command palette."""

    @property
    def session(self) -> ConsoleSession | None:
        """The engine session; None until it is open."""

    @property
    def view_store(self) -> RecordStore | None:
        """The views' own read connection to the journal (None until the session is open)."""

    @property
    def read_only(self) -> bool: ...

    @property
    def keymap_overrides(self) -> Mapping[str, str]:
        """The config's [keys] table: action id -> key."""

    def roster_client(self) -> RosterReader:
        """The session's Canvas client for roster reads; RuntimeError when there is none."""

    def requeued(self) -> None:
        """Records went back to pending: start or prompt as the console's state says."""

    def action_available(self, action: str) -> bool | None:
        """Whether a registry action makes sense now: True, None (disabled) or False (hidden)."""


class _HasApp(Protocol):
    @property
    def app(self) -> App[object]: ...


class ConsoleAware:
    """Mixin for anything with Textual's `app` (screens, widgets, command providers)."""

    @property
    def console_app(self: _HasApp) -> ConsoleHost:
        # every screen and widget of this package runs inside ConsoleApp (checked in tui/app.py)
        return cast("ConsoleHost", self.app)


class ConsoleScreen(ConsoleAware, Screen[None]):
    """A full screen pushed over the dashboard (the stepper, the roster inspector)."""

    def on_tick(self, state: RunState) -> None:
        """Called by the app's refresh tick while this screen is on top."""

    def current_record(self) -> RecordRow | None:
        """The journal record the operator is looking at, so retry / skip / edit act on it."""
        return None
