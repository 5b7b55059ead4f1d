"""The journal's disk fills mid-run: the run stops at once (no hang), the error names the cause
and the journal, the exit code is 3, and a resume after freeing space completes with nothing
sent twice.

Two ways to fill it: SQLite's own page limit (`max_page_count`, works anywhere), and a real
small tmpfs under a real `canvas-tui sync` (needs mount(2), so root: skipped otherwise)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from canvas_tui.engine.state import Phase
from canvas_tui.records import State
from canvas_tui.simulator import SimConfig, World, build_app
from canvas_tui.simulator.testing import asgi_transport, simulate_process, simulator_stats
from tests.engine.conftest import session_for
from tests.engine.workload import write_csv
from tests.helpers import start_sync

RECORDS = 400
PAGES_OF_ROOM = 6  # room for a few batches of results, far from all of them


def _limit_pages(conn: sqlite3.Connection) -> None:
    """From now on the writer's connection may grow the file by only a few pages."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + PAGES_OF_ROOM}")


async def test_page_limit_stops_the_run_then_resume_completes(tmp_path: Path) -> None:
    world = World.generate(7)
    app = build_app(SimConfig(time_scale=50), world)
    write_csv(tmp_path / "in.csv", world, RECORDS)
    journal = tmp_path / "run.journal"
    session = session_for(tmp_path / "in.csv", journal, transport=asgi_transport(app))
    await session.load()
    session.store.write_sync(_limit_pages)

    # Today's code hangs here: the writer thread dies and the next claim never resolves.
    state = await asyncio.wait_for(session.run(), 60)
    assert state.phase == Phase.ABORTED
    assert state.abort_reason is not None
    assert "database or disk is full" in state.abort_reason
    assert str(journal) in state.abort_reason
    assert "--journal" in state.abort_reason  # how to resume
    assert 0 < state.counts[State.DONE] < RECORDS  # it stopped part-way
    assert session.store.failure is not None
    await session.close()
    sent_before = app.stats()["enrollments_created"]
    assert 0 < sent_before < RECORDS  # no record was sent after the failure was seen in bulk

    # Space freed (a new connection has no page limit): the resume sends the rest, once each.
    again = session_for(tmp_path / "in.csv", journal, transport=asgi_transport(app))
    state = await asyncio.wait_for(again.run(), 60)
    await again.close()
    assert state.phase == Phase.FINISHED
    assert state.counts[State.DONE] == RECORDS
    stats = app.stats()
    assert stats["duplicates"] == 0
    assert stats["enrollments_created"] == RECORDS


# ---- a real full file system under the real command ---------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: room for the loaded journal, not for the run's results."""
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        pytest.skip(f"cannot mount a small file system here: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small file system here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        with contextlib.suppress(OSError):
            subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_full_tmpfs_exits_3_naming_the_journal_then_resumes(
    tmp_path: Path, small_disk: Path
) -> None:
    write_csv(tmp_path / "in.csv", World.generate(7), RECORDS)
    journal = small_disk / "run.journal"
    with simulate_process("--time-scale", "20", startup=20) as base_url:
        first = start_sync(tmp_path, base_url, "in.csv", "--journal", str(journal))
        try:
            out, err = first.communicate(timeout=90)  # today: never returns
        finally:
            first.kill()
        assert first.returncode == 3, (out[-2000:], err[-2000:])
        errors = [e for e in map(json.loads, out.splitlines()) if e["event"] == "error"]
        assert any(
            "disk is full" in e["message"] and str(journal) in e["message"] for e in errors
        ), errors
        assert "Traceback" not in err
        sent = simulator_stats(base_url)["enrollments_created"]
        assert 0 < sent < RECORDS

        # Free space: grow the file system, then resume.
        subprocess.run(
            ["mount", "-o", "remount,size=64m", str(small_disk)],
            check=True,
        )
        started = time.monotonic()
        second = start_sync(tmp_path, base_url, "in.csv", "--journal", str(journal))
        out, err = second.communicate(timeout=90)
        assert second.returncode == 0, (out[-2000:], err[-2000:], time.monotonic() - started)
        stats = simulator_stats(base_url)
    assert stats["duplicates"] == 0
    assert stats["enrollments_created"] == RECORDS
