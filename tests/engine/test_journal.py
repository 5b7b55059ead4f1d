"""The journal as a store: loading, state moves, queries the console's views rely on."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from canvas_tui.config import load_config
from canvas_tui.engine.journal import (
    Journal,
    JournalError,
    Outcome,
    _window_sql,
    written_enrollment_ids,
)
from canvas_tui.engine.session import open_session
from canvas_tui.records import SisStatus, SourceItem, State
from tests.engine.helpers import items, problem, record
from tests.helpers import damage_pages

NOWHERE = "http://127.0.0.1:9"  # never reached: nothing is sent


def test_load_accounts_for_every_source_item(journal: Journal) -> None:
    source = [*items(10), problem(11), problem(12, "duplicate of line 3", skip=True)]
    total = journal.load(source, description="in.csv", fingerprint="f")
    assert total == 12
    counts = journal.counts()
    assert counts[State.PENDING] == 10
    assert counts[State.FAILED] == 1
    assert counts[State.SKIPPED] == 1
    failed = journal.get(11)
    assert failed is not None
    assert failed.category == "invalid_input"
    assert "Improper status" in (failed.message or "")
    assert failed.raw["status"] == "bogus"
    assert journal.record(11) is None
    assert journal.loaded
    assert journal.get_meta("source") == "in.csv"


def test_records_round_trip_with_warnings(journal: Journal) -> None:
    rec = record(1, role="TAEnrollment", enrollment_type="TaEnrollment", warnings=("TA spelled",))
    journal.load([rec], description="in.csv")
    assert journal.record(1) == rec
    row = journal.get(1)
    assert row is not None
    assert row.warnings == ("TA spelled",)
    assert row.user == "sis_user_id:U1"
    assert row.course == "sis_course_id:C1"


def test_interrupted_load_continues_without_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    j = Journal(path)

    def crashing() -> Iterator[SourceItem]:
        yield from items(2500)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        j.load(crashing(), description="in.csv")
    assert not j.loaded
    assert j.last_record_id() == 1700  # the chunks committed: 200, 500, 1,000 (then 2,000 each)
    j.close()
    j = Journal(path)
    assert j.load(items(3000), description="in.csv") == 3000
    assert j.count() == 3000
    j.close()


async def test_claim_is_durable_and_conditional(journal: Journal) -> None:
    journal.load(items(5), description="in.csv")
    assert journal.transition([2], State.SKIPPED, only_from=[State.PENDING]) == [
        (2, State.PENDING, None)
    ]
    claimed = await journal.claim([1, 2, 3])
    assert claimed == [1, 3]  # 2 was skipped first: writes apply in order
    assert journal.transition([1], State.SKIPPED, only_from=[State.PENDING]) == []
    # The claim committed with the next batch (the transition above waited for one): another
    # connection sees it.
    other = sqlite3.connect(journal.path)
    states = dict(other.execute("SELECT record_id, state FROM records").fetchall())
    other.close()
    assert states[1] == "in_flight"
    assert states[2] == "skipped"


async def test_outcomes_attempts_and_resume(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    j = Journal(path)
    j.load(items(3), description="in.csv")
    await j.claim([1, 2])

    class Ev:
        number = 1
        method = "POST"
        url = "https://canvas.test/api/v1/courses/sis_course_id:C1/enrollments"
        request_body = '{"enrollment": {}}'
        status = 200
        category = None
        message = None
        error_report_id = None
        cost = 0.5
        remaining = 590.0
        started_at = time.time()
        finished_at = time.time()
        will_retry = False
        wait = None

    j.post_attempt(1, Ev())
    j.post_outcome(1, Outcome(State.DONE, action="create", canvas_enrollment_id=77), attempts=1)
    await j.flush()
    row = j.get(1)
    assert row is not None
    assert (row.state, row.action, row.canvas_enrollment_id, row.attempts) == (
        State.DONE,
        "create",
        77,
        1,
    )
    assert [a.status for a in j.attempts(1)] == [200]
    assert j.attempt_totals() == {"requests": 1, "throttled": 0, "retries": 0}
    j.close()
    # A crash left record 2 in flight: on resume it goes back to pending, record 1 stays done.
    j = Journal(path)
    assert j.reset_in_flight() == [2]
    assert j.counts()[State.PENDING] == 2
    assert j.counts()[State.DONE] == 1
    j.close()


def test_rows_filter_order_and_text(journal: Journal) -> None:
    source = [record(i, course="BIO" if i % 2 else "CHEM") for i in range(1, 21)]
    journal.load([*source, problem(21)], description="in.csv")
    assert journal.count(text="chem") == 10
    assert journal.count(state=State.FAILED) == 1
    rows = journal.rows(0, 5, order="-record_id")
    assert [r.record_id for r in rows] == [21, 20, 19, 18, 17]
    page = journal.rows(5, 3, text="BIO")
    assert [r.record_id for r in page] == [11, 13, 15]
    assert journal.rows(0, 10, text="100%") == []  # LIKE wildcards are escaped
    with pytest.raises(ValueError):
        journal.rows(0, 1, order="user; DROP TABLE records")
    assert journal.failed_ids() == [21]
    assert journal.failed_ids("invalid_input") == [21]
    assert journal.failed_ids("throttled") == []


def test_read_only_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    j = Journal(path)
    j.load(items(2), description="in.csv")
    j.close()
    ro = Journal(path, read_only=True)
    assert ro.count() == 2
    with pytest.raises(JournalError):
        ro.set_meta(x="1")
    ro.close()
    with pytest.raises(JournalError):
        Journal(tmp_path / "missing.journal", read_only=True)


def test_not_a_journal(tmp_path: Path) -> None:
    bogus = tmp_path / "x.journal"
    bogus.write_text("hello, this is not sqlite" * 100)
    with pytest.raises(JournalError, match="not a canvas-tui journal"):
        Journal(bogus)


def test_views_use_indexes(tmp_path: Path) -> None:
    """Not a timing assertion: the plans must use indexes, not scans, for the console's views."""
    j = Journal(tmp_path / "big.journal")
    j.load(
        (record(i, status=SisStatus.ACTIVE) for i in range(1, 5_001)),
        description="big.csv",
    )
    assert j.count() == 5_000
    plan = " ".join(
        str(r)
        for r in j._query(
            "EXPLAIN QUERY PLAN SELECT record_id FROM records WHERE state = 'failed' "
            "ORDER BY record_id LIMIT 50 OFFSET 0"
        )
    )
    assert "records_state" in plan
    assert len(j.rows(4_950, 100, state=State.PENDING)) == 50
    j.close()


