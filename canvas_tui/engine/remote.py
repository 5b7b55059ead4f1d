"""The console's side of the engine process (engine/worker.py has the protocol).

`start_engine(spec)` spawns the engine and returns a `RemoteSession`: the same surface as an
in-process `Session` (runner, store, client, load, run, plan, close), so the console does not
know which it has. Commands are answered synchronously (a round trip of well under a
millisecond); the snapshot is pushed by the engine and read locally; records are read straight
from the journal through a read-only connection of the console's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from canvas_tui.config import ENV_TOKEN
from canvas_tui.engine.journal import Journal
from canvas_tui.engine.plan.executor import SyncDecision
from canvas_tui.engine.session import journal_path_for
from canvas_tui.engine.state import Event, Phase, RunPhaseChanged, RunState
from canvas_tui.engine.worker import EngineError, EngineSpec, Ready
from canvas_tui.private_files import open_private

STARTUP_SECONDS = 60.0
COMMAND_SECONDS = 30.0  # a command is answered within a loop turn of the engine's
WORKER_MAIN = "import sys; from canvas_tui.engine.worker import main; sys.exit(main(sys.argv[1:]))"
LIVE = frozenset({Phase.LOADING, Phase.RUNNING, Phase.PAUSED, Phase.CANCELLING})


def engine_log_path(journal: Path) -> Path:
    """Where the engine process writes its warnings and tracebacks: beside its journal."""
    return journal.with_name(journal.name + ".engine.log")


def start_engine(spec: EngineSpec, *, startup: float = STARTUP_SECONDS) -> RemoteSession:
    """Spawn the engine process and open the session in it. Raises what `open_session` raises
    there (ConfigError, InputError, JournalError), or EngineError if the process fails."""
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
    conn = Connection(ours.detach())
    try:
        conn.send(spec)
        if not conn.poll(startup):
            raise EngineError(f"the engine process did not start within {startup:.0f} s")
        tag, value = conn.recv()
    except (EOFError, OSError, EngineError) as exc:
        conn.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(1)
        code = process.poll()
        why = str(exc) if code is None else f"the engine process exited (code {code})"
        _stop(process)
        raise EngineError(f"{why}{_log_tail(log_path)}") from None
    if tag != "ready":
        conn.close()
        process.wait(10)
        _remove_if_empty(log_path)
        raise value
    return RemoteSession(process, conn, value, log_path)


class RemoteSession:
    """A session whose engine runs in another process (see module docs)."""

    def __init__(self, process: subprocess.Popen[bytes], conn: Connection, ready: Ready, log: Path):
        self.process = process
        self.journal_path = ready.journal_path
        self.resumed = ready.resumed
        self.notes = list(ready.notes)
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
        return int(await self._call("load", progress=on_progress))

    async def run(self) -> RunState:
        state: RunState = await self._call("run")
        return state

    async def plan(self, requested: bool | None = True) -> SyncDecision:
        decision: SyncDecision = await self._call("plan", requested=requested)
        return decision

    async def apply_plan(self, decision: SyncDecision) -> None:
        # the engine applies the plan it computed and kept; `decision` is the console's copy
        await self._call("apply_plan")

    async def close(self) -> None:
        """Close the session in the engine (a run going is cancelled first: requests in flight
        finish), wait for the process to exit, and close the console's journal reader."""
        if not self._closing:
            self._closing = True
            if self._lost is None:
                with contextlib.suppress(EngineError):
                    await self._call("close")
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(self.process.wait, COMMAND_SECONDS)
            _stop(self.process)
            self._detach()
            self._conn.close()
            self.store.close()
            _remove_if_empty(self.log_path)

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

    def _handle(self, message: tuple[Any, ...]) -> None:
        tag = message[0]
        if tag == "snapshot":
            self._snapshot(*message[1])
        elif tag == "reply":
            _, call_id, ok, value, state = message
            self._snapshot(*state)
            self._on_progress.pop(call_id, None)
            future = self._pending.pop(call_id, None)
            if future is not None and not future.done():
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        elif tag == "progress":
            callback = self._on_progress.get(message[1])
            if callback is not None:
                callback(*message[2])
        elif tag == "event":
            self._publish(message[1])

    def _snapshot(self, seq: int, state: RunState) -> None:
        if seq > self._seq:  # a reply's snapshot may be newer than a pushed one still in transit
            self._seq, self._state = seq, state

    def _publish(self, event: Event) -> None:
        for callback in list(self._subscribers):
            callback(event)

    def _gone(self) -> None:
        """The engine's end closed: expected after `close`, otherwise the engine died."""
        self._detach()
        if self._closing or self._lost is not None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(1)
        code = self.process.poll()
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
            self._publish(RunPhaseChanged(Phase.ABORTED, self._lost))

    def _send(self, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
        call_id = next(self._ids)
        try:
            self._conn.send(("call", call_id, name, args, dict(kwargs)))
        except OSError:
            self._gone()
            raise EngineError(self._lost or "the engine process is gone") from None
        return call_id

    def _call(
        self,
        name: str,
        *args: Any,
        progress: Callable[..., None] | None = None,
        **kwargs: Any,
    ) -> asyncio.Future[Any]:
        """An operation that takes time (load, run, roster pages): answered by a future."""
        self._attach()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._lost is not None:
            future.set_exception(EngineError(self._lost))
            return future
        call_id = self._send(name, args, kwargs)
        self._pending[call_id] = future
        if progress is not None:
            self._on_progress[call_id] = progress
        return future

    def command(self, name: str, *args: Any) -> Any:
        """A RunControl command, answered at once; None once the engine is gone (the
        snapshot then says why: the phase is ABORTED with the reason)."""
        self._attach()
        if self._lost is not None:
            return None
        call_id = self._send(name, args, {})
        deadline = time.monotonic() + COMMAND_SECONDS
        while True:
            try:
                if not self._conn.poll(max(0.0, deadline - time.monotonic())):
                    raise EngineError(f"the engine did not answer {name!r}")
                message = self._conn.recv()
            except (EOFError, OSError):
                self._gone()
                return None
            if message[0] == "reply" and message[1] == call_id:
                _, _, ok, value, state = message
                self._snapshot(*state)
                if not ok:
                    raise value
                return value
            self._handle(message)

    def snapshot(self) -> RunState:
        self._attach()
        return self._state

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)


