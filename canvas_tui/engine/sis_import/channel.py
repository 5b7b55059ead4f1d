"""The SIS import channel: the plan's changes uploaded as one enrollments.csv, polled to its end,
and every row's outcome written back to its record.

Life of an import, each step committed to the journal before the next (journal `imports`):

    prepared   the file is built from the pending records and kept whole in the journal; its
               records go in flight on channel `sis_import` (the dispatcher leaves them alone)
    uploading  marked *before* the POST: a run killed now may or may not have reached Canvas, so
               a resume looks for the upload (the account's imports since then, by file name)
               and uploads only when Canvas has none; when it cannot tell, it does not upload
    polling    Canvas's id is known: a resume polls that import, never uploads again
    finished   Canvas finished (or refused) it and each row's outcome is in the journal, in the
               same commit

Polls go through the client, so through the governor, the retry policy and the token's origin
rule, and back off from `poll_min` to `poll_max` seconds while nothing moves. Canvas's messages
are tied to rows (messages.py) and so to records: a record gets Canvas's message, its own source
file:line (the journal keeps it), a category and a hint, as a REST failure does. A record whose
import failed or was aborted as a whole fails with category `sis_import` (a retry goes by REST,
which reads the enrollment first); an import Canvas refused for its size fails with
`change_threshold`, which says what to do.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from canvas_tui.canvas.client import CanvasClient
from canvas_tui.canvas.errors import CanvasError, Category, may_have_been_applied
from canvas_tui.engine.journal import ImportRecord, Journal, Outcome
from canvas_tui.engine.plan.diff import Action, Plan, Step
from canvas_tui.engine.runner import ChannelStopped, RunCancelled, RunGate
from canvas_tui.engine.sis_import.csvfile import ImportFile, ImportRow, import_row, read_rows
from canvas_tui.engine.sis_import.messages import (
    MappedMessages,
    category_of,
    counted,
    inline_messages,
    is_threshold,
    map_inline,
    read_errors_file,
)
from canvas_tui.engine.state import ImportStatus
from canvas_tui.records import EnrollmentRecord, State, clip

log = logging.getLogger(__name__)

FINAL_STATES = frozenset(
    {
        "imported",
        "imported_with_messages",
        "failed",
        "failed_with_messages",
        "aborted",
        "restored",
        "partially_restored",
    }
)
APPLIED_STATES = frozenset({"imported", "imported_with_messages"})
# Polls that fail in a row (after the client's own retries) before the run stops, the import's
# records left in flight for the next run to poll
MAX_POLL_FAILURES = 5
DROP_SOURCE = "plan:drops"
# a row Canvas applied: done, as a REST create is (the channel column says how; no message, so a
# 100,000-row import costs the search index nothing)
_DONE = Outcome(State.DONE)  # the plan's drops (executor.DROP_SOURCE): named by Canvas ids


@dataclass(frozen=True, slots=True)
class ImportOptions:
    account: str = "self"
    change_threshold: int | None = None  # percent, from [plan] brake_max_share
    poll_min: float = 1.0  # seconds between polls, while Canvas's progress moves
    poll_max: float = 30.0  # ... at most, while it does not
    find_wait: float = 600.0  # a lost upload's answer: seconds to wait for Canvas to name its file
    override_sis_stickiness: bool = True  # the file's values apply, as a REST write's do


class Runnerish(Protocol):
    gate: RunGate

    def settled(self, outcomes: list[tuple[int, Outcome]]) -> None: ...

    def enqueue(self, record_ids: Sequence[int]) -> int: ...


# ---- building the file ------------------------------------------------------------------------


@dataclass(slots=True)
class Prepared:
    """The pending records split between the file and REST."""

    file: ImportFile
    actions: list[str]  # the planned action of each row, in row order
    requests: int  # what REST would need for the rows in the file
    rest: int  # records that stay on REST
    why_rest: Counter[str] = field(default_factory=Counter)

    def rest_summary(self) -> str:
        return "; ".join(f"{n} {why}" for why, n in self.why_rest.most_common())


def planned_step(plan: Plan, record: EnrollmentRecord) -> Step | None:
    """The plan's step for a record, derived again (PlanExecutor does the same)."""
    if plan.records is None:
        return None
    position = plan.tally.position(record)
    return None if position is None else plan.records.step(position, record)