async def test_text_search_matches_a_substring_scan_as_messages_change(journal: Journal) -> None:
    source = [record(i, course=f"BIO-{i % 7}", section=f"S{i % 3}") for i in range(1, 301)]
    journal.load([*source, problem(301, "Improper role")], description="in.csv")
    await journal.claim(list(range(1, 40)))
    for i in range(1, 40):
        outcome = (
            Outcome(State.FAILED, category="user_not_found", message=f"User U{i} not found")
            if i % 2
            else Outcome(State.DONE, action="create", canvas_enrollment_id=i)
        )
        journal.post_outcome(i, outcome, attempts=1)
    await journal.flush()

    def scan(text: str) -> list[int]:
        needle = text.lower()
        return [
            r.record_id
            for r in journal.iter_rows()
            if any(needle in (v or "").lower() for v in (r.user, r.course, r.section, r.message))
        ]

    for text in ("U1", "u12", "bio-3", "not found", "Improper", "S2", "sis_user_id:U29", "zzz"):
        found = [r.record_id for r in journal.rows(0, 1000, text=text)]
        assert found == scan(text), text
        assert journal.count(text=text) == len(found)
    assert journal.count(State.FAILED, "not found") == 20


def test_unfiltered_pages_match_offset_semantics(journal: Journal) -> None:
    journal.load(items(120, bad_every=9), description="in.csv")
    ids = list(range(1, 121))
    for offset, limit in ((0, 10), (115, 10), (119, 5), (120, 5), (500, 5), (37, 0)):
        assert [r.record_id for r in journal.rows(offset, limit)] == ids[offset : offset + limit]
        assert [r.record_id for r in journal.rows(offset, limit, order="-record_id")] == (
            ids[::-1][offset : offset + limit]
        )


