"""The dashboard says why the engine paused itself (Canvas unreachable), from the snapshot."""

from __future__ import annotations

from canvas_tui.engine.state import GovernorState, Phase, RunState
from canvas_tui.records import State
from canvas_tui.tui.widgets.dashboard import progress_text


def _state(**overrides: object) -> RunState:
    fields: dict[str, object] = {
        "phase": Phase.PAUSED,
        "total": 10,
        "counts": {State.DONE: 4, State.PENDING: 6},
        "elapsed": 12.0,
        "rate": 0.0,
        "rate_history": (),
        "remaining_history": (),
        "governor": GovernorState(1, 0, None, 600.0, None, None),
        "requests": 30,
        "throttled": 0,
        "retries": 20,
        "throttled_last_minute": 0,
        "retries_last_minute": 20,
        "failures_by_category": {},
        "failures_version": 0,
    }
    fields.update(overrides)
    return RunState(**fields)  # type: ignore[arg-type]


def test_the_breaker_pause_is_shown_with_its_reason() -> None:
    reason = "Canvas unreachable: 20 requests in a row failed over 15+ s (last: could not connect)"
    shown = progress_text(_state(paused_reason=f"{reason}. Paused\x1b]2;x\x07")).plain
    assert "PAUSED" in shown and reason in shown
    assert "\x1b" not in shown and "\x07" not in shown
    assert "Canvas unreachable" not in progress_text(_state()).plain
