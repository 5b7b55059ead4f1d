"""Kill a headless `canvas-tui sync` with SIGKILL mid-run, resume it from its journal.

Both processes are real: `canvas-tui simulate` on a free loopback port and `canvas-tui sync`.
After the resume every record is accounted for, the simulator holds no duplicate enrollment, and
no record that was done before the kill was sent again.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from canvas_tui.simulator import World
from canvas_tui.simulator.testing import simulate_process, simulator_stats
from tests.engine.helpers import journal_tally
from tests.engine.workload import write_csv
from tests.helpers import eventually, exited, start_sync

pytestmark = pytest.mark.slow

RECORDS = 300
BAD = 3


@pytest.fixture
def simulator() -> Iterator[str]:
    with simulate_process("--time-scale", "5", startup=20) as base_url:
        yield base_url


def _sync(tmp_path: Path, base: str) -> subprocess.Popen[str]:
    return start_sync(
        tmp_path, base, "in.csv", "--journal", "run.journal", CANVAS_TUI_PROGRESS_INTERVAL="0.2"
    )


def test_sigkill_mid_run_then_resume(tmp_path: Path, simulator: str) -> None:
    write_csv(tmp_path / "in.csv", World.generate(7), RECORDS, bad=BAD)
    journal = tmp_path / "run.journal"

    first = _sync(tmp_path, simulator)

    def a_quarter_done() -> bool:
        if not journal.exists():
            return False
        try:
            counts, _ = journal_tally(journal)
        except sqlite3.OperationalError:  # the schema is still being created
            return False
        return counts.get("done", 0) >= RECORDS // 4

    eventually(a_quarter_done, what="a quarter of the records done", abort_if=exited(first))
    first.send_signal(signal.SIGKILL)
    first.wait(10)

    before, done_before = journal_tally(journal)
    stats_before = simulator_stats(simulator)
    assert 0 < before.get("done", 0) < RECORDS - BAD, before  # killed mid-run
    assert sum(before.values()) == RECORDS

    second = _sync(tmp_path, simulator)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 1, err  # the bad rows failed; everything else went through
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["event"] == "summary"
    assert summary["failed"] == BAD
    assert summary["done"] == RECORDS - BAD

    after, done_after = journal_tally(journal)
    assert after == {"done": RECORDS - BAD, "failed": BAD}
    # No record that was done before the kill was sent again: its attempts did not grow.
    assert {r: done_after[r] for r in done_before} == done_before
    stats = simulator_stats(simulator)
    assert stats["duplicates"] == 0
    assert stats["enrollments_created"] == RECORDS - BAD
    # Only records in flight at the kill could be re-posted onto an existing row.
    resent = stats["reposts"] - stats_before["reposts"]
    assert resent <= before.get("in_flight", 0)
