"""Issue 10 rules 1 and 5 in the engine against the simulator, in full mode and in plan mode, and
the issue's end-to-end scenario in full mode, plan mode and resumed after a SIGKILL (the console
retry is in tests/tui/test_blank_columns_retry.py).

Rule 1: a blank column never changes Canvas (Course#enroll_user re-applies the section limit and
the dates on every POST, app/models/course.rb). Rule 5: a row without a section acts on the
course's default section only (`section ||= self.default_section`, same file).
"""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from canvas_tui.engine.plan.executor import prepare_sync
from canvas_tui.engine.session import Session
from canvas_tui.records import State
from canvas_tui.simulator import ADMIN_TOKEN, SimConfig, Simulator, World, build_app
from canvas_tui.simulator.testing import asgi_transport, simulate_process, simulator_stats
from canvas_tui.simulator.world import DOC_COURSE, DOC_USERS, Enrollment
from tests.engine import blank_columns_scenario as scenario
from tests.engine.conftest import session_for
from tests.engine.workload import fresh_pairs
from tests.helpers import eventually_async, exited, start_sync, write_rows

TIME_SCALE = 50.0
COURSE_HEADER = ["course_id", "user_id", "role", "section_id", "status"]
BASE = "http://canvas.test"


@dataclass
class Sim:
    world: World
    app: Simulator
    http: httpx.AsyncClient
    tmp: Path

    def session(self, path: Path, name: str) -> Session:
        return session_for(
            path,
            self.tmp / f"{name}.journal",
            transport=asgi_transport(self.app),
            time_scale=TIME_SCALE,
        )

    async def sync(self, path: Path, name: str, *, plan: bool | None) -> Session:
        """`canvas-tui sync` in process: the mode decision, then the run; returns the session."""
        session = self.session(path, name)
        decision = await prepare_sync(session, requested=plan, allow_drops=None)
        assert decision.planned is bool(plan), decision.message
        state = await session.run()
        assert state.counts.get(State.FAILED, 0) == 0, list(session.store.iter_rows())
        return session

    def enrollment(self, user_sis: str, kind: str, section: int | None = None) -> Enrollment:
        user = self.world.find_user(f"sis_user_id:{user_sis}")
        course = self.world.find_course(f"sis_course_id:{DOC_COURSE}")
        assert user is not None and course is not None
        (found,) = [
            e
            for e in self.world.enrollments_of_user(user.id)
            if e.course_id == course.id
            and e.type == kind
            and (section is None or e.course_section_id == section)
        ]
        return found


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Sim]:
    world = World.generate(7)
    app = build_app(SimConfig(time_scale=TIME_SCALE), world)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "User-Agent": "canvas-tui-tests"}
    async with httpx.AsyncClient(
        transport=asgi_transport(app), base_url=BASE, headers=headers
    ) as http:
        yield Sim(world, app, http, tmp_path)


# ---- rule 1: a blank column never changes Canvas ---------------------------------------------


def _rule1_rows() -> list[list[str]]:
    """The scenario's TA and student with blank columns, and a second TA whose row turns the
    limit off explicitly (the dates it leaves blank)."""
    ta, student, _ = scenario.rows()
    explicit = [DOC_COURSE, "S900002", "ta", scenario.SECTION, "active", "", "", "", "false"]
    return [ta, student, explicit]


async def _arrange_rule1(sim: Sim) -> None:
    await scenario.arrange(sim.http)
    other = await sim.http.post(
        scenario.ENROLLMENTS,
        data={
            "enrollment[user_id]": "sis_user_id:S900002",
            "enrollment[type]": "TaEnrollment",
            "enrollment[enrollment_state]": "active",
            "enrollment[course_section_id]": f"sis_section_id:{scenario.SECTION}",
            "enrollment[limit_privileges_to_course_section]": "true",
            "enrollment[start_at]": scenario.START,
            "enrollment[end_at]": scenario.END,
        },
    )
    assert other.status_code == 200


def _assert_rule1(sim: Sim) -> None:
    ta = sim.enrollment(scenario.TA, "TaEnrollment")
    assert ta.limit_privileges_to_course_section, "a blank limit_section_privileges reset it"
    student = sim.enrollment(scenario.STUDENT, "StudentEnrollment")
    assert (student.start_at, student.end_at) == (scenario.START, scenario.END)
    explicit = sim.enrollment("S900002", "TaEnrollment")
    assert not explicit.limit_privileges_to_course_section  # the explicit false is applied
    assert (explicit.start_at, explicit.end_at) == (scenario.START, scenario.END)


