"""The console's SIS import panel, `p` during an import, and the stepper and retry on the rows an
import sent back (issue 15), against the real engine and the in-process simulator's SIS Import
API."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from textual.widgets import Label, OptionList, Static

from canvas_tui.engine.journal import Journal
from canvas_tui.engine.plan.executor import SourceCounts, choose_mode
from canvas_tui.engine.state import ImportStatus, Phase, RecordRow
from canvas_tui.records import State
from canvas_tui.sources import open_source
from canvas_tui.tui.app import ConsoleApp
from canvas_tui.tui.launch import console_plan
from canvas_tui.tui.screens.dialogs import ChoiceScreen, ConfirmScreen
from canvas_tui.tui.screens.plan import PlanScreen
from canvas_tui.tui.screens.stepper import FailureStepper
from canvas_tui.tui.widgets.import_panel import (
    ImportPanel,
    abortable,
    import_text,
    note_text,
    running,
    state_label,
    time_left,
)
from canvas_tui.tui.widgets.queue import record_cells
from tests.helpers import eventually_async
from tests.tui.conftest import (
    BASE_URL,
    PLACEMENTS,
    SIZE,
    Harness,
    active_courses,
    make_harness,
    small_world,
    text_of,
)

GHOSTS = ("NOSUCH001", "NOSUCH002", "NOSUCH003")  # users Canvas lacks when the import runs


def _status(**fields: object) -> ImportStatus:
    base: dict[str, object] = {"import_id": 1, "stage": "polling", "rows": 3000}
    base.update(fields)
    return ImportStatus(**base)  # type: ignore[arg-type]


# ---- what the panel says, state by state -------------------------------------------------------


def test_each_stage_and_workflow_state_has_its_badge() -> None:
    assert state_label(_status(stage="prepared"))[0] == "PREPARED"
    assert state_label(_status(stage="uploading"))[0] == "UPLOADING"
    assert state_label(_status(workflow_state="created")) == ("CREATED", "bold blue")
    assert state_label(_status(workflow_state="importing")) == ("IMPORTING", "bold blue")
    assert state_label(_status(stage="mapping", workflow_state="imported"))[0] == (
        "READING MESSAGES"
    )
    finished = {"stage": "finished", "progress": 100.0}
    assert state_label(_status(workflow_state="imported", **finished)) == (
        "IMPORTED",
        "bold green",
    )
    assert state_label(_status(workflow_state="imported_with_messages", **finished)) == (
        "IMPORTED WITH MESSAGES",
        "bold yellow",
    )
    for bad in ("failed", "failed_with_messages", "aborted"):
        label, style = state_label(_status(workflow_state=bad, **finished))
        assert label == bad.replace("_", " ").upper() and style == "bold red"
    # the operator's abort shows until Canvas ends the import
    assert state_label(_status(workflow_state="importing", abort="sent"))[0] == "ABORTING"
    assert state_label(_status(workflow_state="importing", abort="accepted"))[0] == "ABORTING"


def test_the_lines_carry_progress_rows_messages_and_counts() -> None:
    text = import_text(
        _status(
            sis_import_id=101,
            workflow_state="importing",
            progress=45.0,
            warning_count=12,
            error_count=1,
            counts={"enrollments": 1350, "warning_count": 12, "users": 0},
            rest_records=40,
            elapsed=23.0,
        ),
        width=100,
    ).plain
    head, line = text.split("\n")
    assert (
        head.startswith(" IMPORTING ")
        and "45%" in head
        and "SIS import 101 · 23s, ≈28s left" in head
    )
    assert len(head) <= 100
    assert line == (
        "3,000 rows · 12 warnings · 1 error · enrollments 1,350 · 40 by REST beside it"
    )  # Canvas's warning_count is the figure already shown; a zero count is left out
    done = import_text(
        _status(stage="finished", workflow_state="imported", progress=100.0, done=2998, failed=2)
    ).plain
    assert "0 warnings" in done and "done 2,998 · failed 2" in done


def test_the_figures_wrap_at_the_panel_width_rather_than_being_cut() -> None:
    finished = _status(
        stage="finished",
        workflow_state="imported_with_messages",
        progress=100.0,
        rows=2316,
        warning_count=3,
        counts={"enrollments": 2313},
        done=2313,
        failed=3,
        rest_records=2,
        sis_import_id=101,
    )
    head, *figures = import_text(finished, width=76).plain.split("\n")
    assert figures == [
        "2,316 rows · 3 warnings · enrollments 2,313 · done 2,313 · failed 3",
        "2 by REST beside it",
    ]
    assert len(head) <= 76
    assert len(import_text(finished, width=120).plain.split("\n")) == 2  # wide: one line


def test_what_the_border_notes_and_what_p_may_do() -> None:
    importing = _status(sis_import_id=5, workflow_state="importing", progress=40.0, elapsed=20)
    assert running(importing) and abortable(importing)
    assert note_text(importing) == ""  # the badge and the bar say it
    assert time_left(importing) == 30.0  # 20 s for 40%: 30 s for the other 60%
    assert time_left(_status(workflow_state="created")) is None  # queued: no pace yet
    uploading = _status(stage="uploading", message="uploading 3000 rows")
    assert running(uploading) and not abortable(uploading)  # Canvas has no id for it yet
    assert note_text(uploading) == "uploading 3000 rows"
    sent = _status(sis_import_id=5, abort="sent")
    assert not abortable(sent) and "chunk in hand" in note_text(sent)
    refused = _status(sis_import_id=5, abort="Canvas refused the abort: 404 not found")
    assert abortable(refused) and note_text(refused).startswith("Canvas refused the abort")
    ended = _status(stage="finished", workflow_state="aborted", message="SIS import 5: aborted")
    assert not running(ended) and not abortable(ended)
    assert note_text(ended) == "SIS import 5: aborted"
    assert not running(None)


def test_the_queue_says_which_rows_an_import_carries() -> None:
    row = RecordRow(
        record_id=1,
        source="e.csv",
        line=2,
        key="",
        user="sis_user_id:S1",
        course="sis_course_id:C1",
        section=None,
        role="student",
        status="active",
        state=State.IN_FLIGHT,
        action="create",
        attempts=0,
        category=None,
        message=None,
        error_report_id=None,
        canvas_enrollment_id=None,
        channel="sis_import",
    )
    assert str(record_cells(row)[-1]) == "create · SIS import"
    assert str(record_cells(replace(row, channel=None))[-1]) == "create"  # REST, or unsent


# ---- the console over a real import ------------------------------------------------------------


def _import_harness(
    tmp_path: Path, *, good: int, rate: float, engine_process: bool = False
) -> Harness:
    world = small_world()
    course = active_courses(world)[0]
    ghosts = [[course, ghost, "student", "", "active"] for ghost in GHOSTS]
    h = make_harness(tmp_path, good=good, world=world, extra=ghosts, engine_process=engine_process)
    h.via = "sis-import"
    h.sim.sis_imports.rows_per_second = rate  # world rows per second; the harness scales time
    return h


def _import(app: ConsoleApp) -> ImportStatus | None:
    return app.state.sis_import if app.state is not None else None


def _store(app: ConsoleApp) -> Journal:
    assert app.session is not None and isinstance(app.session.store, Journal)
    return app.session.store


async def _apply_plan(app: ConsoleApp, pilot: object) -> None:
    await eventually_async(
        lambda: isinstance(app.screen, PlanScreen) or None,
        what="the plan screen",
        pause=pilot.pause,  # type: ignore[attr-defined]
    )
    await pilot.press("a")  # type: ignore[attr-defined]


async def test_the_panel_follows_an_import_and_its_failed_rows_retry_by_rest(
    tmp_path: Path,
) -> None:
    h = _import_harness(tmp_path, good=72, rate=1.0)
    app = h.app(plan=True)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(ImportPanel)
        assert not panel.display  # no import: no panel
        await _apply_plan(app, pilot)
        seen: set[float] = set()

        def moving() -> bool | None:
            status = _import(app)
            if status is not None and status.workflow_state == "importing":
                seen.add(status.progress)
                assert panel.display and "IMPORTING" in text_of(panel)
            return len(seen) >= 2 or (status is not None and status.final) or None

        await eventually_async(moving, what="the import's progress", pause=pilot.pause)
        await eventually_async(
            lambda: (app.state is not None and app.state.phase is Phase.FINISHED) or None,
            what="the run finished",
            pause=pilot.pause,
        )
        assert len(seen) >= 2, f"the progress moved through {sorted(seen)}"
        status = _import(app)
        assert status is not None and status.workflow_state == "imported_with_messages"
        assert status.warning_count == len(GHOSTS) and status.failed == len(GHOSTS)
        shown = text_of(panel)
        assert "IMPORTED WITH MESSAGES" in shown and "100%" in shown
        assert f"{len(GHOSTS)} warnings" in shown and f"failed {len(GHOSTS)}" in shown

        # the stepper shows an import's failed row as what it was: a row of a file
        store = _store(app)
        assert len(store.failed_ids("user_not_found")) == len(GHOSTS)
        await pilot.press("f")
        stepper = app.screen
        assert isinstance(stepper, FailureStepper)
        row = stepper.current_record()
        while row is not None and row.category == "invalid_input":  # the source's bad row
            await pilot.press("l")
            row = stepper.current_record()
        assert row is not None and row.channel == "sis_import" and row.category == "user_not_found"
        body = text_of(stepper.query_one("#stepper-body", Static))
        assert "SIS import" in body and "User not found" in body
        assert "A retry sends it by REST" in body and "Never sent" not in body

        # Canvas gets the user; r sends the record again, by REST this time
        ghost = row.user.split(":", 1)[1]
        h.sim.world.add_user("Late Student", ghost)
        rest_before = h.sim.stats()["requests_by_endpoint"].get("create_enrollment", 0)
        await pilot.press("r")

        def resent() -> bool | None:
            fresh = store.get(row.record_id)
            return (fresh is not None and fresh.state is State.DONE) or None

        await eventually_async(resent, what="the retried record done", pause=pilot.pause)
        fresh = store.get(row.record_id)
        assert fresh is not None and fresh.channel is None and fresh.attempts >= 1
        assert h.sim.stats()["requests_by_endpoint"].get("create_enrollment", 0) > rest_before
        assert len(h.sim.sis_imports.imports) == 1  # a retry never uploads another import
        await pilot.press("escape")


@PLACEMENTS
async def test_p_during_an_import_explains_and_aborts_only_once_confirmed(
    tmp_path: Path, engine_process: bool
) -> None:
    h = _import_harness(tmp_path, good=150, rate=0.5, engine_process=engine_process)
    app = h.app(plan=True)
    async with app.run_test(size=SIZE) as pilot:
        await _apply_plan(app, pilot)

        def importing() -> ImportStatus | None:
            status = _import(app)
            return status if status is not None and status.workflow_state == "importing" else None

        await eventually_async(importing, what="the import running", pause=pilot.pause)
        assert app.action_available("abort_import") is True  # A, and the palette, offer it
        await pilot.press("p")
        choice = app.screen
        assert isinstance(choice, ChoiceScreen)
        said = " ".join(" ".join(text_of(s) for s in choice.query(Static)).split())
        assert "cannot be paused" in said and "Canvas runs the import on its own servers" in said
        options = choice.query_one(OptionList)
        assert options.get_option_at_index(0).id == "abort"
        await pilot.press("escape")  # keep it running: nothing sent
        assert app.state is not None and app.state.phase is Phase.RUNNING
        assert h.sim.stats()["requests_by_endpoint"].get("abort_sis_import", 0) == 0

        await pilot.press("p")
        await pilot.press("enter")  # the first option: abort…
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        body = " ".join(" ".join(text_of(s) for s in confirm.query(Static)).split())
        assert "still land" in body and "stays applied" in body and "undoes nothing" in body
        assert "retries them by REST" in body
        await pilot.press("n")  # declined: still nothing sent
        assert h.sim.stats()["requests_by_endpoint"].get("abort_sis_import", 0) == 0

        await pilot.press("p")
        await pilot.press("enter")
        await pilot.press("y")
        await eventually_async(
            lambda: (app.state is not None and app.state.phase is Phase.FINISHED) or None,
            what="the aborted run's end",
            pause=pilot.pause,
        )
        assert h.sim.stats()["requests_by_endpoint"].get("abort_sis_import", 0) == 1
        status = _import(app)
        assert status is not None and status.workflow_state == "aborted"
        assert "ABORTED" in text_of(app.query_one(ImportPanel))
        state = app.state
        assert state is not None and state.finished == state.total  # every record accounted
        assert state.failures_by_category.get("sis_import", 0) > 0
        # an import that ended cannot be aborted: the key is hidden again
        assert app.action_available("abort_import") is False


async def test_p_during_an_import_may_pause_only_the_rest_sends_beside_it(tmp_path: Path) -> None:
    """A mixed run: the plan's drops go by REST beside the import. Pausing them leaves the
    import running in Canvas to its end; once it has ended, p pauses and resumes as ever."""
    world = small_world()
    course = world.add_course("Drop Lab", "DROP-LAB-F26")
    section = world.add_section(course, "Drop Lab 01", "DROP-LAB-F26-01")
    student = world.built_in_role("StudentEnrollment")
    assert student is not None
    for i in range(300):  # SIS-made enrollments the source no longer lists: drops
        user = world.add_user(f"Dropped Student{i:03d}", f"D{i:04d}")
        world.add_enrollment(user, section, student, sis_import_id=7)
    h = make_harness(tmp_path, good=40, world=world, time_scale=2.0)
    h.via, h.drop_policy = "sis-import", "conclude"
    h.sim.sis_imports.rows_per_second = 5.0
    app = h.app(plan=True)
    async with app.run_test(size=SIZE) as pilot:
        await _apply_plan(app, pilot)  # approves the drops the brake holds
        await eventually_async(
            lambda: (running(_import(app)) and app.run_active) or None,
            what="the run with its import",
            pause=pilot.pause,
        )
        await pilot.press("p")
        choice = app.screen
        assert isinstance(choice, ChoiceScreen)
        options = choice.query_one(OptionList)
        ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
        assert "pause" in ids, ids
        options.highlighted = ids.index("pause")
        await pilot.press("enter")
        await eventually_async(
            lambda: (app.state is not None and app.state.phase is Phase.PAUSED) or None,
            what="the REST sends paused",
            pause=pilot.pause,
        )
        # the import is not held: Canvas finishes it and its rows settle while REST waits
        await eventually_async(
            lambda: (_import(app) or _status()).final or None,
            what="the import's end while paused",
            pause=pilot.pause,
        )
        state = app.state
        assert state is not None and state.phase is Phase.PAUSED
        assert state.counts.get(State.PENDING, 0) > 0  # drops held back
        assert _import(app) is not None and _import(app).workflow_state == "imported"  # type: ignore[union-attr]
        await pilot.press("p")  # no import runs now: p is the ordinary resume
        assert not isinstance(app.screen, ChoiceScreen)
        await eventually_async(
            lambda: (app.state is not None and app.state.phase is Phase.FINISHED) or None,
            what="the run's end",
            pause=pilot.pause,
        )
        state = app.state
        assert state is not None and state.finished == state.total
        assert len(h.sim.sis_imports.imports) == 1


@PLACEMENTS
async def test_the_plan_title_under_auto_names_the_channel_apply_takes(
    tmp_path: Path, engine_process: bool
) -> None:
    """`--via auto`: the plan screen says which channel the plan's figures pick (not "--plan",
    which nobody typed), and Apply takes that one."""
    h = _import_harness(tmp_path, good=20, rate=5.0, engine_process=engine_process)
    h.via = "auto"
    app = h.app(plan=True)
    async with app.run_test(size=SIZE) as pilot:
        await eventually_async(
            lambda: (isinstance(app.screen, PlanScreen) and app.screen.focused is not None) or None,
            what="the plan screen, mounted",
            pause=pilot.pause,
        )
        title = str(app.screen.query_one(".title", Label).content)
        assert "(--plan)" not in title and "(--via auto" in title
        said = "sis-import" if "via a SIS import" in title else "rest"
        assert said == "sis-import" or "via REST (" in title
        await pilot.press("a")
        await eventually_async(
            lambda: (app.state is not None and app.state.phase is Phase.FINISHED) or None,
            what="the run finished",
            pause=pilot.pause,
        )
    assert (len(h.sim.sis_imports.imports) == 1) == (said == "sis-import")


@pytest.mark.parametrize("read_only", [False, True], ids=["resumed", "read-only"])
async def test_a_journal_whose_import_finished_opens_with_its_panel(
    tmp_path: Path, read_only: bool
) -> None:
    """No channel runs for an import an earlier run finished: the panel comes from the
    journal's imports table, as the run left it."""
    h = _import_harness(tmp_path, good=12, rate=50.0)
    app = h.app(plan=True)
    async with app.run_test(size=SIZE) as pilot:
        await _apply_plan(app, pilot)
        await eventually_async(
            lambda: (app.state is not None and app.state.phase is Phase.FINISHED) or None,
            what="the run finished",
            pause=pilot.pause,
        )
        before = text_of(app.query_one(ImportPanel))
    await h.sessions.pop().close()  # that run has ended: its journal is free
    again = h.app(autostart=False, read_only=read_only)
    async with again.run_test(size=SIZE) as pilot:
        panel = again.query_one(ImportPanel)
        await eventually_async(lambda: panel.display or None, what="the panel", pause=pilot.pause)
        shown = text_of(panel)
    assert "IMPORTED WITH MESSAGES" in shown and f"failed {len(GHOSTS)}" in shown
    assert "IMPORTED WITH MESSAGES" in before


