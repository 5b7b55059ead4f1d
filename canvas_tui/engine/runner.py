"""The dispatcher: records from the journal to Canvas, as many in flight as the governor allows.

Records are read from the journal in small batches (never all held in memory), claimed in flight
(in order with every other journal write; committed with the next batch) before their request
goes out, and their outcome is posted back. Operator commands
(RunControl) only touch the journal and a few in-memory queues; the dispatch loop re-reads the
governor's limit before every dispatch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Protocol

from canvas_tui.canvas.errors import RETRYABLE, CanvasError, Category, hint_for
from canvas_tui.canvas.retry import UNREACHABLE_STATUSES, CircuitBreaker
from canvas_tui.engine.actions import ActionResult, Observer
from canvas_tui.engine.edit import edited_record
from canvas_tui.engine.journal import (
    Journal,
    JournalError,
    JournalWriteFailed,
    LoadedChunk,
    Outcome,
)
from canvas_tui.engine.state import (
    Event,
    FrontState,
    GovernorState,
    ImportStatus,
    Phase,
    RecordChanged,
    RetryScheduled,
    RunPhaseChanged,
    RunState,
)
from canvas_tui.records import (
    EnrollmentRecord,
    RowProblem,
    State,
    api_id,
    sis_value,
    split_api_id,
)
from canvas_tui.sources.normalize import Layout

log = logging.getLogger(__name__)

HISTORY = 300  # seconds of per-second samples kept for sparklines
RATE_WINDOW = 5  # seconds the headline rate averages over
LATENCY_SMOOTHING = 0.05  # EWMA weight of each answer's latency
FINAL_RETRYABLE = (State.FAILED, State.SKIPPED)  # final states a plain retry re-queues
INTERNAL = "internal_error"  # category for a bug in canvas-tui itself, never Canvas's fault
# Failures a resume sends again by itself (the same request may well succeed now); the others
# (404, 400, ...) need a fix first, and come back only on request (`retry_failed`).
TRANSIENT = tuple(sorted(c.value for c in RETRYABLE))
# Records waiting out a retry back-off give their dispatch slot to fresh records, up to this many
# at once (so a dead Canvas cannot draw the whole journal into back-off).
MAX_BACKING_OFF = 64
# Seconds the dispatcher sleeps while the governor's limit holds it back on bucket room (the
# bucket's leak raises the limit unannounced): between WAKE_POLL and IDLE_POLL.
IDLE_POLL = 0.25
WAKE_POLL = 0.05
# Seconds it sleeps at most when every change it waits for is announced (a completion, a retry's
# back-off, a command, a load's rows, an answer raising the governor's limit): a safety net only.
# Polling at IDLE_POLL cost ~1 ms of CPU a second of an idle run on a 2-core VM (issue 14); a
# journal that stops taking writes is still seen within this (or at the next completion).
SAFETY_POLL = 2.0
FRONT_LABELS = 3  # moves the dashboard names; the rest it counts
READ_ONLY_REFRESH = 1.0  # seconds between a read-only view's reads of the journal's counts

# The record a `_process` task works on: the retry sleep (RunGate.sleep) runs inside that task
# and so knows whose back-off it is.
_RECORD: ContextVar[int | None] = ContextVar("canvas_tui_record", default=None)


# A load to run beside the run: called with what to call as each chunk commits.
LoadStart = Callable[[Callable[[LoadedChunk], None]], Coroutine[Any, Any, Any]]


def current_record() -> int | None:
    """The id of the record the calling task is sending (inside an executor's `apply`)."""
    return _RECORD.get()


class RunCancelled(Exception):
    """Raised from a retry wait when the operator cancels: the record goes back to pending."""


class GovernorLike(Protocol):
    @property
    def limit(self) -> int: ...

    def state(self) -> GovernorState: ...

    def set_cap(self, cap: int | None) -> None: ...


class Executor(Protocol):
    async def apply(self, record: EnrollmentRecord, observer: Observer | None) -> ActionResult: ...


class Channel(Protocol):
    """A way of sending that works beside the dispatcher, on records it took in flight itself
    (a SIS import, engine/sis_import/): `run` drives it to its end and settles those records
    through `Runner.settled`; `status` is what the snapshot shows of it."""

    async def run(self) -> None: ...

    def status(self) -> ImportStatus | None: ...

    def request_abort(self) -> bool: ...


class ChannelStopped(Exception):
    """A channel cannot go on in this run (Canvas unreachable while polling, say): the run
    stops with this reason and the channel's records stay in flight for the next run."""


class RunGate:
    """Pause and cancel, shared by the dispatcher and the client's retry sleep."""

    def __init__(self) -> None:
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._cancelled = asyncio.Event()
        self.backing_off: set[int] = set()  # records sleeping before their next attempt

    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def pause(self) -> None:
        self._resumed.clear()

    def resume(self) -> None:
        self._resumed.set()

    def cancel(self) -> None:
        self._cancelled.set()
        self._resumed.set()

    def reset(self) -> None:
        """Forget a cancel (for the next run); a pause stays until resumed."""
        self._cancelled.clear()

    async def wait_cancelled(self, seconds: float) -> bool:
        """Wait `seconds` or until cancelled, whichever is first; pause does not hold it (a SIS
        import runs on in Canvas whatever the run does). True when cancelled."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._cancelled.wait(), timeout=max(0.0, seconds))
        return self.cancelled

    async def sleep(self, seconds: float) -> None:
        """The client's retry wait: cut short by cancel, held while paused."""
        record = _RECORD.get()
        if record is not None:
            self.backing_off.add(record)
        try:
            if seconds > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._cancelled.wait(), timeout=seconds)
            if self.cancelled:
                raise RunCancelled
            await self._resumed.wait()
            if self.cancelled:
                raise RunCancelled
        finally:
            if record is not None:
                self.backing_off.discard(record)