async def test_full_mode_changes_nothing_a_blank_column_leaves(sim: Sim) -> None:
    await _arrange_rule1(sim)
    path = write_rows(sim.tmp / "in.csv", _rule1_rows(), scenario.HEADER)
    sim.app.reset_stats()
    session = await sim.sync(path, "full", plan=False)
    _assert_rule1(sim)
    actions = [r.action for r in session.store.iter_rows()]
    assert actions == ["none", "none", "create"]  # in place: nothing re-POSTed
    by = sim.app.stats()["requests_by_endpoint"]
    # one lookup per row that leaves a field blank (all three leave the dates), one POST for the
    # explicit change; the token check is the run's only other request
    assert by.get("list_enrollments") == 3 and by.get("create_enrollment") == 1
    await session.close()


async def test_plan_mode_changes_nothing_a_blank_column_leaves(sim: Sim) -> None:
    await _arrange_rule1(sim)
    path = write_rows(sim.tmp / "in.csv", _rule1_rows(), scenario.HEADER)
    session = await sim.sync(path, "plan", plan=True)
    _assert_rule1(sim)
    rows = list(session.store.iter_rows())
    assert [r.action for r in rows] == ["none", "none", "update"]
    await session.close()


async def test_resumed_and_retried_rows_keep_unchanged_from_the_journal(sim: Sim) -> None:
    """What resume and console retry re-send is the journal's record: "unchanged" survives it."""
    await _arrange_rule1(sim)
    path = write_rows(sim.tmp / "in.csv", _rule1_rows(), scenario.HEADER)
    session = sim.session(path, "journal")
    await session.load()
    first = session.store.record(1)
    assert first is not None and first.leaves_unchanged == (
        "limit_section_privileges",
        "start_at",
        "end_at",
    )
    await session.run()
    _assert_rule1(sim)
    assert session.runner.enqueue([1]) == 1  # the console's "send again"
    await session.run()
    _assert_rule1(sim)
    await session.close()


async def test_an_edited_row_keeps_what_it_leaves_blank(sim: Sim) -> None:
    """The console's edit re-reads the row through the source's rules: still "unchanged"."""
    await _arrange_rule1(sim)
    ta, student, explicit = _rule1_rows()
    ta[4] = "enroled"  # a typo: the row fails validation
    path = write_rows(sim.tmp / "in.csv", [ta, student, explicit], scenario.HEADER)
    session = sim.session(path, "edit")
    state = await session.run()
    assert state.counts[State.FAILED] == 1
    assert session.runner.edit_and_retry(1, {"status": "active"})
    state = await session.run()
    assert state.counts[State.DONE] == 3
    assert session.store.get(1).action == "none"  # type: ignore[union-attr]
    _assert_rule1(sim)
    await session.close()


def test_auto_mode_counts_the_reads_blank_columns_cost(tmp_path: Path) -> None:
    from canvas_tui.config import PlanConfig
    from canvas_tui.engine.plan.executor import choose_mode
    from canvas_tui.sources import CsvSource

    blank = list(CsvSource(write_rows(tmp_path / "b.csv", _rule1_rows(), scenario.HEADER)))
    planned, why = choose_mode(blank, PlanConfig(), None)
    # three lookups against one roster page: reading the roster is cheaper
    assert planned, why
    assert "3 active rows leave limit_section_privileges or dates blank" in why
    assert "about 6 requests in full mode (3 of them lookups)" in why

    stated = [[*row[:6], scenario.START, scenario.END, "true"] for row in _rule1_rows()]
    explicit = list(CsvSource(write_rows(tmp_path / "e.csv", stated, scenario.HEADER)))
    planned, why = choose_mode(explicit, PlanConfig(), None)
    assert not planned, why  # nothing to reset: a blind POST each is the cheapest
    assert "about 3 requests (0 lookups)" in why and "blank" not in why


# ---- rule 5: course-only rows act on the default section -------------------------------------


def _sections(sim: Sim) -> tuple[int, int]:
    course = sim.world.find_course(f"sis_course_id:{DOC_COURSE}")
    assert course is not None
    default = sim.world.default_section(course)
    other = next(s for s in sim.world.sections_of(course.id) if s.sis_section_id == "1B")
    return default.id, other.id


async def _in_1b(sim: Sim, user: str) -> None:
    made = await sim.http.post(
        scenario.ENROLLMENTS,
        data={
            "enrollment[user_id]": f"sis_user_id:{user}",
            "enrollment[enrollment_state]": "active",
            "enrollment[course_section_id]": "sis_section_id:1B",
        },
    )
    assert made.status_code == 200