async def test_mark_in_place_ends_only_pending_records_done(journal: Journal) -> None:
    journal.load(items(3), description="in.csv")
    assert await journal.claim([1]) == [1]
    await journal.mark_in_place(
        [(1, "plan: already active", 501), (2, "plan: already active", 502)]
    )
    one, two, three = (journal.get(i) for i in (1, 2, 3))
    assert one is not None and one.state == State.IN_FLIGHT  # no longer pending: left alone
    assert two is not None and (two.state, two.action) == (State.DONE, "none")
    assert (two.message, two.canvas_enrollment_id) == ("plan: already active", 502)
    assert three is not None and three.state == State.PENDING


async def test_written_enrollment_ids_reads_done_writes_of_any_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "a.journal")
    journal.load(items(3), description="in.csv")
    await journal.claim([1, 2, 3])
    journal.post_outcome(1, Outcome(State.DONE, "create", canvas_enrollment_id=11))
    journal.post_outcome(2, Outcome(State.DONE, "none", canvas_enrollment_id=12))
    journal.post_outcome(3, Outcome(State.FAILED, "create", category="server_error"))
    await journal.flush()
    journal.close()
    (tmp_path / "notes.journal").write_text("not a journal")
    paths = [tmp_path / "a.journal", tmp_path / "a.journal", tmp_path / "notes.journal"]
    assert written_enrollment_ids(paths, actions=("create",)) == {11}
    assert written_enrollment_ids(paths, actions=("create", "none")) == {11, 12}
    assert written_enrollment_ids(paths, actions=("create",), excluding_source="in.csv") == set()
    assert written_enrollment_ids([tmp_path / "missing.journal"], actions=("create",)) == set()


def test_text_search_folds_case_beyond_ascii(journal: Journal) -> None:
    """As the trigram index folds case: "école" finds ÉCOLE (LIKE alone would not)."""
    journal.load([record(1, course="ÉCOLE-1"), record(2, course="ECOLE-2")], description="in.csv")
    assert [r.record_id for r in journal.rows(0, 10, text="école")] == [1]
    assert journal.count(text="ÉCOLE") == 1


def test_a_journal_opened_unverified_checks_its_pages_on_verify(tmp_path: Path) -> None:
    """`verify=False` (the console's engine) defers the page check; `verify()` does it."""
    path = tmp_path / "j.journal"
    store = Journal(path)
    store.load(items(400), description="in.csv")
    store.close()
    healthy = Journal(path, verify=False)
    assert not healthy.verified
    healthy.verify()
    assert healthy.verified
    healthy.close()
    # only the last pages (record rows), so that the open itself reads none of them
    pages = path.stat().st_size // int.from_bytes(path.read_bytes()[16:18], "big")
    damage_pages(path, first=pages - 4)
    with pytest.raises(JournalError, match="the journal is damaged"):
        Journal(path)
    deferred = Journal(path, verify=False)
    try:
        with pytest.raises(JournalError, match="the journal is damaged"):
            deferred.verify()
        assert not deferred.verified
    finally:
        deferred.close()


async def test_a_damaged_journal_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    """The console's engine opens a journal unverified: a damaged one still says so, at open
    (its counts read a damaged page) or before its first load or run, never half-way."""
    path = tmp_path / "j.journal"
    store = Journal(path)
    store.load(items(400), description="in.csv")
    store.close()
    damage_pages(path)
    config = load_config(None, env={"CANVAS_API_TOKEN": "t", "CANVAS_BASE_URL": NOWHERE})
    try:
        session = open_session(config, journal_path=path, verify_journal=False)
    except JournalError as exc:
        assert "the journal is damaged" in str(exc)
        return
    try:
        with pytest.raises(JournalError, match="the journal is damaged"):
            await session.run()
        assert session.client is not None and session.client.requests_sent == 0
    finally:
        await session.close()


