"""Operator flows, driven by key presses, against the real engine and the in-process simulator."""

from __future__ import annotations

import csv
import gc
import threading
from pathlib import Path

import pytest
from textual.command import CommandList, CommandPalette
from textual.widgets import Input

from canvas_tui.engine.journal import Journal
from canvas_tui.engine.state import Phase, RecordRow
from canvas_tui.records import FINAL_STATES, State
from canvas_tui.tui.app import GC_YOUNG, ConsoleApp
from canvas_tui.tui.screens.dialogs import ConfirmScreen, EditScreen, HelpScreen, PromptScreen
from canvas_tui.tui.screens.stepper import FailureStepper
from tests.helpers import eventually_async, never_within_async
from tests.tui.conftest import PLACEMENTS, SIZE, Harness, make_harness, state_of, text_of


def _phase(app: ConsoleApp) -> Phase | None:
    return app.state.phase if app.state is not None else None


def _store(app: ConsoleApp) -> Journal:
    assert app.session is not None
    store = app.session.store
    assert isinstance(store, Journal)
    return store


def _row(store: Journal, record_id: int) -> RecordRow:
    row = store.get(record_id)
    assert row is not None, record_id
    return row


@PLACEMENTS
async def test_a_run_goes_to_the_end_and_counts_reconcile(
    tmp_path: Path, engine_process: bool
) -> None:
    app = make_harness(tmp_path, good=40, bad_every=10, engine_process=engine_process).app()
    async with app.run_test(size=SIZE) as pilot:
        await eventually_async(
            lambda: _phase(app) is Phase.FINISHED, what="the run finished", pause=pilot.pause
        )
        state = app.state
        assert state is not None
        # 40 good rows, 4 users Canvas lacks, 1 invalid row
        assert state.total == 45
        assert state.failures_by_category == {"user_not_found": 4, "invalid_input": 1}
        assert state.counts[State.DONE] == 40
        assert state.counts[State.FAILED] == 5
        assert state.failures_by_category == {"user_not_found": 4, "invalid_input": 1}
        failures = text_of(app.query_one("#failures"))
        assert "User not found" in failures and "Invalid source row" in failures
        await pilot.press("q")  # finished: no question asked
        await eventually_async(
            lambda: app.return_value is not None, what="the app's exit", pause=pilot.pause
        )  # the engine closes first
    assert app.return_value == 0  # an ordinary quit, failures or not (issue 12, item 7)


def _settled(app: ConsoleApp) -> bool:
    """No request out and no record still in flight: a response can arrive (governor slot
    freed) a moment before its outcome is journaled and counted."""
    state = app.state
    return (
        state is not None
        and state.governor.in_flight == 0
        and state.counts.get(State.IN_FLIGHT, 0) == 0
    )


@PLACEMENTS
async def test_pause_stops_dispatch_send_one_sends_one_resume_finishes(
    tmp_path: Path, engine_process: bool
) -> None:
    h = make_harness(tmp_path, good=150, time_scale=2.0, engine_process=engine_process)
    app = h.app()
    async with app.run_test(size=SIZE) as pilot:
        await eventually_async(
            lambda: app.state is not None and app.check_action("toggle_pause", ()) is True,
            what="pause offered",
            pause=pilot.pause,
        )
        await pilot.press("p")
        await eventually_async(
            lambda: _phase(app) is Phase.PAUSED and _settled(app),
            what="the run paused with nothing in flight",
            pause=pilot.pause,
        )
        before = h.sim.stats()["requests"]
        finished = state_of(app).finished
        await never_within_async(
            lambda: h.sim.stats()["requests"] != before or state_of(app).finished != finished,
            0.8,
            what="a request sent while paused",
            pause=pilot.pause,
        )
        assert state_of(app).counts[State.PENDING] > 0

        await pilot.press("n")  # exactly one record goes out
        await eventually_async(
            lambda: state_of(app).finished == finished + 1 and _settled(app),
            what="the one record sent finished",
            pause=pilot.pause,
        )
        await never_within_async(
            lambda: state_of(app).finished != finished + 1 or _phase(app) is not Phase.PAUSED,
            0.4,
            what="a second record sent, or the pause lifted",
            pause=pilot.pause,
        )

        await pilot.press("p")
        await eventually_async(
            lambda: _phase(app) is Phase.FINISHED,
            what="the run finished",
            timeout=30,
            pause=pilot.pause,
        )
        assert state_of(app).finished == state_of(app).total == 151
        await pilot.press("q")


