"""What the dashboard, the queue and the stepper print, from plain snapshots (no Textual app)."""

from __future__ import annotations

import io
from dataclasses import replace

from rich.console import Console, RenderableType

from canvas_tui.engine.state import (
    Attempt,
    FrontState,
    GovernorState,
    Phase,
    RecordRow,
    RunState,
)
from canvas_tui.records import State
from canvas_tui.tui import format as fmt
from canvas_tui.tui.screens.stepper import canvas_panel, sent_panel
from canvas_tui.tui.widgets.dashboard import (
    LEGEND,
    concurrency_text,
    detail_text,
    front_text,
    pressure_table,
    progress_text,
    spark_text,
)
from canvas_tui.tui.widgets.queue import COLUMNS, message_of, record_cells


def _plain(renderable: RenderableType, width: int = 100) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None)
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


def _state(phase: Phase, **changes: object) -> RunState:
    state = RunState(
        phase=phase,
        total=100,
        counts={State.PENDING: 60, State.DONE: 38, State.FAILED: 2},
        elapsed=30.0,
        rate=12.5,
        rate_history=(10.0, 12.0, 13.0, 12.5, 12.5, 12.0),
        remaining_history=(600.0, 500.0, 450.0),
        governor=GovernorState(
            limit=8, in_flight=3, remaining=450.0, high_water_mark=600.0, average_cost=0.3, cap=None
        ),
        requests=44,
        throttled=1,
        retries=5,
        throttled_last_minute=0,
        retries_last_minute=2,
        failures_by_category={"user_not_found": 2},
        failures_version=1,
        eta=4.8,
        latency=0.25,
    )
    return replace(state, **changes)  # type: ignore[arg-type]


def test_running_shows_the_rate_and_an_eta_range() -> None:
    state = _state(Phase.RUNNING)
    progress, detail = _plain(progress_text(state)), _plain(detail_text(state))
    assert "ETA " in progress and "–" in progress
    assert "12.5 records/s" in detail and "44 requests sent" in detail


def test_paused_or_finished_shows_no_stale_rate_or_eta() -> None:
    paused = _state(Phase.PAUSED)
    progress, detail = _plain(progress_text(paused)), _plain(detail_text(paused))
    assert "ETA" not in progress and "paused:" in progress and "left" in progress
    assert "12.5" not in detail and "records/s —" in detail
    finished = _state(Phase.FINISHED, counts={State.DONE: 98, State.FAILED: 2})
    progress, detail = _plain(progress_text(finished)), _plain(detail_text(finished))
    assert "ETA" not in progress and "100/100 final" in progress
    assert "12.5" not in detail and "records/s —" in detail


def test_a_journal_with_no_samples_shows_no_chart_and_no_peak() -> None:
    state = _state(Phase.LOADING, rate=0.0, rate_history=(), remaining_history=())
    detail = _plain(detail_text(state, idle="READ-ONLY"))
    assert "peak" not in detail
    chart = _plain(spark_text("records/s", [], 0.0, 30))
    assert "no samples yet" in chart and "█" not in chart


def test_charts_are_scaled_from_zero_so_a_flat_line_is_not_solid() -> None:
    assert fmt.spark([5.0, 5.0, 5.0], 3, top=10.0) == "▄▄▄"
    assert fmt.spark([0.0, 0.0], 4, top=10.0) == "    "
    assert fmt.spark([600.0] * 3, 3, top=600.0) == "███"  # a full bucket is full


def test_every_figure_has_a_label_or_a_legend() -> None:
    words = {name.split()[0] for name, _ in LEGEND}
    assert {"ETA", "records/s", "requests", "headroom", "in", "cost", "throttled", "retries"} <= (
        words
    )
    state = _state(Phase.RUNNING)
    pressure = _plain(pressure_table(state))
    assert "(run:" not in pressure  # the old unlabelled "(run: 1 / 5)"
    assert "run" in pressure and "last 60s" in pressure
    assert "cost 0.30 units/request" in _plain(concurrency_text(state))
    assert "READY" in {name for name, _ in LEGEND}


