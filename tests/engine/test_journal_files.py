"""The journal on disk is one file a person can copy into a ticket (issue 12, item 3): complete
without its -wal after the console quits, and untouched (no -wal/-shm) when opened --read-only."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from canvas_tui.config import Config, SyncConfig
from canvas_tui.engine.journal import Journal, journals_in
from canvas_tui.engine.plan.executor import journal_paths
from canvas_tui.engine.remote import start_engine
from canvas_tui.engine.session import open_session
from canvas_tui.engine.trace import journal_files
from canvas_tui.records import State
from canvas_tui.simulator import LatencyModel, SimConfig, World, build_app
from canvas_tui.simulator.testing import serve_in_thread
from canvas_tui.sources import open_source
from canvas_tui.tui.serve import latest_journal
from tests.engine.conftest import engine_spec, sim_config
from tests.engine.workload import write_csv
from tests.helpers import eventually_async

RECORDS = 60


@pytest.fixture
def base_url() -> Iterator[str]:
    app = build_app(
        SimConfig(seed=7, time_scale=10.0, latency=LatencyModel.uniform(0.3)), World.generate(7)
    )
    with serve_in_thread(app) as url:
        yield url


def counts_of_the_file_alone(journal: Path, tmp_path: Path) -> dict[str, int]:
    """Copy only the journal file (as into a ticket), then count its records by state."""
    alone = tmp_path / "ticket" / "journal.sqlite"
    alone.parent.mkdir()
    shutil.copyfile(journal, alone)
    conn = sqlite3.connect(alone)
    try:
        return dict(conn.execute("SELECT state, COUNT(*) FROM records GROUP BY state"))
    finally:
        conn.close()


async def test_after_a_console_quit_the_journal_file_alone_has_the_final_counts(
    base_url: str, tmp_path: Path
) -> None:
    write_csv(tmp_path / "in.csv", World.generate(7), RECORDS, bad=1)
    journal = tmp_path / "run" / "journal.sqlite"
    session = start_engine(engine_spec(base_url, tmp_path / "in.csv", journal))
    view = Journal(journal, read_only=True)  # the console's queue reads with its own connection
    await session.load()
    run = asyncio.create_task(session.run())
    await eventually_async(
        lambda: session.runner.snapshot().counts.get(State.DONE, 0) > 0, what="a record done"
    )
    final = await run
    assert view.count() == RECORDS
    await session.close()  # the console quits: the engine closes first, the readers after
    view.close()

    expected = {str(state): n for state, n in final.counts.items() if n}
    assert expected[str(State.DONE)] > 0
    assert counts_of_the_file_alone(journal, tmp_path) == expected


def test_read_only_leaves_no_wal_or_shm_beside_the_journal(tmp_path: Path) -> None:
    write_csv(tmp_path / "in.csv", World.generate(7), 5)
    journal = tmp_path / "runs" / "journal.sqlite"
    source = open_source(str(tmp_path / "in.csv"))
    store = Journal(journal)
    store.load(source, description=source.description)
    store.close()
    assert sorted(p.name for p in journal.parent.iterdir()) == ["journal.sqlite"]

    session = open_session(sim_config(), journal_path=journal, read_only=True)
    try:
        assert session.store.count() == 5
    finally:
        asyncio.run(session.close())
    assert sorted(p.name for p in journal.parent.iterdir()) == ["journal.sqlite"]


def test_the_journals_of_a_directory_are_listed_one_way_everywhere(tmp_path: Path) -> None:
    """The plan's known enrollments, `trace` and `serve` list a directory's journals through
    `journals_in`: its `*.journal` files by name, never a directory or another file."""
    runs = tmp_path / "runs"
    runs.mkdir()
    for name in ("b.journal", "a.journal", "notes.txt"):
        (runs / name).write_text("")
    (runs / "c.journal").mkdir()  # a directory so named is no journal
    os.utime(runs / "a.journal", (1e9, 1e9))  # b was written last
    want = [runs / "a.journal", runs / "b.journal"]
    assert journals_in(runs) == want
    assert journals_in(tmp_path / "missing") == [] and journals_in(None) == []
    assert journal_paths(Config(sync=SyncConfig(journal_dir=runs))) == want
    assert journal_files(runs) == [p.resolve() for p in want]
    assert latest_journal(runs) == runs / "b.journal"
