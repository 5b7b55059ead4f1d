"""Output paths are checked before anything is sent (issue 12, item 2): a report or journal that
cannot be written exits 2 with one clear line, and Canvas sees no request at all."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from canvas_tui.outputs import output_path_problem
from canvas_tui.simulator import Simulator
from tests.helpers import lines, sync


def test_sync_report_into_a_directory_exits_2_and_sends_nothing(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("out").mkdir()
    assert sync("good.csv", "--report", "out") == 2
    out = capsys.readouterr().out
    errors = [e for e in lines(out) if e["event"] == "error"]
    assert len(errors) == 1
    assert errors[0]["message"] == "--report out: is a directory; give a file name"
    assert "Traceback" not in out
    assert sim.stats()["requests"] == 0
    assert not Path("runs").exists()  # and no journal was started


@pytest.mark.parametrize(
    ("flag", "name"),
    [("--report", "blocker/run.json"), ("--journal", "blocker/run.journal")],
)
def test_an_output_under_a_file_exits_2_before_anything_is_sent(
    sim: Simulator, capsys: pytest.CaptureFixture[str], flag: str, name: str
) -> None:
    Path("blocker").write_text("a file, not a directory")
    assert sync("good.csv", flag, name) == 2
    error = next(e for e in lines(capsys.readouterr().out) if e["event"] == "error")
    assert error["exit_code"] == 2
    assert "blocker is a file, not a directory" in error["message"]
    assert sim.stats()["requests"] == 0


def test_dry_run_checks_its_report_path_too(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("out").mkdir()
    assert sync("good.csv", "--dry-run", "--report", "out") == 2
    assert "is a directory" in capsys.readouterr().out


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any directory")
def test_a_read_only_directory_is_named(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        problem = output_path_problem(locked / "r.json")
        assert problem is not None and "not writable" in problem
    finally:
        locked.chmod(0o700)


def test_writable_paths_pass(tmp_path: Path) -> None:
    assert output_path_problem(tmp_path / "new" / "deeper" / "r.json") is None
    (tmp_path / "old.json").write_text(json.dumps({}))
    assert output_path_problem(tmp_path / "old.json") is None


def test_plan_out_that_cannot_be_written_exits_2_before_reading_rosters(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    from canvas_tui.cli import main as cli_main

    Path("plan.json").mkdir()
    assert cli_main(["plan", "good.csv", "--out", "plan"]) == 2
    assert "--out plan.json: is a directory" in capsys.readouterr().err
    assert sim.stats()["requests"] == 0
