"""The front key (F): the selected record's course goes first, mid-run, with the governor busy;
its records all end before any other record starts, and the dashboard says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from canvas_tui.engine.journal import Journal
from canvas_tui.engine.runner import Runner
from canvas_tui.engine.state import Event, Phase, RecordChanged
from canvas_tui.records import FINAL_STATES, State
from tests.helpers import eventually_async
from tests.tui.conftest import (
    SIZE,
    active_courses,
    make_harness,
    sis_users,
    small_world,
    state_of,
    text_of,
)


async def test_the_front_key_sends_the_selected_course_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = small_world()
    late = active_courses(world)[0]
    users = sis_users(world)[300:350]  # the course's rows come last: 50 of them
    h = make_harness(
        tmp_path,
        good=160,
        time_scale=1.0,  # Canvas's own pace: the others are still pending at the move
        world=world,
        extra=[[late, u, "student", "", "active"] for u in users],
    )
    app = h.app()
    events: list[Event] = []
    cut: list[int] = []
    async with app.run_test(size=SIZE) as pilot:
        await eventually_async(
            lambda: app.session is not None and app.state is not None,
            what="the session",
            pause=pilot.pause,
        )
        assert app.session is not None
        runner = app.session.runner
        assert isinstance(runner, Runner)
        runner.subscribe(events.append)
        moving = runner.to_front

        def to_front(*args: Any, **kwargs: Any) -> int:
            moved = moving(*args, **kwargs)
            cut.append(len(events))  # the move happens between two events, on the loop
            return moved

        monkeypatch.setattr(runner, "to_front", to_front)
        await eventually_async(
            lambda: (
                state_of(app).counts.get(State.DONE, 0) >= 10
                and state_of(app).governor.in_flight >= 5
            ),
            what="the run under way, the governor busy",
            pause=pilot.pause,
        )
        store = app.session.store
        assert isinstance(store, Journal)
        last = store.rows(0, 1, state=State.PENDING, order="-record_id")[0]
        await pilot.press("colon")
        await pilot.press(*str(last.record_id), "enter")
        selected = app.queue.selected
        assert selected is not None and selected.record_id == last.record_id
        course = last.course
        assert course == f"sis_course_id:{late}"
        await pilot.press("F")
        assert cut, "the key moved nothing"
        front = state_of(app).front
        assert front is not None and front.moved > 11 and front.left > 0  # > the governor's
        await pilot.pause()
        app.tick()
        shown = text_of(app.query_one("#front"))
        assert f"front {course.split(':', 1)[1]}" in shown and "left" in shown
        await eventually_async(
            lambda: state_of(app).phase is Phase.FINISHED,
            what="the run finished",
            pause=pilot.pause,
        )
        app.tick()
        assert "ended" in text_of(app.query_one("#front"))

    after = [e for e in events[cut[0] :] if isinstance(e, RecordChanged)]
    reread = Journal(h.journal, read_only=True)
    try:
        courses = {r.record_id: r.course for r in reread.iter_rows()}
    finally:
        reread.close()
    ours = [i for i, e in enumerate(after) if courses[e.record_id] == course]
    ended = max(i for i in ours if after[i].state in FINAL_STATES)
    rest = [
        i
        for i, e in enumerate(after)
        if e.state is State.IN_FLIGHT and courses[e.record_id] != course
    ]
    assert rest, "other records were still pending at the move"
    assert ended < min(rest)
