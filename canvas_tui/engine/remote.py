"""The console's side of the engine process (engine/worker.py; engine/protocol.py has the
messages).

`start_engine(spec)` spawns the engine and returns a `RemoteSession`: the same surface as an
in-process `Session` (runner, store, client, load, run, plan, command, close), so the console
does not know which it has. The console awaits its commands (`await session.command(...)`): the
reply resolves a future from the event loop's reader, so a slow engine never stalls drawing.
The snapshot is pushed by the engine and read locally; records are read straight from the
journal through a read-only connection of the console's own.

A console that attaches to a run another process drives (engine/attach.py) gets a
RemoteSession too, with no process of its own: it follows that run, sends commands only when it
attached with control, and closing it only disconnects.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, cast

from canvas_tui.config import ENV_TOKEN, journal_path_for
from canvas_tui.engine.journal import Journal
from canvas_tui.engine.protocol import (
    ATTACHED_OPS,
    REFUSED,
    Call,
    Command,
    ControlRefused,
    EngineError,
    EngineSpec,
    Op,
    Progress,
    Published,
    Ready,
    Reply,
    Snapshot,
    ToConsole,
    ToEngine,
    check_ready,
    check_version,
    command_name,
)
from canvas_tui.engine.state import Event, Phase, RunCommands, RunPhaseChanged, RunState
from canvas_tui.private_files import open_private

if TYPE_CHECKING:
    # the console imports this module: the engine's own modules (the plan, the HTTP client)
    # load in the engine process only
    from canvas_tui.engine.plan.executor import SyncDecision

STARTUP_SECONDS = 60.0
COMMAND_SECONDS = 30.0  # a command is answered within a loop turn of the engine's
WORKER_MAIN = (
    "import sys; from canvas_tui.startup import map_large_blocks, skip_unused_imports; "
    "skip_unused_imports(); map_large_blocks(); "
    "from canvas_tui.engine.worker import main; sys.exit(main(sys.argv[1:]))"
)
LIVE = frozenset({Phase.LOADING, Phase.RUNNING, Phase.PAUSED, Phase.CANCELLING})

P = ParamSpec("P")
R = TypeVar("R")


def engine_log_path(journal: Path) -> Path:
    """Where the engine process writes its warnings and tracebacks: beside its journal."""
    return journal.with_name(journal.name + ".engine.log")


def start_engine(spec: EngineSpec, *, startup: float = STARTUP_SECONDS) -> RemoteSession:
    """Spawn the engine process and open the session in it. Raises what `open_session` raises
    there (ConfigError, InputError, JournalError), or EngineError if the process fails."""
    return spawn_engine(spec, startup=startup).wait()


def spawn_engine(spec: EngineSpec, *, startup: float = STARTUP_SECONDS) -> EngineStart:
    """Spawn the engine process and start the handshake in a thread: the caller may do other
    work (the console imports its UI) while the engine imports and opens the journal, then
    `wait()` for the session."""
    journal = journal_path_for(spec.config, spec.journal_path)
    spec = dataclasses.replace(spec, journal_path=journal)
    log_path = engine_log_path(journal)
    ours, theirs = socket.socketpair()
    with theirs, open_private(log_path, "ab") as log:  # tracebacks may quote enrollment data
        # our own interpreter and module, no shell; the engine gets its own session so a
        # terminal's Ctrl+C or hang-up reaches the console, which then closes it in order
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", WORKER_MAIN, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            # the token reaches the engine inside the spec, over the socket, and nowhere else
            env={k: v for k, v in os.environ.items() if k != ENV_TOKEN},
        )
    return EngineStart(process, Connection(ours.detach()), spec, log_path, startup)


class EngineStart:
    """An engine process on its way up (`spawn_engine`): the handshake runs in a thread."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        conn: Connection,
        spec: EngineSpec,
        log_path: Path,
        startup: float,
    ) -> None:
        self.process = process
        self._conn = conn
        self._log_path = log_path
        self._ready: concurrent.futures.Future[Ready] = concurrent.futures.Future()
        threading.Thread(
            target=self._run, args=(spec, startup), name="engine-handshake", daemon=True
        ).start()

    def _run(self, spec: EngineSpec, startup: float) -> None:
        try:
            self._ready.set_result(
                _handshake(self._conn, spec, self.process, self._log_path, startup)
            )
        except BaseException as exc:
            self._conn.close()  # the engine sees EOF and exits
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
            _stop(self.process)
            _remove_if_empty(self._log_path)
            self._ready.set_exception(exc)

    def wait(self) -> RemoteSession:
        """The session once the engine is ready; raises what `start_engine` raises."""
        ready = self._ready.result()
        return RemoteSession(self.process, self._conn, ready, self._log_path)


