"""What the engine shows the world: a `RunState` snapshot, events, and the command surface.

The console and the headless reporter both read `RunControl.snapshot()` on a timer and may
subscribe to events for the rare things an operator must see at once. Commands flow back only
through `RunControl`; nothing outside the engine mutates records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

# the governor's snapshot lives beside the governor (canvas/ never imports the engine); RunState
# carries it, so the views keep naming it from here
from canvas_tui.canvas.governor_state import GovernorState as GovernorState
from canvas_tui.records import State


class Phase(StrEnum):
    LOADING = "loading"  # reading the source into the journal
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLING = "cancelling"  # no new dispatch; waiting for in-flight requests
    FINISHED = "finished"  # every record is final
    CANCELLED = "cancelled"  # operator stopped it; pending records remain pending (resumable)
    ABORTED = "aborted"  # fatal error (token rejected, unsafe URL)


@dataclass(frozen=True, slots=True)
class ImportStatus:
    """A SIS import of the run as Canvas reports it, for a panel or a progress line: what the
    engine process sends the console inside each `RunState` (engine/sis_import/)."""

    import_id: int  # the journal's id for it
    stage: str  # ours: prepared | uploading | polling | mapping | finished
    rows: int  # data rows uploaded
    sis_import_id: int | None = None  # Canvas's id, once the upload was answered
    workflow_state: str | None = None  # Canvas's: created, importing, imported_with_messages...
    progress: float = 0.0  # Canvas's progress, 0-100 (it restarts for a batch cleanup)
    counts: Mapping[str, int] = field(default_factory=dict)  # data.counts (enrollments, ...)
    warning_count: int = 0  # row messages so far (Canvas's warnings + errors)
    error_count: int = 0
    done: int = 0  # rows settled done / failed once Canvas finished and the messages are mapped
    failed: int = 0
    rest_records: int = 0  # the run's records that go by REST beside the import (mixed run)
    message: str | None = None  # why it ended as it did, or what it waits for
    elapsed: float = 0.0  # seconds since the upload
    polls: int = 0
    # the operator's abort: None (not asked), "sent" (PUT on its way), "accepted" (Canvas
    # answered; the poll sees it end), else why Canvas refused it
    abort: str | None = None

    @property
    def final(self) -> bool:
        return self.stage == "finished"

    @property
    def time_left(self) -> float | None:
        """Seconds until Canvas finishes, at the pace its progress has moved since the upload
        (None before it has moved: Canvas queues an import before it starts)."""
        if self.final or self.stage != "polling" or self.progress < 1 or self.elapsed <= 0:
            return None
        return self.elapsed * (100.0 - self.progress) / self.progress


@dataclass(frozen=True, slots=True)
class FrontState:
    """Records an operator moved to the front of the queue (`RunCommands.to_front`)."""

    label: str  # what the latest move took: a course, or the queue's filter
    moved: int  # records moved, over every move of the run
    left: int  # of them, still to send or in flight


@dataclass(frozen=True, slots=True)
class RunState:
    phase: Phase
    total: int
    counts: Mapping[State, int]
    elapsed: float  # seconds the run has been RUNNING (pauses excluded)
    rate: float  # records finished per second, over the last few seconds
    rate_history: Sequence[float]  # one sample per second, oldest first (bounded)
    remaining_history: Sequence[float]  # X-Rate-Limit-Remaining, one sample per second
    governor: GovernorState
    requests: int  # HTTP requests sent, retries included
    throttled: int  # responses that were throttle refusals
    retries: int
    throttled_last_minute: int
    retries_last_minute: int
    failures_by_category: Mapping[str, int]
    failures_version: int  # bumps whenever the set of failed records changes
    abort_reason: str | None = None
    eta: float | None = None  # seconds, None when unknown
    latency: float | None = None  # seconds per request, a moving average of this run's answers
    paused_reason: str | None = None  # why the engine paused itself (Canvas unreachable)
    sis_import: ImportStatus | None = None  # the run's SIS import, when a channel carries one
    front: FrontState | None = None  # records moved to the front, if any were

    @property
    def finished(self) -> int:
        return sum(self.counts.get(s, 0) for s in (State.DONE, State.FAILED, State.SKIPPED))


# ---- events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordChanged:
    record_id: int
    state: State
    category: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class RetryScheduled:
    record_id: int
    attempt: int  # the attempt that just failed, 1-based
    reason: str  # e.g. "429 throttled", "503 server error", "timeout"
    wait: float  # seconds until the next attempt


@dataclass(frozen=True, slots=True)
class RunPhaseChanged:
    phase: Phase
    reason: str | None = None


Event = RecordChanged | RetryScheduled | RunPhaseChanged


# ---- records as the store shows them ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    started_at: float
    finished_at: float | None
    method: str
    url: str  # never carries the token
    request_body: str | None  # JSON text as sent
    status: int | None  # None for transport errors
    category: str | None
    message: str | None
    error_report_id: int | None
    cost: float | None


@dataclass(frozen=True, slots=True)
class RecordRow:
    """One journal row, as the UI and reports see it."""

    record_id: int  # 1-based, in source order
    source: str
    line: int
    key: str
    user: str
    course: str | None
    section: str | None
    role: str
    status: str  # SIS status asked for (active, deleted, ...)
    state: State
    action: str | None  # what the engine did or will do: create, conclude, delete, ...
    attempts: int
    category: str | None
    message: str | None
    error_report_id: int | None
    canvas_enrollment_id: int | None
    raw: Mapping[str, str] = field(default_factory=dict)
    updated_at: float = 0.0
    warnings: tuple[str, ...] = ()  # normalization notes from the source (e.g. TAEnrollment)
    http_status: int | None = (
        None  # status of the last answer, None before any / on transport errors
    )
    channel: str | None = None  # "sis_import" when a SIS import carried it; None: REST / unsent


class RecordStore(Protocol):
    """Read access to the journal for views that must scale to 100,000+ records."""

    def count(self, state: State | None = None, text: str | None = None) -> int: ...

    def rows(
        self,
        offset: int,
        limit: int,
        *,
        state: State | None = None,
        text: str | None = None,  # substring of user/course/section/message
        order: str = "record_id",  # a RecordRow field name; prefix "-" for descending
        total: int | None = None,  # rows matching, if known: a window near the end reads fast
    ) -> list[RecordRow]: ...

    def get(self, record_id: int) -> RecordRow | None: ...

    def attempts(self, record_id: int) -> list[Attempt]: ...

    def failed_ids(self, category: str | None = None) -> list[int]: ...


class RunCommands(Protocol):
    """The operator's commands: quick, answered at once. This class is the command table:
    engine/protocol.py derives the commands the engine process serves from its methods, so a
    new command is written here and in `Runner`, and nowhere else."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def cancel(self) -> None: ...

    def skip(self, record_id: int) -> bool: ...  # False when the record is already final/in flight

    def retry(self, record_id: int) -> bool: ...  # failed/skipped -> pending

    def retry_failed(self, category: str | None = None) -> int: ...  # how many were re-queued

    # any final state -> pending (re-send); how many were re-queued
    def enqueue(self, record_ids: Sequence[int]) -> int: ...

    def set_concurrency_cap(self, cap: int | None) -> None: ...

    def send_one(self, record_id: int | None = None) -> bool: ...  # while paused

    def edit_and_retry(self, record_id: int, fields: Mapping[str, str]) -> bool: ...

    # Ask Canvas to abort the running SIS import (PUT abort): an import cannot be paused.
    # Rows it applied stay applied; its records fail as `sis_import` once Canvas says
    # `aborted`, and a retry of them goes by REST. False when no import is running.
    def abort_import(self) -> bool: ...
    # the pending records of a course (as typed: BIO-101, 1234, sis_course_id:X) or of the
    # queue's text filter go before every other record, mid-run; how many moved
    def to_front(self, course: str | None = None, text: str | None = None) -> int: ...


class RunControl(RunCommands, Protocol):
    """The engine as the console and the headless reporter see it: its snapshot and the
    commands. Every method is safe to call from the UI thread's event loop."""

    def snapshot(self) -> RunState: ...