def prepare(
    records: Iterable[tuple[int, EnrollmentRecord]],
    plan: Plan,
    *,
    active_state: str = "active",
    notify: bool = False,
) -> Prepared:
    """Split the pending records: a row of the file for each the import can express, REST for
    the rest (CPU only: call it in a thread for a big run)."""
    prepared = Prepared(ImportFile.new(), [], 0, 0)
    for record_id, record in records:
        if record.provenance.source == DROP_SOURCE:
            row: ImportRow = ImportRow(None, "drops of enrollments the SIS no longer lists")
            step = None
        else:
            step = planned_step(plan, record)
            if step is not None and step.action is Action.NONE:
                continue  # in place: nothing to send either way
            row = import_row(record, step, active_state=active_state, notify=notify)
        if row.importable and step is not None:
            prepared.file.add(record_id, row)
            prepared.actions.append(step.action.value)
            prepared.requests += step.requests
        else:
            prepared.rest += 1
            prepared.why_rest[row.why_rest or "other"] += 1
    return prepared


class Collector:
    """The import's file, written as the plan computes each record's step (`build_plan`'s
    `on_step`): each step is derived once, not again from the journal. A record's journal id is
    its position in the source plus one (the journal loads the source in order); rows whose
    source line changed since the plan are left out when the file is finished."""

    def __init__(self, *, active_state: str = "active", notify: bool = False) -> None:
        self._active_state = active_state
        self._notify = notify
        self.prepared = Prepared(ImportFile.new(), [], 0, 0)

    def add(self, step: Step) -> None:
        record, position = step.record, step.record_index
        if record is None or position is None or step.action is Action.NONE:
            return
        row = import_row(record, step, active_state=self._active_state, notify=self._notify)
        prepared = self.prepared
        if row.importable:
            prepared.file.add(position + 1, row)
            prepared.actions.append(step.action.value)
            prepared.requests += step.requests
        else:
            prepared.rest += 1
            prepared.why_rest[row.why_rest or "other"] += 1

    def finish(self, changed: Iterable[int], drops: int) -> Prepared:
        """The file without the records whose source row changed since the plan (positions;
        they go by REST), with the plan's drops counted on REST."""
        prepared = self.prepared
        gone = {position + 1 for position in changed}
        if gone:
            kept = {rid for _row, rid in prepared.file.rows} - gone
            actions = [
                a
                for (_row, rid), a in zip(prepared.file.rows, prepared.actions, strict=True)
                if rid in kept
            ]
            moved = len(prepared.file) - len(kept)
            prepared = Prepared(
                prepared.file.without(gone),
                actions,
                prepared.requests,
                prepared.rest + moved,
                Counter(prepared.why_rest),
            )
            if moved:
                prepared.why_rest["source rows changed since the plan"] += moved
        if drops:
            prepared.rest += drops
            prepared.why_rest["drops of enrollments the SIS no longer lists"] += drops
        return prepared


def new_filename(journal: Journal) -> str:
    """Unique per upload: a resumed run finds its upload among the account's imports by it."""
    return f"canvas-tui-{journal.path.stem[:40]}-{secrets.token_hex(4)}-enrollments.csv"


def import_status(journal: Journal, record: ImportRecord, rest_records: int = 0) -> ImportStatus:
    """What the import panel shows of an import, from the journal's `imports` row."""
    data: Mapping[str, Any] = json.loads(record.status) if record.status else {}
    warnings, errors = counted(data) if data else (0, 0)
    settled = journal.import_state_counts(record.id) if record.state == "finished" else {}
    return ImportStatus(
        import_id=record.id,
        stage=record.state,
        rows=record.rows,
        sis_import_id=record.sis_import_id,
        workflow_state=record.workflow_state,
        progress=float(record.progress or 0.0),
        counts=_counts(data),
        warning_count=warnings,
        error_count=errors,
        done=settled.get(State.DONE, 0),
        failed=settled.get(State.FAILED, 0),
        rest_records=rest_records,
        message=record.message,
    )


