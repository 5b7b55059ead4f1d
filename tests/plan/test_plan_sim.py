"""Plan actions, drop policy, brake and manual enrollments against the in-process simulator."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from canvas_tui.canvas.errors import CanvasError, Category
from canvas_tui.config import Secret
from canvas_tui.engine.plan.diff import Plan, Step
from canvas_tui.engine.plan.executor import (
    DROP_SOURCE,
    SyncDecision,
    compute_plan,
    journal_paths,
    known_enrollment_ids,
    prepare_sync,
    read_items,
)
from canvas_tui.engine.state import Phase, RecordRow, RunState
from canvas_tui.records import State
from canvas_tui.sources import CsvSource
from tests.plan.conftest import Arena


async def _plan(arena: Arena, rows: list[list[str]], **policy: object) -> Plan:
    session = arena.session(arena.csv(rows), arena.config(**policy), "preview")
    try:
        assert session.client is not None
        items = read_items(CsvSource(arena.tmp / "in.csv"))
        return await compute_plan(session.client, items, session.config)
    finally:
        await session.close()


async def _sync(
    arena: Arena,
    rows: list[list[str]],
    journal: str,
    *,
    plan: bool | None = True,
    allow_drops: int | None = None,
    while_loading: bool = False,
    **policy: object,
) -> tuple[SyncDecision, RunState | None, list[RecordRow]]:
    """prepare_sync + run, as `canvas-tui sync` does; returns the decision, the final state
    (None when refused) and the journal's rows. `while_loading`: as `sync` runs it, the load
    (and, with drop_policy never, the plan) going on while the run sends."""
    session = arena.session(arena.csv(rows, f"{journal}.csv"), arena.config(**policy), journal)
    try:
        decision = await prepare_sync(
            session, requested=plan, allow_drops=allow_drops, load=not while_loading
        )
        state = (
            None
            if decision.refused is not None
            else await session.run(load_while_running=while_loading)
        )
        return decision, state, list(session.store.iter_rows())
    finally:
        await session.close()


def _actions(plan: Plan, kind: str = "record") -> dict[str | None, str]:
    """What each user's step does, by the user's SIS id (looked up with `User.sis_user_id`)."""
    return {s.user: s.action for s in plan.steps if s.kind == kind}


async def test_dated_rows_once_sent_are_in_place_on_the_next_plan(arena: Arena) -> None:
    """Canvas reads a date (or a time without an offset) in its own zone and returns the UTC
    instant; the next plan must see that as the same date, not re-send every dated row."""
    u = arena.users
    dates = [
        ("2026-09-01", "2026-12-20"),
        ("2026-09-01T08:00:00", "2026-12-20T17:00:00"),
        ("2026-09-01T08:00:00Z", "2026-12-20T17:00:00-05:00"),
        ("", ""),
    ]
    rows = [[*arena.row(user), *pair] for user, pair in zip(u, dates, strict=False)]
    decision, state, _ = await _sync(arena, rows, "first")
    assert state is not None and state.counts[State.DONE] == len(rows)
    assert decision.plan is not None and set(_actions(decision.plan).values()) == {"create"}
    stored = next(
        e for e in arena.world.enrollments.values() if e.user_id == u[0].id and e.start_at
    )
    assert stored.start_at == "2026-09-01T04:00:00Z"  # midnight in New York, as UTC

    again = await _plan(arena, rows)
    assert set(_actions(again).values()) == {"none"}

    rows[0][5] = "2026-09-02"  # the start date really changed
    rows[2][6] = "2026-12-21T17:00:00-05:00"
    changed = _actions(await _plan(arena, rows))
    assert changed[u[0].sis_user_id] == changed[u[2].sis_user_id] == "update"
    assert changed[u[1].sis_user_id] == changed[u[3].sis_user_id] == "none"


@pytest.mark.parametrize("while_loading", [False, True], ids=["plan-first", "while-loading"])
async def test_every_record_action_is_planned_then_applied(
    arena: Arena, while_loading: bool
) -> None:
    u = arena.users
    present = arena.enroll(u[0])  # active, stays
    inactive = arena.enroll(u[1], "inactive")  # SIS says active -> PUT reactivate
    concluded = arena.enroll(u[2], "completed")  # SIS says active -> re-POST
    deleted = arena.enroll(u[3], "deleted")  # SIS says active -> re-POST
    to_conclude = arena.enroll(u[4])
    to_inactivate = arena.enroll(u[5])
    to_delete = arena.enroll(u[6])
    limited = arena.enroll(u[8])
    arena.world.enrollments[limited.id].limit_privileges_to_course_section = True
    rows = [
        arena.row(u[0]),
        arena.row(u[1]),
        arena.row(u[2]),
        arena.row(u[3]),
        arena.row(u[4], "completed"),
        arena.row(u[5], "inactive"),
        arena.row(u[6], "deleted"),
        arena.row(u[7]),  # not in Canvas -> create
        arena.row(u[8]),  # in place; its section limit is Canvas's, the row leaves it blank
        arena.row(u[9], "inactive"),  # not in Canvas -> created inactive
        # not in Canvas: Canvas's importer creates it deleted (rule 4) -> POST, then DELETE
        arena.row(u[10], "deleted"),
    ]
    plan = await _plan(arena, rows)
    sis = [x.sis_user_id for x in u[:11]]
    assert _actions(plan) == {
        sis[0]: "none",
        sis[1]: "reactivate",
        sis[2]: "reactivate",
        sis[3]: "reactivate",
        sis[4]: "conclude",
        sis[5]: "inactivate",
        sis[6]: "delete",
        sis[7]: "create",
        sis[8]: "none",
        sis[9]: "create",
        sis[10]: "create",
    }
    by_user: dict[str | None, Step] = {s.user: s for s in plan.steps}
    assert by_user[sis[1]].via == "PUT reactivate"
    assert by_user[sis[2]].via == by_user[sis[3]].via == "POST"
    assert by_user[sis[10]].via == "POST, DELETE task=delete"
    assert plan.roster_requests == plan.roster_pages  # no retries on a calm simulator
    assert plan.change_requests == 10

    arena.app.reset_stats()
    decision, state, journal_rows = await _sync(arena, rows, "apply", while_loading=while_loading)
    assert decision.planned and state is not None and state.phase == Phase.FINISHED
    # planned as the load read the rows, or first: the same plan
    assert (decision.builder is not None) is while_loading
    assert decision.plan is not None
    assert decision.plan.record_counts() == plan.record_counts()
    assert len(decision.plan.canvas_only) == len(plan.canvas_only)
    assert state.counts == {**dict.fromkeys(State, 0), State.DONE: len(rows)}
    assert state.counts[State.DONE] == len(rows)
    # the plan's reads, then exactly one request per change: no lookups but the account's
    # roles, listed once per run (a custom role's name comes before the role words)
    assert arena.app.stats()["requests"] == plan.roster_pages + 10 + 1
    assert arena.writes() == 10
    assert arena.state_of(present) == "active"
    assert arena.state_of(inactive) == "active"
    assert arena.state_of(concluded) == "active"
    assert arena.state_of(deleted) == "active"
    assert arena.state_of(to_conclude) == "completed"
    assert arena.state_of(to_inactivate) == "inactive"
    assert arena.state_of(to_delete) == "deleted"
    assert arena.world.enrollments[limited.id].limit_privileges_to_course_section
    states = Counter(
        e.workflow_state
        for e in arena.world.enrollments.values()
        if e.course_id == arena.course.id and e.user_id in (u[7].id, u[9].id, u[10].id)
    )
    assert states == {"active": 1, "inactive": 1, "deleted": 1}
    assert arena.app.stats()["duplicates"] == 0
    rows_by_line = {r.line: r for r in journal_rows}
    assert rows_by_line[2].action == "none" and "plan: already active" in (
        rows_by_line[2].message or ""
    )
    assert rows_by_line[3].action == "reactivate"

    # Applied: the same source now plans nothing at all.
    again = await _plan(arena, rows)
    assert set(_actions(again).values()) == {"none"}


@pytest.mark.parametrize("policy", ["never", "inactivate", "conclude", "delete"])
async def test_drop_policy_decides_what_a_drop_becomes(arena: Arena, policy: str) -> None:
    u = arena.users
    kept = [arena.enroll(x) for x in u[:10]]
    dropped = arena.enroll(u[10])  # SIS-imported, gone from the source
    rows = [arena.row(x) for x in u[:10]]
    # as `sync` runs it: only drop_policy never plans while loading (no drop, no brake)
    decision, state, _ = await _sync(
        arena, rows, f"drop-{policy}", drop_policy=policy, while_loading=True
    )
    assert state is not None and state.phase == Phase.FINISHED
    assert (decision.builder is not None) is (policy == "never")
    expected = {
        "never": "active",
        "inactivate": "inactive",
        "conclude": "completed",
        "delete": "deleted",
    }[policy]
    assert arena.state_of(dropped) == expected
    assert all(arena.state_of(e) == "active" for e in kept)
    assert decision.plan is not None
    assert len(decision.plan.drops) == (0 if policy == "never" else 1)
    deleted = [e for e in arena.world.enrollments.values() if e.workflow_state == "deleted"]
    if policy != "delete":
        assert all(e.course_id != arena.course.id for e in deleted)


async def test_brake_stops_a_plan_that_drops_30_percent_of_a_course(arena: Arena) -> None:
    u = arena.users
    enrolled = [arena.enroll(x) for x in u[:10]]
    rows = [arena.row(x) for x in u[:7]]  # three of ten gone from the SIS: 30 %
    arena.app.reset_stats()
    decision, state, journal_rows = await _sync(
        arena, rows, "braked", drop_policy="conclude", while_loading=True
    )
    assert state is None and decision.refused is not None
    assert "3 enrollments" in decision.refused and "30%" in decision.refused
    assert "--allow-drops 3" in decision.refused
    assert arena.writes() == 0
    assert all(arena.state_of(e) == "active" for e in enrolled)
    assert journal_rows == []  # nothing was even queued

    # Allowing fewer drops than the plan has still refuses; allowing them all applies it.
    decision, state, _ = await _sync(arena, rows, "too-few", drop_policy="conclude", allow_drops=2)
    assert state is None and decision.refused is not None
    decision, state, journal_rows = await _sync(
        arena, rows, "allowed", drop_policy="conclude", allow_drops=3
    )
    assert state is not None and state.counts[State.DONE] == 10
    assert [arena.state_of(e) for e in enrolled[7:]] == ["completed"] * 3
    drops = [r for r in journal_rows if r.source == DROP_SOURCE]
    assert {r.action for r in drops} == {"conclude"} and len(drops) == 3


async def test_manual_enrollments_survive_a_sync(arena: Arena) -> None:
    u = arena.users
    for x in u[:10]:
        arena.enroll(x)
    teacher = arena.enroll(u[20], sis=False, role="TeacherEnrollment")  # added by hand
    helper = arena.enroll(u[21], sis=False)  # a student added by hand
    rows = [arena.row(x) for x in u[:10]]
    decision, state, _ = await _sync(arena, rows, "manual", drop_policy="delete")
    assert state is not None and state.phase == Phase.FINISHED
    assert arena.state_of(teacher) == "active" and arena.state_of(helper) == "active"
    assert decision.plan is not None
    manual = [s for s in decision.plan.steps if s.manual]
    assert {s.action for s in manual} == {"none"} and len(manual) >= 2
    assert all("manual" in s.reason for s in manual)

    # Only when the config says so are they treated like the SIS's own.
    plan = await _plan(arena, rows, drop_policy="delete", manual_enrollments="include")
    assert _actions(plan, "enrollment")[u[21].sis_user_id] == "delete"


async def test_enrollments_canvas_tui_created_count_as_the_sis(arena: Arena) -> None:
    u = arena.users
    rows = [arena.row(x) for x in u[:12]]
    _, state, first = await _sync(arena, rows, "first", plan=False)  # created by canvas-tui
    assert state is not None and state.counts[State.DONE] == 12
    made = {r.canvas_enrollment_id for r in first}
    assert all(arena.world.enrollments[i].sis_import_id is None for i in made if i)
    assert made <= known_enrollment_ids(journal_paths(arena.config()))

    # The SIS drops two: canvas-tui's journals say those rows are the SIS's, so they go.
    decision, state, _ = await _sync(
        arena, rows[:10], "second", drop_policy="inactivate", allow_drops=2
    )
    assert state is not None and decision.plan is not None
    assert _actions(decision.plan, "enrollment") == {
        u[10].sis_user_id: "inactivate",
        u[11].sis_user_id: "inactivate",
    }
    gone = [e for e in arena.world.enrollments.values() if e.user_id in (u[10].id, u[11].id)]
    assert {e.workflow_state for e in gone if e.course_id == arena.course.id} == {"inactive"}


async def test_auto_mode_reads_the_roster_rather_than_look_each_blank_row_up(
    arena: Arena,
) -> None:
    # rows that leave the section limit and dates blank must be read before a POST (issue 10
    # rule 1): one roster page beats three lookups (full mode for rows that state every field:
    # tests/engine/test_blank_columns.py)
    rows = [arena.row(x) for x in arena.users[:3]]
    decision, state, _ = await _sync(arena, rows, "small", plan=None)
    assert decision.planned and "plan mode (auto)" in decision.message
    assert "3 of them lookups" in decision.message
    assert state is not None and state.counts[State.DONE] == 3


async def test_section_only_rows_are_diffed_against_the_section(arena: Arena) -> None:
    u = arena.users
    arena.enroll(u[0])
    section = arena.section.sis_section_id
    assert section
    rows = [["", x.sis_user_id or "", "student", section, "active"] for x in u[:2]]
    plan = await _plan(arena, rows)
    assert plan.scopes == 1 and plan.roster_errors == {}
    assert _actions(plan) == {u[0].sis_user_id: "none", u[1].sis_user_id: "create"}
    _, state, _ = await _sync(arena, rows, "sections")
    assert state is not None and state.counts[State.DONE] == 2
    assert arena.writes() == 1


async def test_a_rejected_token_stops_the_plan_before_anything_is_queued(arena: Arena) -> None:
    rows = [arena.row(x) for x in arena.users[:5]]
    config = arena.config()
    config = replace(config, canvas=replace(config.canvas, token=Secret("not-a-token")))
    session = arena.session(arena.csv(rows), config, "badtoken")
    try:
        with pytest.raises(CanvasError) as caught:
            await prepare_sync(session, requested=True, allow_drops=None)
        assert caught.value.fatal and caught.value.category == Category.AUTH
        assert not session.store.loaded
    finally:
        await session.close()
