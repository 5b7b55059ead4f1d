"""Preflight findings and estimates, `canvas-tui plan`, and `sync --plan` with the brake."""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import pytest

from canvas_tui import headless
from canvas_tui.commands import plan as plan_module
from canvas_tui.engine.plan.executor import read_items
from canvas_tui.engine.preflight import deep_check, format_preflight
from canvas_tui.simulator import ADMIN_TOKEN
from canvas_tui.simulator.testing import asgi_transport, serve_in_thread
from canvas_tui.simulator.world import COMPLETED_COURSE
from canvas_tui.sources import CsvSource
from tests.plan.conftest import Arena


def _toml(arena: Arena, base_url: str, extra: str = "") -> Path:
    token = arena.tmp / "token"
    token.write_text(ADMIN_TOKEN)
    token.chmod(0o600)
    path = arena.tmp / "canvas-tui.toml"
    path.write_text(
        f'[canvas]\nbase_url = "{base_url}"\ntoken_file = "{token}"\n'
        f'[sync]\njournal_dir = "{arena.tmp / "runs"}"\n{extra}'
    )
    return path


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CANVAS_API_TOKEN", raising=False)
    monkeypatch.delenv("CANVAS_BASE_URL", raising=False)


async def test_preflight_finds_what_is_missing_and_spares_roster_users(arena: Arena) -> None:
    u = arena.users
    for x in u[:5]:
        arena.enroll(x)
    other = next(
        s
        for s in arena.world.sections.values()
        if s.sis_section_id and s.course_id != arena.course.id
    )
    course, section = arena.course.sis_course_id, arena.section.sis_section_id
    assert course and section and other.sis_section_id
    rows = [arena.row(x) for x in u[:5]]  # enrolled: proven by the roster, no GET
    rows += [
        arena.row(u[6]),  # exists, not enrolled: one GET
        [course, "NOBODY-1", "student", section, "active"],
        ["NOPE-101", u[7].sis_user_id or "", "student", "", "active"],
        [COMPLETED_COURSE, u[8].sis_user_id or "", "student", "", "active"],
        [course, u[9].sis_user_id or "", "student", other.sis_section_id, "active"],
    ]
    session = arena.session(arena.csv(rows), arena.config(), "pre")
    try:
        assert session.client is not None
        arena.app.reset_stats()
        result, plan = await deep_check(
            session.client, read_items(CsvSource(arena.tmp / "in.csv")), session.config
        )
    finally:
        await session.close()
    problems = {(f.kind, f.ref.split(":", 1)[1]): f.problem for f in result.findings}
    assert problems.keys() == {
        ("user", "NOBODY-1"),
        ("course", "NOPE-101"),
        ("course", COMPLETED_COURSE),
        ("section", other.sis_section_id),
    }
    assert "does not exist" in problems["user", "NOBODY-1"]
    assert "concluded" in problems["course", COMPLETED_COURSE]
    assert f"not an active section of course {course}" in problems["section", other.sis_section_id]
    (wrong_section,) = [f for f in result.findings if f.kind == "section"]
    assert wrong_section.records == 1 and wrong_section.first.endswith(":11")
    assert result.users == 10 and result.users_seen_in_rosters == 5
    by = arena.app.stats()["requests_by_endpoint"]
    assert by["get_user"] == 5  # only the users no roster showed
    assert set(by) <= {"get_user", "get_course", "list_sections", "list_enrollments"}
    assert result.requests == arena.app.stats()["requests"]
    assert result.average_cost is not None and result.average_cost > 0
    full, planned = result.estimates
    assert full.mode == "full" and full.requests == 1 + 10 + 10  # blank limit/dates: a lookup each
    assert planned.mode == "plan" and planned.requests < full.requests + plan.roster_pages + 1
    assert any("estimate (plan)" in line for line in format_preflight(result))
    # a range from the throttle model, and the mode sync would pick on its own is named
    assert full.span is not None and full.span.low < full.seconds < full.span.high
    assert [e.chosen for e in result.estimates].count(True) == 1
    assert sum("sync picks this mode" in line for line in format_preflight(result)) == 1


