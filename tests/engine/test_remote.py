"""The engine in a process of its own (engine/worker.py, engine/remote.py), as the console runs it.

Real processes and a real socket throughout: the simulator is served on loopback in this process,
the engine runs in a spawned Python, and this test plays the console.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from canvas_tui.canvas.errors import CanvasError, Category
from canvas_tui.config import load_config
from canvas_tui.engine import protocol, worker
from canvas_tui.engine.protocol import (
    COMMANDS,
    PROTOCOL_VERSION,
    REFUSED,
    Command,
    EngineError,
    EngineSpec,
    Hello,
    Op,
    Ready,
    ToEngine,
    check_ready,
    check_version,
    command_name,
)
from canvas_tui.engine.remote import RemoteRunner, RemoteSession, engine_log_path, start_engine
from canvas_tui.engine.runner import Runner
from canvas_tui.engine.state import Phase, RunCommands, RunControl, RunPhaseChanged
from canvas_tui.records import InputError, State
from canvas_tui.resources import resource_path
from canvas_tui.simulator import DEMO_TOKEN, LatencyModel, SimConfig, World, build_app
from canvas_tui.simulator.demo import DEMO_URL, demo_transport
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


async def test_the_console_awaits_commands_and_the_reply_brings_the_state(
    base_url: str, csv_path: Path, tmp_path: Path
) -> None:
    session = start_engine(engine_spec(base_url, csv_path, tmp_path / "run.journal"))
    await session.load()
    assert await session.command(RunCommands.skip, 1) is True
    assert session.runner.snapshot().counts[State.SKIPPED] == 1  # the reply's own snapshot
    assert await session.command(RunCommands.skip, 1) is False  # already final
    assert await session.command(RunCommands.retry_failed) == 0
    await session.command(RunCommands.set_concurrency_cap, 3)
    assert session.runner.snapshot().governor.cap == 3
    with pytest.raises(ValueError, match="not a RunCommands method"):
        await session.command(cast(Any, RunControl.snapshot))
    await session.close()


async def test_enqueue_sends_many_records_in_one_round_trip(
    base_url: str, csv_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = start_engine(engine_spec(base_url, csv_path, tmp_path / "run.journal"))
    final = await session.run()
    assert final.counts[State.DONE] == RECORDS - BAD - 1
    sent: list[ToEngine] = []
    send = session._send

    def counted(message: ToEngine) -> None:
        sent.append(message)
        send(message)

    monkeypatch.setattr(session, "_send", counted)
    ids = list(range(1, RECORDS + 1))
    # done and failed records go back to pending; the invalid rows need an edit first
    assert await session.command(RunCommands.enqueue, ids) == RECORDS - BAD
    assert [type(m) for m in sent] == [Command]
    assert session.runner.snapshot().counts[State.PENDING] == RECORDS - BAD
    await session.close()


async def test_a_slow_engine_never_blocks_the_consoles_loop(
    base_url: str, csv_path: Path, tmp_path: Path
) -> None:
    """The engine stopped (SIGSTOP) while a command is out: the console's loop keeps turning,
    and the command is answered once the engine runs again."""
    session = start_engine(engine_spec(base_url, csv_path, tmp_path / "run.journal"))
    await session.load()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    os.kill(session.process.pid, signal.SIGSTOP)
    try:
        skip = asyncio.create_task(session.command(RunCommands.skip, 1))
        start = ticks
        # the loop runs on while the engine says nothing
        await eventually_async(lambda: ticks > start + 20, what="20 ticks of the console's loop")
        assert not skip.done()
    finally:
        os.kill(session.process.pid, signal.SIGCONT)
    assert await asyncio.wait_for(skip, 30) is True
    assert session.runner.snapshot().counts[State.SKIPPED] == 1
    ticker.cancel()
    await session.close()


def test_the_command_table_covers_every_run_control_method() -> None:
    control = {
        name
        for name, member in inspect.getmembers(RunControl, inspect.isfunction)
        if not name.startswith("_")
    }
    assert set(COMMANDS) == control - {"snapshot"}
    assert len(COMMANDS) == 12 and "enqueue" in COMMANDS and "to_front" in COMMANDS
    assert "abort_import" in COMMANDS
    assert set(REFUSED) == set(COMMANDS) and REFUSED["skip"] is False and REFUSED["pause"] is None
    for name, command in COMMANDS.items():
        assert command_name(command) == name
        assert callable(getattr(Runner, name)), name  # the engine's runner serves it...
        sender = getattr(RemoteRunner, name)  # ...and the remote runner sends that command
        assert sender.__name__ == name and sender.__wrapped__ is command
        assert inspect.signature(sender).parameters.keys() == (
            inspect.signature(command).parameters.keys()
        )
    with pytest.raises(ValueError, match="not a RunCommands method"):
        command_name(Runner.skip)  # the implementation, not the table's entry
    # every operation the console can call has its handler in the engine
    server = worker._Server(cast(Any, None), cast(Any, None), cast(Any, None))
    assert set(server.operations) == set(Op)


def test_an_engine_of_another_protocol_version_is_a_clear_error(
    base_url: str, csv_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = tmp_path / "run.journal"
    monkeypatch.setattr(protocol, "PROTOCOL_VERSION", PROTOCOL_VERSION + 1)
    with pytest.raises(EngineError, match=r"speaks protocol version \d+, this console \d+"):
        start_engine(engine_spec(base_url, csv_path, journal))
    # the console stopped at the engine's Hello: no spec was sent, so nothing was opened, and
    # the engine exited quietly (no log)
    assert not journal.exists()
    assert not engine_log_path(journal).exists()


def test_a_first_message_of_another_shape_is_a_clear_error() -> None:
    with pytest.raises(EngineError, match="not the canvas-tui of this console"):
        check_version(("ready", object()))  # an engine of an older protocol, say
    with pytest.raises(EngineError, match="protocol version 0"):
        check_version(Hello(0))
    with pytest.raises(EngineError, match="protocol version 0"):
        check_ready(Ready(0, Path("j"), False, (), cast(Any, None)))
    with pytest.raises(InputError, match="no such file"):
        check_ready(protocol.StartFailed(InputError("no such file")))


async def test_the_demo_hosts_its_simulator_through_a_transport_factory(tmp_path: Path) -> None:
    """The engine imports no simulator: the demo's comes in as a factory, built over there."""
    config = load_config(None, env={"CANVAS_API_TOKEN": DEMO_TOKEN, "CANVAS_BASE_URL": DEMO_URL})
    session = start_engine(
        EngineSpec(
            config,
            source=resource_path("demo.csv"),
            journal_path=tmp_path / "demo.journal",
            transport=functools.partial(demo_transport, 7, 20.0),
        )
    )
    run = asyncio.create_task(session.run())
    await eventually_async(
        lambda: session.runner.snapshot().counts.get(State.DONE, 0) >= 20,
        what="20 demo records done",
    )
    await session.command(RunCommands.cancel)
    final = await run
    await session.close()
    assert final.phase is Phase.CANCELLED
    assert session.process.returncode == 0


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
    from canvas_tui.engine.protocol import EngineSpec
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
