"""Attaching to a run another process drives (engine/attach.py): a real headless `sync` in its
own process against the simulator, a console's session attached over the socket beside its
journal, read-only or with control; and who may reach that socket."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from canvas_tui.cli import main
from canvas_tui.engine.attach import (
    SOCKET_MODE,
    AttachError,
    AttachServer,
    attach_engine,
    serve_attach,
    socket_path,
)
from canvas_tui.engine.protocol import (
    PROTOCOL_VERSION,
    Attach,
    Call,
    Command,
    ControlRefused,
    Hello,
    Op,
    Ready,
    Reply,
)
from canvas_tui.engine.remote import RemoteSession, start_engine
from canvas_tui.engine.session import Session
from canvas_tui.engine.state import Phase, RunCommands
from canvas_tui.records import State
from canvas_tui.simulator import World, build_app
from canvas_tui.simulator.testing import asgi_transport, serve_in_thread
from tests.engine.attach_helpers import gated_sync
from tests.engine.conftest import engine_spec, session_for
from tests.engine.workload import write_csv
from tests.helpers import eventually_async, fast_config, lines, never_within_async


def _phase(session: RemoteSession) -> Phase:
    return session.runner.snapshot().phase


def _count(session: RemoteSession, state: State) -> int:
    return session.runner.snapshot().counts.get(state, 0)


# ---- following a headless sync --------------------------------------------------------------------


async def test_a_console_with_control_pauses_resumes_and_retries_in_a_headless_sync(
    tmp_path: Path,
) -> None:
    with gated_sync(tmp_path, 40) as run:
        run.wait_until_held()
        attached = attach_engine(run.journal, control=True)
        try:
            await eventually_async(
                lambda: _phase(attached) is Phase.RUNNING and _count(attached, State.IN_FLIGHT),
                what="the sync's run, followed: running, writes in flight",
            )
            await attached.command(RunCommands.pause)
            assert _phase(attached) is Phase.PAUSED  # the reply's own snapshot
            run.gate.opened.set()  # what was in flight finishes; nothing new goes out
            await eventually_async(
                lambda: _count(attached, State.IN_FLIGHT) == 0, what="in-flight writes answered"
            )
            done = _count(attached, State.DONE)
            assert 0 < done < run.records
            await never_within_async(
                lambda: _count(attached, State.DONE) != done,
                0.5,
                what="a record sent while the sync was paused from the console",
            )
            # skip a record still pending, then retry it: both reach the sync's engine
            last = run.records
            assert await attached.command(RunCommands.skip, last) is True
            assert _count(attached, State.SKIPPED) == 1  # the reply's snapshot
            assert await attached.command(RunCommands.retry, last) is True
            assert _count(attached, State.SKIPPED) == 0
            await attached.command(RunCommands.resume)
            await eventually_async(
                lambda: _phase(attached) is Phase.FINISHED, what="the sync's run finished"
            )
            assert _count(attached, State.DONE) == run.records
            code, out, _ = run.finish()
            # the sync ended on its own: the console saw its last state, no abort
            await eventually_async(lambda: attached._lost, what="the host's disconnect")
            assert _phase(attached) is Phase.FINISHED
        finally:
            await attached.close()
    assert code == 0
    starting = next(line for line in lines(out) if line.get("message") == "starting")
    assert starting["attach"] == str(socket_path(run.journal))
    assert not socket_path(run.journal).exists()  # removed when the sync ended


async def test_a_read_only_console_cannot_send_a_command(tmp_path: Path) -> None:
    with gated_sync(tmp_path, 20) as run:
        run.wait_until_held()
        attached = attach_engine(run.journal)  # read-only: the default
        try:
            await eventually_async(
                lambda: _phase(attached) is Phase.RUNNING, what="the run followed"
            )
            with pytest.raises(ControlRefused, match="read-only"):
                await attached.command(RunCommands.pause)  # refused here: never sent
            with pytest.raises(ControlRefused):
                attached.runner.cancel()
            with pytest.raises(ControlRefused):
                await attached.run()

            # a client that sends anyway (not our session) is refused by the host
            raw = _raw_attach(run.journal, control=False)
            try:
                raw.send(Command(1, "pause"))
                raw.send(Command(2, "cancel"))
                raw.send(Call(3, Op.RUN))
                replies = _replies(raw, {1, 2, 3})
            finally:
                raw.close()
            for reply in replies.values():
                assert isinstance(reply.error, ControlRefused)
            assert replies[2].snapshot.state.phase is Phase.RUNNING  # neither paused nor cancelled
            await never_within_async(
                lambda: _phase(attached) in (Phase.PAUSED, Phase.CANCELLING, Phase.CANCELLED),
                0.3,
                what="the run paused or cancelled by a read-only console",
            )
            code, _, _ = run.finish()
        finally:
            await attached.close()
    assert code == 0  # every record sent: nothing the read-only console said was obeyed


def _raw_attach(journal: Path, *, control: bool) -> Connection:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(socket_path(journal)))
    conn = Connection(sock.detach())
    assert conn.poll(30)
    assert conn.recv() == Hello(PROTOCOL_VERSION)
    conn.send(Attach(control))
    assert conn.poll(30)
    assert isinstance(conn.recv(), Ready)
    return conn


def _replies(conn: Connection, ids: set[int]) -> dict[int, Reply]:
    found: dict[int, Reply] = {}
    while ids - found.keys():
        assert conn.poll(30), f"no reply to {ids - found.keys()}"
        message = conn.recv()
        if isinstance(message, Reply):
            found[message.call_id] = message
    return found


# ---- who may reach the socket -----------------------------------------------------------------------


def _host(directory: Path) -> Session:
    """An engine session in this process (the host), on the in-process simulator."""
    world = World.generate(7)
    write_csv(directory / "in.csv", world, 5)
    return session_for(
        directory / "in.csv",
        directory / "run.journal",
        transport=asgi_transport(build_app(fast_config(), world)),
    )


@pytest.fixture
async def session(tmp_path: Path) -> AsyncIterator[Session]:
    host = _host(tmp_path)
    yield host
    await host.close()


async def test_the_socket_is_the_users_alone_whatever_the_umask(session: Session) -> None:
    previous = os.umask(0)  # a umask that would leave it open to everyone
    try:
        server = AttachServer.start(session)
    finally:
        os.umask(previous)
    try:
        st = socket_path(session.journal_path).lstat()
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == SOCKET_MODE == 0o600
        assert st.st_uid == os.geteuid()
    finally:
        await server.close()
    assert not socket_path(session.journal_path).exists()


async def test_a_console_refuses_a_socket_open_to_others(session: Session) -> None:
    server = AttachServer.start(session)
    try:
        os.chmod(socket_path(session.journal_path), 0o660)
        with pytest.raises(AttachError, match="open to other users"):
            attach_engine(session.journal_path)
    finally:
        await server.close()


async def test_no_socket_where_every_user_may_write(session: Session, tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o777)  # noqa: S103 - the unsafe directory under test: no sticky bit
    try:
        warnings: list[str] = []
        assert serve_attach(session, warnings.append) is None
        assert "every user" in warnings[0]
        assert not socket_path(session.journal_path).exists()
        # a socket someone put there anyway is refused by the console, for the same reason
        planted = socket.socket(socket.AF_UNIX)
        planted.bind(str(socket_path(session.journal_path)))
        os.chmod(socket_path(session.journal_path), 0o600)
        with pytest.raises(AttachError, match="every user"):
            attach_engine(session.journal_path)
        planted.close()
    finally:
        os.chmod(tmp_path, 0o700)


async def test_no_run_serving_is_said_plainly(tmp_path: Path) -> None:
    with pytest.raises(AttachError, match="no run is serving"):
        attach_engine(tmp_path / "run.journal")
    stale = socket.socket(socket.AF_UNIX)  # a socket left by a run that died
    stale.bind(str(socket_path(tmp_path / "run.journal")))
    stale.close()
    os.chmod(socket_path(tmp_path / "run.journal"), 0o600)
    with pytest.raises(AttachError, match="stopped"):
        attach_engine(tmp_path / "run.journal")


async def test_a_stale_socket_is_replaced_and_another_file_is_left_alone(
    session: Session,
) -> None:
    path = socket_path(session.journal_path)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    server = AttachServer.start(session)  # the run holds the journal's lock: it was stale
    await server.close()
    path.write_text("not a socket")
    warnings: list[str] = []
    assert serve_attach(session, warnings.append) is None
    assert "not a socket" in warnings[0]
    assert path.read_text() == "not a socket"


async def test_a_deep_journal_path_still_attaches(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True, mode=0o700)
    host = _host(deep)
    assert len(str(socket_path(host.journal_path))) > 108  # longer than sun_path
    server = AttachServer.start(host)
    try:
        attached = await asyncio.to_thread(attach_engine, deep / "run.journal", control=True)
        await host.load()
        await attached.command(RunCommands.skip, 1)
        assert attached.runner.snapshot().counts[State.SKIPPED] == 1
        await attached.close()
    finally:
        await server.close()
        await host.close()


NOBODY = 65534
# a Python another user may run (the test's may live in a private virtualenv)
SYSTEM_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
CONNECT = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("denied"); sys.exit(0)
s.settimeout(30)
print("closed" if s.recv(64) == b"" else "served")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
async def test_another_user_cannot_reach_the_run() -> None:
    # a directory other users may pass through, so only the socket's own checks stand between
    shared = Path(tempfile.mkdtemp(prefix="attach-", dir="/tmp"))
    os.chmod(shared, 0o711)  # noqa: S103 - others may pass through, not list or write
    host = _host(shared)
    server = AttachServer.start(host)
    path = str(socket_path(host.journal_path))

    async def as_nobody() -> str:
        result = await asyncio.to_thread(
            subprocess.run,
            [SYSTEM_PYTHON, "-c", CONNECT, path],
            user=NOBODY,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    try:
        assert await as_nobody() == "denied"  # 0600: the kernel refuses the connect
        os.chmod(path, 0o666)  # noqa: S103 - loosened by hand: the host still checks who connected
        assert await as_nobody() == "closed"  # not even the Hello
    finally:
        await server.close()
        await host.close()
        shutil.rmtree(shared)


async def test_a_consoles_own_run_can_be_followed_from_a_second_console(tmp_path: Path) -> None:
    world = World.generate(7)
    write_csv(tmp_path / "in.csv", world, 5)
    journal = tmp_path / "run.journal"
    with serve_in_thread(build_app(fast_config(), world)) as url:
        owner = start_engine(engine_spec(url, tmp_path / "in.csv", journal))
        try:
            follower = await asyncio.to_thread(attach_engine, journal)
            await owner.load()
            await eventually_async(
                lambda: follower.runner.snapshot().total == 5, what="the load, followed"
            )
            await follower.close()  # only the follower goes
            assert await owner.load() == 5
        finally:
            await owner.close()
    assert not socket_path(journal).exists()


def test_the_command_line_says_why_it_cannot_attach(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "run.journal"
    assert main(["console", "--attach", str(journal)]) == 2
    assert "no journal" in capsys.readouterr().err
    journal.write_bytes(b"")
    assert main(["console", "--attach", str(journal)]) == 2
    assert "no run is serving" in capsys.readouterr().err
    assert main(["console", "--attach", str(journal), "--control", "--read-only"]) == 2
    assert "contradict" in capsys.readouterr().err
    assert main(["console", "--control"]) == 2  # control of what: no run to attach to
    assert "--attach" in capsys.readouterr().err