class RemoteRunner:
    """`RunControl` over the engine process."""

    def __init__(self, session: RemoteSession) -> None:
        self._session = session

    def snapshot(self) -> RunState:
        return self._session.snapshot()

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        return self._session.subscribe(callback)

    def pause(self) -> None:
        self._session.command("pause")

    def resume(self) -> None:
        self._session.command("resume")

    def cancel(self) -> None:
        self._session.command("cancel")

    def skip(self, record_id: int) -> bool:
        return bool(self._session.command("skip", record_id))

    def retry(self, record_id: int) -> bool:
        return bool(self._session.command("retry", record_id))

    def retry_failed(self, category: str | None = None) -> int:
        return int(self._session.command("retry_failed", category) or 0)

    def enqueue(self, record_id: int) -> bool:
        return bool(self._session.command("enqueue", record_id))

    def set_concurrency_cap(self, cap: int | None) -> None:
        self._session.command("set_concurrency_cap", cap)

    def send_one(self, record_id: int | None = None) -> bool:
        return bool(self._session.command("send_one", record_id))

    def edit_and_retry(self, record_id: int, fields: Mapping[str, str]) -> bool:
        return bool(self._session.command("edit_and_retry", record_id, dict(fields)))


class RemoteClient:
    """The reads the console makes of Canvas (rosters), sent by the engine's client so they go
    through the run's governor."""

    def __init__(self, session: RemoteSession) -> None:
        self._session = session

    async def get_course(self, course: str) -> dict[str, Any]:
        found: dict[str, Any] = await self._session._call("get_course", course)
        return found

    async def list_enrollments(
        self, *, on_page: Callable[[int, int], None] | None = None, **filters: Any
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self._session._call(
            "list_enrollments", progress=on_page, on_page=on_page is not None, **filters
        )
        return found

    async def list_course_sections(self, course: str) -> list[dict[str, Any]]:
        """The course's sections: the roster inspector tells its default section by them."""
        found: list[dict[str, Any]] = await self._session._call("list_course_sections", course)
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
