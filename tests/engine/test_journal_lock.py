"""One run per journal. A second `canvas-tui sync --journal J` while the first runs would reset
the first's in-flight records and send them twice; it must exit 2 naming the holder instead. A
lock left by a process that died is taken over; the console's read-only view needs no lock."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from canvas_tui.engine.journal import Journal, JournalError
from canvas_tui.engine.lock import lock_path
from canvas_tui.simulator import World
from canvas_tui.simulator.testing import simulate_process, simulator_stats
from tests.engine.workload import write_csv
from tests.helpers import eventually, exited, start_sync

RECORDS = 200


def test_a_second_writer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    first = Journal(path)
    try:
        with pytest.raises(JournalError, match=rf"in use by PID {os.getpid()} since \d{{4}}-"):
            Journal(path)
        view = Journal(path, read_only=True)  # the console reads while the engine writes
        assert view.counts() is not None
        view.close()
    finally:
        first.close()
    assert not lock_path(path).exists()  # released and removed on close
    Journal(path).close()  # free again


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = f"PID {dead.pid} since 2026-01-01T00:00:00Z on elsewhere"
    lock_path(path).write_text(left + "\n")
    journal = Journal(path)
    try:
        assert journal.stale_lock == left
        assert lock_path(path).read_text().startswith(f"PID {os.getpid()} since ")
    finally:
        journal.close()


def _done(journal: Path) -> int:
    """Records done so far (0 while the journal is still being created)."""
    if not journal.exists():
        return 0
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM records WHERE state = 'done'").fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


@pytest.mark.slow
def test_overlapping_sync_runs_exit_2_and_send_nothing_twice(tmp_path: Path) -> None:
    write_csv(tmp_path / "in.csv", World.generate(7), RECORDS)
    journal = tmp_path / "j.sqlite"
    with simulate_process("--time-scale", "2", startup=20) as base_url:
        first = start_sync(tmp_path, base_url, "in.csv", "--journal", "j.sqlite")
        eventually(
            lambda: _done(journal) > 0, what="the first run's first record", abort_if=exited(first)
        )
        second = start_sync(tmp_path, base_url, "in.csv", "--journal", "j.sqlite")
        out, err = second.communicate(timeout=60)
        assert second.returncode == 2, (out, err)
        assert first.poll() is None, "the first run must still be running for this to prove it"
        message = next(e for e in map(json.loads, out.splitlines()) if e["event"] == "error")
        assert f"in use by PID {first.pid} since " in message["message"]
        out, err = first.communicate(timeout=120)
        assert first.returncode == 0, (out[-2000:], err[-2000:])
        stats = simulator_stats(base_url)
    assert stats["duplicates"] == 0
    assert stats["enrollments_created"] == RECORDS
    assert stats["reposts"] == 0  # nothing of the first run's was sent again
