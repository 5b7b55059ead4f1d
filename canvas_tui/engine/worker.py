"""The engine in a process of its own, serving one console over a socket.

The console's key presses must be answered within a frame while the engine sends at full rate;
in one process the two share one interpreter lock, and the HTTP stack's per-request Python wins.
So the console runs the engine here: `remote.start_engine` spawns a Python running
`worker.main([FD])` (not `-m`: pickled classes must live in this module, not `__main__`), sends an `EngineSpec`, and from then on talks in pickled tuples:

    console -> engine   ("call", id, name, args, kwargs)
    engine -> console   ("reply", id, ok, value or exception, (seq, RunState))
                        ("progress", id, args)          for load rows, roster pages, plan steps
                        ("snapshot", (seq, RunState))   ten times a second
                        ("event", RunPhaseChanged)

The journal is the shared store: the console reads records from it directly, read-only. When
the console goes away without closing (crash, SIGKILL, terminal closed), the engine cancels the
run, lets the requests in flight finish, closes the journal and exits: the journal stays
consistent whatever happens to the UI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from canvas_tui.canvas.client import CanvasClient
from canvas_tui.canvas.errors import CanvasError
from canvas_tui.config import Config, SourceConfig
from canvas_tui.engine.plan.executor import SyncDecision
from canvas_tui.engine.session import Session, open_session
from canvas_tui.engine.state import Event, RunPhaseChanged, RunState

if TYPE_CHECKING:
    from canvas_tui.simulator import SimConfig
    from canvas_tui.simulator.demo import Storms

log = logging.getLogger(__name__)

# RunControl commands: quick, synchronous, answered at once with a fresh snapshot
RUNNER_COMMANDS = frozenset(
    {
        "pause",
        "resume",
        "cancel",
        "skip",
        "retry",
        "retry_failed",
        "enqueue",
        "set_concurrency_cap",
        "send_one",
        "edit_and_retry",
    }
)
SNAPSHOT_SECONDS = 0.1
ENGINE_NICENESS = 5


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """Everything the engine process needs to open the session the console asked for."""

    config: Config
    source: SourceConfig | str | Path | None = None  # for `open_source`; None: resume the journal
    journal_path: Path | None = None
    max_concurrency: int | None = None
    governor_leak: float | None = None  # against a time-scaled simulator (tests, benchmarks)
    # the demo: an in-process simulator with this SimConfig, and its throttle storms
    simulator: SimConfig | None = None
    storms: Storms | None = None


@dataclass(frozen=True, slots=True)
class Ready:
    """The engine's first message: the session is open."""

    journal_path: Path
    resumed: bool
    notes: tuple[str, ...]
    snapshot: RunState


class EngineError(RuntimeError):
    """An error from the engine process that could not be sent back as itself."""