@pytest.mark.parametrize("plan", [False, True], ids=["full", "plan"])
async def test_course_only_rows_act_on_the_default_section(sim: Sim, plan: bool) -> None:
    """Two students active in section 1B. A course-only `active` row is not in place there: it
    creates the enrollment in the default section. A course-only `completed` row has nothing in
    the default section to conclude: the 1B enrollment is not its, and Canvas's importer creates
    a completed one in the default section (issue 10 rule 4)."""
    default, other = _sections(sim)
    joins, leaves = DOC_USERS[0], DOC_USERS[1]
    for user in (joins, leaves):
        await _in_1b(sim, user)
    rows = [
        [DOC_COURSE, joins, "student", "", "active"],
        [DOC_COURSE, leaves, "student", "", "completed"],
    ]
    path = write_rows(sim.tmp / "in.csv", rows, COURSE_HEADER)
    session = await sim.sync(path, "rule5", plan=plan)
    assert sim.enrollment(joins, "StudentEnrollment", other).workflow_state == "active"
    assert sim.enrollment(joins, "StudentEnrollment", default).workflow_state == "active"
    assert sim.enrollment(leaves, "StudentEnrollment", other).workflow_state == "active"
    assert sim.enrollment(leaves, "StudentEnrollment", default).workflow_state == "completed"
    assert [r.action for r in session.store.iter_rows()] == ["create", "create_completed"]
    await session.close()


# ---- the end-to-end scenario -------------------------------------------------------------------


@pytest.mark.parametrize("plan", [False, True], ids=["full", "plan"])
async def test_scenario_in_full_and_plan_mode(sim: Sim, plan: bool) -> None:
    await scenario.arrange(sim.http)
    session = await sim.sync(scenario.write_csv(sim.tmp / "in.csv"), "e2e", plan=plan)
    await scenario.check(sim.http)
    await session.close()


@pytest.fixture
def simulator() -> Iterator[str]:
    with simulate_process("--time-scale", "5", startup=20) as base_url:
        yield base_url


def _done(journal: Path) -> int:
    conn = sqlite3.connect(journal)
    try:
        (done,) = conn.execute("SELECT COUNT(*) FROM records WHERE state = 'done'").fetchone()
    finally:
        conn.close()
    return int(done)


@pytest.mark.slow
async def test_scenario_resumed_after_sigkill(tmp_path: Path, simulator: str) -> None:
    """`canvas-tui sync` killed a quarter of the way through a workload that ends with the
    scenario's rows; the resumed run sends them from the journal."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "User-Agent": "canvas-tui-tests"}
    async with httpx.AsyncClient(base_url=simulator, headers=headers) as http:
        await scenario.arrange(http)
        workload = [
            [c, u, "student", s, "active"] for u, c, s in fresh_pairs(World.generate(7), 200)
        ]
        scenario.write_csv(tmp_path / "in.csv", workload)
        journal = tmp_path / "run.journal"
        argv = ("in.csv", "--journal", "run.journal")
        first = start_sync(tmp_path, simulator, *argv, CANVAS_TUI_PROGRESS_INTERVAL="0.2")

        def a_quarter_done() -> bool:
            try:
                return journal.exists() and _done(journal) >= len(workload) // 4
            except sqlite3.OperationalError:  # the schema is still being created
                return False

        await eventually_async(
            a_quarter_done, what="a quarter of the workload done", abort_if=exited(first)
        )
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert _done(journal) < len(workload)  # the scenario's rows, at the end, are still to go

        second = start_sync(tmp_path, simulator, *argv)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["done"] == len(workload) + len(scenario.rows())
        await scenario.check(http)
        assert simulator_stats(simulator)["duplicates"] == 0


async def test_an_unknowable_default_section_is_refused_not_guessed(sim: Sim) -> None:
    course = sim.world.add_course("Two Plain Sections", "AMB-101")  # its default section...
    manual = sim.world.add_section(course, "Made by hand", None)  # ...and one more without SIS id
    user = sim.world.find_user(f"sis_user_id:{DOC_USERS[0]}")
    student = sim.world.built_in_role("StudentEnrollment")
    assert user is not None and student is not None
    kept = sim.world.add_enrollment(user, manual, student)
    rows = [["AMB-101", DOC_USERS[0], "student", "", "completed"]]
    session = sim.session(write_rows(sim.tmp / "in.csv", rows, COURSE_HEADER), "amb")
    state = await session.run()
    assert state.counts[State.FAILED] == 1
    row = session.store.get(1)
    assert row is not None and row.category == "invalid_input"
    assert "give section_id" in (row.message or "")
    assert sim.world.enrollments[kept.id].workflow_state == "active"
    await session.close()
