"""The SIS import channel against the in-process simulator: the plan's changes uploaded as one
enrollments.csv, polled, and every row's outcome tied back to its record (issue 15)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest

from canvas_tui.config import (
    Config,
)
from canvas_tui.engine.journal import ImportRecord, Journal
from canvas_tui.engine.plan.executor import SyncDecision, plan_session, prepare_sync
from canvas_tui.engine.report import write_report
from canvas_tui.engine.session import Session
from canvas_tui.engine.sis_import.attach import start_early
from canvas_tui.engine.sis_import.channel import ImportOptions, SisImportChannel
from canvas_tui.engine.sis_import.messages import MappedMessages, RowMessage
from canvas_tui.engine.state import Phase, RecordRow, RunState
from canvas_tui.records import State
from tests.engine.sis_import_helpers import Bulk, _status
from tests.engine.sis_import_helpers import bulk as bulk  # the fixture
from tests.helpers import eventually_async


async def _sync(
    session: Session, *, via: str | None = None, allow_drops: int | None = None
) -> tuple[SyncDecision, RunState | None, list[RecordRow]]:
    try:
        decision = await prepare_sync(session, requested=None, allow_drops=allow_drops, via=via)
        state = None if decision.refused is not None else await session.run()
        return decision, state, list(session.store.iter_rows())
    finally:
        await session.close()


# ---- one import, every status ----------------------------------------------------------------


async def test_each_status_ends_as_the_plan_wants_through_one_import(bulk: Bulk) -> None:
    u = bulk.users
    bulk.enroll(u[1], "inactive")  # active row: reactivate
    bulk.enroll(u[2])  # completed row: conclude
    bulk.enroll(u[3])  # deleted row: delete
    bulk.enroll(u[4])  # inactive row: inactivate
    bulk.enroll(u[5])  # already active: nothing to send
    rows = [
        bulk.row(u[0]),  # create
        bulk.row(u[1]),
        bulk.row(u[2], "completed"),
        bulk.row(u[3], "deleted"),
        bulk.row(u[4], "inactive"),
        bulk.row(u[5]),
        bulk.row(u[6], "completed"),  # no enrollment: created completed, as the importer does
    ]
    decision, state, journal = await _sync(bulk.session(rows, bulk.config()))
    assert state is not None and decision.via == "sis-import"
    assert bulk.imports() == 1 and bulk.rest_writes() == 0
    assert [r.state for r in journal] == [State.DONE] * len(rows)
    assert [r.channel for r in journal] == ["sis_import"] * 5 + [None, "sis_import"]
    assert journal[0].action == "create" and journal[2].action == "conclude"
    assert bulk.state_of(u[0]) == ["active"] and bulk.state_of(u[1]) == ["active"]
    assert bulk.state_of(u[2]) == ["completed"] and bulk.state_of(u[3]) == ["deleted"]
    assert bulk.state_of(u[4]) == ["inactive"] and bulk.state_of(u[6]) == ["completed"]
    status = state.sis_import
    assert status is not None and status.final and status.workflow_state == "imported"
    assert (status.rows, status.done, status.failed) == (6, 6, 0)


async def test_a_blank_date_carries_what_canvas_holds_and_a_given_one_is_written(
    bulk: Bulk,
) -> None:
    """The importer clears a date whose cell is blank: the file carries Canvas's own."""
    u = bulk.users
    kept = bulk.enroll(u[0], "inactive", start_at="2026-09-01T04:00:00Z", end_at=None)
    given = ("2026-09-02T00:00:00Z", "2026-12-20T00:00:00Z")
    rows = [bulk.row(u[0]), bulk.row(u[1], "active", *given)]
    _, state, journal = await _sync(bulk.session(rows, bulk.config()))
    assert state is not None and [r.state for r in journal] == [State.DONE, State.DONE], [
        (r.channel, r.category, r.message) for r in journal
    ]
    assert bulk.world.enrollments[kept.id].workflow_state == "active"
    assert bulk.world.enrollments[kept.id].start_at == "2026-09-01T04:00:00Z"
    body = Journal(bulk.tmp / "runs" / "run.journal", read_only=True)
    try:
        text = body.import_body(body.imports()[0].id).decode()
    finally:
        body.close()
    cells = list(csv.DictReader(io.StringIO(text)))
    assert cells[0]["start_date"] == "2026-09-01T04:00:00Z" and cells[0]["end_date"] == ""
    assert cells[0]["limit_section_privileges"] == ""  # blank: the importer keeps Canvas's
    assert (cells[1]["start_date"], cells[1]["end_date"]) == given