def test_plan_declined_says_nothing_was_sent() -> None:
    state = _state(Phase.LOADING, total=0, counts={})
    text = _plain(progress_text(state, idle="PLAN DECLINED"))
    assert "PLAN DECLINED" in text and "nothing was sent" in text
    assert "0/0" not in text and "NOT RUNNING" not in text


def test_an_attached_watch_between_changes_is_watching_not_finished() -> None:
    state = _state(Phase.FINISHED, counts={State.DONE: 98, State.FAILED: 2})
    text = _plain(progress_text(state, idle="WATCHING"))
    assert "WATCHING" in text and "FINISHED" not in text
    assert "100/100 final · waiting for the next change" in text


def _row(**changes: object) -> RecordRow:
    row = RecordRow(
        record_id=3,
        source="/srv/sis/exports/2026/enrollments.csv",
        line=602,
        key="",
        user="sis_user_id:S1",
        course="sis_course_id:C1",
        section=None,
        role="student",
        status="enrolled",
        state=State.FAILED,
        action=None,
        attempts=0,
        category="invalid_input",
        message='/srv/sis/exports/2026/enrollments.csv:602: status (column 5): Improper status "enrolled"',
        error_report_id=None,
        canvas_enrollment_id=None,
    )
    return replace(row, **changes)  # type: ignore[arg-type]


def test_the_queue_message_is_the_problem_not_the_file_path() -> None:
    row = _row()
    assert message_of(row) == 'status (column 5): Improper status "enrolled"'
    result = str(record_cells(row)[-1])
    assert "/srv/sis" not in result and "Improper status" in result
    other = _row(message="/x.csv:9: something", line=602)  # another line's text stays whole
    assert message_of(other) == "/x.csv:9: something"


def test_queue_and_stepper_count_requests_with_one_word() -> None:
    assert "req" in [c.title for c in COLUMNS] and "try" not in [c.title for c in COLUMNS]
    attempts = [
        Attempt(1, 0.0, 0.1, "GET", "https://c/api/v1/users/x", None, 200, None, None, None, 0.1),
        Attempt(1, 0.2, 0.3, "POST", "https://c/api/v1/e", "{}", 503, "server_error", "", None, 0),
        Attempt(
            2, 0.5, 0.6, "POST", "https://c/api/v1/e", "{}", 404, "user_not_found", "", None, 0
        ),
    ]
    row = _row(category="user_not_found", attempts=3, message="no such user", line=5)
    text = _plain(sent_panel(row, attempts), width=140)
    assert "request 3 of 3" in text and "attempt" not in text
    assert "request 3: POST 404 user_not_found (retry 1)" in text


def test_a_row_never_sent_does_not_claim_canvas_said_anything() -> None:
    text = _plain(canvas_panel(_row(), []))
    assert "Canvas said" not in text and "HTTP status" not in text
    assert "Why it was not sent" in text and "Improper status" in text
    sent = _row(category="user_not_found", message="no such user", attempts=1)
    attempt = Attempt(1, 0.0, 0.1, "POST", "u", "{}", 404, "user_not_found", "", None, 0.1)
    assert "Canvas said" in _plain(canvas_panel(sent, [attempt]))


def test_the_front_line_fits_the_progress_panel_at_80_columns() -> None:
    """24 columns at 80x24: what moved on one line, the count whole on the next."""
    moving = _state(Phase.RUNNING, front=FrontState("BIO-101-F26-SECTION-02", 1250, 1175))
    assert front_text(moving, 80).plain == (
        "front BIO-101-F26-SECTION-02 · 1,175 of 1,250 left · the rest wait"
    )
    narrow = front_text(moving, 24).plain.split("\n")
    assert narrow == ["front BIO-101-F26-SECTI…", "1,175 of 1,250 left"]
    assert all(len(line) <= 24 for line in narrow)
    short = _state(Phase.RUNNING, front=FrontState("ART/210", 21, 12))
    assert front_text(short, 24).plain.split("\n") == ["front ART/210", "12 of 21 left"]
    ended = _state(Phase.FINISHED, front=FrontState("ART/210", 21, 0))
    assert front_text(ended, 30).plain == "front ART/210 · all 21 ended"
    assert front_text(ended, 24).plain == "front ART/210\nall 21 ended"
    assert front_text(_state(Phase.RUNNING), 24).plain == ""
