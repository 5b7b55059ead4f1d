"""The engine in a process of its own (engine/worker.py, engine/remote.py), as the console runs it.

Real processes and a real socket throughout: the simulator is served on loopback in this process,
the engine runs in a spawned Python, and this test plays the console.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from canvas_tui.canvas.errors import CanvasError, Category
from canvas_tui.engine.remote import RemoteSession, engine_log_path, start_engine
from canvas_tui.engine.state import Phase, RunPhaseChanged
from canvas_tui.engine.worker import EngineError
from canvas_tui.records import InputError, State
from canvas_tui.simulator import LatencyModel, SimConfig, World, build_app
from canvas_tui.simulator.testing import serve_in_thread, simulator_stats
from tests.engine.conftest import engine_spec, sim_config
from tests.engine.workload import write_csv
from tests.helpers import eventually, eventually_async, exited, never_within_async

TIME_SCALE = 10.0
RECORDS = 120
BAD = 2


def _served() -> Iterator[str]:
    app = build_app(
        SimConfig(seed=7, time_scale=TIME_SCALE, latency=LatencyModel.uniform(0.3)),
        World.generate(7),
    )
    with serve_in_thread(app) as url:
        yield url


base_url = pytest.fixture(scope="module")(_served)
fresh_base_url = pytest.fixture(_served)  # a Canvas that has seen none of these rows yet


@pytest.fixture
def csv_path(tmp_path: Path) -> Path:
    write_csv(tmp_path / "in.csv", World.generate(7), RECORDS, bad=BAD, unknown_users=1)
    return tmp_path / "in.csv"


def journal_counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT state, COUNT(*) FROM records GROUP BY state"))
    finally:
        conn.close()


async def test_a_run_in_the_engine_process_reconciles(
    base_url: str, csv_path: Path, tmp_path: Path
) -> None:
    session = start_engine(engine_spec(base_url, csv_path, tmp_path / "run.journal"))
    phases: list[Phase] = []
    session.runner.subscribe(
        lambda e: phases.append(e.phase) if isinstance(e, RunPhaseChanged) else None
    )
    rows: list[int] = []
    assert await session.load(on_progress=rows.append) == RECORDS
    assert rows and rows[-1] == RECORDS  # progress came over the socket
    assert session.store.count() == RECORDS  # the console reads the journal itself
    run = asyncio.create_task(session.run())
    await eventually_async(
        lambda: session.runner.snapshot().counts.get(State.DONE, 0) > 0, what="a record done"
    )
    final = await run
    await session.close()

    assert final.phase is Phase.FINISHED
    assert final.counts == session.runner.snapshot().counts
    assert final.counts[State.DONE] == RECORDS - BAD - 1
    assert final.counts[State.FAILED] == BAD + 1
    assert sum(final.counts.values()) == RECORDS
    assert Phase.RUNNING in phases and phases[-1] is Phase.FINISHED
    assert session.process.returncode == 0
    assert journal_counts(tmp_path / "run.journal") == {
        "done": RECORDS - BAD - 1,
        "failed": BAD + 1,
    }
    assert not engine_log_path(tmp_path / "run.journal").exists()  # nothing went wrong: no log


async def test_commands_reach_the_engine_and_answer(
    base_url: str, csv_path: Path, tmp_path: Path
) -> None:
    session = start_engine(engine_spec(base_url, csv_path, tmp_path / "run.journal"))
    await session.load()
    # records 1-5 are skipped before anything is sent; the answer comes back at once
    assert all(session.runner.skip(n) for n in range(1, 6))
    assert session.runner.snapshot().counts[State.SKIPPED] == 5  # the reply's own snapshot
    assert not session.runner.skip(1)  # already final
    session.runner.set_concurrency_cap(2)
    run = asyncio.create_task(session.run())
    await eventually_async(
        lambda: session.runner.snapshot().counts.get(State.DONE, 0) >= 10, what="ten records done"
    )
    assert session.runner.snapshot().governor.cap == 2
    assert session.runner.snapshot().governor.in_flight <= 2
    session.runner.pause()
    await eventually_async(
        lambda: (
            session.runner.snapshot().phase is Phase.PAUSED
            and session.runner.snapshot().counts.get(State.IN_FLIGHT, 0) == 0
        ),
        what="paused with nothing in flight",
    )
    done = session.runner.snapshot().counts[State.DONE]
    await never_within_async(
        lambda: session.runner.snapshot().counts[State.DONE] != done,
        0.5,
        what="a record done while paused",
    )
    assert session.runner.send_one()
    await eventually_async(
        lambda: session.runner.snapshot().finished > done + 5, what="five more records finished"
    )
    assert session.runner.retry(1)  # skipped -> pending
    session.runner.resume()
    final = await run
    await session.close()
    assert final.phase is Phase.FINISHED
    assert final.counts[State.SKIPPED] == 4
    assert final.counts[State.DONE] + final.counts[State.FAILED] == RECORDS - 4


async def test_errors_come_back_as_themselves(
    base_url: str, csv_path: Path, tmp_path: Path
) -> None:
    journal = tmp_path / "run.journal"
    session = start_engine(engine_spec(base_url, csv_path, journal))
    await session.load()
    with pytest.raises(CanvasError) as raised:
        await session.client.get_course("sis_course_id:NO-SUCH-COURSE")
    assert raised.value.category is Category.COURSE_NOT_FOUND
    assert raised.value.status == 404
    course = await session.client.get_course("sis_course_id:E411208")
    pages: list[tuple[int, int]] = []
    roster = await session.client.list_enrollments(
        course=str(course["id"]), on_page=lambda *page: pages.append(page)
    )
    assert roster and pages and pages[-1][1] == len(roster)
    await session.close()

    other = tmp_path / "other.csv"
    await asyncio.to_thread(other.write_bytes, csv_path.read_bytes())  # noqa: ASYNC240
    with pytest.raises(InputError, match="is the journal of"):
        start_engine(engine_spec(base_url, other, journal))


async def test_the_engine_dying_shows_as_an_aborted_run(
    base_url: str, csv_path: Path, tmp_path: Path
) -> None:
    session = start_engine(engine_spec(base_url, csv_path, tmp_path / "run.journal"))
    await session.load()
    aborted: list[RunPhaseChanged] = []
    session.runner.subscribe(
        lambda e: (
            aborted.append(e)
            if isinstance(e, RunPhaseChanged) and e.phase is Phase.ABORTED
            else None
        )
    )
    run = asyncio.create_task(session.run())
    await eventually_async(
        lambda: session.runner.snapshot().counts.get(State.DONE, 0) > 5, what="six records done"
    )
    session.process.kill()
    with pytest.raises(EngineError, match="engine process stopped"):
        await run
    state = session.runner.snapshot()
    assert state.phase is Phase.ABORTED and "exit code -9" in (state.abort_reason or "")
    assert aborted and aborted[0].reason == state.abort_reason
    assert session.runner.skip(RECORDS) is False  # commands are refused, not raised
    await session.close()


CONSOLE = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from canvas_tui.engine.remote import start_engine
    from canvas_tui.engine.worker import EngineSpec
    from tests.engine.conftest import sim_config

    base, csv, journal, leak = sys.argv[1:]
    session = start_engine(EngineSpec(
        sim_config(base), source=Path(csv), journal_path=Path(journal), governor_leak=float(leak)
    ))
    print(session.process.pid, flush=True)

    async def main():
        await session.load()
        await session.run()

    asyncio.run(main())
    """
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_a_killed_console_leaves_a_consistent_journal(
    fresh_base_url: str, csv_path: Path, tmp_path: Path
) -> None:
    """SIGKILL the console mid-run: the engine sees its socket close, lets the requests in
    flight finish, closes the journal and exits; nothing is left in flight or lost."""
    base_url = fresh_base_url
    journal = tmp_path / "run.journal"
    console = subprocess.Popen(
        [sys.executable, "-c", CONSOLE, base_url, str(csv_path), str(journal), "100"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert console.stdout is not None
    engine_pid = int(console.stdout.readline())
    eventually(
        lambda: journal_counts(journal).get("done", 0) >= RECORDS // 4,
        what="a quarter of the records done",
        abort_if=exited(console),
    )
    os.kill(console.pid, signal.SIGKILL)
    console.wait(10)
    eventually(lambda: not _alive(engine_pid), what="the engine's exit after the console died")

    counts = journal_counts(journal)
    assert counts.get("in_flight", 0) == 0, counts
    assert counts.get("pending", 0) > 0, counts  # cancelled mid-run, resumable
    assert sum(counts.values()) == RECORDS
    # every record the journal calls done was created in Canvas exactly once
    stats = simulator_stats(base_url)
    assert stats["enrollments_created"] == counts["done"]
    assert stats["duplicates"] == 0
    assert "the console went away" in engine_log_path(journal).read_text()


def test_the_token_stays_out_of_the_engine_process_arguments_and_environment(
    base_url: str, csv_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = sim_config(base_url).canvas.token
    assert token is not None
    monkeypatch.setenv("CANVAS_API_TOKEN", token.reveal())  # as an operator would set it
    session: RemoteSession = start_engine(engine_spec(base_url, csv_path, tmp_path / "run.journal"))
    try:
        proc = Path(f"/proc/{session.process.pid}")
        assert token.reveal().encode() not in (proc / "cmdline").read_bytes()
        assert token.reveal().encode() not in (proc / "environ").read_bytes()
    finally:
        asyncio.run(session.close())


def test_an_engine_that_cannot_start_says_why(
    base_url: str, csv_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console gets the engine's last words (its log) instead of hanging or a bare EOF."""
    monkeypatch.setattr(
        "canvas_tui.engine.remote.WORKER_MAIN",
        "import sys; print('cannot import the engine: boom', file=sys.stderr); sys.exit(3)",
    )
    with pytest.raises(EngineError, match=r"the engine process exited \(code 3\).*boom"):
        start_engine(engine_spec(base_url, csv_path, tmp_path / "run.journal"))
    assert "boom" in engine_log_path(tmp_path / "run.journal").read_text()