# ---- mixed run ---------------------------------------------------------------------------------


async def test_rows_an_import_cannot_express_go_by_rest_in_the_same_run(bulk: Bulk) -> None:
    """The source's changes go in the import; the plan's drops (enrollments the SIS no longer
    lists, named by Canvas ids) go by REST beside it, in the same run."""
    u = bulk.users
    gone = [bulk.enroll(user) for user in u[6:8]]
    rows = [bulk.row(user) for user in u[:6]]
    decision, state, journal = await _sync(
        bulk.session(rows, bulk.config(drop_policy="conclude"), "mixed"), allow_drops=2
    )
    assert state is not None, decision.refused
    assert [r.state for r in journal] == [State.DONE] * 8
    assert [r.channel for r in journal] == ["sis_import"] * 6 + [None, None]
    assert [r.attempts > 0 for r in journal[6:]] == [True, True]
    assert bulk.imports() == 1 and bulk.rest_writes() == 2
    assert decision.via_message and "by REST: 2 drops" in decision.via_message
    assert state.sis_import is not None and state.sis_import.rest_records == 2
    assert all(bulk.state_of(user) == ["active"] for user in u[:6])
    assert [bulk.world.enrollments[e.id].workflow_state for e in gone] == ["completed"] * 2
    store = Journal(bulk.tmp / "runs" / "mixed.journal", read_only=True)
    try:
        report = write_report(store, bulk.tmp / "r.json")
    finally:
        store.close()
    data = json.loads(report.json.read_text())
    assert data["channels"] == {"rest": 2, "sis_import": 6}
    assert [r.get("channel") for r in data["records"]] == ["sis_import"] * 6 + ["rest"] * 2
    assert data["sis_imports"][0]["rows"] == 6


# ---- row mapping ------------------------------------------------------------------------------


async def test_every_warning_reaches_its_record_past_the_24_inlined(bulk: Bulk) -> None:
    """30 unknown users among valid rows: Canvas inlines 24 warnings, the errors file has all;
    each failed record gets Canvas's message and its own source line, the rest are done."""
    u = bulk.users
    rows = []
    for n in range(40):
        row = bulk.row(u[n])
        if n % 4 != 0:  # 30 of 40
            row[1] = f"NOSUCH{n:03d}"
        rows.append(row)
    _, state, journal = await _sync(bulk.session(rows, bulk.config()))
    assert state is not None
    status = state.sis_import
    assert status is not None and status.workflow_state == "imported_with_messages"
    assert status.warning_count == 30
    failed = [r for r in journal if r.state is State.FAILED]
    done = [r for r in journal if r.state is State.DONE]
    assert len(failed) == 30 and len(done) == 10
    for record in failed:
        wanted = f"NOSUCH{record.line - 2:03d}"
        assert record.category == "user_not_found"
        assert wanted in (record.message or "") and "User not found" in (record.message or "")
        assert f"row {record.line}" in (record.message or "")  # one file row per source line
    assert all(bulk.state_of(u[n]) == ["active"] for n in range(0, 40, 4))


# ---- crash and resume ------------------------------------------------------------------------


async def test_a_run_stopped_while_the_import_runs_resumes_by_polling_it(bulk: Bulk) -> None:
    """Cancelled (a kill leaves the same journal) once Canvas has the file: the next run polls
    that import and never uploads again."""
    u = bulk.users
    rows = [bulk.row(user) for user in u[:60]]
    config = bulk.config()
    bulk.app.sis_imports.rows_per_second = 0.2  # 300 world seconds (6 s here): running at the stop
    session = bulk.session(rows, config)
    decision = await prepare_sync(session, requested=None, allow_drops=None)
    assert decision.via == "sis-import"
    run = asyncio.create_task(session.run())
    await eventually_async(  # (a cancel before the runner starts is not this case)
        lambda: session.runner.phase is Phase.RUNNING and _status(session).sis_import_id,
        what="the run polling the uploaded import",
        interval=0.005,
    )
    session.runner.cancel()
    stopped = await run
    assert stopped.counts[State.IN_FLIGHT] == 60, (stopped, _status(session))  # in the import
    await session.close()
    assert bulk.imports() == 1

    again = bulk.session(rows, config)
    decision, state, journal = await _sync(again)
    assert "polling SIS import" in decision.message
    assert state is not None and [r.state for r in journal] == [State.DONE] * 60
    assert bulk.imports() == 1 and bulk.rest_writes() == 0


