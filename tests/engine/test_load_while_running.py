"""The runner claims records while the load is still adding them (issue 14: the first POST comes
after a few hundred rows, not after the whole source), and every record still ends accounted
for: counts reconcile, rows the source rejected are reported as they are loaded, a cancel stops
the load where it is, and a crash mid-load resumes without duplicates."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpx import ASGITransport

from canvas_tui.canvas.governor import Governor
from canvas_tui.engine.session import Session, open_session
from canvas_tui.engine.state import Event, Phase, RecordChanged
from canvas_tui.records import SourceItem, State
from canvas_tui.simulator import SimConfig, World, build_app
from canvas_tui.simulator.testing import asgi_transport, simulate_process, simulator_stats
from canvas_tui.sources import CsvSource
from tests.engine.conftest import sim_config
from tests.engine.helpers import journal_tally
from tests.engine.workload import write_csv
from tests.helpers import eventually_async, start_sync


class HeldSource:
    """A CSV source that stops after its first `held` items until `release` is set: the load
    is still going while the run sends what was loaded before it."""

    def __init__(self, path: Path, held: int) -> None:
        self._inner = CsvSource(path)
        self.description = self._inner.description
        self.layout = self._inner.layout
        self.notes: list[str] = []
        self.held = held
        self.release = threading.Event()
        self.reached = threading.Event()

    def __iter__(self) -> Iterator[SourceItem]:
        for n, item in enumerate(self._inner):
            if n == self.held:
                self.reached.set()
                self.release.wait(30)
            yield item


def _session(source: HeldSource | CsvSource, journal: Path, transport: ASGITransport) -> Session:
    return open_session(
        sim_config(),
        source=source,
        journal_path=journal,
        transport=transport,
        governor=Governor(leak=10.0 * 50),
    )


async def test_records_go_out_while_the_load_goes_on(tmp_path: Path) -> None:
    world = World.generate(7)
    app = build_app(SimConfig(time_scale=50), world)
    rows = write_csv(tmp_path / "in.csv", world, 600, bad=3)
    source = HeldSource(tmp_path / "in.csv", held=300)  # 200 committed, then 100 in the chunk
    session = _session(source, tmp_path / "j", asgi_transport(app))
    events: list[Event] = []
    session.runner.subscribe(events.append)
    run = asyncio.create_task(session.run(load_while_running=True))
    await eventually_async(
        lambda: session.runner.snapshot().counts[State.DONE] >= 150,
        what="records sent while the load is held",
        timeout=30,
    )
    # the load is held at row 300: nothing beyond the committed chunks was claimed, and the
    # run waits for the rest instead of finishing
    assert source.reached.is_set() and not session.store.loaded
    assert session.runner.loading and not run.done()
    assert session.runner.snapshot().total <= 300
    source.release.set()
    state = await asyncio.wait_for(run, 60)
    assert state.phase == Phase.FINISHED
    assert session.store.loaded
    assert state.total == len(rows) == state.finished == session.store.count()
    assert state.counts == session.store.counts()  # the counts kept while loading reconcile
    assert state.counts[State.DONE] == 597
    assert state.failures_by_category == {"invalid_input": 3}
    # the rows the source rejected are reported as they are loaded, like a failed send
    rejected = [e for e in events if isinstance(e, RecordChanged) and e.state == State.FAILED]
    assert sorted(e.record_id for e in rejected) == [598, 599, 600]
    assert all(e.category == "invalid_input" for e in rejected)
    stats = app.stats()
    assert stats["enrollments_created"] == 597 and stats["duplicates"] == 0
    await session.close()


async def test_a_cancel_mid_load_stops_it_and_the_next_run_continues(tmp_path: Path) -> None:
    world = World.generate(7)
    app = build_app(SimConfig(time_scale=50), world)
    write_csv(tmp_path / "in.csv", world, 500)
    source = HeldSource(tmp_path / "in.csv", held=250)
    session = _session(source, tmp_path / "j", asgi_transport(app))
    run = asyncio.create_task(session.run(load_while_running=True))
    await eventually_async(
        lambda: session.runner.snapshot().counts[State.DONE] >= 100,
        what="records sent while the load is held",
        timeout=30,
    )
    session.runner.cancel()
    await asyncio.sleep(0.1)
    source.release.set()  # the load reads on only to see that it must stop
    state = await asyncio.wait_for(run, 30)
    assert state.phase == Phase.CANCELLED
    assert not session.store.loaded  # stopped mid-way: the next run continues the load
    loaded = session.store.count()
    assert 200 <= loaded < 500
    assert state.counts == session.store.counts()
    done_before = state.counts[State.DONE]
    await session.close()

    again = _session(CsvSource(tmp_path / "in.csv"), tmp_path / "j", asgi_transport(app))
    state = await asyncio.wait_for(again.run(load_while_running=True), 60)
    assert state.phase == Phase.FINISHED
    assert state.total == 500 == state.counts[State.DONE]
    assert state.counts == again.store.counts()
    assert done_before < 500
    stats = app.stats()
    assert stats["enrollments_created"] == 500 and stats["duplicates"] == 0
    await again.close()


# The child: a sync whose source is held after HELD rows; it dies (os._exit, no cleanup: what
# a SIGKILL leaves) once DONE records are done, while the load is still going.
_CHILD = """
import asyncio, os, sys
from pathlib import Path
from canvas_tui.canvas.governor import Governor
from canvas_tui.engine.session import open_session
from canvas_tui.records import State
from tests.engine.conftest import sim_config
from tests.engine.test_load_while_running import HeldSource

