"""Hostile or broken input must not grow into huge messages, files or memory. The probe: one
2 MB row of a million fields gave a 5 MB message, a 21 MB failures CSV, a 32 MB journal and an
887 MB peak; a million-column header an 8.9 MB warning line."""

from __future__ import annotations

import json
import subprocess
import sys
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


# Runs canvas_tui in the child and, as it exits, keeps its VmHWM: the peak of its own memory
# since exec. ru_maxrss will not do: RUSAGE_CHILDREN is the peak of every child reaped so far,
# and even wait4's per-child figure starts at the parent's size (Linux records the forking
# parent's high-water mark when the child execs), so after other tests it read ~300 MB.
_MEASURED = """
import atexit, pathlib, runpy, sys
out = pathlib.Path(sys.argv[1])
def keep():
    status = pathlib.Path("/proc/self/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
    out.write_text(line.split()[1])
atexit.register(keep)
sys.argv = ["canvas_tui", *sys.argv[2:]]
runpy.run_module("canvas_tui", run_name="__main__", alter_sys=True)
"""


def _run_measured(args: list[str], *, cwd: Path) -> tuple[int, str, str, float]:
    """`python -m canvas_tui ARGS` in `cwd`: (exit code, stdout, stderr, its peak RSS in MB)."""
    peak = cwd / "child.vmhwm"
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED, str(peak), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr, int(peak.read_text()) / 1024  # kB


def test_a_million_field_row_stays_small_everywhere(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text(
        HEADER + "C1,U1,student,,active\n" + "C1,U2,student,,active" + ",x" * FIELDS + "\n"
    )
    returncode, stdout, stderr, peak_mb = _run_measured(
        ["sync", "in.csv", "--dry-run", "--report", "r.json"],
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
