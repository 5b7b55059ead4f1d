"""Every record in the run, live, at any size: a virtual table over the RecordStore.

Filtering and sorting are parameters of `RecordStore.rows`, so the view never holds more than the
visible window (STYLE.md §5).
"""

from __future__ import annotations

import asyncio
import re
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from canvas_tui.engine.state import RecordRow, RecordStore, RunState
from canvas_tui.records import State, sis_value
from canvas_tui.tui import format as fmt
from canvas_tui.tui.widgets.virtual_table import Column, VirtualTable

ORDERS: tuple[tuple[str, str], ...] = (
    ("record_id", "source order"),
    ("-updated_at", "recently changed"),
    ("state", "state"),
    ("course", "course"),
    ("user", "user"),
    ("category", "failure category"),
)
STATE_CYCLE: tuple[State | None, ...] = (None, *State)

COLUMNS = (
    Column("#", 7, "right"),
    Column("state", 9),
    Column("user", 14),
    Column("course", 16),
    Column("section", 16),
    Column("role", 9),
    Column("status", 9),
    Column("req", 3, "right"),  # HTTP requests sent for the record (the stepper's word too)
    Column("result", 30),
)
# under NARROW columns the table keeps what says how a record went; Enter shows the rest
NARROW = 120
NARROW_COLUMNS = (0, 1, 2, 3, 7, 8)
READ_SHARE = 0.1  # at most this share of the time goes to re-reading the window on ticks
_SOURCE_PREFIX = re.compile(r"^(?P<path>.+?):(?P<line>\d+): ")


@dataclass(frozen=True, slots=True)
class QueueFilter:
    state: State | None = None
    text: str | None = None
    order: str = "record_id"

    @property
    def is_default(self) -> bool:
        return self.state is None and not self.text and self.order == "record_id"

    def describe(self) -> str:
        parts = [f"state {self.state.value}" if self.state else "all states"]
        if self.text:
            parts.append(f"matching {self.text!r}")
        parts.append(f"sorted by {dict(ORDERS).get(self.order, self.order)}")
        return " · ".join(parts)


def parse_filter(query: str, current: QueueFilter) -> QueueFilter:
    """`state:failed course:BIO-101 smith` -> state=failed, text="BIO-101 smith".

    The store matches text against user, course, section and message, so `course:` narrows by
    course through the same index-free substring match; an empty query clears the filter.
    """
    state: State | None = None
    words: list[str] = []
    try:
        tokens = shlex.split(query)
    except ValueError:
        tokens = query.split()
    for token in tokens:
        key, sep, value = token.partition(":")
        if sep and key == "state":
            try:
                state = State(value.replace(" ", "_").replace("-", "_"))
            except ValueError as exc:
                known = ", ".join(s.value for s in State)
                raise ValueError(f"unknown state {value!r}: use one of {known}") from exc
        elif sep and key in ("course", "user", "section", "text"):
            words.append(value)
        else:
            words.append(token)
    return replace(current, state=state, text=" ".join(words) or None)


def message_of(row: RecordRow) -> str:
    """The record's message without the `file:line: ` the source put before it: the queue and
    the record's own line already say where it is, and a long path would fill the column."""
    message = row.message or ""
    found = _SOURCE_PREFIX.match(message)
    if found and found["line"] == str(row.line):
        return message[found.end() :]
    return message


def record_cells(row: RecordRow) -> Sequence[str | Text]:
    row = fmt.printable_row(row)
    if row.state is State.FAILED:
        result = Text(f"{fmt.category_title(row.category)}: {message_of(row)}", style="red")
    elif row.message:
        result = Text(message_of(row), style="dim")
    elif row.channel == "sis_import":  # which way it went: a row of an import's file
        result = Text(f"{row.action or ''} · SIS import".lstrip(" ·"), style="dim")
    else:
        result = Text(row.action or "", style="dim")
    return (
        str(row.record_id),
        Text(fmt.STATE_LABELS[row.state], style=fmt.STATE_STYLES[row.state]),
        sis_value(row.user),
        sis_value(row.course),
        sis_value(row.section),
        row.role,
        row.status,
        str(row.attempts),
        result,
    )