base, csv_path, journal = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])

async def main() -> None:
    source = HeldSource(csv_path, held=int(sys.argv[4]))
    session = open_session(sim_config(base), source=source, journal_path=journal,
                           governor=Governor(leak=10.0 * 5))
    asyncio.create_task(session.run(load_while_running=True))
    while session.runner.snapshot().counts[State.DONE] < int(sys.argv[5]):
        await asyncio.sleep(0.01)
    os._exit(9)

asyncio.run(main())
"""


@pytest.mark.slow
def test_a_crash_mid_load_resumes_every_record_once(tmp_path: Path) -> None:
    world = World.generate(7)
    write_csv(tmp_path / "in.csv", world, 400, bad=2)
    journal = tmp_path / "run.journal"
    root = Path(__file__).resolve().parents[2]
    with simulate_process("--time-scale", "5", startup=20) as base:
        argv = [base, str(tmp_path / "in.csv"), str(journal), "350", "20"]
        child = subprocess.run(  # our own interpreter and script, no shell
            [sys.executable, "-c", _CHILD, *argv],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert child.returncode == 9, child.stderr
        before, done_before = journal_tally(journal)
        assert _meta(journal, "loaded") is None  # it died mid-load
        assert done_before and sum(before.values()) <= 350  # (the last batch may be lost)
        stats_before = simulator_stats(base)

        resume = start_sync(
            tmp_path, base, str(tmp_path / "in.csv"), "--journal", "run.journal", "--no-plan"
        )
        out, err = resume.communicate(timeout=120)
        assert resume.returncode == 1, (out, err)  # the bad rows failed; the rest went through
        stats = simulator_stats(base)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["event"] == "summary"
    assert (summary["done"], summary["failed"]) == (398, 2)
    after, done_after = journal_tally(journal)
    assert after == {"done": 398, "failed": 2}
    # No record done before the crash was sent again: its attempts did not grow.
    assert {r: done_after[r] for r in done_before} == done_before
    assert stats["duplicates"] == 0
    assert stats["enrollments_created"] == 398
    # only records in flight at the crash could be re-posted onto an existing row
    assert stats["reposts"] - stats_before["reposts"] <= before.get("in_flight", 0)


def _meta(journal: Path, key: str) -> str | None:
    conn = sqlite3.connect(journal)
    try:
        found = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    finally:
        conn.close()
    return None if found is None else str(found[0])