def _handshake(
    conn: Connection,
    spec: EngineSpec,
    process: subprocess.Popen[bytes],
    log_path: Path,
    startup: float,
) -> Ready:
    """Hello (the versions must match), then the spec, then Ready. Raises what opening the
    session raised in the engine, or EngineError saying why the engine did not start."""
    deadline = time.monotonic() + startup

    def receive() -> object:
        if not conn.poll(max(0.0, deadline - time.monotonic())):
            raise EngineError(
                f"the engine process did not start within {startup:.0f} s{_log_tail(log_path)}"
            )
        return conn.recv()

    try:
        check_version(receive())  # before the spec: one of another version may not unpickle
        conn.send(spec)
        return check_ready(receive())
    except (EOFError, OSError):
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(1)
        code = process.poll()
        why = "closed the connection" if code is None else f"exited (code {code})"
        raise EngineError(f"the engine process {why}{_log_tail(log_path)}") from None


class RemoteSession:
    """A session whose engine runs in another process (see module docs): one this console
    spawned (`process`, its `log`), or, with neither, a run it attached to (`control`: whether
    it may send commands)."""

    def __init__(
        self,
        process: subprocess.Popen[bytes] | None,
        conn: Connection,
        ready: Ready,
        log: Path | None,
        *,
        control: bool = True,
    ):
        self._process = process
        self.attached = process is None
        self.control = control
        self.journal_path = ready.journal_path
        self.resumed = ready.resumed
        self.notes = list(ready.notes)
        self.service = ready.service  # attached to a `watch`: FINISHED means waiting for changes
        self.log_path = log
        self.store = Journal(ready.journal_path, read_only=True)
        self.runner = RemoteRunner(self)
        self.client = RemoteClient(self)
        self._conn = conn
        self._state = ready.snapshot
        self._seq = 0
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._on_progress: dict[int, Callable[..., None]] = {}
        self._subscribers: list[Callable[[Event], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._lost: str | None = None  # why the engine went away, when it did

    # ---- the session surface -------------------------------------------------------------------

    async def load(self, on_progress: Callable[[int], None] | None = None) -> int:
        return int(await self.call(Op.LOAD, progress=on_progress))

    async def run(self) -> RunState:
        state: RunState = await self.call(Op.RUN)
        return state

    async def plan(self, requested: bool | None = True) -> SyncDecision:
        decision: SyncDecision = await self.call(Op.PLAN, requested=requested)
        return decision

    async def apply_plan(self, decision: SyncDecision) -> str | None:
        # the engine applies the plan it computed and kept; `decision` is the console's copy
        why: str | None = await self.call(Op.APPLY_PLAN)
        return why

    async def command(
        self,
        command: Callable[Concatenate[RunCommands, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """A RunControl command (`RunCommands.skip`, ...), awaited: the console's loop runs on
        while the engine answers. Once the engine is gone the command is refused (False, 0 or
        None) rather than raised; the snapshot then says why (ABORTED, with the reason)."""
        name = command_name(command)
        self._check_control(name)
        self._attach()
        if self._lost is None:
            try:
                return cast(R, await self._request(lambda i: Command(i, name, args, dict(kwargs))))
            except EngineError:
                if self._lost is None:
                    raise
        return cast(R, REFUSED[name])

    def command_sync(
        self,
        command: Callable[Concatenate[RunCommands, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """`command` for scripts and tests (RemoteRunner): it blocks the calling thread, and
        any loop running there, until the engine answers. The console awaits `command`."""
        name = command_name(command)
        self._check_control(name)
        self._attach()
        if self._lost is not None:
            return cast(R, REFUSED[name])
        call_id = next(self._ids)
        try:
            self._send(Command(call_id, name, args, dict(kwargs)))
        except EngineError:  # gone while sending: refused like any command after
            return cast(R, REFUSED[name])
        deadline = time.monotonic() + COMMAND_SECONDS
        while True:
            try:
                if not self._conn.poll(max(0.0, deadline - time.monotonic())):
                    raise EngineError(f"the engine did not answer {name!r}")
                message: ToConsole = self._conn.recv()
            except (EOFError, OSError):
                self._gone()
                return cast(R, REFUSED[name])
            if isinstance(message, Reply) and message.call_id == call_id:
                self._snapshot(message.snapshot)
                if message.error is not None:
                    raise message.error
                return cast(R, message.value)
            self._handle(message)

    def call(
        self,
        op: Op,
        *args: Any,
        progress: Callable[..., None] | None = None,
        **kwargs: Any,
    ) -> asyncio.Future[Any]:
        """Start an operation that takes time (load, run, roster pages); the future resolves
        with its answer. `progress` is called with each of its Progress messages."""
        self._attach()
        refused: EngineError | None = None
        if self.attached and op not in ATTACHED_OPS:
            refused = ControlRefused(
                f"an attached console follows the run: {op} is for the process that drives it"
            )
        elif self._lost is not None:
            refused = EngineError(self._lost)
        if refused is not None:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            future.set_exception(refused)
            return future
        return self._request(lambda call_id: Call(call_id, op, args, kwargs), progress)

    async def close(self) -> None:
        """Close the session in the engine (a run going is cancelled first: requests in flight
        finish), wait for the process to exit, and close the console's journal reader."""
        if not self._closing:
            self._closing = True
            if self._process is not None:
                if self._lost is None:
                    with contextlib.suppress(EngineError):
                        await self.call(Op.CLOSE)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(self._process.wait, COMMAND_SECONDS)
                _stop(self._process)
            # attached: only this console's connection ends; the run goes on in its host
            self._detach()
            self._conn.close()
            self.store.close()
            if self.log_path is not None:
                _remove_if_empty(self.log_path)

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The engine process this console spawned; an attached session has none."""
        if self._process is None:
            raise EngineError("an attached session has no engine process of its own")
        return self._process

    def _check_control(self, name: str) -> None:
        """A console attached read-only never sends a command (its host would refuse it too)."""
        if not self.control:
            raise ControlRefused(
                f"this console attached read-only: {name!r} was not sent to the run "
                "(attach with --control to pause, resume or retry)"
            )

    # ---- messages ------------------------------------------------------------------------------

    def _attach(self) -> None:
        """Read the engine's messages in the running event loop (the console's)."""
        if self._loop is not None or self._lost is not None or self._conn.closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.add_reader(self._conn.fileno(), self._drain)
        self._loop = loop

    def _detach(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._conn.fileno())
            self._loop = None

    def _drain(self) -> None:
        try:
            while self._conn.poll():
                self._handle(self._conn.recv())
        except (EOFError, OSError):
            self._gone()

    def _handle(self, message: ToConsole) -> None:
        if isinstance(message, Snapshot):
            self._snapshot(message)
        elif isinstance(message, Reply):
            self._snapshot(message.snapshot)  # before the answer: it shows the command's effect
            self._on_progress.pop(message.call_id, None)
            future = self._pending.pop(message.call_id, None)
            if future is not None and not future.done():
                if message.error is None:
                    future.set_result(message.value)
                else:
                    future.set_exception(message.error)
        elif isinstance(message, Progress):
            callback = self._on_progress.get(message.call_id)
            if callback is not None:
                callback(*message.args)
        elif isinstance(message, Published):
            self._publish(message.event)

    def _snapshot(self, snapshot: Snapshot) -> None:
        if snapshot.seq > self._seq:  # a reply's may be newer than a pushed one still in transit
            self._seq, self._state = snapshot.seq, snapshot.state

    def _publish(self, event: Event) -> None:
        for callback in list(self._subscribers):
            callback(event)

    def _gone(self) -> None:
        """The engine's end closed: expected after `close`, otherwise the engine died."""
        self._detach()
        if self._closing or self._lost is not None:
            return
        if self._process is None or self.log_path is None:
            self._lost = (
                "the process driving this run stopped serving it (it ended, or was stopped); "
                "the journal keeps what was done"
            )
        else:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(1)
            code = self._process.poll()
            self._lost = (
                f"the engine process stopped (exit code {code}); the journal keeps what was "
                f"done: open it again to resume{_log_tail(self.log_path)}"
            )
        error = EngineError(self._lost)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        self._on_progress.clear()
        if self._state.phase in LIVE:
            self._state = dataclasses.replace(
                self._state, phase=Phase.ABORTED, abort_reason=self._lost
            )
        elif self.service:
            # a `watch` between changes stopped (SIGTERM, a restart): it is no longer waiting
            # for anything, and its FINISHED is not an abort; the dashboard's yellow line says so
            self.service = False
            self._state = dataclasses.replace(self._state, paused_reason=self._lost)
        else:
            return
        self._publish(RunPhaseChanged(Phase.ABORTED, self._lost))

    def _send(self, message: ToEngine) -> None:
        try:
            self._conn.send(message)
        except OSError:
            self._gone()
            raise EngineError(self._lost or "the engine process is gone") from None

    def _request(
        self,
        message: Callable[[int], ToEngine],
        progress: Callable[..., None] | None = None,
    ) -> asyncio.Future[Any]:
        """Send `message(call_id)`; its Reply resolves the returned future (see `_handle`)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        call_id = next(self._ids)
        self._pending[call_id] = future
        if progress is not None:
            self._on_progress[call_id] = progress
        try:
            self._send(message(call_id))
        except EngineError:
            self._pending.pop(call_id, None)
            self._on_progress.pop(call_id, None)
            raise
        return future

    def snapshot(self) -> RunState:
        self._attach()
        return self._state

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)


def _sent(
    command: Callable[Concatenate[RunCommands, P], R],
) -> Callable[Concatenate[RemoteRunner, P], R]:
    """A RemoteRunner method that sends `command` and waits for its answer."""

    @functools.wraps(command)  # its name, docs and signature
    def send(self: RemoteRunner, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._session.command_sync(command, *args, **kwargs)

    send.__qualname__ = f"RemoteRunner.{command.__name__}"
    return send


class RemoteRunner:
    """`RunControl` over the engine process, for scripts and tests: its commands block until
    the engine answers. The console awaits `RemoteSession.command` instead."""

    def __init__(self, session: RemoteSession) -> None:
        self._session = session

    def snapshot(self) -> RunState:
        return self._session.snapshot()

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        return self._session.subscribe(callback)

    # every RunCommands method (tests/engine/test_remote.py checks that none is missing)
    pause = _sent(RunCommands.pause)
    resume = _sent(RunCommands.resume)
    cancel = _sent(RunCommands.cancel)
    skip = _sent(RunCommands.skip)
    retry = _sent(RunCommands.retry)
    retry_failed = _sent(RunCommands.retry_failed)
    enqueue = _sent(RunCommands.enqueue)
    set_concurrency_cap = _sent(RunCommands.set_concurrency_cap)
    send_one = _sent(RunCommands.send_one)
    edit_and_retry = _sent(RunCommands.edit_and_retry)
    abort_import = _sent(RunCommands.abort_import)
    to_front = _sent(RunCommands.to_front)


class RemoteClient:
    """The reads the console makes of Canvas (rosters), sent by the engine's client so they go
    through the run's governor."""

    def __init__(self, session: RemoteSession) -> None:
        self._session = session

    async def get_course(self, course: str) -> dict[str, Any]:
        found: dict[str, Any] = await self._session.call(Op.GET_COURSE, course)
        return found

    async def list_enrollments(
        self, *, on_page: Callable[[int, int], None] | None = None, **filters: Any
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self._session.call(
            Op.LIST_ENROLLMENTS, progress=on_page, on_page=on_page is not None, **filters
        )
        return found

    async def list_course_sections(self, course: str) -> list[dict[str, Any]]:
        """The course's sections: the roster inspector tells its default section by them."""
        found: list[dict[str, Any]] = await self._session.call(Op.LIST_COURSE_SECTIONS, course)
        return found


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # the engine winds down on SIGTERM as on a closed socket
        try:
            process.wait(COMMAND_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        tail = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return f" (engine log {path}: {' / '.join(tail)})" if tail else ""


def _remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.stat().st_size == 0:
            path.unlink()
