"""The operator console: a dashboard over the engine, the queue, and the operator's controls.

The engine runs in a process of its own (engine/remote.py), or in the app's event loop when a
test or a read-only session opens it so; either way the UI reads `runner.snapshot()` and the
journal (through `RecordStore`) on a timer, and awaits its commands
(`session.command(RunCommands.skip, ...)`): an engine slow to answer never stalls drawing.

Attached (`console --attach`), the console follows a run that another process drives: it never
loads, plans, starts or cancels on quit; read-only it offers no command at all, and with control
it offers the commands (pause, resume, retry, skip, ...) but never a start.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, cast

from textual import on, work
from textual.app import App, ComposeResult
from textual.css.query import NoMatches
from textual.screen import ModalScreen
from textual.widgets import Footer, Header
from textual.worker import Worker, WorkerState

from canvas_tui.engine.state import (
    ImportStatus,
    Phase,
    RecordRow,
    RecordStore,
    RunCommands,
    RunState,
)
from canvas_tui.exit_codes import run_exit_code
from canvas_tui.records import State, sis_value
from canvas_tui.text import printable
from canvas_tui.tui import format as fmt
from canvas_tui.tui.actions import (
    ACTIONS,
    BY_ID,
    QUEUE_ONLY,
    bindings,
    effective_key,
)
from canvas_tui.tui.contract import ConsoleScreen, RosterReader
from canvas_tui.tui.messages import PhaseChanged, RunEnded
from canvas_tui.tui.palette import ConsoleCommands
from canvas_tui.tui.screens.dialogs import (
    ChoiceScreen,
    ConfirmScreen,
    EditScreen,
    HelpScreen,
    PromptScreen,
)
from canvas_tui.tui.session import ConsoleSession, SessionOpener
from canvas_tui.tui.widgets.dashboard import LEGEND, Dashboard, Outlook
from canvas_tui.tui.widgets.import_panel import ImportPanel, abortable, running
from canvas_tui.tui.widgets.queue import (
    ORDERS,
    STATE_CYCLE,
    QueueFilter,
    QueueView,
    message_of,
    parse_filter,
)
from canvas_tui.tui.widgets.virtual_table import VirtualTable

if TYPE_CHECKING:
    from canvas_tui.engine.journal import Journal
    from canvas_tui.engine.trace import TraceScope
    from canvas_tui.tui.contract import ConsoleHost

ACTIVE = frozenset({Phase.LOADING, Phase.RUNNING, Phase.PAUSED, Phase.CANCELLING})
# actions that change records or Canvas: hidden in --read-only
WRITES = frozenset(
    {
        "start",
        "toggle_pause",
        "skip",
        "retry",
        "retry_all",
        "cap",
        "uncap",
        "send_one",
        "cancel_run",
        "edit",
        "to_front",
        "abort_import",
    }
)
REGISTRY = frozenset(a.action.split("(")[0] for a in ACTIONS)
OUTLOOK_SAMPLE = 2000  # pending records READY reads to count full mode's lookups
FIRST_FRAME_WAIT = 1.0  # seconds the outlook waits at most for the queue's first rows
# The garbage collector's young-generation threshold while the console runs. Drawing a frame
# keeps thousands of objects alive at once, so Python's default (700 more container objects than
# at the last collection) started a collection inside most frames, which promoted the frame's
# objects and led to full collections over every object of the imports and widgets: 8 in a
# 20 s key phase, up to 100 ms each, in the middle of a key's frame (BENCHMARKS.md, "Keys
# under load"). Almost everything a frame makes is freed by its reference count; 10,000
# collects the cycles that are left 40x less often, in pauses of a few ms.
GC_YOUNG = 10_000


class ConsoleApp(App[int]):
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "canvas-tui"
    BINDINGS = bindings(ACTIONS)
    COMMANDS = App.COMMANDS | {ConsoleCommands}
    # the screen gets `-narrow` under 120 columns: the dashboard folds its failures panel
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]

    def __init__(
        self,
        opener: SessionOpener,
        *,
        description: str = "",
        read_only: bool = False,
        keymap: Mapping[str, str] | None = None,
        tick_seconds: float = 0.3,
        autostart: bool = False,
        journal_path: Path | None = None,
        plan: bool | None = False,
        attached: bool = False,
        trace_scope: TraceScope | None = None,
    ) -> None:
        super().__init__()
        # following a run another process drives (engine/attach.py); read_only: without control
        self.attached = attached
        # where the trace key looks (None: the current journal's directory, no source)
        self.trace_scope = trace_scope
        self._opener = opener
        # diff against the rosters first and show the plan (engine/plan/): True for --plan,
        # None when the config's drop policy asks for it, False for none
        self._plan = plan
        self.read_only = read_only
        self.keymap_overrides = dict(keymap or {})
        self.tick_seconds = tick_seconds
        # False: open READY and send nothing until the start key (config [console] autostart)
        self.autostart = autostart
        self._started = False  # the operator (or autostart) started a run in this console
        self._declined = False  # the plan screen's "Send nothing"
        # `via = "auto"` and sync's rule chose full mode: REST, and why (READY shows it)
        self._channel: tuple[str, str] | None = None
        self.outlook: Outlook | None = None
        self.journal_path = journal_path
        self.session: ConsoleSession | None = None
        self.state: RunState | None = None
        self._engine: Worker[None] | None = None
        self._quitting = False
        self._view_journal: Journal | None = None
        self.view_store: RecordStore | None = None
        mode = "attached, " if attached else ""
        self._description = description + (
            f"  [{mode}read-only]" if read_only else f"  [{mode}control]" if attached else ""
        )
        self._loading = False
        self._ui_loop: asyncio.AbstractEventLoop | None = None
        self._queue: QueueView | None = None
        self._import_panel: ImportPanel | None = None
        self._past_import: ImportStatus | None = None  # the journal's finished import, if any
        self._gc_threshold = gc.get_threshold()
        self.sub_title = self._description

    # ---- layout and the refresh loop -----------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield Dashboard()
        yield ImportPanel()
        yield QueueView(id="queue")
        yield Footer(show_command_palette=False)  # `?` names ctrl+p; the keys need the room

    def on_mount(self) -> None:
        self._ui_loop = asyncio.get_running_loop()
        self._gc_threshold = gc.get_threshold()
        gc.set_threshold(GC_YOUNG)
        if self.keymap_overrides:
            self.set_keymap(self.keymap_overrides)
        self.queue.table.focus()
        self._open()
        self.set_interval(self.tick_seconds, self.tick)

    def on_unmount(self) -> None:
        # the process may go on (a test, a host of several apps): its collector as it was, and
        # what was frozen (this app's widgets among it) collectable again
        gc.unfreeze()
        gc.set_threshold(*self._gc_threshold)

    @property
    def queue(self) -> QueueView:
        if self._queue is None:  # one widget for the app's life: found once, not per key
            self._queue = self.query_one(QueueView)
        return self._queue

    def tick(self) -> None:
        """Read one snapshot and repaint everything that shows it."""
        session = self.session
        if session is None:
            return
        previous = self.state
        state = session.runner.snapshot()
        self.state = state
        try:
            with self.batch_update():
                self.screen_stack[0].query_one(Dashboard).show(
                    state, idle=self.idle_label(state), outlook=self.outlook
                )
                self._show_import(state)
                self.queue.tick(state)
                screen = self.screen
                if isinstance(screen, ConsoleScreen) and screen is not self.screen_stack[0]:
                    screen.on_tick(state)
        except NoMatches:
            return  # the app is tearing its widgets down on exit
        if self._import_ended(previous, state):
            self.refresh_bindings()
        if (
            self.attached
            and previous is not None
            and state.paused_reason
            and previous.paused_reason != state.paused_reason
            and state.phase is Phase.FINISHED
        ):
            # the `watch` followed here stopped between changes (RemoteSession._gone): the
            # dashboard's line for it is cut on a small terminal
            self.notify(printable(state.paused_reason), title="The service stopped", timeout=30)
        if (
            previous is None
            or previous.phase != state.phase
            or bool(previous.counts.get(State.PENDING)) != bool(state.counts.get(State.PENDING))
        ):
            self.refresh_bindings()

    def _show_import(self, state: RunState) -> None:
        status = state.sis_import or self._past_import
        keys = ""
        if running(status) and self.run_active and not self.read_only:
            pause = effective_key(BY_ID["pause"], self.keymap_overrides)
            keys = f"{pause}: it cannot pause; abort…" if abortable(status) else ""
        if self._import_panel is None:  # one widget for the app's life: found once
            self._import_panel = self.screen_stack[0].query_one(ImportPanel)
        self._import_panel.show(status, keys)

    def _import_ended(self, previous: RunState | None, state: RunState) -> bool:
        """Say so when Canvas finished the import and its rows are settled: how many failed,
        and where to step through them."""
        before, now = previous.sis_import if previous else None, state.sis_import
        if before is None or now is None or before.final or not now.final:
            return False
        failures = effective_key(BY_ID["failures"], self.keymap_overrides)
        retry = effective_key(BY_ID["retry_all"], self.keymap_overrides)
        failed = f"; {failures}: step through them, {retry}: retry by REST" if now.failed else ""
        self.notify(
            printable(
                f"{fmt.count(now.done)} rows done, {fmt.count(now.failed)} failed{failed}. "
                f"{now.message or ''}"
            ),
            title=f"SIS import {(now.workflow_state or now.stage).replace('_', ' ')}",
            severity="warning" if now.failed else "information",
            timeout=15,
        )
        return True

    def idle_label(self, state: RunState) -> str | None:
        """The console's own label when no run was started here (the runner's phase says
        nothing then), else None."""
        if self.attached:
            # the host's run: its phase says it, but a `watch` that sent what it read waits
            # for the next change, which FINISHED would belie
            service = getattr(self.session, "service", False)
            return "WATCHING" if service and state.phase is Phase.FINISHED else None
        if self.read_only:
            return "READ-ONLY"
        if self._declined:
            return "PLAN DECLINED"
        if self._started or self.run_active or self._loading:
            return None
        return "READY" if state.counts.get(State.PENDING, 0) else "ALL FINAL"

    # ---- the engine worker -----------------------------------------------------------------------

    @work(group="engine", exclusive=True, exit_on_error=False, name="open")
    async def _open(self) -> None:
        session = await self._opener()
        self.session = session
        self.queue.store = self.view_store = self._views_store(session)
        subscribe = getattr(session.runner, "subscribe", None)
        if subscribe is not None:
            subscribe(self._on_engine_event)
        drives = not self.read_only and not self.attached  # this console loads and runs
        # start is offered once the journal is loaded: a key pressed before would be lost
        self._loading = drives
        self.tick()  # the first frame shows the counts and the queue now, not a tick later
        self.run_worker(self._freeze_heap(), group="heap", exit_on_error=False)
        approved: bool | None = None
        try:
            self._past_import = await asyncio.to_thread(self._finished_import)
            if drives:
                if session.resumed:
                    await self._resume(session)
                elif self._plan is not False:
                    approved = await self._plan_first(session)
                    if approved is False:
                        self._declined = True
                        return
                await session.load(on_progress=self._loaded_rows)
        finally:
            if drives:
                self._loading = False
                self.sub_title = self._description
                self.refresh_bindings()
        if drives and (self.autostart or approved):
            self._start_run()  # autostart, or the plan screen's Apply: the operator's go
        else:
            # decoding the outlook's sample competes with drawing: it waits for the first frame
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queue.shown.wait(), FIRST_FRAME_WAIT)
            self.outlook = await asyncio.to_thread(self._outlook)
        self.tick()

    async def _freeze_heap(self) -> None:
        """What exists once the queue shows its first rows (modules, styles, widgets, the
        session) lives as long as the app: frozen, a full collection no longer walks it (see
        GC_YOUNG). Collected first, so nothing dead is kept: one full collection, after the
        first frame with rows."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.shown.wait(), FIRST_FRAME_WAIT)

        def freeze() -> None:
            gc.collect()
            gc.freeze()

        self.call_after_refresh(freeze)

    def _finished_import(self) -> ImportStatus | None:
        """A journal whose import finished in an earlier run: its panel, from the journal's
        `imports` table (no channel runs to report it)."""
        from canvas_tui.engine.journal import Journal

        if not isinstance(self.view_store, Journal):
            return None
        from canvas_tui.engine.sis_import.channel import finished_import

        return finished_import(self.view_store)

    def _outlook(self) -> Outlook | None:
        """What a start will send, read from the journal (READY shows it)."""
        from canvas_tui.engine.estimate import estimate_range
        from canvas_tui.engine.journal import Journal
        from canvas_tui.engine.plan.executor import DROP_SOURCE, full_mode_lookups

        store = self.view_store
        if not isinstance(store, Journal) or self.read_only or self.attached:
            return None  # the counts by source are the journal's, not every RecordStore's
        records = store.count(State.PENDING)  # an index range: a million rows stay cheap
        planned = store.get_meta("mode") == "plan"
        # only a plan adds drop records (engine/plan/executor.py)
        drops = (
            sum(store.status_counts(State.PENDING, source=DROP_SOURCE).values()) if planned else 0
        )
        requests = records  # a plan sends one request per change
        if not planned and records:
            # full mode also reads first for every row but a fully stated create: measured on
            # the first rows, so a million-row journal is not decoded to say so
            ids = store.pending_ids(limit=OUTLOOK_SAMPLE)
            sample = [r for r in map(store.record, ids) if r is not None]
            lookups, _ = full_mode_lookups(sample)
            requests = round(records * (1 + lookups / max(1, len(sample))))
        return Outlook(
            records=records,
            mode="plan mode" if planned else "full mode",
            requests=requests,
            time=estimate_range(requests, latency=None, cost=None),
            drops=drops,
            start_key=effective_key(BY_ID["start"], self.keymap_overrides),
            channel=self._channel[0] if self._channel else "",
            channel_why=self._channel[1] if self._channel else "",
        )

    async def _resume(self, session: ConsoleSession) -> None:
        """A resumed journal goes on as `sync` resumes it (engine/plan/executor.py
        `plan_session`): its remaining rows as they are, drops by their recorded enrollment,
        and an unfinished SIS import polled (or found) rather than left in flight."""
        decision = await session.plan(None)
        if decision.via_message:
            self.notify(printable(decision.via_message), title="Channel", timeout=15)

    async def _plan_first(self, session: ConsoleSession) -> bool | None:
        """The plan screen: what will change and the would-be drops, before anything is loaded
        or sent. True when the operator applies it, False when they decline (nothing is
        queued), None when there is no plan to show (a resumed journal)."""
        from canvas_tui.tui.screens.plan import PlanScreen

        if session.resumed:
            return None
        self.sub_title = f"{self._description} · reading the rosters"
        decision = await session.plan(self._plan)
        if decision.plan is None:
            if decision.via_message:  # auto, and no plan: the import cannot carry full mode
                self._channel = ("REST", "auto: full mode is cheaper")
                self.notify(
                    printable(f"{decision.via_message}. {decision.message}"),
                    title="Channel: REST (via auto)",
                    timeout=20,
                )
            return None
        mode = decision.message
        # one title line: what the channel means comes after Apply (the notice of its choice)
        if decision.via == "sis-import":  # a plan whatever asked for it: the import needs one
            mode = "plan mode · via SIS import (it carries the plan's changes)"
        elif decision.via == "auto":  # the plan's figures decide; Apply's notice says why
            channel = {"sis-import": "a SIS import", "rest": "REST"}.get(
                decision.expected_via or "", "REST or a SIS import"
            )
            mode = f"plan mode · via {channel} (--via auto: the faster, as the figures stand)"
        if not await self.push_screen_wait(PlanScreen(decision.plan, mode)):
            self.notify("Plan not applied: nothing was sent.", severity="warning")
            return False
        why = await session.apply_plan(decision)
        if why:
            self.notify(printable(why), title="Channel", timeout=15)
        return True

    def _loaded_rows(self, n: int) -> None:
        # called from a loading thread (engine in process) or from the loop (engine process)
        assert self._ui_loop is not None, "mounted"
        self._ui_loop.call_soon_threadsafe(
            setattr, self, "sub_title", f"{self._description} · loading: {n:,} rows read"
        )

    def _views_store(self, session: ConsoleSession) -> RecordStore:
        """A read connection of the views' own, so a slow sort or text match in the queue never
        waits on (or holds up) the engine's reads of the same journal."""
        from canvas_tui.engine.journal import Journal

        if isinstance(session.store, Journal):
            try:
                view = Journal(
                    session.journal_path, read_only=True, immutable=session.store.immutable
                )
            except Exception:
                return session.store
            self._view_journal = view
            return view
        return session.store

    def _start_run(self) -> None:
        if self.session is None or self._quitting:
            return
        if self._engine is not None and self._engine.state in (
            WorkerState.PENDING,
            WorkerState.RUNNING,
        ):
            return
        self._started = True
        self._engine = self.run_worker(self._run(), group="run", name="engine", exit_on_error=False)

    async def _run(self) -> None:
        assert self.session is not None
        await self.session.run()
        state = self.session.runner.snapshot()
        self.post_message(RunEnded(state.phase))

    def _on_engine_event(self, event: object) -> None:
        # Per-record events arrive at the engine's pace; only phase changes are worth a message.
        phase = getattr(event, "phase", None)
        if isinstance(phase, Phase):
            self.post_message(PhaseChanged(phase, getattr(event, "reason", None)))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """One place where engine worker failures become something the operator sees."""
        if event.state is WorkerState.ERROR and event.worker.group in ("engine", "run"):
            error = event.worker.error
            self.notify(
                printable(f"{type(error).__name__}: {error}"),
                title="Engine stopped",
                severity="error",
                timeout=30,
            )
            self.tick()

    @on(PhaseChanged)
    def _phase_changed(self, message: PhaseChanged) -> None:
        self.tick()
        if message.phase is Phase.ABORTED:
            self.notify(
                printable(message.reason or "run aborted"),
                title="Run aborted",
                severity="error",
                timeout=60,
            )

    @on(RunEnded)
    def _run_ended(self, message: RunEnded) -> None:
        self.tick()
        state = self.state
        if state is None or self._quitting:
            return
        if message.phase is Phase.FINISHED:
            counts = state.counts
            self.notify(
                f"{fmt.count(counts.get(State.DONE, 0))} done, "
                f"{fmt.count(counts.get(State.FAILED, 0))} failed, "
                f"{fmt.count(counts.get(State.SKIPPED, 0))} skipped",
                title="Run finished",
                timeout=10,
            )

    @on(VirtualTable.Selected, "#queue-table")
    def _open_record(self, message: VirtualTable.Selected) -> None:
        """Enter on a queue row: a failed record opens in the stepper, others say where they are."""
        from canvas_tui.tui.screens.stepper import FailureStepper

        row = self.queue.selected
        if row is None:
            return
        if row.state is State.FAILED:
            self.push_screen(FailureStepper(start=row.record_id))
            return
        row = fmt.printable_row(row)
        detail = message_of(row) or row.action or ""
        self.notify(
            f"{row.source}:{row.line} · {sis_value(row.user)} → "
            f"{sis_value(row.course or row.section)} ({row.role}) · {detail}",
            title=f"Record {row.record_id}: {fmt.STATE_LABELS[row.state]}",
        )

    # ---- availability --------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action not in REGISTRY:
            return True
        if isinstance(self.screen, ModalScreen):
            return False  # dialogs own the keyboard
        if action in QUEUE_ONLY and self.screen is not self.screen_stack[0]:
            return False  # the queue is not on screen (the stepper, the roster)
        return self.action_available(action)

    def action_available(self, action: str) -> bool | None:
        """Whether a registry action makes sense now: True, None (shown, disabled) or False
        (hidden). The command palette asks this too, while it is itself the active screen."""
        if action in ("help", "quit_safely"):
            return True
        if self.read_only and action in WRITES:
            return False
        if self.attached and action == "start":
            return False  # the host starts its own runs
        state = self.state
        if self.session is None or state is None:
            return None
        phase = state.phase
        failed = state.counts.get(State.FAILED, 0)
        if action == "start":
            if self.run_active or self._declined or self._loading:
                return False
            return state.counts.get(State.PENDING, 0) > 0  # hidden with nothing to send
        if action == "toggle_pause":
            if not self.run_active:
                return False  # nothing to pause; the start key starts
            return phase in (Phase.LOADING, Phase.RUNNING, Phase.PAUSED) or None
        if action == "abort_import":
            status = state.sis_import
            if not self.run_active or not running(status):
                return False  # no import runs: hidden
            return abortable(status) or None  # not on Canvas yet, or an abort is on its way
        if action == "send_one":
            return (self.run_active and phase is Phase.PAUSED) or None
        if action == "cancel_run":
            if not self.run_active:
                return None  # nothing to cancel (READY, or a run that ended)
            return phase in (Phase.RUNNING, Phase.PAUSED, Phase.LOADING) or None
        if action == "to_front":
            return state.counts.get(State.PENDING, 0) > 0 or None
        if action in ("retry_all", "failures", "export_failures"):
            return failed > 0 or None
        return True

    # ---- helpers -----------------------------------------------------------------------------

    def roster_client(self) -> RosterReader:
        """The session's Canvas client (a read-only session's too: the console only reads
        rosters with it)."""
        session = self.session
        if session is None:
            raise RuntimeError("the session is not open yet")
        client: RosterReader | None = session.client
        if client is None:
            raise RuntimeError("no Canvas base URL or token configured to read rosters with")
        return client

    def current_record(self) -> RecordRow | None:
        """The record the operator is looking at: a ConsoleScreen's (the stepper, the roster),
        else the queue's cursor."""
        screen = self.screen
        if isinstance(screen, ConsoleScreen):
            return screen.current_record()
        return self.queue.selected

    def _after_command(self) -> None:
        self.tick()
        self.refresh_bindings()

    def requeued(self) -> None:
        """Records went back to pending: a run started here sends them; a console still READY
        waits for the start key (a retry must not start the whole load). Attached, the host's
        run sends them while it runs."""
        if self.attached:
            pass
        elif not self.run_active and self._started:
            self._start_run()
        elif not self.run_active:
            key = effective_key(BY_ID["start"], self.keymap_overrides)
            self.notify(f"Queued: press {key} to start sending")
        self._after_command()

    # ---- actions -----------------------------------------------------------------------------

    @property
    def run_active(self) -> bool:
        """A `session.run()` worker is going (it may be paused); attached, the host's run."""
        if self.attached:
            return self.state is not None and self.state.phase in ACTIVE
        engine = self._engine
        return engine is not None and engine.state in (WorkerState.PENDING, WorkerState.RUNNING)

    def action_start(self) -> None:
        """READY (or a cancelled, finished or triaged journal with records pending): send."""
        if self.session is None or self.state is None or self.run_active:
            return
        self._start_run()
        self.notify("Run started")
        self._after_command()

    async def action_toggle_pause(self) -> None:
        if self.session is None or self.state is None or not self.run_active:
            return
        if running(self.state.sis_import):
            self._import_cannot_pause(self.state)
            return
        if self.state.phase is Phase.PAUSED:
            await self.session.command(RunCommands.resume)
            self.notify("Resumed")
        else:
            await self.session.command(RunCommands.pause)
            self.notify("Paused: in-flight requests finish, nothing new is sent")
        self._after_command()

    def _import_cannot_pause(self, state: RunState) -> None:
        """`p` during an import: Canvas runs it on its own servers, so it cannot be paused.
        Say so, and offer what can be done: abort it (confirmed), or pause the REST sends
        beside it."""
        status = state.sis_import
        assert status is not None
        pending = state.counts.get(State.PENDING, 0)
        where = f"It is at {status.progress:.0f}% of {fmt.count(status.rows)} rows."
        options: list[tuple[str, str]] = []
        if abortable(status):
            options.append(("abort", "Abort the import… (asks before it sends PUT abort)"))
        elif status.abort in ("sent", "accepted"):
            where += " An abort was already sent: Canvas stops after the chunk in hand."
        else:
            where += " Abort is possible once Canvas has the file (a moment)."
        if state.phase is Phase.PAUSED:
            options.append(("resume", "Resume the REST sends beside the import"))
        elif pending:
            options.append(
                ("pause", f"Pause only the REST sends beside it ({fmt.count(pending)} pending)")
            )
        options.append(("keep", "Keep it running"))

        async def chosen(choice: str | None) -> None:
            if self.session is None:
                return
            if choice == "abort":
                self.action_abort_import()
            elif choice == "pause":
                await self.session.command(RunCommands.pause)
                self.notify("REST sends paused; the SIS import runs on in Canvas")
            elif choice == "resume":
                await self.session.command(RunCommands.resume)
                self.notify("Resumed")
            self._after_command()

        self.push_screen(
            ChoiceScreen(
                "A SIS import cannot be paused",
                options,
                body="Canvas runs the import on its own servers, in chunks: nothing can hold it "
                f"and let it go on later. {where} Escape: keep it running.",
            ),
            chosen,
        )

    def action_abort_import(self) -> None:
        state = self.state
        if self.session is None or state is None:
            return
        status = state.sis_import
        if not abortable(status):
            self.notify("No SIS import is running on Canvas to abort", severity="warning")
            return
        assert status is not None
        beside = (
            f" The {fmt.count(status.rest_records)} records going by REST beside it are not "
            "part of the import: abort leaves them be."
            if status.rest_records
            else ""
        )
        retry = effective_key(BY_ID["retry_all"], self.keymap_overrides)

        async def answer(yes: bool | None) -> None:
            if not yes or self.session is None:
                return
            if await self.session.command(RunCommands.abort_import):
                self.notify(
                    "Abort sent to Canvas: the chunk in hand still lands; the rows end when "
                    "Canvas says aborted",
                    title=f"SIS import {status.sis_import_id}",
                )
            else:
                self.notify("The import is no longer running: nothing to abort")
            self._after_command()

        self.push_screen(
            ConfirmScreen(
                f"Abort SIS import {status.sis_import_id}?",
                "Canvas stops it before its next chunk. What abort leaves in place: the rows of "
                "the chunk Canvas is applying still land, and every row it applied stays "
                "applied (abort undoes nothing). Once Canvas says aborted, each of the "
                f"{fmt.count(status.rows)} rows is accounted for: any Canvas named ends failed "
                "with its message, and every other ends failed as 'SIS import did not finish' "
                f"(it may have landed or not); {retry} retries them by REST."
                f"{beside}",
                yes="Abort import",
                no="Keep importing",
            ),
            answer,
        )

    async def action_skip(self) -> None:
        row = self.current_record()
        if self.session is None or row is None:
            return
        if await self.session.command(RunCommands.skip, row.record_id):
            self.notify(f"Record {row.record_id} skipped")
        else:
            self.notify(
                f"Record {row.record_id} is {row.state.value}: cannot skip it", severity="warning"
            )
        self._after_command()

    async def action_retry(self) -> None:
        row = self.current_record()
        if self.session is None or row is None:
            return
        if await self.session.command(RunCommands.retry, row.record_id):
            self.notify(f"Record {row.record_id} queued again")
            self.requeued()
        elif row.state in (State.FAILED, State.SKIPPED):
            self.notify(
                f"Record {row.record_id} cannot be sent as it stands (an invalid or duplicate "
                "source row): edit it with e, or fix the source",
                severity="warning",
            )
        else:
            self.notify(
                f"Record {row.record_id} is {row.state.value}: only failed or skipped records retry",
                severity="warning",
            )

    def action_retry_all(self) -> None:
        state = self.state
        if self.session is None or state is None:
            return
        failed = state.counts.get(State.FAILED, 0)
        options = [("*", f"All failed records ({fmt.count(failed)})")]
        for category, n in sorted(state.failures_by_category.items(), key=lambda kv: -kv[1]):
            if n:
                options.append((category, f"{fmt.category_title(category)} ({fmt.count(n)})"))

        async def chosen(choice: str | None) -> None:
            if choice is None or self.session is None:
                return
            category = None if choice == "*" else choice
            n = await self.session.command(RunCommands.retry_failed, category)
            self.notify(f"{fmt.count(n)} failed record{'' if n == 1 else 's'} queued again")
            self.requeued()

        self.push_screen(
            ChoiceScreen(
                "Retry failed records?",
                options,
                body="They go back to pending and are sent again"
                + (" by REST, a SIS import's rows too" if state.sis_import is not None else "")
                + ". Escape: do nothing.",
            ),
            chosen,
        )

    def action_failures(self) -> None:
        from canvas_tui.tui.screens.stepper import FailureStepper

        row = self.queue.selected
        start = row.record_id if row is not None and row.state is State.FAILED else None
        self.push_screen(FailureStepper(start=start))

    def action_filter(self) -> None:
        current = self.queue.filter
        parts = [f"state:{current.state.value}"] if current.state else []
        if current.text:
            parts.append(current.text)

        def apply(query: str | None) -> None:
            if query is None:
                return
            try:
                self.queue.set_filter(parse_filter(query, self.queue.filter))
            except ValueError as exc:
                self.notify(str(exc), severity="error")
            self.queue.tick(self.state)

        self.push_screen(
            PromptScreen(
                "Filter the queue",
                value=" ".join(parts),
                placeholder="state:failed course:BIO-101 smith",
                help="state:<pending|in_flight|done|failed|skipped>, course:<id>, or any text "
                "(user, course, section, message). Empty: show everything.",
            ),
            apply,
        )

    def action_cycle_state(self) -> None:
        current = self.queue.filter
        i = STATE_CYCLE.index(current.state)
        self.queue.set_filter(
            QueueFilter(STATE_CYCLE[(i + 1) % len(STATE_CYCLE)], current.text, current.order)
        )
        # only the queue changed: its rows are read now, the dashboard waits for its tick
        self.queue.tick(self.state)

    def action_cycle_order(self) -> None:
        current = self.queue.filter
        keys = [k for k, _ in ORDERS]
        i = keys.index(current.order) if current.order in keys else -1
        self.queue.set_filter(QueueFilter(current.state, current.text, keys[(i + 1) % len(keys)]))
        self.queue.tick(self.state)

    async def action_to_front(self) -> None:
        """The selected record's course (or the queue's text filter) goes first: its pending
        records are sent before any other, and the rest wait until they have all ended."""
        if self.session is None:
            return
        text = self.queue.filter.text
        if text:
            what = f"matching {text!r}"
            moved = await self.session.command(RunCommands.to_front, None, text)
        else:
            row = self.current_record()
            course = None if row is None else (row.course or row.section)
            if course is None:
                self.notify("Select a record of the course to send first", severity="warning")
                return
            what = f"of {sis_value(course)}"
            moved = await self.session.command(RunCommands.to_front, course)
        if moved:
            self.notify(
                f"{fmt.count(moved)} pending records {printable(what)} go first; the rest "
                "wait until they have all ended",
                title="Moved to the front",
            )
        else:
            self.notify(f"No pending records {printable(what)}", severity="warning")
        self._after_command()

    def action_trace(self) -> None:
        """The selected record's person across every run and the source (engine/trace.py)."""
        from dataclasses import replace

        from canvas_tui.engine.trace import TraceScope
        from canvas_tui.tui.screens.trace import TraceScreen

        row = self.current_record()
        if row is None:
            self.notify("Select a record to trace its person", severity="warning")
            return
        current = (self.journal_path,) if self.journal_path is not None else ()
        scope = self.trace_scope
        if scope is None:
            directory = self.journal_path.parent if self.journal_path is not None else None
            scope = TraceScope(directory, current)
        else:
            scope = replace(scope, journals=(*scope.journals, *current))
        self.push_screen(TraceScreen(row, scope))

    def action_jump(self) -> None:
        def go(answer: str | None) -> None:
            if not answer or self.session is None:
                return
            try:
                record_id = int(answer.lstrip("#"))
            except ValueError:
                self.notify(f"{answer!r} is not a record number", severity="error")
                return
            if self.session.store.get(record_id) is None:
                self.notify(f"No record {record_id}", severity="error")
                return
            if not self.queue.filter.is_default:  # positions are only known in source order
                self.queue.set_filter(QueueFilter())
            if self.state is not None:  # the new total now, not at the next tick
                self.queue.table.set_total(self.state.total)
            self.queue.table.move_to(record_id - 1)

        self.push_screen(PromptScreen("Jump to record number", placeholder="e.g. 4512"), go)

    def action_roster(self) -> None:
        row = self.current_record()
        default = sis_value(row.course) if row is not None and row.course else ""

        def open_roster(answer: str | None) -> None:
            if answer:
                from canvas_tui.tui.screens.roster import RosterScreen

                self.push_screen(RosterScreen(answer))

        self.push_screen(
            PromptScreen(
                "Open a course roster",
                value=default,
                placeholder="Canvas course id (123) or SIS course id (BIO-101)",
                help="Digits are a Canvas id; anything else is a sis_course_id. "
                "Prefix with sis_course_id: to force SIS.",
            ),
            open_roster,
        )

    async def action_cap(self, delta: int) -> None:
        if self.session is None or self.state is None:
            return
        gov = self.state.governor
        current = gov.cap if gov.cap is not None else max(gov.limit, 1)
        cap = max(1, current + delta)
        await self.session.command(RunCommands.set_concurrency_cap, cap)
        self.notify(f"Concurrency cap {cap}")
        self._after_command()

    async def action_uncap(self) -> None:
        if self.session is None:
            return
        await self.session.command(RunCommands.set_concurrency_cap, None)
        self.notify("Concurrency cap removed: the governor decides")
        self._after_command()

    async def action_send_one(self) -> None:
        if self.session is None:
            return
        row = self.current_record()
        record_id = row.record_id if row is not None and row.state is State.PENDING else None
        if await self.session.command(RunCommands.send_one, record_id):
            self.notify(f"Sending record {record_id}" if record_id else "Sending the next record")
        else:
            self.notify("Nothing to send (send one works while paused)", severity="warning")
        self._after_command()

    def action_cancel_run(self) -> None:
        state = self.state
        if self.session is None or state is None:
            return
        pending = state.counts.get(State.PENDING, 0)

        async def answer(yes: bool | None) -> None:
            if yes and self.session is not None:
                await self.session.command(RunCommands.cancel)
                self.notify("Cancelling: in-flight requests finish; nothing new is sent")
                self._after_command()

        self.push_screen(
            ConfirmScreen(
                "Cancel the run?",
                f"Nothing new is sent; {state.governor.in_flight} in flight finish. "
                f"{fmt.count(pending)} pending records stay pending and resume when the "
                "journal is opened again.",
                yes="Cancel run",
                no="Keep running",
            ),
            answer,
        )

    def action_edit(self) -> None:
        row = self.current_record()
        if self.session is None or row is None:
            return
        if row.state not in (State.FAILED, State.SKIPPED):
            self.notify(
                f"Record {row.record_id} is {row.state.value}: edit+retry is for failed or skipped records",
                severity="warning",
            )
            return
        fields = dict(row.raw) or {
            "user_id": sis_value(row.user),
            "course_id": sis_value(row.course),
            "section_id": sis_value(row.section),
            "role": row.role,
            "status": row.status,
        }

        async def save(changed: dict[str, str] | None) -> None:
            if changed is None or self.session is None:
                return
            if await self.session.command(RunCommands.edit_and_retry, row.record_id, changed):
                self.notify(f"Record {row.record_id} edited and queued again")
                self.requeued()
            else:
                self.notify(f"Record {row.record_id}: the edit was refused", severity="error")

        self.push_screen(
            EditScreen(f"Edit record {row.record_id} ({row.source}:{row.line})", fields), save
        )

    def action_export_failures(self) -> None:
        default = str(Path.cwd() / "failures.csv")

        def export(path: str | None) -> None:
            if path:
                self._export(Path(path).expanduser())

        self.push_screen(
            PromptScreen(
                "Export failed records as a SIS CSV",
                value=default,
                help="The file has the source's columns, ready to fix and feed back.",
            ),
            export,
        )

    @work(group="export", exclusive=True, exit_on_error=False)
    async def _export(self, path: Path) -> None:
        from canvas_tui.engine.report import write_failures_csv

        assert self.session is not None
        try:
            # the journal (either session's store is one); the protocol is narrower than the writer
            store = cast("Journal", self.session.store)
            n = await asyncio.to_thread(write_failures_csv, store, path)
        except OSError as exc:
            self.notify(f"{path}: {exc.strerror or exc}", title="Export failed", severity="error")
            return
        self.notify(
            f"{fmt.count(n)} failed records written to {path}", title="Exported", timeout=10
        )

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.keymap_overrides, LEGEND))

    async def action_quit(self) -> None:
        """Textual's ctrl+q (from any screen): the same safe quit as `q`, never an exit with
        requests in flight."""
        if not isinstance(self.screen, ConfirmScreen):
            self.action_quit_safely()

    def action_help_quit(self) -> None:
        """ctrl+c, where no text is selected to copy: the same safe quit as `q` (Textual's own
        only tells to press ctrl+q). A dialog keeps it: there it may be copying."""
        if not isinstance(self.screen, ModalScreen):
            self.action_quit_safely()

    def action_quit_safely(self) -> None:
        if self._quitting:
            return
        state = self.state
        if self.read_only or self.attached or state is None or not self.run_active:
            self._wind_down()  # attached: only this console goes; the run goes on
            return
        pending = state.counts.get(State.PENDING, 0)
        resume = (
            f" in {self.journal_path}; open the journal again to resume."
            if self.journal_path
            else "; this run's journal is not kept (the demo's)."
        )
        if running(state.sis_import) and self.journal_path:
            resume += (
                " The SIS import runs on in Canvas: opening the journal again polls it, and "
                "never uploads it again."
            )

        def answer(yes: bool | None) -> None:
            if yes:
                self._wind_down()

        self.push_screen(
            ConfirmScreen(
                "Quit?",
                f"{state.governor.in_flight} in-flight requests finish first. "
                f"{fmt.count(pending)} pending records stay pending{resume}",
                yes="Quit",
                no="Stay",
            ),
            answer,
        )

    @work(group="shutdown", exclusive=True, exit_on_error=False)
    async def _wind_down(self) -> None:
        self._quitting = True
        session = self.session
        if session is not None:
            state = session.runner.snapshot()
            if self.run_active and not self.attached:
                await session.command(RunCommands.cancel)
                self.notify(f"Waiting for {state.governor.in_flight} in-flight requests…")
            engine = self._engine
            if engine is not None and engine.state in (WorkerState.PENDING, WorkerState.RUNNING):
                # a failed engine was already reported by on_worker_state_changed
                with contextlib.suppress(Exception):
                    await engine.wait()
            self.state = session.runner.snapshot()
            await session.close()
            if self._view_journal is not None:
                self._view_journal.close()
        # an operator watched: quitting is not an error, only an abort is (exit_codes.py)
        self.exit(int(run_exit_code(self.state, attended=True)))


if TYPE_CHECKING:

    def _keeps_the_contract(app: ConsoleApp) -> ConsoleHost:
        return app  # mypy checks the app against what its screens may use (tui/contract.py)