def finished_import(journal: Journal) -> ImportStatus | None:
    """The last import of a journal whose imports have all finished (a console opened on it
    shows that import's panel); None while one is unfinished (a run's channel shows it)."""
    imports = journal.imports()
    if not imports or any(i.state != "finished" for i in imports):
        return None
    return import_status(journal, imports[-1])


async def create(journal: Journal, prepared: Prepared, *, take: bool = True) -> int:
    """Keep the file and take its records in flight (one commit); returns the import's id.
    `take=False`: the file only, before the journal is loaded (an early upload)."""
    filename = new_filename(journal)
    return await journal.create_import(
        filename, prepared.file.body(), prepared.file.rows, prepared.actions, take=take
    )


# ---- running it -------------------------------------------------------------------------------


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


class SisImportChannel:
    """Drives the journal's unfinished imports to their end (engine/runner.py's `Channel`)."""

    def __init__(
        self,
        journal: Journal,
        client: CanvasClient,
        runner: Runnerish,
        options: ImportOptions = ImportOptions(),
        *,
        rest_records: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._journal = journal
        self._client = client
        self._runner = runner
        self._options = options
        self._clock = clock
        self._rest_records = rest_records
        self._status: ImportStatus | None = None
        self._uploaded_at: float | None = None
        self._aborting: asyncio.Task[None] | None = None
        self._early: asyncio.Task[None] | None = None
        self._requeue: set[int] = set()  # records to send again by REST once settled
        current = self._unfinished()
        if current is None:
            done = journal.imports()
            if done:
                self._status = self._from_record(done[-1])
        else:
            self._status = self._from_record(current)

    # ---- what the snapshot shows -------------------------------------------------------------

    def status(self) -> ImportStatus | None:
        status = self._status
        if status is not None and self._uploaded_at is not None and not status.final:
            status = replace(status, elapsed=self._clock() - self._uploaded_at)
        return status

    def _from_record(self, record: ImportRecord) -> ImportStatus:
        return import_status(self._journal, record, self._rest_records)

    def _show(self, **changes: Any) -> None:
        if self._status is not None:
            self._status = replace(self._status, **changes)

    def _unfinished(self) -> ImportRecord | None:
        return next((i for i in self._journal.imports() if i.state != "finished"), None)

    # ---- the life of an import ---------------------------------------------------------------

    def start_upload(self) -> None:
        """Upload a prepared import now, while the journal loads the run's records (Canvas
        works meanwhile): `run` then polls it. Crash-safe as `_upload` is: `uploading` is
        committed before the POST, and the import's file and rows are already kept."""
        record = self._unfinished()
        if record is not None and record.state == "prepared" and self._early is None:
            self._status = self._from_record(record)
            self._early = asyncio.create_task(self._early_upload(record))

    def requeue_after(self, record_ids: Iterable[int]) -> None:
        """Records the import carries as planned whose source row changed before the load:
        sent again by REST with their new content once the import is settled."""
        self._requeue.update(record_ids)

    async def _early_upload(self, record: ImportRecord) -> None:
        await self._journal.update_import(record.id, state="uploading")
        self._show(stage="uploading", message=f"uploading {record.rows} rows")
        try:
            answer = await self._client.create_sis_import(
                self._journal.import_body(record.id),
                filename=record.filename,
                account=self._options.account,
                options=self._upload_options(),
            )
        except (CanvasError, RunCancelled) as error:
            if isinstance(error, RunCancelled) or not may_have_been_applied(error):
                # refused before it ran (or never sent): the run's own upload says why
                await self._journal.update_import(record.id, state="prepared")
            log.info("early SIS import upload did not go through: %s", error)
        except Exception:  # left `uploading`: the run looks for it before uploading again
            log.exception("early SIS import upload failed")
        else:
            await self._accepted(record, answer)

    async def run(self) -> None:
        if self._early is not None:
            early, self._early = self._early, None
            await early
        while (record := self._unfinished()) is not None:
            self._status = self._from_record(record)
            await self._drive(record)
            if self._runner.gate.cancelled:
                return

    async def _drive(self, record: ImportRecord) -> None:
        sis_id = record.sis_import_id
        if record.state == "prepared":
            sis_id = await self._upload(record)
        elif record.state == "uploading" and sis_id is None:
            found = await self._find(record)
            if found == "unknown":
                return
            sis_id = found if isinstance(found, int) else await self._upload(record)
        if sis_id is None:
            return  # refused and settled, or left for the next run
        final = await self._poll(record, sis_id)
        if final is not None:
            await self._settle(record, final)

    def _upload_options(self) -> dict[str, str]:
        options: dict[str, str] = {"extension": "csv"}
        if self._options.override_sis_stickiness:
            options["override_sis_stickiness"] = "true"
        if self._options.change_threshold is not None:
            options["change_threshold"] = str(self._options.change_threshold)
        return options

    async def _upload(self, record: ImportRecord) -> int | None:
        # committed before the POST: after a kill from here on, a resume looks before uploading
        await self._journal.update_import(record.id, state="uploading")
        self._show(stage="uploading", message=f"uploading {record.rows} rows")
        body = self._journal.import_body(record.id)
        try:
            answer = await self._client.create_sis_import(
                body,
                filename=record.filename,
                account=self._options.account,
                options=self._upload_options(),
            )
        except CanvasError as error:
            if error.fatal:
                raise
            if may_have_been_applied(error):
                found = await self._find(record)
                if isinstance(found, int):
                    return found
                if found == "unknown":
                    return None
                # Canvas has no such upload: it never arrived, so its rows were not applied
            await self._refused(record, error)
            return None
        return await self._accepted(record, answer)

    async def _accepted(self, record: ImportRecord, answer: Mapping[str, Any]) -> int:
        sis_id = _int(answer.get("id"))
        if sis_id <= 0:
            raise CanvasError(Category.BAD_ANSWER, f"the SIS import answer has no id: {answer}")
        self._uploaded_at = self._clock()
        await self._journal.update_import(
            record.id,
            state="polling",
            sis_import_id=sis_id,
            uploaded_at=time.time(),
            workflow_state=str(answer.get("workflow_state") or ""),
            progress=float(answer.get("progress") or 0.0),
            status=json.dumps(answer),
            message=f"SIS import {sis_id}: uploaded",
        )
        self._show(
            stage="polling",
            sis_import_id=sis_id,
            workflow_state=str(answer.get("workflow_state") or ""),
            message=f"SIS import {sis_id}: uploaded",
        )
        return sis_id

    async def _find(self, record: ImportRecord) -> int | str | None:
        """After an upload whose answer was lost: Canvas's id for it (int), None when Canvas
        has no upload of that file, "unknown" when it cannot tell (nothing is uploaded then,
        and the records stay in flight for a later run). Canvas names each import's uploaded
        file in `csv_attachments` (lib/api/v1/sis_import.rb), under the name it was posted
        with (SisBatch.create_with_attachment keeps `original_filename`).

        Canvas lists that file only once the import's job has started, so while an import is
        listed without one the search polls again (backing off from poll_min to poll_max,
        through the client and its governor) until it names its file, or `find_wait` passes."""
        since = _iso(record.updated_at - 300)  # the mark came just before the POST
        deadline = self._clock() + self._options.find_wait
        delay = self._options.poll_min
        while True:
            found = await self._look(record, since, final=self._clock() >= deadline)
            if found != "waiting":
                return found
            self._show(message="the upload's answer was lost: waiting for Canvas to name its file")
            if await self._runner.gate.wait_cancelled(delay):
                return "unknown"  # stopped: the records stay in flight; the next run looks again
            delay = min(self._options.poll_max, delay * 1.6)

    async def _look(self, record: ImportRecord, since: str, *, final: bool) -> int | str | None:
        """One look at the account's imports for `_find`: "waiting" when one is listed without
        its file yet and the wait is not over (`final`)."""
        try:
            listed = await self._client.list_sis_imports(
                account=self._options.account, created_since=since
            )
        except CanvasError as error:
            if error.fatal:
                raise
            await self._unknown(record, f"the account's imports could not be listed ({error})")
            return "unknown"
        nameless: list[Mapping[str, Any]] = []
        for item in listed:
            names = {
                str(a.get(k))
                for a in item.get("csv_attachments") or []
                if isinstance(a, Mapping)
                for k in ("display_name", "filename")
            }
            if record.filename in names:
                found = await self._accepted(record, item)
                return found
            if not names:
                nameless.append(item)
        # one not yet final may still be picked up and name its file; a final one never will
        queued = any(str(i.get("workflow_state") or "") not in FINAL_STATES for i in nameless)
        if queued and not final:
            return "waiting"
        if nameless:
            ids = ", ".join(str(i.get("id")) for i in nameless[:5])
            waited = f" after {self._options.find_wait:g} s ([sis_import] find_wait)"
            await self._unknown(
                record,
                f"Canvas lists imports without their files ({ids}){waited if queued else ''}, "
                "so whether one of them is this upload cannot be told",
            )
            return "unknown"
        return None

    async def _unknown(self, record: ImportRecord, why: str) -> None:
        """Whether the upload reached Canvas cannot be told: never upload again on a guess."""
        message = (
            f"the upload's answer was lost and {why}. Not uploaded again (it may be running): "
            "check Admin > SIS Import in Canvas; the next run looks again"
        )
        await self._journal.update_import(record.id, message=message)
        self._show(message=message)
        raise ChannelStopped(f"SIS import {record.filename}: {message}")

    async def _refused(self, record: ImportRecord, error: CanvasError) -> None:
        """Canvas refused the upload (or it never arrived): its rows failed, with its words."""
        category = error.category
        text = f"SIS import upload refused: {error.message}"
        if error.status == 401:
            text += " (the token's user needs the account's 'Import SIS data' permission)"
        outcomes = [
            (
                record_id,
                Outcome(
                    State.FAILED,
                    category=category.value,
                    message=clip(text),
                    http_status=error.status,
                    error_report_id=error.error_report_id,
                ),
            )
            for record_id in self._journal.import_records(record.id)
        ]
        settled = await self._journal.settle_import(record.id, outcomes, message=text)
        chosen = set(settled)
        self._runner.settled([(rid, o) for rid, o in outcomes if rid in chosen])
        self._show(stage="finished", failed=len(settled), message=text)

    async def _poll(self, record: ImportRecord, sis_id: int) -> Mapping[str, Any] | None:
        """Canvas's status until it is final; None when the run was cancelled."""
        if self._uploaded_at is None:
            self._uploaded_at = self._clock()
        delay = self._options.poll_min
        last: tuple[str, float] | None = None
        failures = 0
        polls = 0
        while True:
            try:
                status = await self._client.get_sis_import(sis_id, account=self._options.account)
            except RunCancelled:
                return None
            except CanvasError as error:
                if error.fatal:
                    raise
                failures += 1
                if failures >= MAX_POLL_FAILURES:
                    raise ChannelStopped(
                        f"SIS import {sis_id} could not be polled ({error}); its records stay "
                        "in flight: run the same command again to poll it"
                    ) from error
                status = None
            if status is not None:
                failures = 0
                polls += 1
                state = str(status.get("workflow_state") or "")
                progress = float(status.get("progress") or 0.0)
                warnings, errors = counted(status)
                self._show(
                    workflow_state=state,
                    progress=progress,
                    counts=_counts(status),
                    warning_count=warnings,
                    error_count=errors,
                    polls=polls,
                    message=f"SIS import {sis_id}: {state} {progress:.0f}%",
                )
                if state in FINAL_STATES:
                    return status
                self._journal.post(_poll_update(record.id, state, progress))
                moved = last != (state, progress)
                last = (state, progress)
                # back off while nothing moves; come back quickly while it does
                delay = self._options.poll_min if moved and polls <= 2 else delay
                delay = min(self._options.poll_max, delay * (1.25 if moved else 1.6))
            if await self._runner.gate.wait_cancelled(delay):
                return None

    async def _settle(self, record: ImportRecord, status: Mapping[str, Any]) -> None:
        sis_id = _int(status.get("id")) or record.sis_import_id
        state = str(status.get("workflow_state") or "")
        self._show(stage="mapping", message=f"SIS import {sis_id}: {state}; reading its messages")
        rows = self._journal.import_rows(record.id)
        mapped = await self._messages(record, status, rows)
        outcomes, note = self._outcomes(record, status, rows, mapped)
        message = f"SIS import {sis_id}: {state}" + (f"; {note}" if note else "")
        # the rows Canvas certified end done in one statement; the others one by one
        done = [rid for rid, o in outcomes if o.state is State.DONE]
        others = [(rid, o) for rid, o in outcomes if o.state is not State.DONE]
        settled = await self._journal.settle_import(
            record.id,
            others,
            rest_done=bool(done),
            workflow_state=state,
            progress=float(status.get("progress") or 0.0),
            status=json.dumps(status),
            message=message,
        )
        chosen = set(settled)
        self._runner.settled([(rid, o) for rid, o in outcomes if rid in chosen])
        if self._requeue:
            self._runner.enqueue(sorted(self._requeue & chosen))
        tally = Counter(o.state for rid, o in outcomes if rid in chosen)
        self._show(
            stage="finished",
            workflow_state=state,
            done=tally[State.DONE],
            failed=tally[State.FAILED],
            message=message,
        )

    async def _messages(
        self, record: ImportRecord, status: Mapping[str, Any], rows: Mapping[int, int]
    ) -> MappedMessages:
        warnings, errors = counted(status)
        expected = warnings + errors
        if not expected:
            return MappedMessages()
        attachment = status.get("errors_attachment")
        url = attachment.get("url") if isinstance(attachment, Mapping) else None
        if url:
            try:
                text = (await self._client.download(str(url))).decode("utf-8", "replace")
            except CanvasError as error:
                if error.fatal:
                    raise
                log.warning("SIS import errors file not read: %s", error)
            else:
                mapped = read_errors_file(text, rows)
                mapped.expected = expected
                return mapped
        inline, _left_out = inline_messages(status)
        file_rows = list(read_rows(self._journal.import_body(record.id)))
        mapped = map_inline(inline, file_rows)
        mapped.expected = expected
        return mapped

    def _outcomes(
        self,
        record: ImportRecord,
        status: Mapping[str, Any],
        rows: Mapping[int, int],
        mapped: MappedMessages,
    ) -> tuple[list[tuple[int, Outcome]], str]:
        sis_id = _int(status.get("id")) or record.sis_import_id
        state = str(status.get("workflow_state") or "")
        data = status.get("data") or {}
        inline, _ = inline_messages(status)
        # what the import said of itself: a refusal over change_threshold comes as a warning
        # (a batch's cleanup) or with diffing_threshold_exceeded (a diff), §6.4
        over = [m for _f, m, _error in inline if is_threshold(m)]
        threshold = bool(data.get("diffing_threshold_exceeded")) or bool(over)
        import_errors = over or [m for _f, m, error in inline if error]
        if not import_errors and data.get("error_message"):
            import_errors = [str(data["error_message"])]
        applied = state in APPLIED_STATES and not threshold
        certain = mapped.complete
        outcomes: list[tuple[int, Outcome]] = []
        for row, record_id in sorted(rows.items()):
            messages = mapped.by_row.get(row)
            if messages:
                text = "; ".join(m.message for m in messages)
                outcomes.append(
                    (
                        record_id,
                        Outcome(
                            State.FAILED,
                            category=category_of(text).value,
                            message=clip(f"SIS import {sis_id}, row {row}: {text}"),
                        ),
                    )
                )
            elif applied and certain:
                outcomes.append((record_id, _DONE))
            else:
                outcomes.append(
                    (record_id, self._whole(sis_id, state, row, threshold, mapped, import_errors))
                )
        note = ""
        if mapped.unmapped:
            note = f"{len(mapped.unmapped)} messages name no row of the file"
        elif not certain:
            note = (
                f"{mapped.expected - mapped.mapped} of Canvas's {mapped.expected} messages could "
                "not be read (no errors file)"
            )
        return outcomes, note

    def _whole(
        self,
        sis_id: int | None,
        state: str,
        row: int,
        threshold: bool,
        mapped: MappedMessages,
        import_errors: list[str],
    ) -> Outcome:
        """A row Canvas said nothing about, when the import did not certify it."""
        said = "; ".join(import_errors[:3])
        if threshold:
            text = (
                f"SIS import {sis_id} refused: its changes exceed change_threshold "
                f"{self._options.change_threshold}% (from [plan] brake_max_share)"
                + (f"; Canvas: {said}" if said else "")
            )
            category = Category.CHANGE_THRESHOLD
        elif state in APPLIED_STATES:
            text = (
                f"SIS import {sis_id} {state}, but which rows its {mapped.expected} messages "
                f"are about could not be read in full; row {row} may not be applied"
            )
            category = Category.SIS_IMPORT
        else:
            text = f"SIS import {sis_id} ended {state}; row {row} may be applied or not" + (
                f"; Canvas: {said}" if said else ""
            )
            category = Category.SIS_IMPORT
        return Outcome(State.FAILED, category=category.value, message=clip(text))

    # ---- the operator's abort ----------------------------------------------------------------

    def request_abort(self) -> bool:
        """`RunCommands.abort_import`: send the abort in the background (a command answers at
        once); the poll sees `aborted` and settles the records. False when none runs."""
        status = self._status
        if status is None or status.final or status.sis_import_id is None:
            return False
        if self._aborting is None or self._aborting.done():
            self._aborting = asyncio.create_task(self._abort_logged())
        self._show(
            message=f"SIS import {status.sis_import_id}: abort asked of Canvas", abort="sent"
        )
        return True

    async def _abort_logged(self) -> None:
        try:
            await self.abort()
        except CanvasError as error:
            log.warning("SIS import abort refused: %s", error)
            self._show(message=f"abort refused by Canvas: {error}")

    async def abort(self) -> bool:
        """PUT abort on the running import: Canvas stops it; rows it applied stay applied and
        its records fail as `sis_import` once the poll sees `aborted`. False when none runs."""
        current = self._unfinished()
        if current is None or current.sis_import_id is None:
            return False
        self._show(abort="sent")
        try:
            await self._client.abort_sis_import(
                current.sis_import_id, account=self._options.account
            )
        except CanvasError as error:
            self._show(abort=clip(f"Canvas refused the abort: {error.message}"))
            raise
        self._show(abort="accepted")
        return True


def _counts(status: Mapping[str, Any]) -> dict[str, int]:
    counts = (status.get("data") or {}).get("counts") or {}
    return {str(k): _int(v) for k, v in counts.items() if isinstance(v, int | float)}


def _poll_update(import_id: int, state: str, progress: float) -> Callable[[Any], None]:
    now = time.time()

    def update(conn: Any) -> None:
        conn.execute(
            "UPDATE imports SET workflow_state = ?, progress = ?, updated_at = ? WHERE id = ?",
            (state, progress, now, import_id),
        )

    return update


def change_threshold(brake_max_share: float) -> int:
    """[plan] brake_max_share as Canvas's change_threshold (an integer percent, 1-100)."""
    return max(1, min(100, math.ceil(brake_max_share * 100)))
