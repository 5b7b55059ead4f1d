"""`canvas-tui check` against the simulator: config, source, token and course visibility."""

from __future__ import annotations

import argparse
import io
import socket
import time
from pathlib import Path

import httpx
import pytest

from canvas_tui.commands.check import main
from canvas_tui.simulator import ADMIN_TOKEN, NO_SIS_TOKEN, SimConfig, Simulator, build_app
from canvas_tui.simulator.app import LatencyModel
from canvas_tui.simulator.testing import asgi_transport, serve_in_thread

FIXTURE = Path(__file__).parent / "sources" / "data" / "canvas_doc_enrollments.csv"
HEADER = "course_id,user_id,role,section_id,status"


def sim() -> Simulator:
    return build_app(SimConfig(time_scale=100.0, latency=LatencyModel(jitter=0.0)))


def run(tmp_path: Path, source: Path | None, *, base_url: str = "http://127.0.0.1:8900",
        token: str | None = ADMIN_TOKEN, transport: httpx.AsyncBaseTransport | None = None,
        deep: bool = False,
        extra: str = "") -> tuple[int, str]:  # fmt: skip
    config = tmp_path / "canvas-tui.toml"
    lines = ["[canvas]", f'base_url = "{base_url}"']
    if token is not None:
        token_file = tmp_path / "token"
        token_file.write_text(token)
        token_file.chmod(0o600)
        lines.append(f'token_file = "{token_file}"')
    config.write_text("\n".join(lines) + "\n" + extra)
    args = argparse.Namespace(config=str(config), source=str(source) if source else None, deep=deep)
    out = io.StringIO()
    code = main(args, transport=transport, out=out)
    return code, out.getvalue()


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CANVAS_API_TOKEN", raising=False)
    monkeypatch.delenv("CANVAS_BASE_URL", raising=False)


def test_all_well_in_process(tmp_path: Path) -> None:
    app = sim()
    code, out = run(tmp_path, FIXTURE, transport=asgi_transport(app))
    assert code == 0, out
    assert "3 rows: 3 records, 0 invalid, 0 duplicates" in out
    assert "token user: " in out and "(user 1)" in out
    assert "courses/sections visible: 1 of 1" in out
    assert out.rstrip().endswith("result: OK")
    assert ADMIN_TOKEN not in out
    # GETs only: nothing was written
    stats = app.stats()
    assert stats["enrollments_created"] == 0
    # ... and one page of one enrollment, to say what the token may read of SIS data
    assert stats["requests_by_endpoint"] == {"get_user": 1, "get_course": 1, "list_enrollments": 1}
    assert "token may read: SIS ids: readable (read_sis); SIS import ids: readable" in out


def test_check_reports_a_token_that_may_not_read_sis_ids(tmp_path: Path) -> None:
    """Canvas leaves SIS ids out for a token without read_sis (lib/api/v1/enrollment.rb)."""
    code, out = run(tmp_path, FIXTURE, token=NO_SIS_TOKEN, transport=asgi_transport(sim()))
    assert code == 0, out
    assert "SIS ids: NOT readable (no read_sis)" in out
    assert "SIS import ids: NOT readable (no manage_sis)" in out


def test_all_well_over_a_real_socket(tmp_path: Path) -> None:
    with serve_in_thread(sim()) as base_url:
        code, out = run(tmp_path, FIXTURE, base_url=base_url)
    assert code == 0, out
    assert "courses/sections visible: 1 of 1" in out


