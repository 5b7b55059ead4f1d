"""Mode choice, the brake's thresholds, journal ownership, and resuming a planned run."""

from __future__ import annotations

from pathlib import Path

from canvas_tui.config import PlanConfig
from canvas_tui.engine.journal import Journal
from canvas_tui.engine.plan.diff import Action, Step, StepKind, evaluate_brake
from canvas_tui.engine.plan.executor import (
    PLAN_RATIO,
    choose_mode,
    known_enrollment_ids,
    prepare_sync,
)
from canvas_tui.engine.plan.rosters import Roster
from canvas_tui.engine.state import Phase
from canvas_tui.records import EnrollmentRecord, Provenance, SisStatus, SourceItem, State
from tests.plan.conftest import Arena


def _records(n: int, courses: int) -> list[SourceItem]:
    return [
        EnrollmentRecord(
            user=f"sis_user_id:U{i}",
            course=f"sis_course_id:C{i % courses}",
            section=None,
            role="student",
            enrollment_type="StudentEnrollment",
            status=SisStatus.ACTIVE,
            provenance=Provenance("in.csv", i + 2),
        )
        for i in range(n)
    ]


def test_mode_choice() -> None:
    never = PlanConfig()
    assert choose_mode(_records(5, 5), never, True)[0] is True
    assert choose_mode(_records(5000, 5), never, False)[0] is False
    planned, why = choose_mode(_records(5, 5), never, None)  # 1 record per roster page
    assert not planned and "full mode (auto)" in why
    planned, why = choose_mode(_records(PLAN_RATIO * 50, 50), never, None)
    assert planned and "plan mode (auto)" in why
    planned, why = choose_mode(_records(5, 5), PlanConfig(drop_policy="conclude"), None)
    assert planned and "drop_policy is conclude" in why


def test_auto_mode_counts_the_section_lists_a_plan_may_read() -> None:
    # 5 courses of course-only rows: 5 roster pages and up to 5 section lists; every row is a
    # lookup in full mode (limit_section_privileges and the dates are blank)
    planned, why = choose_mode(_records(14, 5), PlanConfig(), None)
    assert not planned, why  # 14 lookups < 2 x 5 pages + 5 section lists
    assert "about 5 roster pages and up to 5 section lists" in why
    planned, why = choose_mode(_records(15, 5), PlanConfig(), None)
    assert planned and "up to 5 section lists to read first" in why, why


def _drop(course: str, n: int) -> Step:
    return Step(
        kind=StepKind.ENROLLMENT,
        action=Action.CONCLUDE,
        course=course,
        user=f"U{n}",
        role="StudentEnrollment",
        section="",
        reason="not in the SIS",
        enrollment_ids=(n,),
        drop=True,
    )


def _roster(course: str, size: int, start: int) -> Roster:
    enrollments = [
        {"id": start + i, "sis_course_id": course, "enrollment_state": "active"}
        for i in range(size)
    ]
    return Roster(f"sis_course_id:{course}", enrollments, 1)


def test_brake_share_and_count_thresholds() -> None:
    rosters = {"A": _roster("A", 10, 0), "B": _roster("B", 200, 1000)}
    policy = PlanConfig(drop_policy="conclude", brake_max_share=0.2, brake_max_count=25)
    two = evaluate_brake([_drop("A", 0), _drop("A", 1)], rosters, policy)
    assert not two.tripped and two.allows(None)  # 20 % is the limit, not over it
    three = evaluate_brake([_drop("A", i) for i in range(3)], rosters, policy)
    assert three.tripped and "A: 3 of 10 live enrollments (30%)" in three.reasons[0]
    assert not three.allows(None) and not three.allows(2) and three.allows(3)
    many = evaluate_brake([_drop("B", 1000 + i) for i in range(26)], rosters, policy)
    assert many.reasons == ("26 drops in all; brake_max_count is 25",)


def test_known_ids_come_from_journals_and_ignore_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.journal").write_text("not a database")
    assert known_enrollment_ids([tmp_path / "notes.journal", tmp_path / "missing.journal"]) == set()
    journal = Journal(tmp_path / "run.journal")
    try:
        journal.load(_records(3, 1), description="in.csv")
    finally:
        journal.close()
    assert known_enrollment_ids([tmp_path / "run.journal"]) == set()  # nothing done yet


async def test_a_planned_run_resumes_with_its_drops(arena: Arena) -> None:
    u = arena.users
    enrolled = [arena.enroll(x) for x in u[:10]]
    rows = [arena.row(x) for x in u[:9]]
    config = arena.config(drop_policy="delete")
    session = arena.session(arena.csv(rows), config, "resume")
    try:
        decision = await prepare_sync(session, requested=True, allow_drops=None)
        assert decision.plan is not None and len(decision.plan.drops) == 1
    finally:
        await session.close()  # stopped before anything was sent
    assert arena.writes() == 0

    again = arena.session(arena.csv(rows), config, "resume")
    try:
        decision = await prepare_sync(again, requested=True, allow_drops=None)
        assert again.resumed and "resuming" in decision.message
        state = await again.run()
    finally:
        await again.close()
    assert state.phase == Phase.FINISHED and state.counts[State.DONE] == 10
    assert arena.state_of(enrolled[9]) == "deleted"
    assert arena.writes() == 1  # the drop, by its recorded enrollment id; no re-plan
