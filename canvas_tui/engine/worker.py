"""The engine in a process of its own, serving one console over a socket.

The console's key presses must be answered within a frame while the engine sends at full rate;
in one process the two share one interpreter lock, and the HTTP stack's per-request Python wins.
So the console runs the engine here: `remote.start_engine` spawns a Python running
`worker.main([FD])` (not `-m`: pickled classes must live in an importable module, not
`__main__`), sends an `EngineSpec`, and from then on the two speak engine/protocol.py.

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
import signal
from collections.abc import Awaitable, Callable, Mapping
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from canvas_tui.canvas.client import CanvasClient
from canvas_tui.canvas.errors import CanvasError
from canvas_tui.engine.attach import AttachServer, serve_attach
from canvas_tui.engine.protocol import (
    COMMANDS,
    PROTOCOL_VERSION,
    Command,
    EngineError,
    EngineSpec,
    Hello,
    Op,
    Progress,
    Published,
    Ready,
    Reply,
    Snapshot,
    StartFailed,
    ToEngine,
    invoke,
)
from canvas_tui.engine.session import Session, open_session
from canvas_tui.engine.state import Event, RunPhaseChanged, RunState
from canvas_tui.engine.wire import Outbox, sendable

if TYPE_CHECKING:
    import httpx

    from canvas_tui.engine.plan.executor import SyncDecision

log = logging.getLogger(__name__)

SNAPSHOT_SECONDS = 0.1
# Where it counts (no autogroup scheduling: see lower_priority), a little below the console.
ENGINE_NICENESS = 5

# An operation's handler: the call's id (for its progress messages), then the Call's arguments.
Operation = Callable[..., Awaitable[Any]]


class _Server:
    def __init__(
        self,
        conn: Connection,
        session: Session,
        outbox: Outbox,
        attach: AttachServer | None = None,
    ) -> None:
        self.conn = conn
        self.session = session
        self.outbox = outbox
        self.seq = 0
        self.decision: SyncDecision | None = None
        self.run_task: asyncio.Task[RunState] | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.done = asyncio.Event()
        self.closing = False
        # other consoles of this user may follow the run (engine/attach.py): a second screen
        self.attach = attach
        self.operations: Mapping[Op, Operation] = {
            Op.LOAD: self._load,
            Op.RUN: self._run,
            Op.PLAN: self._plan,
            Op.APPLY_PLAN: self._apply_plan,
            Op.GET_COURSE: self._get_course,
            Op.LIST_ENROLLMENTS: self._list_enrollments,
            Op.LIST_COURSE_SECTIONS: self._list_course_sections,
            Op.CLOSE: self._close,
        }

    def state(self) -> Snapshot:
        self.seq += 1
        return Snapshot(self.seq, self.session.runner.snapshot())

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
            self.outbox.snapshot(self.state())
            await asyncio.sleep(SNAPSHOT_SECONDS)

    def _event(self, event: Event) -> None:
        # per-record events arrive at the engine's pace; the console only needs phase changes
        if isinstance(event, RunPhaseChanged):
            self.outbox.put(Published(event))

    def _readable(self) -> None:
        try:
            while self.conn.poll():
                self._dispatch(self.conn.recv())
        except (EOFError, OSError):
            self._orphaned("the console went away")

    def _dispatch(self, message: ToEngine) -> None:
        if isinstance(message, Command):
            self._command(message)
            return
        work = self.operations[message.op](message.call_id, *message.args, **message.kwargs)
        task = asyncio.create_task(self._answer(message.call_id, message.op, work))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _command(self, message: Command) -> None:
        """RunControl commands are quick and synchronous: answered at once, with the state."""
        command = COMMANDS.get(message.name)
        if command is None:
            self._reply_error(
                message.call_id, EngineError(f"the engine has no command {message.name!r}")
            )
            return
        try:
            value = invoke(self.session.runner, command, *message.args, **message.kwargs)
        except Exception as exc:
            self._reply_error(message.call_id, exc)
        else:
            self.outbox.put(Reply(message.call_id, self.state(), value))

    async def _answer(self, call_id: int, op: Op, work: Awaitable[Any]) -> None:
        try:
            value = await work
        except Exception as exc:
            if not isinstance(exc, CanvasError):  # Canvas's answers are the console's to show
                log.warning("%s failed", op, exc_info=True)
            self._reply_error(call_id, exc)
        else:
            self.outbox.put(Reply(call_id, self.state(), value))

    def _reply_error(self, call_id: int, exc: BaseException) -> None:
        self.outbox.put(Reply(call_id, self.state(), error=sendable(exc)))

    def _progress(self, call_id: int) -> Callable[..., None]:
        # may be called from the loading thread: the outbox is thread-safe
        return lambda *args: self.outbox.put(Progress(call_id, args))

    # ---- operations (each answers one call) -----------------------------------------------------

    async def _load(self, call_id: int) -> int:
        return await self.session.load(on_progress=self._progress(call_id))

    async def _run(self, call_id: int) -> RunState:
        if self.run_task is None or self.run_task.done():
            self.run_task = asyncio.create_task(self.session.run())
        return await asyncio.shield(self.run_task)

    async def _plan(self, call_id: int, requested: bool | None = True) -> SyncDecision:
        from canvas_tui.engine.plan.executor import SyncDecision

        self.decision = decision = await self.session.plan(requested)
        # the console needs what to show; the source and its rows stay here for apply_plan
        shown = SyncDecision(
            decision.planned,
            decision.message,
            decision.plan and decision.plan.detached(),  # counts and drops, not the source
            decision.refused,
            decision.fields,
        )
        shown.via = decision.via  # the channel asked for: the plan screen says it
        shown.expected_via = decision.expected_via
        shown.via_message = decision.via_message  # a resume's: the import it polls again
        return shown

    async def _apply_plan(self, call_id: int) -> str | None:
        if self.decision is None:
            raise EngineError("no plan was computed in this session")
        return await self.session.apply_plan(self.decision)

    async def _get_course(self, call_id: int, course: str) -> dict[str, Any]:
        return await self._client().get_course(course)

    async def _list_enrollments(self, call_id: int, **kwargs: Any) -> list[dict[str, Any]]:
        on_page = self._progress(call_id) if kwargs.pop("on_page", False) else None
        return await self._client().list_enrollments(on_page=on_page, **kwargs)

    async def _list_course_sections(self, call_id: int, course: str) -> list[dict[str, Any]]:
        return await self._client().list_course_sections(course)

    async def _close(self, call_id: int) -> None:
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
        if self.attach is not None:
            await self.attach.close()
        await self.session.close()
        # the close reply (queued by _answer after this returns) must still go out
        asyncio.get_running_loop().call_soon(self.done.set)


async def _serve(conn: Connection) -> None:
    conn.send(Hello(PROTOCOL_VERSION))
    try:
        spec: EngineSpec = conn.recv()
    except EOFError:
        return  # the console stopped at our version (or went away): nothing was opened
    with contextlib.ExitStack() as stack:
        try:
            # the demo's simulator, say: built here, so it never competes with the console
            transport = stack.enter_context(spec.transport()) if spec.transport else None
            session = _open(spec, transport)
        except Exception as exc:
            conn.send(StartFailed(sendable(exc)))
            return
        # before Ready: once its console hears the session is open, others may attach too
        attach = serve_attach(session, warn=log.warning)
        conn.send(
            Ready(
                PROTOCOL_VERSION,
                session.journal_path,
                session.resumed,
                tuple(session.notes),
                session.runner.snapshot(),
            )
        )
        outbox = Outbox(conn)
        try:
            await _Server(conn, session, outbox, attach).serve()
        finally:
            outbox.close()
            if attach is not None:  # closed on the way down already, unless serving failed
                await attach.close()


def _open(spec: EngineSpec, transport: httpx.AsyncBaseTransport | None) -> Session:
    governor = None
    if spec.governor_leak is not None:
        from canvas_tui.canvas.governor import Governor

        governor = Governor(leak=spec.governor_leak)
    source = None
    if spec.source is not None:
        from canvas_tui.sources import open_source

        source = open_source(spec.source)
    return open_session(
        spec.config,
        source=source,
        journal_path=spec.journal_path,
        transport=transport,
        governor=governor,
        max_concurrency=spec.max_concurrency,
        # the console draws its first frame as soon as this session is ready: a resumed
        # journal's pages are checked before it first loads or runs (Session.load/run)
        verify_journal=False,
    )


def lower_priority(niceness: int) -> None:
    """This process a little below the console's, where the kernel ranks processes by nice value.

    Linux's autogroup scheduling (on by default) shares the CPU between sessions before it looks
    at nice values, and the engine has a session of its own (remote.spawn_engine): there its
    nice value ranks it only against its own session, which it is alone in, so it is the
    console's equal (measured: two busy processes in two sessions, one at nice 5, share a core
    half and half). Lowering its session's group too (`/proc/self/autogroup`) was measured and
    not taken: at load 7-12 on two cores the engine synced 30-45 % fewer records a second
    (nice 5 or 2), for key latencies within the run-to-run spread (BENCHMARKS.md, "Keys under
    load"). The engine is latency-bound on Canvas; when the machine is that busy it needs its
    share."""
    with contextlib.suppress(OSError, AttributeError):
        os.nice(niceness)


def main(argv: list[str]) -> int:
    """The engine process: argv is [FD], this end of the console's socket."""
    # The console decides when to stop: a Ctrl+C meant for it must not kill the engine mid-write.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # When the machine is busy the scheduler should run the console's drawing first: a key
    # answered late is felt at once, a request sent a few milliseconds later is not.
    lower_priority(ENGINE_NICENESS)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    conn = Connection(int(argv[0]))
    try:
        asyncio.run(_serve(conn))
    finally:
        conn.close()
    return 0
