"""Hostile or broken input must not grow into huge messages, files or memory. The probe: one
2 MB row of a million fields gave a 5 MB message, a 21 MB failures CSV, a 32 MB journal and an
887 MB peak; a million-column header an 8.9 MB warning line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from canvas_tui.records import MAX_MESSAGE, InputError
from canvas_tui.sources import CsvSource

HEADER = "course_id,user_id,role,section_id,status\n"
FIELDS = 1_000_000


def test_a_million_column_header_is_a_short_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text(HEADER.strip() + ",x" * FIELDS + "\nC1,U1,student,,active\n")
    with pytest.raises(InputError) as refused:
        list(CsvSource(path))
    message = str(refused.value)
    assert f"the header has {FIELDS + 5} columns; at most 1000" in message
    assert len(message) < 500


def _run_measured(args: list[str], *, cwd: Path) -> tuple[int, str, str, float]:
    """Run a child to its end: (exit code, stdout, stderr, its own peak RSS in MB). wait4 gives
    that child's rusage alone (RUSAGE_CHILDREN is the peak of every child reaped so far)."""
    out, err = cwd / "child.out", cwd / "child.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        child = subprocess.Popen(args, cwd=cwd, stdout=stdout, stderr=stderr)
    timer = threading.Timer(120, child.kill)
    timer.start()
    try:
        _pid, status, usage = os.wait4(child.pid, 0)
    finally:
        timer.cancel()
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait again
    text = {p: p.read_text(encoding="utf-8", errors="replace") for p in (out, err)}
    return child.returncode, text[out], text[err], usage.ru_maxrss / 1024  # KiB on Linux


def test_a_million_field_row_stays_small_everywhere(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text(
        HEADER + "C1,U1,student,,active\n" + "C1,U2,student,,active" + ",x" * FIELDS + "\n"
    )
    returncode, stdout, stderr, peak_mb = _run_measured(
        [sys.executable, "-m", "canvas_tui", "sync", "in.csv", "--dry-run", "--report", "r.json"],
        cwd=tmp_path,
    )
    assert returncode == 2, stderr[-2000:]  # a dry run with an invalid row
    failed = [e for e in map(json.loads, stdout.splitlines()) if e["event"] == "record_failed"]
    assert len(failed) == 1
    message = failed[0]["message"]
    assert "1000005 fields, expected 5 as in the header (line 1)" in message
    assert "(999990 more)" in message
    assert len(message) <= MAX_MESSAGE + 100
    assert len(stdout) < 20_000
    assert (tmp_path / "r.json").stat().st_size < 20_000
    assert (tmp_path / "r.failures.csv").stat().st_size < 5_000
    # the CSV reader holds the parsed row once (~60 MB of small strings); nothing multiplies it
    assert peak_mb < 200, peak_mb  # measured 80 MB; 844 MB before
