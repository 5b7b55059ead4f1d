"""The failure stepper: one failed record at a time, with everything needed to act on it."""

from __future__ import annotations

import json
import re

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from canvas_tui.canvas.errors import TITLES, Category, hint_for
from canvas_tui.engine.state import Attempt, RecordRow, RecordStore, RunState
from canvas_tui.records import sis_value
from canvas_tui.tui import format as fmt
from canvas_tui.tui.actions import STEPPER_ACTIONS, bindings
from canvas_tui.tui.contract import ConsoleScreen
from canvas_tui.tui.widgets.queue import message_of

SIS_IMPORT = "sis_import"  # RecordRow.channel of a record a SIS import carried (engine/journal.py)

# The journal never stores the token; this is a second guard in case a URL ever carried one.
_TOKEN_IN_URL = re.compile(r"(access_token=)[^&\s]+", re.IGNORECASE)


def redact(url: str) -> str:
    return _TOKEN_IN_URL.sub(r"\1[redacted]", url)


def hint_text(row: RecordRow) -> str:
    try:
        category = Category(row.category or "")
    except ValueError:
        return "No hint for this category; see the message."
    return hint_for(
        category,
        user=sis_value(row.user),
        course=sis_value(row.course),
        section=sis_value(row.section),
        role=row.role,
    )


def source_panel(row: RecordRow) -> RenderableType:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim", min_width=14)
    table.add_column()
    for name, value in row.raw.items():
        table.add_row(name, value if value != "" else Text("(empty)", style="dim italic"))
    return Panel(
        table if row.raw else Text("(no raw row kept)", style="dim"),
        title=f"Source row  {row.source}:{row.line}",
        title_align="left",
        border_style="blue",
    )


def failing_attempt(row: RecordRow, attempts: list[Attempt]) -> Attempt | None:
    """The request Canvas refused: the last one with the record's category (a follow-up GET
    that only attributes a 404 to the user, course or section is not what was sent)."""
    for attempt in reversed(attempts):
        if attempt.category == row.category or (
            attempt.status is not None and attempt.status >= 400 and attempt.method != "GET"
        ):
            return attempt
    # a lookup refused before any write: the first refusal, not the GETs that attribute it
    refused = [a for a in attempts if a.status is not None and a.status >= 400]
    return refused[0] if refused else (attempts[-1] if attempts else None)


def by_import(row: RecordRow, attempts: list[Attempt]) -> bool:
    """The record's last word came from a SIS import: a row of an uploaded file, not a request
    of its own (a REST retry clears the channel and records its requests)."""
    return row.channel == SIS_IMPORT and not attempts


def import_sent_panel() -> RenderableType:
    return Panel(
        Text.assemble(
            "A row of the enrollments.csv uploaded in a SIS import: Canvas applied the file on "
            "its servers, so there is no request of this record's own. ",
            ("A retry sends it by REST", "bold"),
            ", as a REST run would.",
        ),
        title="What was sent",
        title_align="left",
        border_style="blue",
    )


def import_canvas_panel(row: RecordRow) -> RenderableType:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim", min_width=14)
    table.add_column()
    table.add_row("channel", "SIS import")
    table.add_row("message", Text(row.message or "-", style="bold"))
    table.add_row("category", Text(category_label(row), style="red"))
    return Panel(table, title="Canvas said", title_align="left", border_style="red")


def sent_panel(row: RecordRow, attempts: list[Attempt]) -> RenderableType:
    if by_import(row, attempts):
        return import_sent_panel()
    if not attempts:
        return Panel(
            Text("Never sent: the row was rejected before any request.", style="italic"),
            title="What was sent",
            title_align="left",
            border_style="blue",
        )
    last = failing_attempt(row, attempts) or attempts[-1]
    shown = attempts.index(last) + 1
    parts: list[RenderableType] = [
        Text.assemble((f"{last.method} ", "bold"), redact(last.url)),
    ]
    if last.request_body:
        try:
            body = json.dumps(json.loads(last.request_body), indent=2, sort_keys=True)
        except ValueError:
            body = last.request_body
        parts.append(Syntax(body, "json", theme="ansi_dark", background_color="default"))
    # one word for one thing, as the queue's `req` column: requests; a retry re-sends one
    history = Text(style="dim")
    for i, a in enumerate(attempts, start=1):
        status = str(a.status) if a.status is not None else "no response"
        retry = f" (retry {a.number - 1})" if a.number > 1 else ""
        history.append(f"request {i}: {a.method} {status} {a.category or ''}{retry}\n")
    parts.append(history)
    return Panel(
        Group(*parts),
        title=f"What was sent (request {shown} of {len(attempts)}; the token is never stored)",
        title_align="left",
        border_style="blue",
    )


