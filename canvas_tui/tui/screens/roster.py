"""The roster inspector: one course's live Canvas enrollments side by side with the SIS source."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Footer, Header, Static

from canvas_tui.engine.plan.verdict import (
    RosterDiff,
    RosterLine,
    Verdict,
    compare,
    course_ref,
    records_for_course,
)
from canvas_tui.engine.roster_match import ALL_STATES, default_section_from
from canvas_tui.engine.state import RecordRow, RecordStore, RunCommands, RunState
from canvas_tui.records import FINAL_STATES, State
from canvas_tui.text import printable
from canvas_tui.tui import format as fmt
from canvas_tui.tui.contract import ConsoleScreen
from canvas_tui.tui.screens.dialogs import ConfirmScreen
from canvas_tui.tui.widgets.virtual_table import Column, VirtualTable

COLUMNS = (
    Column("user", 14),
    Column("name", 22),
    Column("role", 18),
    Column("section", 18),
    Column("Canvas", 10),
    Column("SIS", 10),
    Column("comparison", 18),
    Column("record", 14),
)
VERDICT_STYLES = {
    Verdict.OK: "green",
    Verdict.MISSING: "bold red",
    Verdict.EXTRA: "yellow",
    Verdict.DIFFERS: "magenta",
    Verdict.INVALID: "dim red",
}
# records the enqueue action can put back in the queue; pending/in flight are already there
REQUEUE_STATES = frozenset({State.FAILED, State.SKIPPED, State.DONE})


def line_cells(line: RosterLine) -> Sequence[str | Text]:
    record = "" if line.record_id is None else f"#{line.record_id} {line.record_state or ''}"
    return (
        printable(line.user),
        printable(line.name),
        printable(line.role),
        printable(line.section),
        printable(line.canvas_state) or "-",
        printable(line.sis_status) or "-",
        Text(line.verdict.value, style=VERDICT_STYLES[line.verdict]),
        record,
    )


@dataclass(frozen=True, slots=True)
class RosterFilter:
    role: str | None = None
    state: str | None = None  # Canvas enrollment_state
    section: str | None = None
    verdict: Verdict | None = None

    def keep(self, line: RosterLine) -> bool:
        return (
            (self.role is None or line.role == self.role)
            and (self.state is None or line.canvas_state == self.state)
            and (self.section is None or line.section == self.section)
            and (self.verdict is None or line.verdict is self.verdict)
        )


def _cycle(values: Sequence[Any], current: Any) -> Any:
    options = [None, *values]
    return options[(options.index(current) + 1) % len(options)] if current in options else None


class RosterScreen(ConsoleScreen):
    """Fetches every page of a course's enrollments through the session's client and governor."""

    BINDINGS: ClassVar = [
        Binding("escape", "close", "Back", id="roster.close"),
        Binding("1", "cycle('role')", "Role", id="roster.role"),
        Binding("2", "cycle('state')", "State", id="roster.state"),
        Binding("3", "cycle('section')", "Section", id="roster.section"),
        Binding("4", "cycle('verdict')", "Comparison", id="roster.verdict"),
        Binding("a", "enqueue_missing", "Enqueue missing", id="roster.enqueue"),
        Binding("u", "refetch", "Refetch", id="roster.refetch"),
    ]
    DEFAULT_CSS = """
    RosterScreen #roster-title { height: 1; background: $panel; padding: 0 1; text-style: bold; }
    RosterScreen #roster-status { height: 2; padding: 0 1; }
    RosterScreen #roster-filter { height: 1; padding: 0 1; color: $text-muted; }
    RosterScreen VirtualTable { height: 1fr; }
    """

    class PageFetched(Message):
        """One more page arrived; replaceable, only the latest count matters."""

        def __init__(self, pages: int, enrollments: int) -> None:
            super().__init__()
            self.pages = pages
            self.enrollments = enrollments

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, RosterScreen.PageFetched)

    class RosterFetched(Message):
        def __init__(self, course: dict[str, Any], diff: RosterDiff) -> None:
            super().__init__()
            self.course = course
            self.diff = diff

    class RosterFailed(Message):
        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    def __init__(self, course: str) -> None:
        super().__init__()
        self.ref = course_ref(course)
        self.course: dict[str, Any] = {}
        self.diff: RosterDiff | None = None
        self.filter = RosterFilter()
        self.pages = 0
        self.fetched = 0
        self._visible: list[RosterLine] = []
        self._awaiting: set[int] = set()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"Roster  {self.ref}", id="roster-title")
        yield Static(id="roster-status")
        yield Static(id="roster-filter")
        yield VirtualTable(COLUMNS, self._fetch, line_cells, id="roster-table")
        yield Footer()

    @property
    def table(self) -> VirtualTable:
        return self.query_one(VirtualTable)

    def _fetch(self, offset: int, limit: int) -> list[RosterLine]:
        return self._visible[offset : offset + limit]

    def on_mount(self) -> None:
        self.table.focus()
        self.action_refetch()

    def current_record(self) -> RecordRow | None:
        """The journal record of the selected line, so retry / skip / edit act on it."""
        line = self.table.current
        session = self.console_app.session
        if not isinstance(line, RosterLine) or line.record_id is None or session is None:
            return None
        row: RecordRow | None = session.store.get(line.record_id)
        return row

    # ---- fetching ------------------------------------------------------------------------------

    def action_refetch(self) -> None:
        self.pages = self.fetched = 0
        self._status(Text(f"Fetching {self.ref}…", style="italic"))
        self._fetch_roster()

    @work(exclusive=True, group="roster", exit_on_error=False)
    async def _fetch_roster(self) -> None:
        host = self.console_app
        session = host.session
        if session is None:
            self.post_message(self.RosterFailed("the session is not open yet"))
            return
        try:
            client = host.roster_client()
            course: dict[str, Any] = await client.get_course(self.ref)
            # every state: Canvas's default list hides completed and deleted rows (§2.6), which
            # would show a SIS "completed" row as missing and offer to re-send it
            course_id = str(course.get("id", self.ref))
            enrollments: list[dict[str, Any]] = await client.list_enrollments(
                course=course_id, states=ALL_STATES, on_page=self._on_page
            )
            # rows without a section are Canvas's default section's (issue 10 rule 5)
            default = default_section_from(await client.list_course_sections(course_id))
        except Exception as exc:  # a CanvasError says what and why; show it, stay on the screen
            self.post_message(self.RosterFailed(str(exc)))
            return
        sis_id = course.get("sis_course_id")
        text = str(sis_id or course.get("id", ""))
        store = host.view_store or session.store
        rows = await asyncio.to_thread(_all_rows, store, text)
        records = records_for_course(rows, sis_id, str(course.get("id", "")))
        self.post_message(self.RosterFetched(course, compare(enrollments, records, default)))

    def _on_page(self, pages: int, enrollments: int) -> None:
        self.post_message(self.PageFetched(pages, enrollments))

    @on(PageFetched)
    def _page_fetched(self, message: PageFetched) -> None:
        self.pages, self.fetched = message.pages, message.enrollments
        self._status(
            Text(
                f"Fetching… page {message.pages}, {fmt.count(message.enrollments)} enrollments so far",
                style="italic",
            )
        )

    @on(RosterFailed)
    def _roster_failed(self, message: RosterFailed) -> None:
        error = printable(message.error)
        self._status(Text(f"Could not read the roster: {error}", style="bold red"))

    @on(RosterFetched)
    def _roster_fetched(self, message: RosterFetched) -> None:
        self.course = message.course
        self.diff = message.diff
        name = message.course.get("name", "")
        sis = message.course.get("sis_course_id") or "-"
        self.query_one("#roster-title", Static).update(
            f"Roster  {name}  ·  SIS {sis}  ·  Canvas id {message.course.get('id', '?')}"
        )
        self._show()

    def _status(self, text: Text) -> None:
        self.query_one("#roster-status", Static).update(text)

    def _show(self) -> None:
        diff = self.diff
        if diff is None:
            return
        self._visible = [line for line in diff.lines if self.filter.keep(line)]
        pages = f" in {self.pages} pages" if self.pages else ""
        self._status(
            Text.assemble(
                (f"{fmt.count(diff.canvas_count)} in Canvas{pages}", "bold"),
                f" · {fmt.count(diff.sis_count)} in the SIS source · ",
                (
                    f"{diff.count(Verdict.MISSING)} missing in Canvas",
                    VERDICT_STYLES[Verdict.MISSING],
                ),
                " · ",
                (f"{diff.count(Verdict.EXTRA)} extra in Canvas", VERDICT_STYLES[Verdict.EXTRA]),
                " · ",
                (f"{diff.count(Verdict.DIFFERS)} state differs", VERDICT_STYLES[Verdict.DIFFERS]),
            )
        )
        f = self.filter
        self.query_one("#roster-filter", Static).update(
            f"showing {fmt.count(len(self._visible))}  ·  role {f.role or 'any'} · "
            f"Canvas state {f.state or 'any'} · section {f.section or 'any'} · "
            f"{f.verdict.value if f.verdict else 'any comparison'}"
        )
        self.table.set_total(len(self._visible))
        self.table.invalidate()
        self.refresh_bindings()  # "enqueue missing" depends on the comparison

    # ---- actions -------------------------------------------------------------------------------

    def action_cycle(self, what: str) -> None:
        if self.diff is None:
            return
        lines = self.diff.lines
        f = self.filter
        if what == "role":
            f = RosterFilter(
                _cycle(sorted({x.role for x in lines}), f.role), f.state, f.section, f.verdict
            )
        elif what == "state":
            f = RosterFilter(
                f.role,
                _cycle(sorted({x.canvas_state for x in lines if x.canvas_state}), f.state),
                f.section,
                f.verdict,
            )
        elif what == "section":
            f = RosterFilter(
                f.role,
                f.state,
                _cycle(sorted({x.section for x in lines if x.section}), f.section),
                f.verdict,
            )
        else:
            f = RosterFilter(f.role, f.state, f.section, _cycle(list(Verdict), f.verdict))
        self.filter = f
        self.table.move_to(0)
        self._show()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "enqueue_missing":
            if self.console_app.read_only:
                return False
            return bool(self.diff and self.diff.missing) or None
        return True

    def action_enqueue_missing(self) -> None:
        if self.diff is None:
            return
        missing = self.diff.missing
        queueable = [
            x for x in missing if x.record_id is not None and x.record_state in REQUEUE_STATES
        ]
        waiting = [x for x in missing if x.record_state in (State.PENDING, State.IN_FLIGHT)]

        async def answer(yes: bool | None) -> None:
            if yes:
                await self._enqueue([x.record_id for x in queueable if x.record_id is not None])

        self.app.push_screen(
            ConfirmScreen(
                f"Enqueue {len(queueable)} missing enrollments?",
                f"{len(missing)} SIS records are missing in Canvas: {len(queueable)} go back to the "
                f"queue (failed, skipped or done but gone), {len(waiting)} are already queued.",
                yes="Enqueue",
                no="Not now",
            ),
            answer,
        )

    async def _enqueue(self, record_ids: list[int]) -> None:
        session = self.console_app.session
        if session is None or not record_ids:
            return
        # enqueue, not retry: a DONE record whose enrollment is gone from Canvas is sent again
        # too; one command for them all, however many the roster is missing
        n = await session.command(RunCommands.enqueue, record_ids)
        self.app.notify(f"{n} of {len(record_ids)} records queued again")
        self.console_app.requeued()
        self._awaiting = set(record_ids)  # refetch once they are final

    def on_tick(self, state: RunState) -> None:
        session = self.console_app.session
        if not self._awaiting or session is None:
            return
        rows = [session.store.get(i) for i in self._awaiting]
        if all(r is None or r.state in FINAL_STATES for r in rows):
            self._awaiting = set()
            self.action_refetch()

    def action_close(self) -> None:
        self.app.pop_screen()


def _all_rows(store: RecordStore, text: str) -> list[RecordRow]:
    """Every journal row whose user/course/section/message mentions `text`, in pages."""
    out: list[RecordRow] = []
    while True:
        chunk = store.rows(len(out), 5000, text=text)
        out.extend(chunk)
        if len(chunk) < 5000:
            return out