@PLACEMENTS
async def test_a_console_resuming_a_stopped_import_polls_it_to_its_end(
    tmp_path: Path, engine_process: bool
) -> None:
    """Stopped while Canvas imports: the next console polls the same import (as `sync` does on
    resume) rather than finish with its records left in flight, and never uploads another."""
    h = _import_harness(tmp_path, good=40, rate=2.0, engine_process=engine_process)
    app = h.app(plan=True)
    async with app.run_test(size=SIZE) as pilot:
        await _apply_plan(app, pilot)
        await eventually_async(
            lambda: running(_import(app)) and (_import(app) or None),
            what="the import running",
            pause=pilot.pause,
        )
        assert app.session is not None
        app.session.runner.cancel()
        await eventually_async(
            lambda: (app.state is not None and app.state.phase is Phase.CANCELLED) or None,
            what="the run stopped",
            pause=pilot.pause,
        )
        assert app.state is not None and app.state.counts.get(State.IN_FLIGHT, 0) > 0
    await h.sessions.pop().close()
    h.sim.sis_imports.rows_per_second = 400.0
    again = h.app(autostart=True)
    async with again.run_test(size=SIZE) as pilot:
        await eventually_async(
            lambda: (again.state is not None and again.state.phase is Phase.FINISHED) or None,
            what="the resumed run finished",
            pause=pilot.pause,
        )
        state = again.state
    assert state is not None and state.counts.get(State.IN_FLIGHT, 0) == 0
    assert state.sis_import is not None and state.sis_import.stage == "finished"
    assert state.sis_import.failed == len(GHOSTS)
    assert len(h.sim.sis_imports.imports) == 1


