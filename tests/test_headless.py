"""`canvas-tui sync` end to end against the simulator on loopback: output format, exit codes,
reports, dry runs, a rejected token and a graceful stop."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from canvas_tui.records import EnrollmentRecord, RowProblem
from canvas_tui.simulator import ADMIN_TOKEN, SimConfig, Simulator, World, build_app
from canvas_tui.simulator.testing import free_port, serve_in_thread
from canvas_tui.sources import open_source
from tests.engine.workload import write_csv
from tests.helpers import eventually, exited, lines, start_sync, sync


def test_all_done_exit_0_json_lines_when_not_a_tty(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert sync("good.csv") == 0
    events = lines(capsys.readouterr().out)  # every line is JSON
    kinds = {e["event"] for e in events}
    assert {"info", "progress", "summary"} <= kinds
    summary = events[-1]
    assert summary["event"] == "summary" and summary["exit_code"] == 0
    assert (summary["done"], summary["failed"], summary["total"]) == (40, 0, 40)
    # the default journal location: the user state directory, not the current one
    state_home = Path(os.environ["XDG_STATE_HOME"])
    assert Path(summary["journal"]).parent == state_home / "canvas-tui" / "runs"
    assert Path(summary["journal"]).exists() and not Path("runs").exists()
    assert sim.stats()["enrollments_created"] == 40


def test_some_failed_exit_1_with_report_that_feeds_back(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert sync("mixed.csv", "--journal", "m.journal", "--report", "out/report.json") == 1
    events = lines(capsys.readouterr().out)
    failed = [e for e in events if e["event"] == "record_failed"]
    assert sorted(e["category"] for e in failed) == ["invalid_input"] * 2 + ["user_not_found"] * 2
    assert all(e["hint"] and e["line"] > 1 for e in failed)

    report = json.loads((tmp_path / "out/report.json").read_text())
    assert report["counts"] == {"pending": 0, "in_flight": 0, "done": 46, "failed": 4, "skipped": 0}
    assert report["failures_by_category"] == {"invalid_input": 2, "user_not_found": 2}
    assert report["requests"] >= 48 and report["elapsed"] > 0
    assert len(report["records"]) == 50
    done = [r for r in report["records"] if r["state"] == "done"]
    assert all(r["canvas_enrollment_id"] and r["action"] == "create" for r in done)

    failures = tmp_path / "out/report.failures.csv"
    with failures.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    assert list(rows[0])[:5] == ["course_id", "user_id", "role", "section_id", "status"]
    assert "term" in rows[0]  # the source's own extra column is kept
    fed_back = list(open_source(failures))
    assert sum(isinstance(i, EnrollmentRecord) for i in fed_back) == 2  # the unknown users
    assert sum(isinstance(i, RowProblem) for i in fed_back) == 2  # still an invalid status


def test_dry_run_sends_nothing(sim: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    before = sim.stats()["requests"]
    assert sync("mixed.csv", "--dry-run", "--report", "dry.json") == 2  # as `check`: bad rows
    summary = lines(capsys.readouterr().out)[-1]
    assert summary["would_send"] == {"create": 48}
    assert summary["counts"]["failed"] == 2
    assert sim.stats()["requests"] == before
    assert not Path("runs").exists()
    assert Path("dry.json").exists()


def test_usage_and_input_errors_exit_2(
    sim: Simulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sync("missing.csv") == 2
    assert "missing.csv" in capsys.readouterr().out
    assert sync("good.csv", "--config", "nope.toml") == 2
    assert "nope.toml" in capsys.readouterr().out
    assert sync("good.csv", "--max-concurrency", "0") == 2
    Path("empty.csv").write_text("")
    assert sync("empty.csv") == 2
    assert "empty" in capsys.readouterr().out
    monkeypatch.delenv("CANVAS_API_TOKEN")
    assert sync("good.csv") == 2
    assert "CANVAS_API_TOKEN" in capsys.readouterr().out
    assert sim.stats()["requests"] == 0


def test_invalid_token_stops_at_once_with_exit_3(
    sim: Simulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CANVAS_API_TOKEN", "expired-or-wrong")
    assert sync("good.csv", "--journal", "t.journal") == 3
    events = lines(capsys.readouterr().out)
    summary = events[-1]
    assert summary["exit_code"] == 3 and summary["phase"] == "aborted"
    assert "Invalid access token" in summary["abort_reason"]
    # the load waits for the token check: nothing was loaded, so nothing failed or was lost
    # (the source is read again with a good token)
    assert (summary["pending"], summary["done"], summary["failed"]) == (0, 0, 0)
    errors = [e for e in events if e["event"] == "error"]
    assert errors and "Token rejected" in errors[0]["message"]
    assert sim.stats()["requests"] <= 2
    # nothing was sent, so no journal is left behind (issue 12, item 8)
    assert summary["journal"] is None and not list(Path().glob("t.journal*"))
    monkeypatch.setenv("CANVAS_API_TOKEN", ADMIN_TOKEN)
    assert sync("good.csv", "--journal", "t.journal") == 0


@pytest.mark.parametrize(
    ("mode", "says"),
    [("--plan", "could not read the rosters: Network error"), ("--no-plan", "run aborted")],
)
def test_canvas_out_of_reach_ends_the_run_at_once_with_exit_3(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    says: str,
) -> None:
    """A wrong port or a network that cannot reach Canvas: a few quick retries (Canvas has
    never answered), then a clear error, not a minute of silent back-off per roster."""
    monkeypatch.setenv("CANVAS_BASE_URL", f"http://127.0.0.1:{free_port()}")
    assert sync("good.csv", mode, "--journal", "n.journal") == 3
    errors = [e for e in lines(capsys.readouterr().out) if e["event"] == "error"]
    assert errors and says in errors[0]["message"]
    assert "check base_url" in errors[0]["message"]


def test_max_concurrency_caps_requests_in_flight(sim: Simulator) -> None:
    assert sync("good.csv", "--max-concurrency", "2") == 0
    assert sim.stats()["max_in_flight"] <= 2


@pytest.mark.slow
def test_sigterm_stops_gracefully_with_exit_3(tmp_path: Path) -> None:
    world = World.generate(7)
    app = build_app(SimConfig(time_scale=2), world)
    write_csv(tmp_path / "in.csv", world, 300)
    with serve_in_thread(app) as base_url:
        proc = start_sync(
            tmp_path, base_url, "in.csv", "--journal", "j.journal", "--report", "r.json"
        )
        eventually(
            lambda: app.stats()["enrollments_created"] >= 30,
            what="30 enrollments created",
            abort_if=exited(proc),
        )
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err
    summary = lines(out)[-1]
    assert summary["phase"] == "cancelled"
    # the signal is named, in the summary and the report (issue 12, item 10)
    assert summary["abort_reason"].startswith("stopped by SIGTERM")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["abort_reason"] == summary["abort_reason"]
    conn = sqlite3.connect(tmp_path / "j.journal")
    counts = dict(conn.execute("SELECT state, COUNT(*) FROM records GROUP BY state"))
    conn.close()
    assert "in_flight" not in counts  # in-flight requests finished before exit
    assert counts["done"] == app.stats()["enrollments_created"]
    assert counts["pending"] > 0 and sum(counts.values()) == 300


def test_everything_from_a_config_file(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base_url = os.environ["CANVAS_BASE_URL"]
    monkeypatch.delenv("CANVAS_BASE_URL")
    monkeypatch.delenv("CANVAS_API_TOKEN")
    token_file = tmp_path / "token"
    token_file.write_text(ADMIN_TOKEN + "\n")
    token_file.chmod(0o600)
    (tmp_path / "job.toml").write_text(
        f'[canvas]\nbase_url = "{base_url}"\ntoken_file = "token"\n'
        '[source]\npath = "mixed.csv"\n'
        '[sync]\njournal = "state/job.journal"\nreport = "reports/job.json"\nnotify = true\n'
    )
    assert sync("--config", "job.toml", "--no-plan") == 1
    summary = lines(capsys.readouterr().out)[-1]
    assert summary["journal"] == str(tmp_path / "state/job.journal")
    assert (tmp_path / "reports/job.json").exists()
    assert (tmp_path / "reports/job.failures.csv").exists()
    # The same config again resumes the finished journal: nothing is sent twice.
    before = sim.stats()["requests_by_endpoint"].get("create_enrollment", 0)
    assert sync("--config", "job.toml", "--no-plan") == 1
    assert sim.stats()["requests_by_endpoint"].get("create_enrollment", 0) == before
    assert "resuming" in capsys.readouterr().out


def test_a_journal_belongs_to_its_source(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sync("good.csv", "--journal", "g.journal", "--no-plan") == 0
    capsys.readouterr()
    assert sync("mixed.csv", "--journal", "g.journal") == 2
    assert "is the journal of good.csv" in capsys.readouterr().out


def test_verbose_log_file_has_every_request_and_never_the_token(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from canvas_tui.cli import main as cli_main
    from canvas_tui.logs import RedactSecrets

    assert cli_main(["sync", "good.csv", "-v", "--log-file", "http.log"]) == 0
    text = (tmp_path / "http.log").read_text()
    assert text.count("HTTP Request: POST") == 40
    assert "HTTP Request: GET" in text  # the token check
    assert ADMIN_TOKEN not in text and ADMIN_TOKEN not in capsys.readouterr().out
    # and a message that did quote a secret would be masked
    import logging

    record = logging.LogRecord("x", logging.INFO, "", 0, f"Bearer {ADMIN_TOKEN} x", None, None)
    RedactSecrets().filter(record)
    assert record.getMessage() == "Bearer *** x"


def test_a_sis_import_run_reports_like_rest_and_says_each_records_channel(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`--via sis-import`: the same progress lines, failures with line and hint, the same report;
    the import's state in the progress, the channel in the summary and per record."""
    code = sync("mixed.csv", "--via", "sis-import", "--journal", "i.journal", "--report", "r.json")
    assert code == 1
    events = lines(capsys.readouterr().out)
    chose = [e for e in events if e["event"] == "info" and e["message"].startswith("SIS import")]
    assert chose and chose[0]["via"] == "sis-import"
    assert chose[0]["message"].startswith("SIS import (--via sis-import): 48 changes")
    assert any(e["event"] == "progress" and "sis_import" in e for e in events)
    failed = [e for e in events if e["event"] == "record_failed"]
    assert sorted(e["category"] for e in failed) == ["invalid_input"] * 2 + ["user_not_found"] * 2
    assert all(e["hint"] and e["line"] > 1 for e in failed)
    unknown = [e for e in failed if e["category"] == "user_not_found"]
    assert all("User not found for enrollment" in e["message"] for e in unknown)
    summary = events[-1]
    assert summary["channels"] == {"sis_import": 48} and summary["via"] == "sis-import"
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"]["done"] == 46 and report["counts"]["failed"] == 4
    assert report["sis_imports"][0]["workflow_state"] == "imported_with_messages"
    channels = [r.get("channel") for r in report["records"]]
    assert channels.count("sis_import") == 48 and channels.count(None) == 2
    assert sim.stats()["requests_by_endpoint"].get("create_enrollment", 0) == 0