async def _prepared_not_uploaded(bulk: Bulk, rows: list[list[str]], config: Config) -> Session:
    """A session whose import is kept in the journal and not uploaded: the early upload
    (made while the journal loads) is refused because SIS imports are off for that moment."""
    bulk.app.sis_imports.enabled = False
    session = bulk.session(rows, config)
    await prepare_sync(session, requested=None, allow_drops=None)
    channel = session.runner._channels[0]
    assert isinstance(channel, SisImportChannel) and channel._early is not None
    await channel._early  # refused: the import goes back to prepared
    assert [i.state for i in session.store.imports()] == ["prepared"]
    bulk.app.sis_imports.enabled = True
    return session


async def test_a_run_killed_before_its_journal_was_loaded_keeps_its_early_upload(
    bulk: Bulk,
) -> None:
    """The import uploads while the journal loads. Killed then: the next run plans again, keeps
    that import (never uploads another), and every record ends done."""
    u = bulk.users
    rows = [bulk.row(user) for user in u[:30]]
    config = bulk.config()
    session = bulk.session(rows, config)
    decision = await plan_session(session, requested=True)
    assert decision.plan is not None
    early = await start_early(session, decision.plan, "sis-import", decision.import_rows)
    assert early is not None and early.channel is not None and early.channel._early is not None
    await early.channel._early  # the upload was answered; then the kill, before the load
    await session.close()
    assert (
        bulk.imports() == 1
        and not Journal(bulk.tmp / "runs" / "run.journal", read_only=True).loaded
    )

    decision, state, journal = await _sync(bulk.session(rows, config))
    assert decision.via_message and "not uploaded again" in decision.via_message
    assert state is not None and [r.state for r in journal] == [State.DONE] * 30
    assert bulk.imports() == 1 and bulk.rest_writes() == 0
    assert all(bulk.state_of(user) == ["active"] for user in u[:30])


async def test_a_run_killed_before_its_upload_left_uploads_it_once_on_resume(
    bulk: Bulk,
) -> None:
    """Killed between marking the upload and sending it: Canvas has no such import, so the
    resume uploads the file it kept, once."""
    u = bulk.users
    rows = [bulk.row(user) for user in u[:10]]
    config = bulk.config()
    session = await _prepared_not_uploaded(bulk, rows, config)
    record = session.store.imports()[0]
    await session.store.update_import(record.id, state="uploading")
    await session.close()  # what a kill right after that commit leaves
    assert bulk.imports() == 0

    decision, state, journal = await _sync(bulk.session(rows, config))
    assert "looking for it before anything is uploaded" in decision.message
    assert state is not None and [r.state for r in journal] == [State.DONE] * 10
    assert bulk.imports() == 1


async def _lost_answer(bulk: Bulk, rows: list[list[str]], config: Config) -> int:
    """An import whose POST reached Canvas and whose answer was lost (a kill right then): the
    journal says `uploading` with no id. Returns Canvas's id for it."""
    session = await _prepared_not_uploaded(bulk, rows, config)
    record = session.store.imports()[0]
    assert session.client is not None
    lost = await session.client.create_sis_import(  # reached Canvas; the answer is lost
        session.store.import_body(record.id), filename=record.filename
    )
    await session.store.update_import(record.id, state="uploading")
    await session.close()
    assert bulk.imports() == 1
    return int(lost["id"])


def _started(bulk: Bulk, sis_id: int) -> bool:
    bulk.app.settle_sis_imports()
    return bulk.app.sis_imports.imports[sis_id].started_at is not None