@pytest.mark.parametrize("via", ["sis-import", "rest"])
async def test_a_configured_import_makes_the_console_plan_as_sync_does(
    tmp_path: Path, via: str
) -> None:
    """`[sync] via = "sis-import"` without --plan: the console asks for the plan `sync` would
    (tui/launch.py `console_plan`, the config's `import_needs_plan`), rather than sending the rows
    by REST; under REST it still opens READY with no plan."""
    h = _import_harness(tmp_path, good=20, rate=5.0)
    h.via = via
    plan = console_plan(h.config(BASE_URL), asked=False)
    assert plan is (None if via == "sis-import" else False)
    app = h.app(plan=plan, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        if via == "rest":
            await eventually_async(
                lambda: app.outlook is not None or None, what="READY", pause=pilot.pause
            )
            assert not isinstance(app.screen, PlanScreen)
            await pilot.press("q")
            return
        await eventually_async(
            lambda: (isinstance(app.screen, PlanScreen) and app.screen.focused is not None) or None,
            what="the plan screen, mounted",
            pause=pilot.pause,
        )
        assert "via SIS import" in str(app.screen.query_one(".title", Label).content)
        await pilot.press("a")
        await eventually_async(
            lambda: (app.state is not None and app.state.phase is Phase.FINISHED) or None,
            what="the run finished",
            pause=pilot.pause,
        )
    assert len(h.sim.sis_imports.imports) == 1


async def test_auto_in_the_console_decides_as_sync_does_and_ready_says_so(
    tmp_path: Path,
) -> None:
    """`[sync] via = "auto"` (or `console --via auto`) with no --plan: the console asks for
    sync's decision (`console_plan` None, `plan_session`'s rule), not REST by default. For a
    source full mode suits, READY says the channel (REST) and why, and a start uploads no
    import; were a plan cheaper, the plan screen would name the channel instead."""
    h = make_harness(tmp_path, good=2, world=small_world())
    h.via = "auto"
    config = h.config(BASE_URL)
    plan = console_plan(config, asked=False)
    assert plan is None
    assert choose_mode(SourceCounts.of(open_source(h.csv_path)), config.plan, None)[0] is False
    app = h.app(plan=plan, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        await eventually_async(
            lambda: (app.outlook is not None and app.outlook.channel) or None,
            what="READY, with its channel",
            pause=pilot.pause,
        )
        assert not isinstance(app.screen, PlanScreen)
        app.tick()
        await pilot.pause()
        shown = text_of(app.query_one("#front"))
        assert "via REST" in shown and "full mode is cheaper" in shown
        said = [n for n in app._notifications if n.title == "Channel: REST (via auto)"]
        assert said and "full mode (auto)" in said[0].message
        await pilot.press("S")
        await eventually_async(
            lambda: (app.state is not None and app.state.phase is Phase.FINISHED) or None,
            what="the run finished",
            pause=pilot.pause,
        )
    assert not h.sim.sis_imports.imports