QUEUE_ORDERS = ("record_id", "updated_at", "state", "course", "user", "category")


async def _mixed_journal(journal: Journal) -> dict[int, tuple[object, ...]]:
    """300 records over every state, seven courses (some repeated, so ties fall to the id),
    failures in three categories and rejected rows; returns each row's sortable values."""
    source: list[SourceItem] = [
        problem(i) if i % 37 == 0 else record(i, course=f"C{(i * 5) % 7}") for i in range(1, 301)
    ]
    journal.load(source, description="in.csv")
    claimed = await journal.claim([i for i in range(1, 301) if i % 3 and i % 37])
    for i in claimed:
        if i % 5 == 0:
            continue  # left in flight
        category = ("not_found", "forbidden", "server_error")[i % 3]
        outcome = (
            Outcome(State.FAILED, "create", category, f"{category} {i}", 400)
            if i % 4 == 0
            else Outcome(State.SKIPPED, message="skipped")
            if i % 13 == 0
            else Outcome(State.DONE, "create", canvas_enrollment_id=i)
        )
        journal.post_outcome(i, outcome, attempts=1)
    await journal.flush()
    return {
        r.record_id: (r.state, r.updated_at, r.course, r.user, r.category)
        for r in journal.iter_rows()
    }


async def test_sorted_windows_are_the_windows_of_a_full_sort(journal: Journal) -> None:
    """Each order the queue offers, under every state filter and none, both ways, read from the
    top and (given the total) from the end: the same rows as a sort of every matching row
    (NULLs first ascending, as SQLite sorts; ties by record id)."""
    values = await _mixed_journal(journal)
    assert {v[0] for v in values.values()} == set(State)  # every state is there
    field = {"state": 0, "updated_at": 1, "course": 2, "user": 3, "category": 4}
    for state in (None, *State):
        ids = [i for i, v in values.items() if state is None or v[0] is state]
        for name in QUEUE_ORDERS:

            def key(i: int, name: str = name) -> tuple[object, ...]:
                if name == "record_id":
                    return (i,)
                value = values[i][field[name]]
                value = value.value if isinstance(value, State) else value
                return (value is not None, value if value is not None else "", i)

            ascending = sorted(ids, key=key)
            for order, expected in ((name, ascending), (f"-{name}", ascending[::-1])):
                n = len(expected)
                for offset, limit in ((0, 7), (3, 50), (n // 2, 9), (n - 5, 10), (n, 5), (0, 0)):
                    want = expected[offset : offset + limit]
                    for total in (None, n):
                        got = journal.rows(offset, limit, state=state, order=order, total=total)
                        assert [r.record_id for r in got] == want, (state, order, offset, total)


async def test_sorted_windows_read_an_index_not_a_sort(journal: Journal) -> None:
    """Not a timing assertion: under any state filter, or none, each order the queue offers
    but the user's (which has no state-first index: see the schema) is read from an index in
    its order, so no window sorts the matching rows (at a million records a sort of every
    pending row took seconds of CPU)."""
    await _mixed_journal(journal)
    for state in (None, *State):
        for name in QUEUE_ORDERS:
            for descending in (False, True):
                if name == "user" or (
                    state is None and name in ("record_id", "course", "category")
                ):
                    continue  # the user index, the per-column ones, a seek by id: rows' own paths
                if state is State.IN_FLIGHT and name != "record_id":
                    continue  # the records in flight, a handful, are sorted
                sql, params = _window_sql(state, name, descending)
                plan = " ".join(
                    str(r[-1]) for r in journal._query(f"EXPLAIN QUERY PLAN {sql}", [*params, 1, 0])
                )
                sorted_arm = "USE TEMP B-TREE FOR ORDER BY" if state is None else ""
                # unfiltered, only the in-flight arm of the merge sorts
                assert plan.count("TEMP B-TREE") == (1 if sorted_arm and name != "state" else 0), (
                    state,
                    name,
                    descending,
                    plan,
                )
                assert "SCAN records" not in plan or (state is None and name == "state"), plan


async def test_a_journal_with_the_old_indexes_gets_the_state_first_ones(tmp_path: Path) -> None:
    """A schema-2 journal written before the state-first indexes: the writer builds them and
    drops `records_updated` when it opens the file, and every row reads back the same."""
    path = tmp_path / "old.journal"
    journal = Journal(path)
    await _mixed_journal(journal)
    before = [r.record_id for r in journal.rows(0, 500, order="-course")]
    journal.close()
    db = sqlite3.connect(path)
    for name in ("course", "category", "updated"):
        db.execute(f"DROP INDEX records_state_{name}")
    db.execute("CREATE INDEX records_updated ON records(updated_at)")
    db.commit()
    db.close()
    old = Journal(path, read_only=True)  # read-only: read as it is, through a sort
    assert [r.record_id for r in old.rows(0, 500, order="-course")] == before
    old.close()
    reopened = Journal(path)
    try:
        indexes = {
            str(n)
            for (n,) in reopened._query(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records'"
            )
        }
        assert {"records_state_course", "records_state_updated", "records_course"} <= indexes
        assert "records_updated" not in indexes
        assert [r.record_id for r in reopened.rows(0, 500, order="-course")] == before
    finally:
        reopened.close()


def test_a_load_waits_for_the_writer_instead_of_queueing_rows(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Backpressure between the load and the journal's writer thread (issue 14): with the
    writer stalled (a starved thread on a loaded machine), the load reads at most two chunks
    of rows ahead of it, then blocks, instead of queueing the source in memory."""
    monkeypatch.setattr("canvas_tui.engine.journal._LOAD_CHUNK", 100)
    monkeypatch.setattr("canvas_tui.engine.journal._FIRST_CHUNKS", ())
    stall = threading.Event()
    read = 0
    beyond: list[bool] = []  # whether the writer was stalled when a row past the bound was read

    def source() -> Iterator[SourceItem]:
        nonlocal read
        for item in items(1000):
            read += 1
            if read == 2:  # the source is registered (item 1): stall what the writer runs next
                journal.post(lambda conn: stall.wait(30))
            if read == 201:
                beyond.append(not stall.is_set())
            yield item

    loading = threading.Thread(
        target=lambda: journal.load(source(), description="in.csv"), daemon=True
    )
    loading.start()
    for _ in range(1000):  # until the load blocks at the bound (or runs past it)
        if read >= 200:
            break
        time.sleep(0.01)
    time.sleep(0.2)  # room to run past the bound, were there none
    assert read == 200  # two chunks: one the writer holds, one waiting for it
    stall.set()
    loading.join(30)
    assert not loading.is_alive()
    assert beyond == [False]
    assert journal.count() == 1000 and journal.loaded


# ---- a loop's per-record writes on the write connection (issue 14) ---------------------------


def _committed_states(path: Path) -> dict[int, str]:
    """Record states as another connection sees them: what is committed."""
    other = sqlite3.connect(path)
    try:
        return {int(r): str(s) for r, s in other.execute("SELECT record_id, state FROM records")}
    finally:
        other.close()


def _until(condition: Callable[[], bool]) -> None:
    """Wait (blocking the event loop, if any) until `condition` holds, 10 s at most."""
    deadline = time.monotonic() + 10
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.001)


def _skip(record_id: int) -> Callable[[sqlite3.Connection], None]:
    def skip(conn: sqlite3.Connection) -> None:
        conn.execute(
            "UPDATE records SET state = 'skipped' WHERE record_id = ? AND state = 'pending'",
            (record_id,),
        )

    return skip


async def test_a_loop_claim_runs_inline_and_commits_with_the_window_unawaited(
    journal: Journal,
) -> None:
    """With the writer idle, a claim and an outcome made on the event loop run on its thread
    (no hand-off to the writer), join one transaction, and commit when the batch window closes
    with nothing awaited, not before: what a kill -9 can lose is what it lost before."""
    journal.load(items(3), description="in.csv")
    writer = journal._w()
    before = writer.inline_runs
    assert await journal.claim([1, 2]) == [1, 2]
    journal.post_outcome(1, Outcome(State.DONE, action="create"), attempts=1)
    assert writer.inline_runs == before + 2  # neither went through the writer's queue
    assert _committed_states(journal.path)[1] == "pending"  # the window is still open
    for _ in range(100):  # the loop's timer commits at the window's end (20 ms)
        await asyncio.sleep(0.01)
        if _committed_states(journal.path)[1] == "done":
            break
    states = _committed_states(journal.path)
    assert (states[1], states[2], states[3]) == ("done", "in_flight", "pending")


async def test_a_loop_claim_never_passes_a_queued_write(journal: Journal) -> None:
    """A write queued before a claim (a skip, posted while the writer gathers a window, so
    the connection is free) runs first: the claim goes through the queue behind it."""
    journal.load(items(3), description="in.csv")
    writer = journal._w()
    opened = threading.Thread(target=lambda: journal.post(lambda conn: None))
    opened.start()  # from a thread: wakes the writer, which opens a window and waits in it
    opened.join()
    _until(lambda: not writer._queued)  # it has run (the loop is not let run meanwhile)
    journal.post(_skip(1))  # queued (no running write wakes the writer for a post)
    assert await journal.claim([1, 2]) == [2]
    await journal.flush()
    assert journal.counts()[State.SKIPPED] == 1


async def test_a_loop_claim_waits_for_a_busy_writer(journal: Journal) -> None:
    """With the writer running a write (a load's chunk, an operator's skip from another
    thread), the claim and the outcome are queued behind it, in order, as before."""
    journal.load(items(3), description="in.csv")
    writer = journal._w()
    busy, release = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        busy.set()
        release.wait(10)

    held = writer.submit(hold)
    assert busy.wait(10)
    skipper = threading.Thread(
        target=lambda: journal.transition([1], State.SKIPPED, only_from=[State.PENDING])
    )
    skipper.start()
    _until(lambda: writer._queued >= 2)  # the skip is queued behind the held write
    before = writer.inline_runs
    claiming = asyncio.ensure_future(journal.claim([1, 2]))
    await asyncio.sleep(0.05)
    assert not claiming.done()  # waits in the queue: the connection is busy
    journal.post_outcome(3, Outcome(State.FAILED, message="x"))  # queued too
    release.set()
    assert await claiming == [2]  # after the skip
    await asyncio.wrap_future(held)
    skipper.join(10)
    await journal.flush()
    assert writer.inline_runs == before
    assert _committed_states(journal.path) == {1: "skipped", 2: "in_flight", 3: "failed"}


async def test_a_write_after_the_loop_committed_the_window_waited_for_is_committed(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer gathers a window an inline claim opened (it ran a thread's post in it); the
    loop's timer commits that window while the writer sleeps; an awaited write that then wakes
    the writer runs in the next transaction, which the writer commits at once."""
    monkeypatch.setattr("canvas_tui.engine.journal._BATCH_WINDOW", 2.0)  # the writer sleeps
    journal.load(items(3), description="in.csv")
    writer = journal._w()
    assert await journal.claim([1]) == [1]  # inline: opens the window, the loop's timer set
    window = writer._batch
    assert window is not None and window.open
    posting = threading.Thread(target=lambda: journal.post(lambda conn: None))
    posting.start()  # the writer wakes for it, runs it in the window, sleeps until its end
    posting.join()
    _until(lambda: not writer._queued)
    writer._window_closed(window)  # the loop's timer, early: commits the window
    assert not window.open and _committed_states(journal.path)[1] == "in_flight"
    await asyncio.wait_for(asyncio.to_thread(journal.flush_sync), 1.0)  # not hung
