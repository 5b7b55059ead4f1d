"""A person's trace, from any record (T): the same trace as `canvas-tui trace` (engine/trace.py)
for the record's user, across every journal of the run directory and the source; `l` reads
their live enrollments from Canvas (through the session's client and governor)."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from canvas_tui.engine.state import RecordRow
from canvas_tui.engine.trace import (
    ENROLLMENT_STATES,
    Trace,
    TraceRequest,
    TraceScope,
    format_trace,
    journal_files,
    trace,
)
from canvas_tui.records import sis_value
from canvas_tui.text import printable
from canvas_tui.tui.contract import ConsoleScreen


class TraceScreen(ConsoleScreen):
    """Every record of one person, oldest first, as the `trace` command prints it."""

    BINDINGS: ClassVar = [
        Binding("escape", "close", "Back", id="trace.close"),
        Binding("l", "live", "Live enrollments", id="trace.live"),
    ]
    DEFAULT_CSS = """
    TraceScreen #trace-title { height: 1; background: $panel; padding: 0 1; text-style: bold; }
    TraceScreen #trace-scroll { height: 1fr; padding: 0 1; }
    """

    def __init__(self, row: RecordRow, scope: TraceScope) -> None:
        super().__init__()
        self.row = row
        self.user = row.user
        self.scope = scope
        self.found: Trace | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"Trace  {printable(sis_value(self.user))}", id="trace-title")
        with VerticalScroll(id="trace-scroll"):
            yield Static(Text("Reading the journals and the source…", style="italic"), id="trace")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#trace-scroll").focus()
        self._trace(None)

    def current_record(self) -> RecordRow | None:
        return self.row

    def action_close(self) -> None:
        self.app.pop_screen()

    def action_live(self) -> None:
        self.query_one("#trace", Static).update(
            Text("Reading the person's enrollments from Canvas…", style="italic")
        )
        self._live()

    @work(exclusive=True, group="trace-live", exit_on_error=False)
    async def _live(self) -> None:
        try:
            client = self.console_app.roster_client()
            enrollments: list[dict[str, Any]] = await client.list_enrollments(
                user=self.user, states=ENROLLMENT_STATES
            )
        except Exception as exc:  # a CanvasError says what and why; the trace stays
            self.notify(printable(str(exc)), title="Canvas", severity="error")
            self._trace(None)
            return
        self._trace(enrollments)

    @work(exclusive=True, group="trace", exit_on_error=False)
    async def _trace(self, enrollments: list[dict[str, Any]] | None) -> None:
        scope = self.scope

        def read() -> Trace:
            items = None
            description = None
            if scope.source is not None:
                from canvas_tui.sources import open_source

                try:
                    source = open_source(scope.source)
                    items, description = source, source.description
                except Exception:  # the journals still answer; the trace says what it read
                    items = None
            request = TraceRequest(
                query=self.user,
                journals=journal_files(scope.journal_dir, scope.journals),
                source_items=items,
                source_description=description,
                enrollments=enrollments,
            )
            return trace(request)

        found = await asyncio.to_thread(read)
        self.found = found
        text = Text("\n".join(format_trace(found)))
        self.query_one("#trace", Static).update(text)