async def test_an_upload_whose_answer_was_lost_is_adopted_not_sent_twice(bulk: Bulk) -> None:
    """Killed after the POST left but before its answer was kept. Canvas names an import's
    file in `csv_attachments` only once its job has started, so the resume finds the import
    listed without a file, polls the list until it names this one, adopts it and polls it
    rather than upload a second time."""
    rows = [bulk.row(user) for user in bulk.users[:10]]
    config = bulk.config()
    bulk.app.sis_imports.start_delay = 40.0  # world seconds (0.8 s here) before Canvas starts it
    sis_id = await _lost_answer(bulk, rows, config)
    lists = bulk.app.stats()["requests_by_endpoint"].get("list_sis_imports", 0)
    assert not _started(bulk, sis_id)  # the resume first sees it without its file

    _, state, journal = await _sync(bulk.session(rows, config))
    assert bulk.imports() == 1  # not uploaded again
    assert state is not None and not state.abort_reason
    assert [r.state for r in journal] == [State.DONE] * 10
    assert state.sis_import is not None and state.sis_import.sis_import_id == sis_id
    # it looked more than once: the first look saw the import without its file
    assert bulk.app.stats()["requests_by_endpoint"]["list_sis_imports"] - lists >= 2


async def test_a_lost_upload_canvas_never_starts_stops_once_find_wait_passes(bulk: Bulk) -> None:
    """The import is listed without its file past `[sis_import] find_wait`: whether it is this
    upload cannot be told, so the run stops saying so, uploads nothing again, and leaves the
    records in flight for the next run."""
    rows = [bulk.row(user) for user in bulk.users[:10]]
    config = bulk.config()
    config = replace(config, sis_import=replace(config.sis_import, find_wait=0.3))
    bulk.app.sis_imports.start_delay = 1e6  # Canvas's job queue never gets to it
    sis_id = await _lost_answer(bulk, rows, config)

    _, state, journal = await _sync(bulk.session(rows, config))
    assert not _started(bulk, sis_id) and bulk.imports() == 1  # not uploaded again
    assert state is not None and state.abort_reason
    assert "find_wait" in state.abort_reason and str(sis_id) in state.abort_reason
    assert [r.state for r in journal] == [State.IN_FLIGHT] * 10


# ---- whole-import outcomes ---------------------------------------------------------------------


async def test_an_import_that_fails_as_a_whole_fails_its_rows_for_a_rest_retry(
    bulk: Bulk,
) -> None:
    u = bulk.users
    rows = [bulk.row(user) for user in u[:5]]
    bulk.app.sis_imports.crash_next("the import job died")
    session = bulk.session(rows, bulk.config())
    try:
        await prepare_sync(session, requested=None, allow_drops=None)
        state = await session.run()
        journal = list(session.store.iter_rows())
        assert state.sis_import is not None and state.sis_import.workflow_state == "failed"
        assert [r.category for r in journal] == ["sis_import"] * 5
        assert "the import job died" in (journal[0].message or "")
        # a retry goes by REST
        assert session.runner.retry_failed("sis_import") == 5
        state = await session.run()
        assert state.counts[State.DONE] == 5 and bulk.rest_writes() == 5
        assert all(bulk.state_of(user) == ["active"] for user in u[:5])
        assert [r.channel for r in session.store.iter_rows()] == [None] * 5
    finally:
        await session.close()


async def test_an_aborted_import_fails_its_rows_and_says_what_abort_left(bulk: Bulk) -> None:
    u = bulk.users
    rows = [bulk.row(user) for user in u[:80]]
    bulk.app.sis_imports.rows_per_second = 2.0  # 40 world seconds: aborted mid-run
    session = bulk.session(rows, bulk.config())
    try:
        assert not session.runner.abort_import()  # no import: nothing to abort
        await prepare_sync(session, requested=None, allow_drops=None)
        run = asyncio.create_task(session.run())
        await eventually_async(
            lambda: _status(session).workflow_state == "importing" or None,
            what="the import running",
            interval=0.005,
        )
        assert session.runner.abort_import()  # the command: answered at once
        state = await run
        journal = list(session.store.iter_rows())
        assert state.sis_import is not None and state.sis_import.workflow_state == "aborted"
        assert {r.category for r in journal} == {"sis_import"}
        assert "ended aborted" in (journal[-1].message or "")
    finally:
        await session.close()


# ---- the brake and change_threshold ------------------------------------------------------------


async def test_the_brake_refuses_before_anything_is_uploaded(bulk: Bulk) -> None:
    u = bulk.users
    for user in u[:10]:
        bulk.enroll(user)
    rows = [bulk.row(u[0])]  # the other nine would be dropped
    decision, state, _ = await _sync(
        bulk.session(rows, bulk.config(drop_policy="delete", brake_max_share=0.2))
    )
    assert state is None and decision.refused and "--allow-drops 9" in decision.refused
    assert bulk.imports() == 0