class _Outbox:
    """Sends from a thread of its own, so a console that is slow to read never stalls the
    engine's event loop. Snapshots are coalesced: only the newest waits to be sent."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._messages: deque[tuple[Any, ...]] = deque()
        self._snapshot: tuple[int, RunState] | None = None
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._send_all, name="outbox", daemon=True)
        self._thread.start()

    def put(self, message: tuple[Any, ...]) -> None:
        with self._wake:
            self._messages.append(message)
            self._wake.notify()

    def snapshot(self, seq: int, state: RunState) -> None:
        with self._wake:
            self._snapshot = (seq, state)
            self._wake.notify()

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued, then stop."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout)

    def _send_all(self) -> None:
        while True:
            with self._wake:
                while not self._messages and self._snapshot is None and not self._closed:
                    self._wake.wait()
                if self._messages:
                    message: tuple[Any, ...] = self._messages.popleft()
                elif self._snapshot is not None:
                    message, self._snapshot = ("snapshot", self._snapshot), None
                else:
                    return
            try:
                self._conn.send(message)
            except (OSError, ValueError):
                return  # the console is gone; the reader sees EOF and winds the run down


class _Server:
    def __init__(self, conn: Connection, session: Session, outbox: _Outbox) -> None:
        self.conn = conn
        self.session = session
        self.outbox = outbox
        self.seq = 0
        self.decision: SyncDecision | None = None
        self.run_task: asyncio.Task[RunState] | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.done = asyncio.Event()
        self.closing = False

    def state(self) -> tuple[int, RunState]:
        self.seq += 1
        return self.seq, self.session.runner.snapshot()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self._readable)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, self._orphaned, "terminated")
        self.session.runner.subscribe(self._event)
        pusher = asyncio.create_task(self._push_snapshots())
        try:
            await self.done.wait()
        finally:
            pusher.cancel()
            loop.remove_reader(self.conn.fileno())

    async def _push_snapshots(self) -> None:
        while True:
            self.outbox.snapshot(*self.state())
            await asyncio.sleep(SNAPSHOT_SECONDS)

    def _event(self, event: Event) -> None:
        # per-record events arrive at the engine's pace; the console only needs phase changes
        if isinstance(event, RunPhaseChanged):
            self.outbox.put(("event", event))

    def _readable(self) -> None:
        try:
            while self.conn.poll():
                self._dispatch(self.conn.recv())
        except (EOFError, OSError):
            self._orphaned("the console went away")

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        _, call_id, name, args, kwargs = message
        if name in RUNNER_COMMANDS:
            try:
                value = getattr(self.session.runner, name)(*args, **kwargs)
            except Exception as exc:
                self._reply_error(call_id, exc)
            else:
                self.outbox.put(("reply", call_id, True, value, self.state()))
            return
        handler = getattr(self, f"_op_{name}", None)
        if handler is None:
            self._reply_error(call_id, EngineError(f"the engine has no operation {name!r}"))
            return
        task = asyncio.create_task(self._answer(call_id, handler(call_id, *args, **kwargs)))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, call_id: int, work: Any) -> None:
        try:
            value = await work
        except Exception as exc:
            if not isinstance(exc, CanvasError):  # Canvas's answers are the console's to show
                log.warning("%s failed", work.__qualname__, exc_info=True)
            self._reply_error(call_id, exc)
        else:
            self.outbox.put(("reply", call_id, True, value, self.state()))

    def _reply_error(self, call_id: int, exc: BaseException) -> None:
        self.outbox.put(("reply", call_id, False, _sendable(exc), self.state()))

    def _progress(self, call_id: int) -> Callable[..., None]:
        # may be called from the loading thread: the outbox is thread-safe
        return lambda *args: self.outbox.put(("progress", call_id, args))

    # ---- operations (each answers one call) -----------------------------------------------------

    async def _op_load(self, call_id: int) -> int:
        return await self.session.load(on_progress=self._progress(call_id))

    async def _op_run(self, call_id: int) -> RunState:
        if self.run_task is None or self.run_task.done():
            self.run_task = asyncio.create_task(self.session.run())
        return await asyncio.shield(self.run_task)

    async def _op_plan(self, call_id: int, requested: bool | None = True) -> SyncDecision:
        self.decision = decision = await self.session.plan(requested)
        # the console needs what to show; the source and its rows stay here for apply_plan
        return SyncDecision(
            decision.planned, decision.message, decision.plan, decision.refused, decision.fields
        )

    async def _op_apply_plan(self, call_id: int) -> None:
        if self.decision is None:
            raise EngineError("no plan was computed in this session")
        await self.session.apply_plan(self.decision)

    async def _op_get_course(self, call_id: int, course: str) -> dict[str, Any]:
        return await self._client().get_course(course)

    async def _op_list_enrollments(self, call_id: int, **kwargs: Any) -> list[dict[str, Any]]:
        on_page = self._progress(call_id) if kwargs.pop("on_page", False) else None
        return await self._client().list_enrollments(on_page=on_page, **kwargs)

    async def _op_list_course_sections(self, call_id: int, course: str) -> list[dict[str, Any]]:
        return await self._client().list_course_sections(course)

    async def _op_close(self, call_id: int) -> None:
        await self._wind_down()

    def _client(self) -> CanvasClient:
        if self.session.client is None:
            raise EngineError("no Canvas base URL or token configured to read rosters with")
        return self.session.client

    # ---- ending ---------------------------------------------------------------------------------

    def _orphaned(self, why: str) -> None:
        if self.closing:
            return
        log.warning("%s: cancelling the run; requests in flight finish first", why)
        with contextlib.suppress(OSError, ValueError):
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
        task = asyncio.create_task(self._wind_down())
        self.tasks.add(task)

    async def _wind_down(self) -> None:
        if self.closing:
            return
        self.closing = True
        run = self.run_task
        if run is not None and not run.done():
            self.session.runner.cancel()
            with contextlib.suppress(Exception):
                await run
        await self.session.close()
        # the close reply (queued by _answer after this returns) must still go out
        asyncio.get_running_loop().call_soon(self.done.set)


async def _serve(conn: Connection) -> None:
    spec: EngineSpec = conn.recv()
    transport = None
    stop_storms: threading.Event | None = None
    if spec.simulator is not None:
        from canvas_tui.simulator import build_app
        from canvas_tui.simulator.demo import start_storms
        from canvas_tui.simulator.testing import asgi_transport

        sim = build_app(spec.simulator)
        transport = asgi_transport(sim)
        if spec.storms is not None:
            stop_storms = start_storms(sim, spec.storms)
    governor = None
    if spec.governor_leak is not None:
        from canvas_tui.canvas.governor import Governor

        governor = Governor(leak=spec.governor_leak)
    try:
        source = None
        if spec.source is not None:
            from canvas_tui.sources import open_source

            source = open_source(spec.source)
        session = open_session(
            spec.config,
            source=source,
            journal_path=spec.journal_path,
            transport=transport,
            governor=governor,
            max_concurrency=spec.max_concurrency,
        )
    except Exception as exc:
        conn.send(("failed", _sendable(exc)))
        return
    conn.send(
        (
            "ready",
            Ready(
                session.journal_path,
                session.resumed,
                tuple(session.notes),
                session.runner.snapshot(),
            ),
        )
    )
    outbox = _Outbox(conn)
    try:
        await _Server(conn, session, outbox).serve()
    finally:
        outbox.close()
        if stop_storms is not None:
            stop_storms.set()


def _sendable(exc: BaseException) -> BaseException:
    """`exc` if the console can unpickle it as itself, else an EngineError that says it."""
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes, just made
    except Exception:
        return EngineError(f"{type(exc).__name__}: {exc}")
    return exc


def main(argv: list[str]) -> int:
    """The engine process: argv is [FD], this end of the console's socket."""
    # The console decides when to stop: a Ctrl+C meant for it must not kill the engine mid-write.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # When the machine is busy the scheduler should run the console's drawing first: a key
    # answered late is felt at once, a request sent a few milliseconds later is not.
    with contextlib.suppress(OSError, AttributeError):
        os.nice(ENGINE_NICENESS)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    conn = Connection(int(argv[0]))
    try:
        asyncio.run(_serve(conn))
    finally:
        conn.close()
    return 0