class QueueView(Vertical):
    """The queue's status line and its virtual table."""

    DEFAULT_CSS = """
    QueueView { height: 1fr; }
    QueueView #queue-status { height: 1; background: $panel; padding: 0 1; }
    QueueView VirtualTable { height: 1fr; }
    """

    def __init__(self, store: RecordStore | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.store = store
        self.filter = QueueFilter()
        self._text_count: int | None = None  # cached count for a text filter; SQL LIKE is not free
        self._text_count_age = 0
        self._narrow = False
        self._table: VirtualTable | None = None
        self._read_span: tuple[object, ...] | None = None  # what the last tick's read covered
        self._next_read = 0.0  # monotonic time from which the tick reads that span again
        self.shown = asyncio.Event()  # set once the first window of rows is in the table
        self._status = ""  # what the status line shows

    def compose(self) -> ComposeResult:
        yield Static(id="queue-status")
        yield VirtualTable(COLUMNS, self._fetch, self._cells, id="queue-table")

    def _cells(self, row: RecordRow) -> Sequence[str | Text]:
        cells = record_cells(row)
        return [cells[i] for i in NARROW_COLUMNS] if self._narrow else cells

    def on_resize(self) -> None:
        narrow = self.size.width < NARROW
        if narrow != self._narrow:
            self._narrow = narrow
            self.table.set_columns(
                [COLUMNS[i] for i in NARROW_COLUMNS] if narrow else list(COLUMNS)
            )

    @property
    def table(self) -> VirtualTable:
        if self._table is None:
            self._table = self.query_one(VirtualTable)
        return self._table

    def _fetch(self, offset: int, limit: int, total: int | None = None) -> list[RecordRow]:
        if self.store is None:
            return []
        f = self.filter
        # the total lets the store read a window in the bottom half from the end
        total = self.table.total if total is None else total
        return self.store.rows(
            offset, limit, state=f.state, text=f.text, order=f.order, total=total
        )

    @property
    def selected(self) -> RecordRow | None:
        row = self.table.current
        return row if isinstance(row, RecordRow) else None

    def set_filter(self, new: QueueFilter) -> None:
        self.filter = new
        self._text_count = None
        self.table.invalidate()
        self.table.move_to(0)
        self.table.scroll_to(y=0, animate=False)

    def total_for(self, state: RunState | None) -> int:
        """Rows matching the filter: from the snapshot's counts unless text narrows it."""
        if self.store is None:
            return 0
        f = self.filter
        if f.text:
            self._text_count_age += 1
            if self._text_count is None or self._text_count_age >= 4:
                self._text_count = self.store.count(f.state, f.text)
                self._text_count_age = 0
            return self._text_count
        if state is None:
            return self.store.count(f.state, None)
        return state.counts.get(f.state, 0) if f.state else state.total

    def tick(self, state: RunState | None) -> None:
        """Refresh from the store; call once per UI tick. The reads run in a thread so a slow
        sort or text match never holds up a key press."""
        if self.store is not None:
            self._refresh(state)

    def _timed_fetch(self, offset: int, limit: int, total: int) -> tuple[list[RecordRow], float]:
        """The rows, and the CPU seconds this thread spent reading them."""
        began = time.thread_time()
        rows = self._fetch(offset, limit, total)
        return rows, time.thread_time() - began

    @work(exclusive=True, group="queue-window", exit_on_error=False)
    async def _refresh(self, state: RunState | None) -> None:
        table = self.table
        wanted, generation = self.filter, table.generation
        if state is not None and not wanted.text:
            total = self.total_for(state)  # the snapshot's counts: no thread for a lookup
        else:
            total = await asyncio.to_thread(self.total_for, state)  # reads the store
        start, limit = table.window_span()
        span = (wanted, generation, start, limit)
        rows: list[RecordRow] | None = None
        if span != self._read_span or time.monotonic() >= self._next_read:
            # the same span is read again at most READ_SHARE of the time: a sort or filter that
            # costs SQLite 50 ms over a million rows is refreshed every 0.5 s, not every tick,
            # so the engine and the keys keep the cores (a move or a new filter reads at once)
            rows, cost = await asyncio.to_thread(self._timed_fetch, start, limit, total)
            self._read_span = span
            self._next_read = time.monotonic() + cost / READ_SHARE
        if generation != table.generation or wanted != self.filter:
            return  # the operator changed the filter meanwhile; the next tick catches up
        table.set_total(total)
        if rows is not None:
            table.replace_window(start, rows, generation)
            self.shown.set()
        status = f"{fmt.count(total)} records · {self.filter.describe()}"
        if status != self._status:  # unchanged on most ticks: no repaint
            self._status = status
            self.query_one("#queue-status", Static).update(
                Text.assemble(("Queue ", "bold"), status), layout=False
            )