def test_a_sync_killed_while_canvas_imports_resumes_by_polling_the_same_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL once Canvas has the file: the next `sync` polls that import (its id is in the
    journal) and uploads nothing; every record ends done, exactly one import in Canvas."""
    world = World.generate(7)
    app = build_app(
        SimConfig(time_scale=10, sis_import_rate=2.0, sis_import_start_delay=0.0), world
    )
    write_csv(tmp_path / "in.csv", world, 120)

    def uploaded() -> int | None:
        try:
            conn = sqlite3.connect(tmp_path / "j.journal")
            try:
                found = conn.execute("SELECT sis_import_id FROM imports").fetchone()
            finally:
                conn.close()
        except sqlite3.Error:
            return None
        return found[0] if found else None

    with serve_in_thread(app) as base_url:
        proc = start_sync(
            tmp_path, base_url, "in.csv", "--via", "sis-import", "--journal", "j.journal"
        )
        sis_id = eventually(uploaded, what="the upload's id in the journal", abort_if=exited(proc))
        proc.kill()
        proc.communicate(timeout=30)
        assert len(app.sis_imports.imports) == 1
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("CANVAS_BASE_URL", base_url)
        monkeypatch.setenv("CANVAS_API_TOKEN", ADMIN_TOKEN)
        assert sync("in.csv", "--via", "sis-import", "--journal", "j.journal") == 0
    events = lines(capsys.readouterr().out)
    assert any(f"polling SIS import {sis_id}" in e.get("message", "") for e in events)
    summary = events[-1]
    assert (summary["done"], summary["total"]) == (120, 120)
    assert summary["channels"] == {"sis_import": 120}
    assert len(app.sis_imports.imports) == 1  # never uploaded twice
    assert app.stats()["requests_by_endpoint"].get("create_enrollment", 0) == 0


def test_the_progress_bar_puts_a_running_import_first() -> None:
    """On a TTY the line is cut at the terminal's width; while Canvas imports, the REST rate
    and its ETA (thousands of seconds at 0.5/s) say nothing: the import's progress and its
    time left lead, and the finished import stays as a summary after the usual figures."""
    import io
    from dataclasses import replace

    from canvas_tui.canvas.governor_state import GovernorState
    from canvas_tui.engine.state import ImportStatus, Phase, RunState
    from canvas_tui.headless import RichReporter
    from canvas_tui.records import State

    importing = ImportStatus(
        import_id=1,
        stage="polling",
        rows=2316,
        sis_import_id=101,
        workflow_state="importing",
        progress=40.0,
        elapsed=20.0,
    )
    state = RunState(
        phase=Phase.RUNNING,
        total=3006,
        counts={State.IN_FLIGHT: 2316, State.DONE: 684, State.FAILED: 5},
        elapsed=20.0,
        rate=0.5,
        rate_history=(),
        remaining_history=(),
        governor=GovernorState(
            limit=11,
            in_flight=0,
            remaining=600.0,
            high_water_mark=600.0,
            average_cost=0.1,
            cap=None,
        ),
        requests=140,
        throttled=0,
        retries=0,
        throttled_last_minute=0,
        retries_last_minute=0,
        failures_by_category={"invalid_input": 5},
        failures_version=1,
        eta=4637.0,
        sis_import=importing,
    )
    out = io.StringIO()
    reporter = RichReporter(out, force_terminal=False)
    reporter.progress(state)
    detail = reporter._progress.tasks[0].fields["detail"]
    assert detail.startswith("import 101 importing 40% of 2316 rows, ≈30s left |")
    assert "ETA" not in detail and "5 failed" in detail
    done = replace(importing, stage="finished", workflow_state="imported", progress=100.0)
    reporter.progress(replace(state, phase=Phase.FINISHED, eta=0.0, sis_import=done))
    detail = reporter._progress.tasks[0].fields["detail"]
    assert detail.startswith("0.5/s ETA 0s |") and "| import 101 imported 100%" in detail
    reporter.close()


async def test_json_progress_wakes_per_interval_and_at_each_phase_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """JSON lines come every `interval`, and a phase change is written at once; nothing looks at
    the run in between (issue 14: an idle run's 1 Hz tick)."""
    import asyncio
    import io

    from canvas_tui import headless
    from canvas_tui.engine.state import Phase

    reporter = headless.JsonReporter(io.StringIO())
    monkeypatch.setattr(reporter, "interval", 0.3)
    phase = [Phase.RUNNING]
    looks: list[Phase] = []

    def snapshot() -> object:
        looks.append(phase[0])
        return object()

    written: list[Phase] = []
    monkeypatch.setattr(reporter, "progress", lambda state: written.append(looks[-1]))
    changed = asyncio.Event()
    ticker = asyncio.create_task(headless._tick(snapshot, reporter, changed))  # type: ignore[arg-type]
    await asyncio.sleep(0.45)
    assert looks == [Phase.RUNNING, Phase.RUNNING]  # at 0 and 0.31 s, not every 0.1 s or so
    phase[0] = Phase.PAUSED
    changed.set()
    await asyncio.sleep(0.02)
    ticker.cancel()
    assert looks == [Phase.RUNNING, Phase.RUNNING, Phase.PAUSED] == written