@PLACEMENTS
async def test_skip_and_retry_change_a_records_state(tmp_path: Path, engine_process: bool) -> None:
    h = make_harness(tmp_path, good=60, bad_every=20, time_scale=2.0, engine_process=engine_process)
    app = h.app()
    async with app.run_test(size=SIZE) as pilot:
        await eventually_async(
            lambda: app.state is not None and app.check_action("toggle_pause", ()) is True,
            what="pause offered",
            pause=pilot.pause,
        )
        await pilot.press("p")
        await eventually_async(
            lambda: _phase(app) is Phase.PAUSED and _settled(app),
            what="the run paused with nothing in flight",
            pause=pilot.pause,
        )
        store = _store(app)
        pending = next(
            r
            for r in store.rows(0, 20, state=State.PENDING, order="-record_id")
            if "GHOST" not in r.user
        )
        await pilot.press("colon")
        await pilot.press(*str(pending.record_id), "enter")
        assert app.queue.selected is not None and app.queue.selected.record_id == pending.record_id

        await pilot.press("s")
        assert _row(store, pending.record_id).state is State.SKIPPED
        await pilot.press("r")
        await eventually_async(
            lambda: _row(store, pending.record_id).state is State.PENDING,
            what="the skipped record pending again",
            pause=pilot.pause,
        )

        await pilot.press("p")
        await eventually_async(
            lambda: _phase(app) is Phase.FINISHED,
            what="the run finished",
            timeout=30,
            pause=pilot.pause,
        )
        assert _row(store, pending.record_id).state is State.DONE

        # a user missing in Canvas is created; retrying the failed record now succeeds
        ghost_id = store.failed_ids("user_not_found")[0]
        ghost = _row(store, ghost_id)
        assert ghost is not None
        h.sim.world.add_user("Late Arrival", ghost.user.split(":", 1)[1])
        await pilot.press("colon", *str(ghost_id), "enter")
        await pilot.press("r")
        await eventually_async(
            lambda: _row(store, ghost_id).state is State.DONE,
            what="the retried record done",
            pause=pilot.pause,
        )
        assert _row(store, ghost_id).attempts > ghost.attempts
        await pilot.press("q")


async def test_stepper_walks_the_failures_in_order_and_edit_retries(harness: Harness) -> None:
    app = harness.app()
    async with app.run_test(size=SIZE) as pilot:
        await eventually_async(
            lambda: _phase(app) is Phase.FINISHED, what="the run finished", pause=pilot.pause
        )
        store = _store(app)
        expected = store.failed_ids()
        assert len(expected) == 5
        await pilot.press("f")
        stepper = app.screen
        assert isinstance(stepper, FailureStepper)
        seen = []
        for n in range(1, 6):
            row = stepper.current_record()
            assert row is not None
            seen.append(row.record_id)
            assert stepper.position == (n, 5)
            title = text_of(stepper.query_one("#stepper-title"))
            assert f"Failure {n} of 5" in title
            body = stepper.query_one("#stepper-body")
            text = text_of(body)
            assert f"{row.source}:{row.line}" in text
            if row.category == "user_not_found":
                ghost = row.user.split(":", 1)[1]
                assert f"No user with SIS id {ghost} in this account" in text
                # the row leaves its optional columns blank, so the enrollment is read before
                # any POST (issue 10 rule 1): that read is what finds the user missing
                assert "GET" in text and "404" in text
            await pilot.press("l")
        assert seen == expected
        await pilot.press("h")
        assert stepper.position == (4, 5)

        # the invalid row: fix its status in the editor, retry, and it is sent
        invalid = next(i for i in expected if _row(store, i).category == "invalid_input")
        while stepper.current_record().record_id != invalid:  # type: ignore[union-attr]
            await pilot.press("h")
        await pilot.press("e")
        editor = app.screen
        assert isinstance(editor, EditScreen)
        box = editor.query_one("#field-status")
        box.value = "active"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await eventually_async(
            lambda: _row(store, invalid).state is State.DONE,
            what="the edited record done",
            pause=pilot.pause,
        )
        await eventually_async(
            lambda: stepper.position[1] == 4,
            what="the stepper to leave the fixed record",
            pause=pilot.pause,
        )  # it left the failures

        # export the remaining failures as a SIS CSV that can be fixed and fed back
        out = harness.journal.parent / "failures.csv"
        await pilot.press("E")
        prompt = app.screen
        assert isinstance(prompt, PromptScreen)
        prompt.query_one(Input).value = str(out)
        await pilot.press("enter")
        await eventually_async(
            lambda: out.exists() and len(out.read_text().splitlines()) == 5,
            what="the export file with four failures",
            pause=pilot.pause,
        )
        with out.open(newline="", encoding="utf-8") as f:
            exported = list(csv.DictReader(f))
        assert {r["user_id"] for r in exported} == {
            _row(store, i).user.split(":", 1)[1] for i in store.failed_ids()
        }
        await pilot.press("escape")
        await pilot.press("q")