def rejected_panel(row: RecordRow) -> RenderableType:
    """For a row that never reached Canvas: why canvas-tui refused it."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim", min_width=14)
    table.add_column()
    table.add_row("problem", Text(message_of(row) or "-", style="bold"))
    table.add_row("category", Text(f"{category_label(row)}", style="red"))
    return Panel(table, title="Why it was not sent", title_align="left", border_style="red")


def category_label(row: RecordRow) -> str:
    try:
        title = TITLES[Category(row.category or "")]
    except ValueError:
        title = row.category or "-"
    return f"{title} ({row.category})"


def canvas_panel(row: RecordRow, attempts: list[Attempt]) -> RenderableType:
    if by_import(row, attempts):
        return import_canvas_panel(row)
    if not attempts:
        return rejected_panel(row)  # Canvas said nothing: nothing was sent
    last = failing_attempt(row, attempts)
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim", min_width=14)
    table.add_column()
    status = "-" if last is None or last.status is None else str(last.status)
    table.add_row("HTTP status", status)
    table.add_row("message", Text(row.message or "-", style="bold"))
    report = row.error_report_id or (last.error_report_id if last else None)
    table.add_row("error_report_id", str(report) if report else "-")
    table.add_row("category", Text(category_label(row), style="red"))
    return Panel(table, title="Canvas said", title_align="left", border_style="red")


def hint_panel(row: RecordRow) -> RenderableType:
    return Panel(
        Text(hint_text(row)),
        title="What to do",
        title_align="left",
        border_style="green",
    )


class FailureStepper(ConsoleScreen):
    """Walks the failed records in source order; retry / skip / edit act on the one shown."""

    BINDINGS = bindings(STEPPER_ACTIONS)
    DEFAULT_CSS = """
    FailureStepper #stepper-title {
        height: 1;
        background: $panel;
        padding: 0 1;
        text-style: bold;
    }
    FailureStepper VerticalScroll { padding: 0 1; }
    """

    def __init__(self, start: int | None = None) -> None:
        super().__init__()
        self._ids: list[int] = []
        self._index = 0
        self._start = start
        self._version: int | None = None
        self._row: RecordRow | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="stepper-title")
        with VerticalScroll():
            yield Static(id="stepper-body")
        yield Footer(show_command_palette=False)  # `?` names ctrl+p; the keys need the room

    @property
    def store(self) -> RecordStore:
        session = self.console_app.session
        assert session is not None, "the app opens the stepper once the session is open"
        return session.store

    def on_mount(self) -> None:
        self.reload(keep=self._start)

    def current_record(self) -> RecordRow | None:
        return self._row

    @property
    def position(self) -> tuple[int, int]:
        """(1-based index of the record shown, how many failures) — (0, 0) when none."""
        return (self._index + 1 if self._ids else 0, len(self._ids))

    def reload(self, keep: int | None = None) -> None:
        """Re-read the failures; stay on `keep` (or the record after it if it left the list)."""
        self._ids = self.store.failed_ids()
        if keep is not None:
            after = [i for i, rid in enumerate(self._ids) if rid >= keep]
            self._index = after[0] if after else max(0, len(self._ids) - 1)
        self._index = min(self._index, max(0, len(self._ids) - 1))
        self.show_current()

    def on_tick(self, state: RunState) -> None:
        if state.failures_version != self._version:
            self._version = state.failures_version
            self.reload(keep=self._row.record_id if self._row else None)
        elif self._row is not None:  # the shown record may have changed state (retry, skip)
            fresh = self.store.get(self._row.record_id)
            if fresh != self._row:
                self.show_current()

    def show_current(self) -> None:
        title = self.query_one("#stepper-title", Static)
        body = self.query_one("#stepper-body", Static)
        if not self._ids:
            self._row = None
            title.update("Failures: none")
            body.update(Text("No failed records. Escape: back to the dashboard.", style="green"))
            return
        record_id = self._ids[self._index]
        row = self.store.get(record_id)
        self._row = row
        if row is None:
            return
        # drawn from cleaned copies; self._row stays the journal's, for change detection
        row = fmt.printable_row(row)
        attempts = [fmt.printable_attempt(a) for a in self.store.attempts(record_id)]
        n, total = self.position
        title.update(
            Text.assemble(
                f"Failure {n} of {total}  ·  record {row.record_id}  ·  ",
                (f"{row.state.value}", "red" if row.state.value == "failed" else "yellow"),
                f"  ·  {sis_value(row.user)} → {sis_value(row.course or row.section)} ({row.role})",
            )
        )
        body.update(
            Group(
                source_panel(row),
                sent_panel(row, attempts),
                canvas_panel(row, attempts),
                hint_panel(row),
            )
        )

    def action_step(self, delta: int) -> None:
        if not self._ids:
            return
        self._index = max(0, min(len(self._ids) - 1, self._index + delta))
        self.show_current()

    def action_close(self) -> None:
        self.app.pop_screen()