def test_plan_command_prints_and_writes_json_and_csv(arena: Arena) -> None:
    u = arena.users
    for x in u[:8]:
        arena.enroll(x)
    arena.enroll(u[8], "inactive")
    rows = [arena.row(x) for x in u[:9]] + [arena.row(u[9])]
    args = argparse.Namespace(
        config=str(_toml(arena, "http://127.0.0.1")),
        source=str(arena.csv(rows)),
        out=str(arena.tmp / "out" / "plan"),
    )
    out = io.StringIO()
    code = plan_module.main(args, transport=asgi_transport(arena.app), out=out)
    text = out.getvalue()
    assert code == 0, text
    assert "records: create 1  reactivate 1  update 0" in text and "none 8" in text
    assert f"{arena.course.sis_course_id}: create 1, reactivate 1" in text
    document = json.loads((arena.tmp / "out" / "plan.json").read_text())
    assert document["summary"]["actions"]["create"] == 1
    assert document["by_course"][arena.course.sis_course_id] == {
        "none": 8,
        "reactivate": 1,
        "create": 1,
    }
    assert document["preflight"]["findings"] == []
    with (arena.tmp / "out" / "plan.csv").open(encoding="utf-8") as handle:
        steps = list(csv.DictReader(handle))
    assert len(steps) == 10 and {s["action"] for s in steps} == {"none", "create", "reactivate"}
    assert arena.writes() == 0
    assert ADMIN_TOKEN not in text


def _sync_args(config: Path, source: Path, **extra: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "config": str(config),
        "source": str(source),
        "journal": None,
        "report": None,
        "dry_run": False,
        "max_concurrency": None,
        "plan": True,
        "allow_drops": None,
        "log_format": "json",
    }
    values.update(extra)
    return argparse.Namespace(**values)


def test_headless_sync_plan_brake_then_allow_drops(
    arena: Arena, capsys: pytest.CaptureFixture[str]
) -> None:
    u = arena.users
    enrolled = [arena.enroll(x) for x in u[:10]]
    rows = [arena.row(x) for x in u[:6]] + [arena.row(u[12])]  # 4 of 10 dropped, 1 new
    source = arena.csv(rows)
    with serve_in_thread(arena.app) as base_url:
        config = _toml(arena, base_url, '[plan]\ndrop_policy = "inactivate"\n')
        code = headless.main(_sync_args(config, source))
        events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert code == 2
        errors = [e for e in events if e["event"] == "error"]
        assert (
            errors and "brake" in errors[0]["message"] and "--allow-drops 4" in errors[0]["message"]
        )
        assert arena.writes() == 0
        assert not list((arena.tmp / "runs").glob("*.journal*"))  # no empty journal left

        code = headless.main(_sync_args(config, source, allow_drops=4))
        events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    mode = next(e for e in events if e["event"] == "info" and e.get("mode") == "plan")
    assert mode["message"].startswith("plan mode (--plan)") and mode["drops"] == 4
    summary = events[-1]
    assert summary["event"] == "summary" and summary["mode"] == "plan"
    assert summary["total"] == 7 + 4 and summary["counts"]["done"] == 11
    assert [arena.state_of(e) for e in enrolled] == ["active"] * 6 + ["inactive"] * 4
    assert arena.writes() == 5  # one create, four inactivations


def test_plan_command_times_the_roster_reads(arena: Arena) -> None:
    """`plan` printed "0.0s" after 15.6 s: it timed only the diff, not the rosters it read."""
    from canvas_tui.simulator import LatencyModel, SimConfig, build_app

    latency = 0.2  # world seconds per request at time scale 1; jitter is at most 40 %
    arena.app = build_app(SimConfig(latency=LatencyModel.uniform(latency)), arena.world)
    args = argparse.Namespace(
        config=str(_toml(arena, "http://127.0.0.1")),
        source=str(arena.csv([arena.row(x) for x in arena.users[:3]])),
        out=str(arena.tmp / "out" / "plan"),
    )
    out = io.StringIO()
    assert plan_module.main(args, transport=asgi_transport(arena.app), out=out) == 0
    document = json.loads((arena.tmp / "out" / "plan.json").read_text())
    assert document["summary"]["roster_requests"] >= 1
    assert document["summary"]["elapsed"] >= latency * 0.6  # at least one roster page's wait


def test_plan_with_preflight_findings_exits_2_as_check_does(arena: Arena) -> None:
    """`plan` exited 1 here, undocumented; check says the same problems with 2 (issue 12, 7)."""
    course, section = arena.course.sis_course_id, arena.section.sis_section_id
    assert course and section
    rows = [arena.row(arena.users[0]), [course, "NOBODY-1", "student", section, "active"]]
    args = argparse.Namespace(
        config=str(_toml(arena, "http://127.0.0.1")),
        source=str(arena.csv(rows)),
        out=str(arena.tmp / "out" / "plan"),
    )
    out = io.StringIO()
    assert plan_module.main(args, transport=asgi_transport(arena.app), out=out) == 2
    assert "user NOBODY-1: does not exist" in out.getvalue()
