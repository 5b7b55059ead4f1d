"""`check`, `plan` and `sync` count the same file with the same words (issue 12, item 5):
records, invalid (they fail in a sync), duplicates (skipped in a sync)."""

from __future__ import annotations

from pathlib import Path

import pytest

from canvas_tui.cli import main as cli_main
from canvas_tui.simulator import Simulator
from tests.helpers import lines, sync


def test_one_file_one_count_across_check_plan_and_sync(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    good = Path("good.csv").read_text().splitlines()  # header + 40 records
    bad = good[1].replace("active", "bogus")
    Path("same.csv").write_text("\n".join([*good, bad, good[2]]) + "\n")  # +1 invalid +1 repeat

    assert cli_main(["check", "same.csv"]) == 2
    assert "42 rows: 40 records, 1 invalid, 1 duplicates" in capsys.readouterr().out

    assert cli_main(["plan", "same.csv", "--out", "plan"]) == 0  # invalid rows: check's job
    out = capsys.readouterr().out
    assert "plan: 40 records, 1 invalid, 1 duplicates" in out
    assert "records: create 40  " in out

    assert sync("same.csv", "--plan") == 1
    events = lines(capsys.readouterr().out)
    decision = next(e for e in events if e.get("mode") == "plan" and "plan_create" in e)
    assert decision["plan_create"] == 40 and "plan_none" not in decision  # records only
    assert decision["plan_canvas_only"] > 0  # the world's own enrollments, counted apart
    summary = events[-1]
    assert summary["counts"]["failed"] == 1 and summary["counts"]["skipped"] == 1
    assert summary["counts"]["done"] == 40