class Runner:
    """Implements `RunControl` (engine/state.py)."""

    def __init__(
        self,
        journal: Journal,
        executor: Executor,
        governor: GovernorLike,
        *,
        gate: RunGate | None = None,
        preflight: Callable[[], Awaitable[Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        layout: Layout | None = None,
        breaker: CircuitBreaker | None = None,
        requests_sent: Callable[[], int] | None = None,
    ) -> None:
        self._journal = journal
        self._executor = executor
        self._governor = governor
        self.gate = gate or RunGate()
        self._preflight = preflight
        self._clock = clock
        self._layout = layout  # how the source's rows normalize, for edit_and_retry
        self.breaker = breaker or CircuitBreaker()
        # When the breaker trips: pause (the console: the operator resumes when Canvas is back)
        # or stop the run with the records pending (headless: the next run resumes).
        self.stop_when_unreachable = False
        self._paused_reason: str | None = None
        self._subscribers: list[Callable[[Event], None]] = []

        self._phase = Phase.LOADING
        self._abort_reason: str | None = None
        self._counts: dict[State, int] = journal.counts()
        self._failures_by_category: dict[str, int] = journal.category_counts(State.FAILED)
        self._failures_version = 0
        totals = journal.attempt_totals()
        self._requests = totals["requests"]
        # Every request counts, not only a record's attempts: the client's own counter also
        # sees a plan's roster reads and the token check (issue 11).
        self._requests_sent = requests_sent
        self._requests_before = totals["requests"]
        self._unrecorded_before = journal.unrecorded_requests()
        self._observed = 0  # attempts of records, this session
        self._throttled = totals["throttled"]
        self._retries = totals["retries"]
        self._throttle_times: deque[float] = deque()
        self._retry_times: deque[float] = deque()
        self._rate_history: deque[float] = deque(maxlen=HISTORY)
        self._remaining_history: deque[float] = deque(maxlen=HISTORY)
        self._elapsed_before = float(journal.get_meta("elapsed") or 0.0)
        self._running_since: float | None = None
        self._elapsed_paused = 0.0  # this session's running time, frozen while paused
        self._latency: float | None = None

        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._claimed: set[int] = set()
        self._requeue: deque[int] = deque()
        self._buffer: deque[int] = deque()
        self._cursor = 0
        # Records moved to the front (`to_front`): they go before every other record, and the
        # rest wait until each of them has ended (a barrier: "this course first" means its last
        # record too). `_front` is what is left to claim, in order; `_front_flying` what of it
        # is in flight; both come back from the journal on a resume.
        self._front: deque[int] = deque(journal.front_queue())
        self._front_flying: set[int] = set()
        self._front_taken: set[int] = set()  # of the ids `_next_ids` just gave, the front's
        self._front_moves = 0  # moves this session: a claim that crossed one is looked at again
        moves = journal.front_moves()
        # what was moved, the latest move first, each once; and how many records, each once
        self._front_labels: list[str] = list(dict.fromkeys(m[2] for m in reversed(moves)))
        self._front_moved = sum(m[3] for m in moves)
        self._send_budget = 0
        self._wake = asyncio.Event()
        # The governor's limit the dispatcher waits to see rise (None: not waiting on it).
        self._held_at: int | None = None
        # While the limit wait sleeps on answers alone: the governor's check that the leak may
        # raise the limit after all (`_limit_wait`, `_on_answer`).
        self._leak_check: Callable[[], bool] | None = None
        self._running = False
        self._resumed_checked = False
        self._channels: list[Channel] = []
        self._counts_read = clock()  # when a read-only runner last read the counts
        # A load still adding records (`load_while_running`): the run waits for its rows.
        self._loader: asyncio.Task[Any] | None = None
        self._load_start: LoadStart | None = None
        self._stop_loading: Callable[[], None] | None = None

    def add_channel(self, channel: Channel) -> None:
        """Run `channel` beside the dispatcher from the next `run()` on (a SIS import)."""
        self._channels.append(channel)

    def settled(self, outcomes: Sequence[tuple[int, Outcome]]) -> None:
        """A channel ended these in-flight records (the journal has them already)."""
        for record_id, outcome in outcomes:
            self._move(
                record_id,
                State.IN_FLIGHT,
                outcome.state,
                category=outcome.category,
                message=outcome.message,
            )
        self._wake.set()

    async def _run_channel(self, channel: Channel) -> None:
        try:
            await channel.run()
        except RunCancelled:
            pass
        except ChannelStopped as exc:
            self._abort_with(str(exc))
        except CanvasError as exc:
            if exc.fatal:
                self._abort(exc)
            else:
                self._abort_with(f"SIS import: {exc} — {hint_for(exc.category)}")
        except JournalError:
            pass  # the journal's failure stops the run (`_stop_unrecorded`)
        except Exception as exc:
            log.exception("SIS import channel failed")
            self._abort_with(f"SIS import: {type(exc).__name__}: {exc}")

    def use_executor(self, executor: Executor, *, token_checked: bool = False) -> None:
        """Swap what sends each record (a plan's executor); call it before `run()`.
        `token_checked`: requests already proved the token (a plan's reads); skip the check."""
        self._executor = executor
        if token_checked:
            self._preflight = None

    # ---- events ------------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call `callback` for every event; returns a function that unsubscribes it."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def _emit(self, event: Event) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber failed")

    def _set_phase(self, phase: Phase, reason: str | None = None) -> None:
        if phase == self._phase:
            return
        now = self._clock()
        if self._phase == Phase.RUNNING and self._running_since is not None:
            self._elapsed_paused += now - self._running_since
            self._running_since = None
        if phase == Phase.RUNNING:
            self._running_since = now
        self._phase = phase
        self._emit(RunPhaseChanged(phase, reason))

    # ---- counts ------------------------------------------------------------------------------

    def _move(
        self,
        record_id: int,
        old: State,
        new: State,
        *,
        category: str | None = None,
        message: str | None = None,
        old_category: str | None = None,
    ) -> None:
        self._counts[old] = self._counts.get(old, 0) - 1
        self._counts[new] = self._counts.get(new, 0) + 1
        if old == State.FAILED:
            key = old_category or "unknown"
            self._failures_by_category[key] = self._failures_by_category.get(key, 0) - 1
            if self._failures_by_category[key] <= 0:
                del self._failures_by_category[key]
            self._failures_version += 1
        if new == State.FAILED:
            key = category or "unknown"
            self._failures_by_category[key] = self._failures_by_category.get(key, 0) + 1
            self._failures_version += 1
        self._emit(RecordChanged(record_id, new, category, message))

    @property
    def loading(self) -> bool:
        """A load is still adding records to the journal while the run claims them."""
        return self._loader is not None and not self._loader.done()

    async def load_while_running(
        self,
        start: LoadStart,
        stop: Callable[[], None],
    ) -> None:
        """Claim records while a load is still adding them: `start(on_commit)` runs the load,
        calling `on_commit` (from any thread) as each chunk of rows commits; the run sends
        them as they come and ends only after the load has. `stop` asks the load to end early
        (a cancel or an abort); the rows it has not read stay for the next load. A load that
        fails aborts the run with its reason. Call it before `run()`."""
        await self._settle_resume()  # before any row is added: the counts are the journal's
        self.reload_counts()
        self._stop_loading = stop
        self._load_start = start  # started by `run()`, once the token check has passed

    def _start_loading(self) -> None:
        start, self._load_start = self._load_start, None
        if start is None:
            return
        loop = asyncio.get_running_loop()

        def on_commit(chunk: LoadedChunk) -> None:
            loop.call_soon_threadsafe(self._loaded, chunk)

        self._loader = loop.create_task(start(on_commit))
        self._loader.add_done_callback(self._load_ended)

    def _loaded(self, chunk: LoadedChunk) -> None:
        """A chunk of the load committed: count its rows; its pending ones are claimable."""
        for state, n in chunk.states.items():
            self._counts[state] = self._counts.get(state, 0) + n
        for record_id, category, message in chunk.failed:  # rows the source rejected
            key = category or "unknown"
            self._failures_by_category[key] = self._failures_by_category.get(key, 0) + 1
            self._emit(RecordChanged(record_id, State.FAILED, category, message))
        if chunk.failed:
            self._failures_version += 1
        self._wake.set()

    def _load_ended(self, task: asyncio.Task[Any]) -> None:
        self._wake.set()
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            if isinstance(error, JournalWriteFailed):
                self._abort_with(str(error))
            else:
                self._abort_with(f"reading the source stopped: {error}")

    def count_added(self, added: Mapping[tuple[State, str | None], int]) -> None:
        """Records appended while the runner may be running (`canvas-tui watch`): count them in,
        by (state, category). Re-reading the journal instead could lag the writes in flight."""
        for (state, category), n in added.items():
            self._counts[state] = self._counts.get(state, 0) + n
            if state == State.FAILED:
                key = category or "unknown"
                self._failures_by_category[key] = self._failures_by_category.get(key, 0) + n
                self._failures_version += 1
        self._wake.set()

    def reload_counts(self) -> None:
        """Re-read the counts from the journal (after a load)."""
        self._counts = self._journal.counts()
        self._failures_by_category = self._journal.category_counts(State.FAILED)
        self._failures_version += 1

    # ---- the run -----------------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def abort_reason(self) -> str | None:
        return self._abort_reason

    async def run(self) -> RunState:
        """Dispatch until every record is final, or the run is cancelled or aborted.

        May be called again after it returns (e.g. after `retry_failed`); a cancelled or aborted
        run resumes where it stopped.
        """
        if self._running:
            raise RuntimeError("the runner is already running")
        self._running = True
        self._abort_reason = None
        self.gate.reset()
        await self._settle_resume()
        self._cursor = 0
        self._buffer.clear()
        self._front = deque(self._journal.front_queue())  # in flight before: pending again
        self._front_flying.clear()
        ticker = asyncio.create_task(self._tick())
        listen = getattr(self._governor, "listen", None)
        unlisten = listen(self._on_answer) if listen is not None else None
        try:
            loads = self._load_start is not None
            if self._preflight is not None and (self._counts.get(State.PENDING, 0) or loads):
                await self._check_token()
            channels: list[asyncio.Task[None]] = []
            if self._abort_reason is None:
                if not self.gate.cancelled:  # (a signal during the check)
                    # the load starts once the token is known good: a rejected one loads nothing
                    self._start_loading()
                self._set_phase(Phase.PAUSED if self.gate.paused else Phase.RUNNING)
                channels = [asyncio.create_task(self._run_channel(c)) for c in self._channels]
                await self._dispatch()
            if self._tasks:
                await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            if channels:  # REST is done (or stopped); the import runs to its end or the cancel
                await asyncio.gather(*channels)
                if self._journal.failure is not None:
                    self._stop_unrecorded()
                # a channel may hand records back to REST (rows it could not carry as they are)
                if self._abort_reason is None and not self.gate.cancelled and self._requeue:
                    await self._dispatch()
                    if self._tasks:
                        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        finally:
            ticker.cancel()
            if unlisten is not None:
                unlisten()
            self._held_at = None
            self._load_start = None  # never started (aborted at the token check)
            if self._loader is not None:  # cancelled or aborted mid-load: the load stops too
                if self._stop_loading is not None and not self._loader.done():
                    self._stop_loading()
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._loader)
                self._loader = None
            self._running = False
            with contextlib.suppress(JournalError):  # a failed journal is reported below
                await self._journal.flush()
                self.record_requests()
                self._journal.set_meta(elapsed=repr(self._elapsed()))
                await self._journal.flush()
            self._counts = self._journal.counts()
            self._failures_by_category = self._journal.category_counts(State.FAILED)
        if self._journal.failure is not None:
            self._stop_unrecorded()
        if self._abort_reason is not None:
            self._set_phase(Phase.ABORTED, self._abort_reason)
        elif self.gate.cancelled:
            self._set_phase(Phase.CANCELLED, "cancelled by the operator")
        else:
            self._set_phase(Phase.FINISHED)
        return self.snapshot()

    async def _settle_resume(self) -> None:
        """Once, before the first run: records a crash left in flight go back to pending (to
        be re-sent), and those that failed for a transient cause are queued again."""
        if self._resumed_checked:
            return
        self._resumed_checked = True
        if self._counts.get(State.IN_FLIGHT, 0):
            await asyncio.to_thread(self._journal.reset_in_flight)
            self._counts = self._journal.counts()
        self._retry_transient("queued again on resume: it failed for a transient cause")

    async def _check_token(self) -> None:
        """One cheap request first, so a bad token stops the run before any record is tried."""
        assert self._preflight is not None
        try:
            await self._preflight()
        except CanvasError as exc:
            if exc.fatal or exc.category == Category.NETWORK:
                self._abort(exc)
            else:
                log.warning("pre-flight check failed: %s", exc)
        except RunCancelled:
            pass

    def _abort(self, exc: CanvasError) -> None:
        self._abort_with(f"{exc} — {hint_for(exc.category)}")

    def _abort_with(self, reason: str) -> None:
        if self._abort_reason is None:
            self._abort_reason = reason
            self._set_phase(Phase.CANCELLING, self._abort_reason)
            self.gate.cancel()
            self._wake.set()

    def _stop_unrecorded(self) -> None:
        """The journal stopped taking writes: nothing more may be sent, since nothing more
        could be recorded. Requests in flight finish; their records stay in flight in the
        journal and are re-sent on resume (creates are idempotent)."""
        failure = self._journal.failure
        assert failure is not None
        self._abort_with(str(failure))

    async def _wait_wake(self, seconds: float = SAFETY_POLL) -> None:
        # Also wakes on a timer, a safety net. A timeout scope, not wait_for: no task per wait,
        # one loop pass less per dispatch (issue 14).
        if not self._wake.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._wake.wait()
        self._wake.clear()

    def _limit_wait(self) -> float:
        """How long to sleep while the governor's limit holds dispatch back. While the bucket's
        leak may raise it (unannounced), until the model expects room for one more request
        (`refill_wait`), between WAKE_POLL and IDLE_POLL: waking every 50 ms whatever the state
        cost up to ~15 ms of CPU a second of run on a 2-core VM (issue 14). Otherwise only an
        answer (`_on_answer`), a completion, a retry's back-off or a command can raise what may
        go, and each wakes the dispatcher: SAFETY_POLL."""
        self._leak_check = None
        refill = getattr(self._governor, "refill_wait", None)
        if refill is None:
            return WAKE_POLL
        leaks = getattr(self._governor, "leak_raises_limit", None)
        if leaks is not None and not leaks():
            self._leak_check = leaks
            return SAFETY_POLL
        return min(IDLE_POLL, max(WAKE_POLL, float(refill())))

    def _on_answer(self) -> None:
        """The governor modelled an answer: wake the dispatcher if the limit it waits on rose,
        or if it sleeps on answers alone and the answer made the leak what binds (the bucket
        filled below the AIMD ceiling): it then goes back to polling the leak."""
        held, leaks = self._held_at, self._leak_check
        if held is not None and (self._governor.limit > held or (leaks is not None and leaks())):
            self._wake.set()

    async def _dispatch(self) -> None:
        while True:
            if self._journal.failure is not None:
                self._stop_unrecorded()
            if self.gate.cancelled or self._abort_reason is not None:
                return
            paused = self.gate.paused
            if paused and self._send_budget <= 0:
                await self._wait_wake()
                continue
            # a record sleeping out a retry back-off sends nothing: its slot serves a fresh one
            backing_off = min(len(self.gate.backing_off), MAX_BACKING_OFF)
            limit = self._governor.limit
            free = limit - (len(self._tasks) - backing_off)
            if free <= 0:
                self._held_at = limit
                try:
                    await self._wait_wake(self._limit_wait())
                finally:
                    self._held_at = None
                continue
            if paused:
                free = min(free, self._send_budget)
            ids = self._next_ids(free, paused=paused)
            if not ids:
                if not self._tasks and not self._requeue and not self._front and not self.loading:
                    self._send_budget = 0
                    return
                await self._wait_wake()
                continue
            self._claimed.update(ids)
            front, moves = self._front_taken, self._front_moves
            try:
                claimed = await self._journal.claim(ids)
            except JournalWriteFailed:
                self._claimed.difference_update(ids)
                continue  # the failure is seen at the top of the loop
            self._claimed.difference_update(set(ids) - set(claimed))
            if moves != self._front_moves:
                # records moved to the front while these were claimed: the others wait
                behind = [r for r in claimed if r not in front]
                await self._journal.unclaim(behind)
                self._claimed.difference_update(behind)
                self._requeue.extendleft(reversed(behind))
                claimed = [r for r in claimed if r in front]
            if self.gate.cancelled or (self.gate.paused and not paused):
                # paused or cancelled while the claim was written: nothing new may go out
                await self._journal.unclaim(claimed)
                self._claimed.difference_update(claimed)
                # first in line on resume (the front's at the front again)
                self._front.extendleft(reversed([r for r in claimed if r in front]))
                self._requeue.extendleft(reversed([r for r in claimed if r not in front]))
                continue
            if paused:
                self._send_budget -= len(claimed)
            for record_id in claimed:
                if record_id in front:
                    self._front_flying.add(record_id)
                self._move(record_id, State.PENDING, State.IN_FLIGHT)
                self._tasks[record_id] = asyncio.create_task(self._process(record_id))

    def _next_ids(self, n: int, *, paused: bool = False) -> list[int]:
        out: list[int] = []
        if paused:  # send one: the record the operator chose, whatever is at the front
            self._take_requeued(out, n)
        self._front_taken = set()
        while self._front and len(out) < n:
            record_id = self._front.popleft()
            if record_id not in self._claimed and record_id not in out:
                out.append(record_id)
                self._front_taken.add(record_id)
        if self._front or self._front_flying:
            return out  # the rest wait until every moved record has ended
        self._take_requeued(out, n)
        while len(out) < n:
            if not self._buffer:
                batch = self._journal.pending_ids(after=self._cursor, limit=500)
                if not batch:
                    break
                self._cursor = batch[-1]
                self._buffer.extend(batch)
            record_id = self._buffer.popleft()
            if record_id not in self._claimed and record_id not in out:
                out.append(record_id)
        return out

    def _take_requeued(self, out: list[int], n: int) -> None:
        while self._requeue and len(out) < n:
            record_id = self._requeue.popleft()
            if record_id not in self._claimed and record_id not in out:
                out.append(record_id)

    async def _process(self, record_id: int) -> None:
        attempts = 0
        cost = 0.0

        def observe(event: Any) -> None:
            nonlocal attempts, cost
            attempts += 1
            cost += float(event.cost or 0.0)
            self._journal.post_attempt(record_id, event)
            self._requests += 1
            self._observed += 1
            self._observe_latency(event)
            now = self._clock()
            if event.category is not None and str(event.category) == Category.THROTTLED:
                self._throttled += 1
                self._throttle_times.append(now)
            if event.will_retry:
                self._retries += 1
                self._retry_times.append(now)
                reason = f"{event.status} {event.category}" if event.status else str(event.category)
                self._emit(RetryScheduled(record_id, event.number, reason, float(event.wait or 0)))
                self._wake.set()  # its back-off frees a dispatch slot
            unreachable = event.category == Category.NETWORK or (
                event.status in UNREACHABLE_STATUSES
            )
            if self.breaker.record(unreachable, now):
                self._unreachable(event.message or f"HTTP {event.status}")

        _RECORD.set(record_id)
        try:
            outcome = await self._attempt(record_id, observe)
            outcome = Outcome(
                outcome.state,
                outcome.action,
                outcome.category,
                outcome.message,
                outcome.http_status,
                outcome.error_report_id,
                outcome.canvas_enrollment_id,
                cost if attempts else None,
            )
            self._journal.post_outcome(record_id, outcome, attempts=attempts)
            self._move(
                record_id,
                State.IN_FLIGHT,
                outcome.state,
                category=outcome.category,
                message=outcome.message,
            )
        finally:
            self._claimed.discard(record_id)
            self._front_flying.discard(record_id)
            self._tasks.pop(record_id, None)
            self._wake.set()

    async def _attempt(self, record_id: int, observe: Observer) -> Outcome:
        record = self._journal.record(record_id)
        if record is None:
            return Outcome(
                State.FAILED,
                category=Category.INVALID_INPUT.value,
                message="the source row has no valid record to send",
            )
        try:
            result = await self._executor.apply(record, observe)
        except RunCancelled:
            return Outcome(State.PENDING, message="stopped during a retry wait; resumable")
        except CanvasError as exc:
            if exc.fatal:
                self._abort(exc)
                return Outcome(
                    State.PENDING,
                    category=exc.category.value,
                    message=exc.message,
                    http_status=exc.status,
                )
            return Outcome(
                State.FAILED,
                category=exc.category.value,
                message=exc.message,
                http_status=exc.status,
                error_report_id=exc.error_report_id,
            )
        except Exception as exc:
            log.exception("record %d: unexpected error", record_id)
            return Outcome(State.FAILED, category=INTERNAL, message=f"{type(exc).__name__}: {exc}")
        notes = [*record.warnings, *([result.message] if result.message else [])]
        return Outcome(
            State.DONE,
            action=result.action,
            message="; ".join(notes) or None,
            canvas_enrollment_id=result.enrollment_id,
        )

    async def _tick(self) -> None:
        last_finished = self._finished()
        last = self._clock()
        while True:
            await asyncio.sleep(1.0)
            now = self._clock()
            finished = self._finished()
            if self._phase == Phase.RUNNING or self._tasks:
                self._rate_history.append((finished - last_finished) / max(1e-6, now - last))
                remaining = self._governor.state().remaining
                self._remaining_history.append(
                    remaining if remaining is not None else self._governor.state().high_water_mark
                )
            last_finished, last = finished, now

    def _request_count(self) -> int:
        if self._requests_sent is None:
            return self._requests
        return self._requests_before + self._requests_sent()

    def record_requests(self) -> None:
        """Write down the requests no record's attempts show (posted with the next write)."""
        if self._requests_sent is not None and not self._journal.read_only:
            unrecorded = self._unrecorded_before + self._requests_sent() - self._observed
            self._journal.set_meta(unrecorded_requests=str(unrecorded))

    def _observe_latency(self, event: Any) -> None:
        finished = getattr(event, "finished_at", None)
        if finished is None or event.status is None:
            return  # a transport error's time says nothing about Canvas's answers
        seconds = max(0.0, float(finished) - float(event.started_at))
        self._latency = (
            seconds
            if self._latency is None
            else self._latency + LATENCY_SMOOTHING * (seconds - self._latency)
        )

    def _finished(self) -> int:
        return sum(self._counts.get(s, 0) for s in (State.DONE, State.FAILED, State.SKIPPED))

    def _elapsed(self) -> float:
        running = self._elapsed_paused
        if self._running_since is not None:
            running += self._clock() - self._running_since
        return self._elapsed_before + running

    # ---- RunControl --------------------------------------------------------------------------

    def snapshot(self) -> RunState:
        now = self._clock()
        if self._journal.read_only and now - self._counts_read >= READ_ONLY_REFRESH:
            # a read-only view (a served tab, `console --read-only`) of a run another process
            # may be sending: its counts come from the journal, not from this runner
            self._counts_read = now
            with contextlib.suppress(sqlite3.Error):
                self._counts = self._journal.counts()
                failures = self._journal.category_counts(State.FAILED)
                if failures != self._failures_by_category:
                    self._failures_by_category = failures
                    self._failures_version += 1
        for times in (self._throttle_times, self._retry_times):
            while times and times[0] < now - 60:
                times.popleft()
        recent = list(self._rate_history)[-RATE_WINDOW:]
        rate = sum(recent) / len(recent) if recent else 0.0
        left = self._counts.get(State.PENDING, 0) + self._counts.get(State.IN_FLIGHT, 0)
        total = sum(self._counts.values())
        return RunState(
            phase=self._phase,
            total=total,
            counts=dict(self._counts),
            elapsed=self._elapsed(),
            rate=rate,
            rate_history=tuple(self._rate_history),
            remaining_history=tuple(self._remaining_history),
            governor=self._governor.state(),
            requests=self._request_count(),
            throttled=self._throttled,
            retries=self._retries,
            throttled_last_minute=len(self._throttle_times),
            retries_last_minute=len(self._retry_times),
            failures_by_category=dict(self._failures_by_category),
            failures_version=self._failures_version,
            abort_reason=self._abort_reason,
            eta=(left / rate) if rate > 0 else (0.0 if left == 0 else None),
            latency=self._latency,
            paused_reason=self._paused_reason if self._phase == Phase.PAUSED else None,
            sis_import=next(
                (status for c in self._channels if (status := c.status()) is not None), None
            ),
            front=self._front_state(),
        )

    def _front_state(self) -> FrontState | None:
        if not self._front_labels:
            return None
        left = len(self._front) + len(self._front_flying)
        shown = ", ".join(self._front_labels[:FRONT_LABELS])
        more = len(self._front_labels) - FRONT_LABELS
        label = f"{shown} (+{more} more)" if more > 0 else shown
        return FrontState(label, self._front_moved, left)

    def _unreachable(self, last: str) -> None:
        """The breaker tripped: stop sending until Canvas is back (see `stop_when_unreachable`)."""
        reason = (
            f"Canvas unreachable: {self.breaker.failures} requests in a row failed over "
            f"{self.breaker.seconds:g}+ s (last: {last})"
        )
        if self.stop_when_unreachable:
            self._abort_with(
                f"{reason}. Stopped; unfinished records stay pending: run the same command "
                "again to resume (records that failed for network or server errors are retried)."
            )
        elif not self.gate.paused and self._running:
            self._paused_reason = f"{reason}. Paused: resume when Canvas answers again."
            self.gate.pause()
            self._set_phase(Phase.PAUSED, self._paused_reason)
            self._wake.set()

    def _retry_transient(self, message: str) -> int:
        """Queue again the records that failed for network, server or throttle reasons."""
        ids = [i for category in TRANSIENT for i in self._journal.failed_ids(category)]
        return self._requeue_ids(sorted(ids), message=message) if ids else 0

    def pause(self) -> None:
        if self._phase in (Phase.RUNNING, Phase.LOADING, Phase.FINISHED, Phase.CANCELLED):
            self.gate.pause()
            self._set_phase(Phase.PAUSED)
            self._wake.set()

    def resume(self) -> None:
        if self.gate.paused:
            if self._paused_reason is not None:  # the breaker's pause: try what it failed
                self._paused_reason = None
                self.breaker.reset()
                self._retry_transient("queued again: it failed while Canvas was unreachable")
            self.gate.resume()
            if self._running:
                self._set_phase(Phase.RUNNING)
            self._wake.set()

    def cancel(self) -> None:
        if self._running and not self.gate.cancelled:
            self._set_phase(Phase.CANCELLING, "cancelled by the operator")
        self.gate.cancel()
        self._wake.set()

    def skip(self, record_id: int) -> bool:
        if record_id in self._claimed:
            return False
        moved = self._journal.transition(
            [record_id], State.SKIPPED, only_from=[State.PENDING], message="skipped by the operator"
        )
        for rid, old, category in moved:
            self._move(
                rid, old, State.SKIPPED, message="skipped by the operator", old_category=category
            )
        return bool(moved)

    def _requeue_ids(
        self,
        ids: list[int],
        *,
        front: bool = False,
        only_from: tuple[State, ...] = FINAL_RETRYABLE,
        message: str = "queued again by the operator",
    ) -> int:
        moved = self._journal.transition(
            [i for i in ids if i not in self._claimed],
            State.PENDING,
            only_from=only_from,
            message=message,
            sendable_only=True,  # a row the source rejected needs an edit, not a retry
        )
        for rid, old, category in moved:
            self._move(rid, old, State.PENDING, old_category=category)
            if front:
                self._requeue.appendleft(rid)
            else:
                self._requeue.append(rid)
        self._wake.set()
        return len(moved)

    def retry(self, record_id: int) -> bool:
        return self._requeue_ids([record_id]) == 1

    def enqueue(self, record_ids: Sequence[int]) -> int:
        """Queue final records again whatever their outcome: a DONE record whose enrollment has
        since gone from Canvas (the roster inspector's "missing") must be sent again too.
        One command for many records: the console sends a whole roster's in one round trip."""
        return self._requeue_ids(list(record_ids), only_from=(State.DONE, *FINAL_RETRYABLE))

    def retry_failed(self, category: str | None = None) -> int:
        return self._requeue_ids(self._journal.failed_ids(category))

    def set_concurrency_cap(self, cap: int | None) -> None:
        self._governor.set_cap(cap if cap is None else max(1, cap))
        self._wake.set()

    def send_one(self, record_id: int | None = None) -> bool:
        if not self.gate.paused:
            return False
        if record_id is not None:
            row = self._journal.get(record_id)
            if row is None or record_id in self._claimed:
                return False
            if row.state in (State.FAILED, State.SKIPPED):
                if not self._requeue_ids([record_id], front=True):
                    return False
            elif row.state == State.PENDING:
                self._requeue.appendleft(record_id)
            else:
                return False
        elif self._counts.get(State.PENDING, 0) <= 0:
            return False
        self._send_budget += 1
        self._wake.set()
        return True

    def edit_and_retry(self, record_id: int, fields: Mapping[str, str]) -> bool:
        """Apply an edit to the source row; if it now makes a valid record, queue it again."""
        if record_id in self._claimed:
            return False
        row = self._journal.get(record_id)
        if row is None or row.state not in (State.FAILED, State.SKIPPED, State.PENDING):
            return False
        record, raw = edited_record(row, fields, self._layout)
        if isinstance(record, RowProblem):
            return False
        self._journal.post_fields(record_id, record, raw)
        if row.state == State.PENDING:
            return True
        return self._requeue_after_edit(row.record_id, row.state, row.category)

    def abort_import(self) -> bool:
        return any(channel.request_abort() for channel in self._channels)

    def to_front(self, course: str | None = None, text: str | None = None) -> int:
        """Move the pending records of `course` (as an operator types it: `BIO-101` is a SIS
        course id, digits a Canvas id, or an API id form), else of the queue's `text` filter,
        before every other record, and before any earlier move's. Records in flight go on;
        the others wait until every moved record has ended. Kept in the journal: a resume
        sends them first too."""
        course = (course or "").strip() or None
        text = (text or "").strip() or None
        if course is None and text is None:
            return 0
        if course is not None:
            kind, value = split_api_id(course)
            courses = [course] if kind is not None else [api_id("sis_course_id", value), value]
            sections = [api_id("sis_section_id", value), value] if kind is None else [course]
            label = sis_value(course)
            moved = self._journal.to_front(label=label, courses=courses, sections=sections)
        else:
            label = f"filter {text!r}"
            moved = self._journal.to_front(label=label, text=text)
        if not moved:
            return 0
        first = set(moved)
        earlier = [r for r in self._front if r not in first]
        new = len(moved) - (len(self._front) - len(earlier))  # a record moved again counts once
        moved = [r for r in moved if r not in self._claimed]
        self._front = deque([*moved, *earlier])
        self._front_labels = [label, *(x for x in self._front_labels if x != label)]
        self._front_moved += new
        self._front_moves += 1
        self._wake.set()
        return len(moved)

    def _requeue_after_edit(self, record_id: int, state: State, category: str | None) -> bool:
        moved = self._journal.transition(
            [record_id], State.PENDING, only_from=[state], message="edited and queued again"
        )
        for rid, old, old_category in moved:
            self._move(rid, old, State.PENDING, old_category=old_category)
            self._requeue.append(rid)
        self._wake.set()
        return bool(moved)