@PLACEMENTS
async def test_quitting_mid_run_leaves_a_consistent_journal_that_resumes(
    tmp_path: Path, engine_process: bool
) -> None:
    h = make_harness(tmp_path, good=300, time_scale=2.0, engine_process=engine_process)
    app = h.app()
    async with app.run_test(size=SIZE) as pilot:
        await eventually_async(
            lambda: app.state is not None and app.state.counts.get(State.DONE, 0) >= 20,
            what="20 records done",
            pause=pilot.pause,
        )
        await pilot.press("ctrl+q")  # Textual's own quit key asks the same question
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmScreen) and app.return_value is None
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await eventually_async(
            lambda: app.return_value is not None,
            what="the app's exit",
            timeout=20,
            pause=pilot.pause,
        )
    assert app.return_value == 0  # an ordinary quit; the pending records stay in the journal

    journal = Journal(h.journal, read_only=True)
    try:
        counts = journal.counts()
        assert counts[State.IN_FLIGHT] == 0, "in-flight requests finished before the exit"
        assert sum(counts.values()) == 301
        assert counts[State.PENDING] > 0
        final = sum(counts[s] for s in FINAL_STATES)
        # every record that reached Canvas is accounted for exactly once
        created = h.sim.stats()["enrollments_created"] + h.sim.stats()["reposts"]
        assert counts[State.DONE] == created
        assert final + counts[State.PENDING] == 301
    finally:
        journal.close()

    # opening the same journal again resumes: the start key starts it, and it runs to the end
    again = h.app(autostart=False)
    async with again.run_test(size=SIZE) as pilot:
        await eventually_async(
            lambda: again.check_action("start", ()) is True,
            what="start offered on resume",
            pause=pilot.pause,
        )
        await pilot.press("S")
        await eventually_async(
            lambda: _phase(again) is Phase.FINISHED,
            what="the resumed run finished",
            timeout=30,
            pause=pilot.pause,
        )
        assert again.state.finished == 301
        await pilot.press("q")


async def test_start_is_offered_only_once_the_journal_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start key must not be offered while the console still loads: a key pressed then
    would be refused a moment later (the load disables it), and the operator's start lost."""
    h = make_harness(tmp_path, good=30)
    first = h.app(autostart=False)  # loads the journal and sends nothing: 30 records pending
    async with first.run_test(size=SIZE) as pilot:
        await eventually_async(
            lambda: first.check_action("start", ()) is True, what="READY", pause=pilot.pause
        )
        await pilot.press("q")
    opening = threading.Event()
    finished_import = ConsoleApp._finished_import

    def held(app: ConsoleApp) -> object:
        opening.wait(30)
        return finished_import(app)

    monkeypatch.setattr(ConsoleApp, "_finished_import", held)
    app = h.app(autostart=False)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await eventually_async(
                lambda: app.session is not None and app.state is not None,
                what="the session open",
                pause=pilot.pause,
            )
            assert state_of(app).counts.get(State.PENDING, 0) == 30
            assert not app.check_action("start", ()), "start offered before the load"
            opening.set()
            await eventually_async(
                lambda: app.check_action("start", ()) is True,
                what="start offered once loaded",
                pause=pilot.pause,
            )
            await pilot.press("S")
            await eventually_async(
                lambda: _phase(app) is Phase.FINISHED, what="the run finished", pause=pilot.pause
            )
            await pilot.press("q")
    finally:
        opening.set()


async def test_the_console_collects_rarely_and_gives_the_collector_back(harness: Harness) -> None:
    """While the console runs, the young generation collects at GC_YOUNG and the heap the first
    rows found is frozen; once the app is gone, the process's collector is as it was."""
    before = gc.get_threshold()
    app = harness.app()
    async with app.run_test(size=SIZE) as pilot:
        assert gc.get_threshold()[0] == GC_YOUNG
        await eventually_async(
            lambda: gc.get_freeze_count() > 0, what="the heap frozen", pause=pilot.pause
        )
        await eventually_async(
            lambda: _phase(app) is Phase.FINISHED, what="the run finished", pause=pilot.pause
        )
        await pilot.press("q")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


