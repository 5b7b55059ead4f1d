"""Kill `canvas-tui watch` with SIGKILL while the registrar keeps writing, start it again: every
change reaches Canvas, none is lost and none is journaled (or created) twice.

Both processes are real: `canvas-tui simulate` on a free loopback port and `canvas-tui watch`
over a SQLite SIS table whose `seq` column is the change cursor.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from canvas_tui.simulator import ADMIN_TOKEN, World
from canvas_tui.simulator.testing import simulate_process, simulator_stats
from tests.helpers import eventually, exited
from tests.watch.helpers import QUERY, SqliteSis, pairs

pytestmark = pytest.mark.slow

ROWS = 90
DROPPED = 10  # rows the SIS then marks deleted (a status change: one more change each)


@pytest.fixture
def simulator() -> Iterator[str]:
    with simulate_process("--time-scale", "5", startup=20) as base_url:
        yield base_url


def _config(tmp_path: Path, sis: SqliteSis) -> Path:
    path = tmp_path / "canvas-tui.toml"
    path.write_text(
        f"[source]\nkind = 'sql'\nurl = '{sis.url}'\nquery = '{QUERY}'\n"
        "[watch]\ninterval = 0.05\ncursor_column = 'seq'\ncursor_overlap = 3\n"
        "row_id_column = 'id'\ndrift_at = ''\n"
    )
    return path


def _watch(tmp_path: Path, base_url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "canvas_tui",
            "watch",
            "--config",
            "canvas-tui.toml",
            "--journal",
            "watch.journal",
        ],
        cwd=tmp_path,
        env={**os.environ, "CANVAS_BASE_URL": base_url, "CANVAS_API_TOKEN": ADMIN_TOKEN},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _records(journal: Path) -> list[tuple[str, str, str]]:
    """(user, status, state) of every record."""
    try:
        db = sqlite3.connect(journal)
        try:
            return [tuple(r) for r in db.execute("SELECT user, status, state FROM records")]
        finally:
            db.close()
    except sqlite3.OperationalError:  # the schema is still being created
        return []


def _done(journal: Path) -> set[tuple[str, str]]:
    """(user, status) of the records done."""
    return {(user, status) for user, status, state in _records(journal) if state == "done"}


def _progress(journal: Path, sis: SqliteSis, wanted: set[tuple[str, str]]) -> dict[str, object]:
    """Where a wait stopped: the records by state, those not done (with why), the changes the
    SIS made that no record holds, and the cursor against the SIS's last seq."""
    db = sqlite3.connect(journal)
    try:
        rows = db.execute("SELECT record_id, user, status, state, message FROM records").fetchall()
        cursor = db.execute("SELECT value FROM meta WHERE key = 'watch_cursor'").fetchone()
    finally:
        db.close()
    states: dict[str, int] = {}
    for row in rows:
        states[row[3]] = states.get(row[3], 0) + 1
    return {
        "records": len(rows),
        "states": states,
        "not_done": [r for r in rows if r[3] != "done"],
        "not_journaled": sorted(wanted - {(r[1], r[2]) for r in rows}),
        "cursor": cursor and cursor[0],
        "sis_seq": sis.seq,
    }


def test_sigkill_while_the_source_changes_then_resume(tmp_path: Path, simulator: str) -> None:
    sis = SqliteSis(tmp_path / "sis.db")
    chosen = pairs(World.generate(7), ROWS)  # `simulate`'s world is seed 7 too
    _config(tmp_path, sis)
    journal = tmp_path / "watch.journal"
    stop_writing = threading.Event()
    changes = {(f"sis_user_id:{user}", "active") for user, _, _ in chosen}
    changes |= {(f"sis_user_id:{user}", "deleted") for user, _, _ in chosen[:DROPPED]}
    inserted = {(f"sis_user_id:{user}", "active") for user, _, _ in chosen[:DROPPED]}

    def registrar() -> None:  # inserts at ~50/s, then marks some deleted
        for n, pair in enumerate(chosen, start=1):
            sis.put(n, pair)
            stop_writing.wait(0.02)
        # An insert and the deletion after it are two changes only if the service reads the row
        # in between: the SIS keeps a row's latest state (as any registrar's table does), so a
        # read after both sees the deletion alone. Under load the service started so late that
        # its first read came after some deletions, and the wait below for 100 changes could
        # never end (about 95 records journaled, all done). So the deletions wait until the
        # inserts they follow are done in Canvas: done, not just journaled, as a pending insert
        # is superseded by its deletion (by design). On a quiet machine they are done long
        # before, so the registrar writes on across the kill as before.
        while not stop_writing.is_set() and not inserted.issubset(_done(journal)):
            stop_writing.wait(0.02)
        for n in range(1, DROPPED + 1):
            sis.put(n, chosen[n - 1], status="deleted")
            stop_writing.wait(0.02)

    writer = threading.Thread(target=registrar)
    first = _watch(tmp_path, simulator)
    writer.start()
    try:
        eventually(
            lambda: sum(r[2] == "done" for r in _records(journal)) >= 20,
            what="20 changes done",
            abort_if=exited(first),
        )
        first.send_signal(signal.SIGKILL)  # mid-stream: the registrar keeps writing
        first.wait(10)
        killed_at = len(_records(journal))
        assert killed_at < ROWS + DROPPED

        second = _watch(tmp_path, simulator)
        try:
            writer.join(30)
            wanted = ROWS + DROPPED
            eventually(
                lambda: [r[2] for r in _records(journal)].count("done") == wanted,
                what="every change done after the restart",
                timeout=60,
                abort_if=exited(second),
                detail=lambda: _progress(journal, sis, changes),
            )
            second.send_signal(signal.SIGTERM)
            out, err = second.communicate(timeout=30)
        finally:
            if second.poll() is None:
                second.kill()
        assert second.returncode == 0, err
        lines = [json.loads(line) for line in out.splitlines() if line.strip()]
        assert lines[-1]["event"] == "stopped"
    finally:
        stop_writing.set()
        writer.join(30)
        if first.poll() is None:
            first.kill()

    records = _records(journal)
    # one record per change: no change lost, none journaled twice
    assert len(records) == ROWS + DROPPED
    assert len(set(records)) == ROWS + DROPPED
    assert {r[2] for r in records} == {"done"}
    stats = simulator_stats(simulator)
    assert stats["duplicates"] == 0
    assert stats["enrollments_created"] == ROWS