def test_bad_rows_and_unknown_course_are_input_problems(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text(
        f"{HEADER}\nE411208,01103,student,1B,active\nNOPE-101,01103,student,,active\n"
        "E411208,13834,student,2A,bogus\nE411208,01103,student,1B,active\n"
        "HIST100-S26,01103,student,,active\n,13834,student,2A,active\n"
    )
    code, out = run(tmp_path, source, transport=asgi_transport(sim()))
    assert code == 2, out
    assert "6 rows: 4 records, 1 invalid, 1 duplicates" in out
    assert f"problem: status x1, first: {source}:4: status (column 5): Improper status" in out
    assert f"problem: duplicate x1, first: {source}:5" in out
    assert "every one of them: `canvas-tui sync --dry-run --report FILE`" in out
    assert "courses/sections visible: 3 of 4" in out
    assert "problem: course sis_course_id:NOPE-101 (first at line 3): course_not_found" in out
    assert "warning: course sis_course_id:HIST100-S26 is concluded" in out
    assert out.rstrip().endswith("result: problems found (exit 2)")


def test_rejected_token_exits_3(tmp_path: Path) -> None:
    code, out = run(tmp_path, FIXTURE, token="not-a-token", transport=asgi_transport(sim()))
    assert code == 3, out
    assert "error: auth (HTTP 401)" in out
    assert "not-a-token" not in out


def test_unreachable_canvas_exits_3(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    code, out = run(tmp_path, FIXTURE, base_url=f"http://127.0.0.1:{port}")
    assert code == 3, out
    assert "error: network" in out
    assert time.monotonic() - started < 30


def test_missing_token_is_a_config_problem(tmp_path: Path) -> None:
    code, out = run(tmp_path, FIXTURE, token=None)
    assert code == 2
    assert "error: no API token: set CANVAS_API_TOKEN" in out


def test_plain_http_to_a_remote_host_is_refused_before_any_request(tmp_path: Path) -> None:
    code, out = run(tmp_path, FIXTURE, base_url="http://canvas.example.edu")
    assert code == 2
    assert "plain http would send the token" in out


def test_malformed_config_exits_2(tmp_path: Path) -> None:
    code, out = run(tmp_path, FIXTURE, extra="[sync\n")
    assert code == 2
    assert "config: error:" in out and "not valid TOML" in out


def test_unreadable_source_exits_2_but_still_checks_canvas(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    code, out = run(tmp_path, empty, transport=asgi_transport(sim()))
    assert code == 2
    assert "source: error:" in out and "the file is empty" in out
    assert "token user: " in out


def test_deep_checks_every_user_course_and_section(tmp_path: Path) -> None:
    app = sim()
    code, out = run(tmp_path, FIXTURE, transport=asgi_transport(app), deep=True)
    assert code == 0, out
    assert "preflight: 1 courses, 2 sections, 3 users checked" in out
    assert "every course, section and user exists" in out
    # the token check, a lookup per row that leaves limit/dates blank, and a write per row
    assert "estimate (full): 7 requests" in out
    assert "sync picks this mode" in out
    assert app.stats()["enrollments_created"] == 0


def test_malformed_token_is_refused_without_a_request(tmp_path: Path) -> None:
    app = sim()
    code, out = run(tmp_path, FIXTURE, token="abc def\nxyz", transport=asgi_transport(app))
    assert code == 3
    assert "error: auth" in out and "invalid characters" in out
    assert app.stats()["requests"] == 0


def test_an_unknown_role_fails_in_check_with_the_sync_hint(tmp_path: Path) -> None:
    """`professor` passed check and check --deep and failed only in sync (issue 12, item 6)."""
    source = tmp_path / "in.csv"
    source.write_text(
        f"{HEADER}\nE411208,01103,student,1B,active\nE411208,13834,professor,2A,active\n"
        "E411208,01103,Grader,1B,active\n"  # a custom role the account has: fine
    )
    app = sim()
    code, out = run(tmp_path, source, transport=asgi_transport(app))
    assert code == 2, out
    assert "problem: role 'professor' (first at line 3): Canvas does not know the role" in out
    assert "custom role that exists in the account (names are case-sensitive)" in out
    assert "Grader" not in out
    assert app.stats()["enrollments_created"] == 0


def test_a_header_only_file_says_there_is_nothing_to_sync(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text(f"{HEADER}\n")
    code, out = run(tmp_path, source, transport=asgi_transport(sim()))
    assert code == 2, out
    assert "problem: no data rows after the header, so there is nothing to sync" in out