async def test_read_only_triage_hides_writes_but_steps_failures(harness: Harness) -> None:
    app = harness.app()
    async with app.run_test(size=SIZE) as pilot:
        await eventually_async(
            lambda: _phase(app) is Phase.FINISHED, what="the run finished", pause=pilot.pause
        )
        await pilot.press("q")
    triage = harness.app(read_only=True)
    async with triage.run_test(size=SIZE) as pilot:
        await eventually_async(
            lambda: triage.state is not None,
            what="the journal's state in the read-only console",
            pause=pilot.pause,
        )
        for action in ("toggle_pause", "skip", "retry", "retry_all", "cancel_run", "send_one"):
            assert triage.check_action(action, ()) is False, action
        failed_before = state_of(triage).counts[State.FAILED]
        await pilot.press("R", "r", "s", "p")
        assert not isinstance(triage.screen, ConfirmScreen)
        await pilot.press("f")
        assert isinstance(triage.screen, FailureStepper)
        assert triage.screen.position == (1, failed_before)
        await pilot.press("escape", "q")
    assert triage.return_value == 0


async def test_help_palette_and_remapped_keys_share_one_registry(tmp_path: Path) -> None:
    h = make_harness(tmp_path, good=60, bad_every=20, time_scale=4.0)
    app = h.app(keymap={"pause": "space"})
    async with app.run_test(size=SIZE) as pilot:
        await eventually_async(
            lambda: app.check_action("toggle_pause", ()) is True,
            what="pause offered",
            pause=pilot.pause,
        )
        await pilot.press("space")  # the remapped key pauses
        await eventually_async(
            lambda: _phase(app) is Phase.PAUSED, what="the run paused", pause=pilot.pause
        )
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = text_of(app.screen.query_one("Static.help-keys"))
        assert "space" in text and "Pause or resume dispatching records" in text
        await pilot.press("escape")
        # the command palette runs the same action by name
        await pilot.press("ctrl+p")
        await pilot.press(*"Pause or resume")
        await eventually_async(
            lambda: (
                isinstance(app.screen, CommandPalette)
                and app.screen.query_one(CommandList).option_count > 0
            ),
            what="the palette's match",
            pause=pilot.pause,
        )
        await pilot.press("enter")
        await eventually_async(
            lambda: _phase(app) in (Phase.RUNNING, Phase.FINISHED),
            what="the run started",
            pause=pilot.pause,
        )
        await eventually_async(
            lambda: _phase(app) is Phase.FINISHED, what="the run finished", pause=pilot.pause
        )
        # a bulk action asks first; declining changes nothing
        failed = state_of(app).counts[State.FAILED]
        await pilot.press("R")
        await pilot.press("escape")
        await never_within_async(
            lambda: state_of(app).counts[State.FAILED] != failed,
            0.2,
            what="a retry after declining",
            pause=pilot.pause,
        )
        await pilot.press("R", "enter")  # first option: all failed records
        await eventually_async(
            lambda: (
                state_of(app).counts.get(State.PENDING, 0) == 0 and _phase(app) is Phase.FINISHED
            ),
            what="the retried failures finished",
            pause=pilot.pause,
        )
        store = _store(app)
        # the users are still missing: sent again, failed again; the invalid row cannot be sent
        assert all(_row(store, i).attempts >= 2 for i in store.failed_ids("user_not_found"))
        assert len(store.failed_ids("user_not_found")) == 3
        await pilot.press("q")


async def test_concurrency_cap_and_cancel_go_through_run_control(tmp_path: Path) -> None:
    h = make_harness(tmp_path, good=300, time_scale=1.0, latency=0.5)
    app = h.app()
    async with app.run_test(size=SIZE) as pilot:
        await eventually_async(
            lambda: _phase(app) is Phase.RUNNING, what="the run running", pause=pilot.pause
        )
        await pilot.press("minus")
        first = state_of(app).governor.cap
        assert first is not None and first >= 1
        await pilot.press("minus", "plus", "minus")
        assert state_of(app).governor.cap == max(1, first - 1)
        assert app.session.client.governor.state().cap == app.state.governor.cap  # type: ignore[union-attr]
        await pilot.press("equals_sign")
        assert state_of(app).governor.cap is None

        await pilot.press("x")  # destructive: asks first
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert _phase(app) is Phase.RUNNING
        await pilot.press("x", "y")
        await eventually_async(
            lambda: _phase(app) is Phase.CANCELLED, what="the run cancelled", pause=pilot.pause
        )
        assert state_of(app).governor.in_flight == 0
        assert state_of(app).counts[State.PENDING] > 0
        assert state_of(app).counts[State.IN_FLIGHT] == 0
        await pilot.press("q")
    assert app.return_value == 0  # cancelled by the operator is not an abort