def test_a_threshold_refusal_becomes_an_actionable_failure(tmp_path: Path) -> None:
    """Canvas's answer when a batch's drops exceed change_threshold (SisBatch: the cleanup is
    aborted with a warning; the simulator gives the same shape)."""
    journal = Journal(tmp_path / "t.journal")
    try:
        channel = SisImportChannel(
            journal,
            None,  # type: ignore[arg-type]  # settling reads neither client nor runner
            None,  # type: ignore[arg-type]
            ImportOptions(change_threshold=20),
        )
        status = {
            "id": 55,
            "workflow_state": "aborted",
            "progress": 100,
            "data": {"counts": {"warning_count": 1, "error_count": 0}},
            "processing_warnings": [
                [None, "31 enrollments would be deleted and exceeds the set threshold of 20%"]
            ],
        }
        record = ImportRecord(1, "polling", "f.csv", 1, 55, None, None, None, None, 0, 0, 0)
        outcomes, _note = channel._outcomes(record, status, {2: 1}, MappedMessages())
        ((record_id, outcome),) = outcomes
        assert record_id == 1 and outcome.category == "change_threshold"
        assert "change_threshold 20%" in (outcome.message or "")
        assert "exceeds the set threshold" in (outcome.message or "")
    finally:
        journal.close()


# ---- auto ----------------------------------------------------------------------------------------


async def test_auto_takes_rest_for_a_few_changes_and_says_why(bulk: Bulk) -> None:
    rows = [bulk.row(user) for user in bulk.users[:3]]
    decision, state, journal = await _sync(bulk.session(rows, bulk.config(via="auto")))
    assert state is not None and decision.via == "rest"
    assert decision.via_message and decision.via_message.startswith("REST (auto)")
    # the crossover is stated (in process REST answers in milliseconds, so it may be "never")
    assert "pays off from" in decision.via_message or "never pays off" in decision.via_message
    assert bulk.imports() == 0 and [r.channel for r in journal] == [None] * 3


@pytest.mark.parametrize(
    ("state", "errors", "want"),
    [
        ("imported", [], ["done", "done"]),
        ("imported_with_messages", [], ["failed:user_not_found", "done"]),
        ("failed", [], ["failed:sis_import", "failed:sis_import"]),
        (
            "failed_with_messages",
            [["f.csv", "Invalid CSV"]],
            ["failed:user_not_found", "failed:sis_import"],
        ),
        ("aborted", [], ["failed:user_not_found", "failed:sis_import"]),
    ],
)
def test_each_final_state_as_the_engine_settles_it(
    tmp_path: Path, state: str, errors: list[list[str]], want: list[str]
) -> None:
    """Row 2 has a message (Canvas's errors file said so) except in a clean import; row 3 none:
    it is done only when Canvas applied the import and every message is tied to a row."""
    journal = Journal(tmp_path / "t.journal")
    try:
        channel = SisImportChannel(
            journal,
            None,  # type: ignore[arg-type]  # settling reads neither client nor runner
            None,  # type: ignore[arg-type]
        )
        status = {
            "id": 9,
            "workflow_state": state,
            "data": {"counts": {"warning_count": 0 if state in ("imported", "failed") else 1}},
            **({"processing_errors": errors} if errors else {}),
        }
        mapped = MappedMessages()
        if state not in ("imported", "failed"):
            message = "User not found for enrollment (User ID: X, Course ID: C, Section ID: )"
            mapped.by_row[2].append(RowMessage(2, message, error=False))
            mapped.expected = 1
        record = ImportRecord(1, "polling", "f.csv", 2, 9, None, None, None, None, 0, 0, 0)
        outcomes, _note = channel._outcomes(record, status, {2: 11, 3: 12}, mapped)
        got = ["done" if o.state is State.DONE else f"failed:{o.category}" for _rid, o in outcomes]
        assert got == want
        if errors:
            assert "Invalid CSV" in (outcomes[1][1].message or "")
    finally:
        journal.close()


async def test_an_import_without_a_plan_is_refused_before_anything_is_sent(bulk: Bulk) -> None:
    rows = [bulk.row(user) for user in bulk.users[:3]]
    session = bulk.session(rows, bulk.config())
    try:
        decision = await prepare_sync(session, requested=False, allow_drops=None)
        assert decision.refused and "--via sis-import uploads the plan's changes" in (
            decision.refused
        )
        assert not session.store.loaded and bulk.imports() == 0
    finally:
        await session.close()
