"""The run journal: one SQLite (WAL) file per run, the single source of truth for every record.

Writes go through one writer thread so the event loop never waits on SQLite. Claims (records
going in flight), results and attempts run in the writer's open transaction in the order they
were made (an awaited write at once, posted ones by the window's end) and commit together every
few tens of milliseconds; a claim is answered as soon as it has run, an operator's move once it
is committed. WAL with synchronous=NORMAL survives a killed process with
every commit; a kill loses the last uncommitted batch and a power loss may roll back the last
few commits, which is safe: an in-flight or done record that reverts to pending is re-sent,
creates are idempotent and inactivate/conclude/delete look the enrollment up before acting.

Each fact is stored once and compactly (schema 2, journal_codec.py); journals of schema 1 are
migrated when opened for writing and read through views when opened read-only. Schema 3 adds the
SIS imports a run made (`imports`, `import_rows`: the uploaded file, Canvas's id for it, which
record each row carries) and each record's channel; a schema-2 journal gains them when opened for
writing and reads as a run without imports when opened read-only.

Reads use their own connection (WAL readers never block the writer) and may lag the posted
writes by one batch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import json
import os
import queue
import sqlite3
import threading
import time
from asyncio.events import _get_running_loop
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from canvas_tui.engine.journal_codec import (
    body_delta,
    body_of,
    fields_to_json,
    raw_of,
    raw_pick,
    raw_to_json,
    record_from_columns,
    templated,
    url_of,
    url_root,
    url_to_stored,
    warnings_of,
    warnings_to_json,
)
from canvas_tui.engine.lock import JournalBusy, JournalLock
from canvas_tui.engine.state import Attempt, RecordRow
from canvas_tui.private_files import private_dir, touch_private
from canvas_tui.records import EnrollmentRecord, Provenance, SourceItem, State, clip

SCHEMA_VERSION = "3"
_OLD_SCHEMA = "1"  # migrated to 3 when opened for writing, read through views when read-only
_SCHEMA_2 = "2"  # gains schema 3's import tables and channel column when opened for writing
SIS_IMPORT_CHANNEL = "sis_import"  # records.channel of a record sent in a SIS import

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Each source once: its description, and the column names of the rows stored as value arrays.
CREATE TABLE IF NOT EXISTS sources (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    columns TEXT                            -- JSON array of the source's column names
);
CREATE TABLE IF NOT EXISTS records (
    record_id INTEGER PRIMARY KEY,          -- 1-based source order
    source_id INTEGER NOT NULL,             -- sources(id)
    line INTEGER NOT NULL,
    raw TEXT NOT NULL,                      -- the row: its values as a JSON array in the source's
                                            -- column order, or a JSON object when its keys differ
    key TEXT,                               -- NULL: user|course|section|role (see _KEY)
    user TEXT NOT NULL,
    course TEXT,
    section TEXT,
    role TEXT NOT NULL,
    status TEXT NOT NULL,
    fields TEXT,                            -- the record's other fields as compact JSON, only
                                            -- those not at their default; NULL if rejected
    warnings TEXT,                          -- JSON array; NULL for none
    state TEXT NOT NULL,
    action TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    http_status INTEGER,
    category TEXT,
    message TEXT,
    error_report_id INTEGER,
    canvas_enrollment_id INTEGER,
    cost REAL,
    updated_at REAL NOT NULL,
    channel TEXT                            -- NULL: REST (or nothing sent); 'sis_import'
);
CREATE INDEX IF NOT EXISTS records_state ON records(state, record_id);
-- The console's sort orders, each within a state: a window under a state filter is a range of
-- one index, in order (no sort of every matching row; `Journal.rows`). An entry moves with its
-- record's every state change, so these leave out `in_flight` (a handful of rows, sorted when
-- asked for): a claim only deletes entries and an outcome only inserts them, and a query uses
-- them by repeating their WHERE (_INDEXED_STATES). The unfiltered orders keep their per-column
-- indexes, which a state change does not move (a course or user changes only by an edit), but
-- for the recently-changed order: the states' ranges of records_state_updated are merged, and
-- `records_updated`, which moved on every write, is dropped when the writer opens an older
-- journal (_OLD_INDEXES). The user order has no state-first index (the writer's CPU): under a
-- state filter it sorts; `records_user` also finds a person's records (`rows_of_users`).
CREATE INDEX IF NOT EXISTS records_course ON records(course, record_id);
CREATE INDEX IF NOT EXISTS records_user ON records(user, record_id);
CREATE INDEX IF NOT EXISTS records_category ON records(category, record_id);
CREATE INDEX IF NOT EXISTS records_state_course ON records(state, course, record_id)
    WHERE state <> 'in_flight';
CREATE INDEX IF NOT EXISTS records_state_category ON records(state, category, record_id)
    WHERE state <> 'in_flight';
CREATE INDEX IF NOT EXISTS records_state_updated ON records(state, updated_at, record_id)
    WHERE state <> 'in_flight';
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    record_id INTEGER NOT NULL,
    number INTEGER NOT NULL,
    method TEXT NOT NULL,
    url TEXT NOT NULL,                      -- "/..." is under meta url_root; "~/..." also
                                            -- names the record's ids as {u} {c} {s}; "#n" is
                                            -- urls(n)
    request_body TEXT,                      -- as sent, unless body_delta rebuilds it
    status INTEGER,
    category TEXT,
    message TEXT,
    error_report_id INTEGER,
    cost REAL,
    remaining REAL,
    will_retry INTEGER NOT NULL DEFAULT 0,
    wait REAL,
    started_at REAL NOT NULL,
    finished_at REAL,
    body_delta TEXT                         -- the body is the record's own POST body with these
                                            -- enrollment fields changed ('' = none): bodies.py
);
CREATE INDEX IF NOT EXISTS attempts_record ON attempts(record_id);
-- The URL templates many records' attempts share ("~/courses/{c}/enrollments"), each once;
-- such an attempt's url is "#" and the template's id.
CREATE TABLE IF NOT EXISTS urls (id INTEGER PRIMARY KEY, template TEXT NOT NULL UNIQUE);
-- SIS imports (engine/sis_import/): the file as uploaded, and what Canvas said of it. `state`:
-- prepared (written here, not sent), uploading (the POST may have reached Canvas: a resume looks
-- for it by `filename` before it would upload again), polling (Canvas's id is known), finished.
CREATE TABLE IF NOT EXISTS imports (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    filename TEXT NOT NULL,
    body BLOB NOT NULL,                     -- the enrollments.csv exactly as uploaded
    rows INTEGER NOT NULL,                  -- data rows (the header is row 1, Canvas's count)
    sis_import_id INTEGER,
    workflow_state TEXT,
    progress REAL,
    status TEXT,                            -- Canvas's last SisImport object (JSON)
    message TEXT,                           -- why it ended as it did, in a sentence
    created_at REAL NOT NULL,
    uploaded_at REAL,
    updated_at REAL NOT NULL
);
-- Which record each data row of an import carries (row: 1-based, header = 1, as Canvas counts).
CREATE TABLE IF NOT EXISTS import_rows (
    import_id INTEGER NOT NULL,
    row INTEGER NOT NULL,
    record_id INTEGER NOT NULL,
    action TEXT NOT NULL,                   -- what the row asks for: create, conclude, ...
    PRIMARY KEY (import_id, row)
) WITHOUT ROWID;
-- Records an operator moved to the front of the queue (issue 17): sent before every other
-- pending record, the latest move's first; `front_moves` keeps each move. Rows stay when their
-- record ends (a trigger or a delete per outcome cost the run path ~20 us a record); the queue
-- reads, joined to records, only those still to send.
CREATE TABLE IF NOT EXISTS front (record_id INTEGER PRIMARY KEY, rank INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS front_moves (
    rank INTEGER PRIMARY KEY,               -- 1, 2, ...: a later move goes before an earlier one
    at REAL NOT NULL,
    label TEXT NOT NULL,                    -- what moved: a course, or the queue's filter
    records INTEGER NOT NULL
);
-- Substring search for the console (`rows(text=...)`) without scanning 100,000 rows: a trigram
-- index over the columns an operator searches, holding only which rows have each trigram
-- (detail=none: a sixth of the full index). A query asks for rows with all of its trigrams,
-- then LIKE on those rows keeps the true matches. Filled per load chunk; kept by a trigger.
CREATE VIRTUAL TABLE IF NOT EXISTS records_text USING fts5(
    user, course, section, message, content='records', content_rowid='record_id',
    tokenize='trigram', detail=none, columnsize=0
);
CREATE TRIGGER IF NOT EXISTS records_text_update
AFTER UPDATE OF user, course, section, message ON records
WHEN old.message IS NOT new.message OR old.user IS NOT new.user
    OR old.course IS NOT new.course OR old.section IS NOT new.section
BEGIN
    INSERT INTO records_text(records_text, rowid, user, course, section, message)
        VALUES ('delete', old.record_id, old.user, old.course, old.section, old.message);
    INSERT INTO records_text(rowid, user, course, section, message)
        VALUES (new.record_id, new.user, new.course, new.section, new.message);
END;
"""

_TRIGRAM = 3  # the trigram index answers substrings of at least this many characters
# Indexes of journals written before the state-first ones above, dropped when the writer opens
# such a journal (a few seconds of CPU at 1,000,000 records, once): the tables are unchanged,
# so the schema version stays and an older canvas-tui still reads the file.
_OLD_INDEXES = ("records_updated",)

# RecordRow field -> SQL column, for `rows(order=...)`. Only these may be interpolated into SQL.
# The key column is NULL where it is this (every row but those with a role id).
_KEY = "user || '|' || COALESCE(course, '') || '|' || COALESCE(section, '') || '|' || role"

_ORDER_COLUMNS = {
    "record_id": "record_id",
    "source": "(SELECT name FROM sources WHERE id = source_id)",
    "line": "line",
    "key": f"COALESCE(key, {_KEY})",
    "user": "user",
    "course": "course",
    "section": "section",
    "role": "role",
    "status": "status",
    "state": "state",
    "action": "action",
    "attempts": "attempts",
    "category": "category",
    "message": "message",
    "error_report_id": "error_report_id",
    "canvas_enrollment_id": "canvas_enrollment_id",
    "updated_at": "updated_at",
}

# Orders the state-first indexes serve (`rows` reads their windows without a sort), and those
# that unfiltered read their own index (or seek by id) instead of merging the states' ranges.
_STATE_INDEXED = frozenset({"record_id", "state", "course", "category", "updated_at"})
_OWN_INDEX = frozenset({"record_id", "course", "category"})
_INDEXED_STATES = " AND state <> 'in_flight'"  # the state-first indexes' WHERE, as written

_ROW_COLUMNS = (
    f"record_id, source_id, line, COALESCE(key, {_KEY}), user, course, section, role, status, state, action, attempts, "
    "category, message, error_report_id, canvas_enrollment_id, raw, updated_at, warnings, "
    "http_status, channel"
)
_ROW_COLUMNS_2 = _ROW_COLUMNS.replace(", channel", ", NULL")  # schema 2 has no channel column

_SET_OUTCOME = (
    "UPDATE records SET state = ?, action = COALESCE(?, action), "
    "attempts = attempts + ?, http_status = ?, category = ?, message = ?, "
    "error_report_id = ?, canvas_enrollment_id = COALESCE(?, canvas_enrollment_id), "
    "cost = COALESCE(?, cost), updated_at = ? WHERE record_id = ?"
)
_SET_OUTCOME_IF_PENDING = _SET_OUTCOME + " AND state = 'pending'"

_LOAD_CHUNK = 2000
# A load's first chunks are smaller: a runner claiming while the load goes on (`on_commit`)
# has its first records after a few hundred rows, not after 2,000.
_FIRST_CHUNKS = (200, 500, 1000)
# Seconds the writer gathers posted writes (outcomes, attempts, claims) into one commit. What a
# SIGKILL loses of them is re-sent on resume, as a record left in flight is.
_BATCH_WINDOW = 0.02

T = TypeVar("T")
WriteFn = Callable[[sqlite3.Connection], Any]


def journals_in(directory: Path | None) -> list[Path]:
    """The journals of a directory: its `*.journal` files, sorted by name (none when it is not
    a directory). The plan's known enrollments, `trace` and `serve` all list them this way."""
    if directory is None or not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.journal") if p.is_file())


class JournalError(Exception):
    """The journal file cannot be used (not a journal, newer schema, read-only misuse)."""


class JournalWriteFailed(JournalError):
    """The journal stopped taking writes mid-run (disk full, I/O error): the run must stop."""

    def __init__(self, path: Path, cause: BaseException) -> None:
        super().__init__(
            f"cannot write the journal {path}: {cause}. The run stopped; nothing after this "
            f"point was recorded. Free space (or fix the file system), then run again with "
            f"--journal {path} to resume"
        )
        self.path = path
        self.cause = cause


@dataclass(frozen=True, slots=True)
class LoadedChunk:
    """Rows a load has committed: claimable from now on."""

    first: int  # record ids first..last
    last: int
    states: Mapping[State, int]  # how many rows went in in each state
    failed: tuple[tuple[int, str | None, str | None], ...]  # (record_id, category, message)


class AttemptLike(Protocol):
    """What the journal keeps of one HTTP attempt (the client's AttemptEvent satisfies it)."""

    @property
    def number(self) -> int: ...
    @property
    def method(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def request_body(self) -> str | None: ...
    @property
    def status(self) -> int | None: ...
    @property
    def category(self) -> Any: ...
    @property
    def message(self) -> str | None: ...
    @property
    def error_report_id(self) -> int | None: ...
    @property
    def cost(self) -> float | None: ...
    @property
    def remaining(self) -> float | None: ...
    @property
    def started_at(self) -> float: ...
    @property
    def finished_at(self) -> float | None: ...
    @property
    def will_retry(self) -> bool: ...
    @property
    def wait(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one record ended (or went back to pending), as the runner reports it."""

    state: State
    action: str | None = None
    category: str | None = None
    message: str | None = None
    http_status: int | None = None
    error_report_id: int | None = None
    canvas_enrollment_id: int | None = None
    cost: float | None = None


# ---- rows <-> columns -------------------------------------------------------------------------


def _window_sql(state: State | None, column: str, descending: bool) -> tuple[str, list[Any]]:
    """The SELECT of a window's ids in `column` order (one of `_STATE_INDEXED`), then record
    id, with its parameters but LIMIT and OFFSET: a range of one state-first index, or the five
    states' ranges merged."""
    d = "DESC" if descending else "ASC"
    if state is not None or column == "state":
        # one range: within a state, the state order is source order
        key = "record_id" if column == "state" and state is not None else column
        where = "" if state is None else f"WHERE state = ?{_in_index(state)} "
        tiebreak = "" if key == "record_id" else f", record_id {d}"
        sql = f"SELECT record_id FROM records {where}"  # noqa: S608
        sql += f"ORDER BY {key} {d}{tiebreak} LIMIT ? OFFSET ?"
        return sql, [] if state is None else [State(state).value]
    arm = f"SELECT {column}, record_id FROM records WHERE state = ?"  # noqa: S608
    arms = " UNION ALL ".join(arm + _in_index(s) for s in State)
    return f"{arms} ORDER BY 1 {d}, 2 {d} LIMIT ? OFFSET ?", [s.value for s in State]


def _in_index(state: State) -> str:
    """The state-first indexes' own WHERE, for a query of a state they hold: SQLite uses a
    partial index only when the query repeats its condition."""
    return _INDEXED_STATES if State(state) is not State.IN_FLIGHT else ""


def _take(conn: sqlite3.Connection, import_id: int, now: float) -> int:
    return int(
        conn.execute(
            "UPDATE records SET state = 'in_flight', channel = ?, action = i.action, "
            "updated_at = ? FROM import_rows AS i WHERE i.import_id = ? "
            "AND records.record_id = i.record_id AND records.state = 'pending'",
            (SIS_IMPORT_CHANNEL, now, import_id),
        ).rowcount
    )


@dataclass(frozen=True, slots=True)
class ImportRecord:
    """One SIS import as the journal keeps it (the `imports` table, without the file)."""

    id: int
    state: str  # prepared | uploading | polling | finished
    filename: str
    rows: int
    sis_import_id: int | None
    workflow_state: str | None
    progress: float | None
    status: str | None  # Canvas's last SisImport object, JSON
    message: str | None
    created_at: float
    uploaded_at: float | None
    updated_at: float


def _derived_key(user: str, course: str | None, section: str | None, role: str) -> str:
    return "|".join((user, course or "", section or "", role))


def _item_params(
    record_id: int, item: SourceItem, now: float, source_id: int, columns: list[str] | None
) -> tuple[Any, ...]:
    prov = item.provenance
    raw = raw_to_json(prov.raw, columns)
    if isinstance(item, EnrollmentRecord):
        key = item.key
        derived = _derived_key(item.user, item.course, item.section, item.role)
        return (
            record_id,
            source_id,
            prov.line,
            raw,
            None if key == derived else key,
            item.user,
            item.course,
            item.section,
            item.role,
            str(item.status),
            fields_to_json(item),
            warnings_to_json(item.warnings),
            State.PENDING.value,
            None,
            None,
            None,
            now,
            None,
        )
    # A row the source rejected: accounted for at once, never sent.
    r = prov.raw
    user = raw_pick(r, "user_id", "user_integration_id")
    course = raw_pick(r, "course_id") or None
    section = raw_pick(r, "section_id") or None
    role = raw_pick(r, "role", "role_id")
    return (
        record_id,
        source_id,
        prov.line,
        raw,
        None,
        user,
        course,
        section,
        role,
        raw_pick(r, "status"),
        None,
        None,
        (State.SKIPPED if item.skip else State.FAILED).value,
        "skip" if item.skip else None,
        None if item.skip else "invalid_input",
        clip(str(item)),
        now,
        None,
    )


def _in_place_params(params: tuple[Any, ...], message: str, enrollment_id: int | None) -> Any:
    """A record's insert parameters, ended done at once (what `mark_in_place` writes)."""
    return (*params[:12], State.DONE.value, "none", None, clip(message), params[16], enrollment_id)


_INSERT_RECORD = (
    "INSERT INTO records (record_id, source_id, line, raw, key, user, course, section, role, "
    "status, fields, warnings, state, action, category, message, updated_at, "
    "canvas_enrollment_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

# (_KEY is a constant)
_LATER = f"SELECT 1 FROM records WHERE user = ? AND record_id > ? AND fields IS NOT NULL AND COALESCE(key, {_KEY}) = ? LIMIT 1"  # noqa: S608
_SUPERSEDE = f"UPDATE records SET state = ?, action = 'skip', message = ? WHERE user = ? AND state = ? AND record_id < ? AND COALESCE(key, {_KEY}) = ?"  # noqa: S608

_RECORD_COLUMNS = "source_id, line, raw, user, course, section, role, status, fields, warnings"


def _register_source(
    conn: sqlite3.Connection, name: str, raw: Mapping[str, str]
) -> tuple[int, list[str] | None]:
    """(writer thread) The id of source `name` and the columns its rows are stored by (the
    first row's keys, the first time the source is seen)."""
    conn.execute(
        "INSERT INTO sources (name, columns) VALUES (?, ?) ON CONFLICT(name) DO NOTHING",
        (name, json.dumps(list(raw))),
    )
    sid, columns = conn.execute(
        "SELECT id, columns FROM sources WHERE name = ?", (name,)
    ).fetchone()
    return int(sid), None if columns is None else list(json.loads(columns))


def _outcome_params(record_id: int, outcome: Outcome, attempts: int, now: float) -> tuple[Any, ...]:
    """The parameters of `_SET_OUTCOME`."""
    return (
        outcome.state.value,
        outcome.action,
        attempts,
        outcome.http_status,
        outcome.category,
        None if outcome.message is None else clip(outcome.message),  # Canvas's text, bounded
        outcome.error_report_id,
        outcome.canvas_enrollment_id,
        outcome.cost,
        now,
        record_id,
    )


def _done(message: str, enrollment_id: int | None) -> Outcome:
    return Outcome(State.DONE, "none", message=message, canvas_enrollment_id=enrollment_id)


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _holds(value: str | None, lowered: str) -> bool:
    return value is not None and lowered in value.lower()


def _trigrams(text: str) -> str:
    """An FTS5 query for rows holding every trigram of `text` (each a quoted one-token phrase,
    which a detail=none index answers); the LIKE beside it keeps the true substrings. Trigrams
    that do not overlap (and the last) cover the text: fewer lists to intersect, same answer."""
    starts = [*range(0, len(text) - _TRIGRAM + 1, _TRIGRAM), len(text) - _TRIGRAM]
    grams = dict.fromkeys(text[i : i + _TRIGRAM] for i in starts)
    return " ".join('"' + g.replace('"', '""') + '"' for g in grams)


# ---- the writer thread ------------------------------------------------------------------------


class _Writer(threading.Thread):
    """Owns the write connection; runs queued functions, many per transaction.

    Each function runs as it arrives, inside the open transaction; the transaction commits when
    the batch window closes or as soon as someone awaits a commit. A function submitted `early`
    is answered as soon as it has run (its result is what every later read will see; a crash
    before the commit undoes it together with everything after it).

    The connection is guarded by `lock`, held by whoever runs a write on it. An event loop's
    per-record writes (a claim, an attempt, an outcome: `inline`) run on the loop's own thread
    when the lock is free and nothing is queued, so they keep their order with every queued
    write and join the open transaction as a queued write would; otherwise they are queued. The
    window's commit is made by whoever holds the connection when it closes: the writer, or a
    timer on the loop that opened the transaction (issue 14: each hand-off to this thread and
    back cost a thread switch and a GIL hand-off per record)."""

    def __init__(self, path: Path) -> None:
        super().__init__(name=f"journal-writer:{path.name}", daemon=True)
        self._path = path
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        # A token from whoever awaits an answer (a submit) or stops the writer: the gathering
        # window wakes for that at once, while a post waits for the window's end (issue 14:
        # waking the writer for each posted outcome cost a thread switch and a GIL hand-off).
        self._wanted: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._ready = concurrent.futures.Future[None]()
        self.errors: list[BaseException] = []
        self.failure: JournalWriteFailed | None = None  # set once; every later write fails
        self.lock = threading.Lock()  # held while the connection runs a write or commits
        # Items put and not yet run (changed under `_count_lock`; it only falls under `lock`):
        # a write runs inline only when this is 0, so it never passes a queued one.
        self._queued = 0
        self._count_lock = threading.Lock()
        self._stopped = False  # (under `lock`) the writer has taken its stop
        self.inline_runs = 0  # writes run on a caller's thread (tests, measurements)
        self._conn: sqlite3.Connection | None = None
        self._batch: _Batch | None = None

    def start_and_wait(self) -> None:
        self.start()
        self._ready.result()

    def _put(self, item: _Item | None) -> None:
        with self._count_lock:
            self._queued += 1
            self._queue.put(item)

    def _ran(self) -> None:
        with self._count_lock:
            self._queued -= 1

    def submit(self, fn: WriteFn, *, early: bool = False) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._put((fn, future, early))
        self._wanted.put(None)
        return future

    def post(self, fn: WriteFn) -> None:
        self._put((fn, None, False))

    def stop(self) -> None:
        self._put(None)
        self._wanted.put(None)
        self.join()

    def inline(
        self, fn: WriteFn, loop: asyncio.AbstractEventLoop, *, post: bool = False
    ) -> tuple[bool, Any]:
        """Run `fn` now, on this (the loop's) thread, if the writer is idle: (True, its value),
        in the open transaction, committed by the batch rule. (False, None) when it must be
        queued instead: the connection is in use, a write is queued, or the journal has failed.
        Raises what `fn` raises, or JournalWriteFailed if the journal fails with it; a `post`
        raises nothing (its error is kept in `errors`, as a queued post's is)."""
        if self._queued or self.failure is not None or not self.lock.acquire(blocking=False):
            return False, None
        try:
            batch = self._batch
            if self._queued or self._stopped or batch is None or self.failure is not None:
                return False, None
            opened = not batch.open
            try:
                value, error = batch.call(fn)
            except JournalWriteFailed:
                if post:
                    return True, None
                raise
            self.inline_runs += 1
            if batch.size >= _BATCH_MAX:
                self._commit()
            elif opened:  # this transaction's window is this loop's to close
                loop.call_later(_BATCH_WINDOW, self._window_closed, batch)
        finally:
            self.lock.release()
        if error is not None:
            if not post:
                raise error
            self.errors.append(error)
        return True, value

    def _window_closed(self, batch: _Batch) -> None:
        """(loop timer) The window of a transaction an inline write opened has closed."""
        if self._batch is not batch or not batch.open:
            return  # committed already
        if not self.lock.acquire(blocking=False):
            # the writer runs a write of this batch and commits it after, when the window has
            # closed; a check makes sure of it if someone else holds the connection
            self._put((_check_window, None, False))
            return
        try:
            if self._batch is batch and batch.open:
                self._commit()
        finally:
            self.lock.release()

    def _commit(self) -> None:
        """(under `lock`) Commit the open batch and start the next."""
        assert self._batch is not None and self._conn is not None
        batch, self._batch = self._batch, _Batch(self, self._conn)
        batch.commit()

    def run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            version = _schema_version(conn)
            if version == _OLD_SCHEMA:
                _migrate(conn)
            elif version == _SCHEMA_2:
                _migrate_2(conn)
            conn.executescript(_SCHEMA)
            for index in _OLD_INDEXES:
                conn.execute(f"DROP INDEX IF EXISTS {index}")
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (SCHEMA_VERSION,),
            )
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        self._conn = conn
        self._batch = _Batch(self, conn)
        self._ready.set_result(None)
        try:
            self._loop()
        finally:
            with self.lock:
                self._stopped = True
                _checkpoint(conn)
                with contextlib.suppress(sqlite3.Error):  # a full disk may refuse the checkpoint
                    conn.close()

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            with self.lock:
                stopping = self._run(first)
                # Gather a window of writes: run what is queued, then sleep until the window
                # ends or someone awaits an answer (`_wanted`); once someone awaits a commit,
                # take only what is already queued (it rides along) and commit. Inline writes
                # join meanwhile. The open batch is read again after each wait: the loop's
                # timer may have committed the one waited for, and what ran since is in the
                # next, which this thread then commits by the same rule.
                while True:
                    while not stopping:
                        assert self._batch is not None
                        if self._batch.size >= _BATCH_MAX:
                            break
                        try:
                            item = self._queue.get_nowait()
                        except queue.Empty:
                            break
                        stopping = self._run(item)
                    batch = self._batch
                    assert batch is not None
                    if not batch.open:
                        break  # nothing open: committed by the loop's timer, or failed
                    left = batch.deadline - time.monotonic()
                    if stopping or batch.urgent or batch.size >= _BATCH_MAX or left <= 0:
                        self._commit()
                        break
                    self.lock.release()
                    try:
                        # Tokens are put after their item: once one is taken, so is any other
                        # (their items are queued). A token left by an item already run only
                        # ends this wait early.
                        with contextlib.suppress(queue.Empty):
                            self._wanted.get(timeout=left)
                            while True:
                                self._wanted.get_nowait()
                    finally:
                        self.lock.acquire()
                if stopping and self._batch is not None and self._batch.open:
                    self._commit()

    def _run(self, item: _Item | None) -> bool:
        """(under `lock`) Run one queued item; True for the stop."""
        try:
            if item is None:
                self._stopped = True  # nothing runs inline any more
                return True
            assert self._batch is not None
            self._batch.run(item)
            return False
        finally:
            self._ran()

    def fail(self, exc: BaseException, futures: Iterable[concurrent.futures.Future[Any]]) -> None:
        """A full disk or an I/O error: the batch is lost and later writes would fare no
        better."""
        self.errors.append(exc)
        self.failure = JournalWriteFailed(self._path, exc)
        for future in futures:
            if not future.done():
                future.set_exception(self.failure)


_Item = tuple["WriteFn | None", "concurrent.futures.Future[Any] | None", bool]
_BATCH_MAX = 5000  # writes in one transaction at most


def _check_window(conn: sqlite3.Connection) -> None:
    """Queued by a loop's timer that found the connection busy: the writer, running it in the
    open batch, commits that batch if its window has closed."""


class _Batch:
    """One transaction: runs writes as they come, answers the queued ones at the commit."""

    def __init__(self, writer: _Writer, conn: sqlite3.Connection) -> None:
        self._writer = writer
        self._conn = conn
        self.open = False
        self.deadline = 0.0  # when the window closes (monotonic), once open
        self._answers: list[tuple[concurrent.futures.Future[Any], Any, BaseException | None]] = []
        self.size = 0
        self.urgent = False

    def call(self, fn: WriteFn) -> tuple[Any, BaseException | None]:
        """Run `fn` in the transaction (opening it): its value or the error it raised. On a
        storage failure the batch is rolled back and failed, and JournalWriteFailed raised."""
        self.size += 1
        writer = self._writer
        try:
            opening = not self.open
            if opening:
                self._conn.execute("BEGIN IMMEDIATE")
                self.open = True
            try:
                value, error = fn(self._conn), None
            except Exception as exc:
                if _storage_failure(exc) or not self._conn.in_transaction:
                    raise  # SQLite may have rolled the whole batch back: stop here
                value, error = None, exc
            if opening:
                self.deadline = time.monotonic() + _BATCH_WINDOW
        except Exception as exc:
            self._rollback()
            pending = [f for f, _, _ in self._answers]
            self._answers = []
            writer.fail(exc, pending)
            assert writer.failure is not None
            raise writer.failure from exc
        return value, error

    def run(self, item: _Item) -> bool:
        """Run one queued item; False once the journal has failed (the item is answered with
        it)."""
        fn, future, early = item
        writer = self._writer
        if fn is _check_window:
            return True  # nothing to write: the caller commits if the window has closed
        if writer.failure is not None:  # nothing more is written once the journal failed
            self.size += 1
            if future is not None:
                future.set_exception(writer.failure)
            return False
        assert fn is not None
        try:
            value, error = self.call(fn)
        except JournalWriteFailed as failure:
            if future is not None and not future.done():
                future.set_exception(failure)
            return False
        if future is None:
            if error is not None:
                writer.errors.append(error)
            return True
        if early:
            _answer(future, value, error)
        else:
            self.urgent = True
            self._answers.append((future, value, error))
        return True

    def _rollback(self) -> None:
        # SQLite has often rolled back already, so ROLLBACK itself may fail
        with contextlib.suppress(sqlite3.Error):
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        self.open = False

    def commit(self) -> None:
        if self.open:
            self.open = False
            try:
                self._conn.execute("COMMIT")
            except Exception as exc:
                self._rollback()
                self._writer.fail(exc, [f for f, _, _ in self._answers])
                self._answers = []
                return
        for future, value, error in self._answers:
            _answer(future, value, error)


def _answer(
    future: concurrent.futures.Future[Any], value: Any, error: BaseException | None
) -> None:
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


def _storage_failure(exc: BaseException) -> bool:
    """An error of the file, not of the statement: the journal cannot take more writes."""
    return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError


# ---- the journal ------------------------------------------------------------------------------


class Journal:
    """A run's records and attempts; implements `RecordStore` (engine/state.py)."""

    def __init__(
        self,
        path: str | Path,
        *,
        read_only: bool = False,
        immutable: bool = False,
        verify: bool = True,
    ) -> None:
        """`immutable` (with `read_only`): nobody writes this file while it is open, so SQLite
        may skip the -wal/-shm files altogether and leave the directory untouched. It falls back to
        a plain read-only open when a -wal file is there (a crashed run's last commits live in it).
        `verify` (writable): check an existing file's pages now; False leaves that to `verify()`,
        to be called before anything is written (the console opens a journal for triage first).
        """
        self.path = Path(path)
        self.read_only = read_only
        self._writer: _Writer | None = None
        self._lock: JournalLock | None = None
        self._sources: dict[int, tuple[str, list[str] | None]] = {}
        self._root: str | None = None  # the Canvas API root attempts' URLs are stored under
        self._templates: dict[int, str] = {}  # urls, as read
        self._template_ids: dict[str, int] = {}  # (write connection) urls, as written
        self._first_seen: dict[str, int] = {}  # (write conn.) template -> its first record
        # Records claimed and not yet settled, as the claim read them (writes on the write
        # connection fill and empty it; the runner reads it instead of a SELECT per record).
        self._claimed: dict[int, EnrollmentRecord | None] = {}  # (dict ops are atomic)
        existed = self.path.is_file() and self.path.stat().st_size > 0
        if read_only:
            if not self.path.exists():
                raise JournalError(f"{self.path}: no such journal")
            self.immutable = immutable and not wal_path(self.path).exists()
            query = "immutable=1" if self.immutable else "mode=ro"
            self._read = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?{query}", uri=True, check_same_thread=False
            )
        else:
            self.immutable = False
            self._lock = _open_for_writing(self.path)
            self._writer = _Writer(self.path)
            try:
                self._writer.start_and_wait()
                self._read = sqlite3.connect(self.path, check_same_thread=False)
            except sqlite3.DatabaseError as exc:
                self._release()
                raise _open_error(self.path, exc) from exc
        self._read.execute("PRAGMA busy_timeout=5000")
        self._read.create_function("journal_holds", 2, _holds, deterministic=True)
        self._read_lock = threading.Lock()
        self.verified = read_only or not existed  # nothing to check, or nothing will be written
        try:
            version = self._one("SELECT value FROM meta WHERE key = 'schema_version'")
            if not self.verified and verify:  # ~1.5 s of CPU per 1,000,000 records
                _check_pages(self._read, self.path)
                self.verified = True
        except sqlite3.DatabaseError as exc:
            self.close()
            raise _open_error(self.path, exc) from exc
        except JournalError:
            self.close()
            raise
        # a schema-2 journal read-only: a run without imports, every record's channel REST
        self._has_imports = version != _SCHEMA_2
        self._row_columns = _ROW_COLUMNS if self._has_imports else _ROW_COLUMNS_2
        if version == _OLD_SCHEMA and read_only:
            _old_schema_views(self._read)
        elif version == _SCHEMA_2 and read_only:
            pass
        elif version is not None and version != SCHEMA_VERSION:
            self.close()
            raise JournalError(
                f"{self.path}: journal schema {version}, this canvas-tui reads {SCHEMA_VERSION}"
            )
        self._root = self.get_meta("url_root")

    def verify(self) -> None:
        """Check the pages of a journal opened with `verify=False`, once (blocking: call it in a
        thread). Raises JournalError if the file is damaged."""
        if self.verified:
            return
        conn = _open_read_only(self.path)  # not the shared reader: its lock would be held
        try:
            _check_pages(conn, self.path)
        except sqlite3.DatabaseError as exc:
            raise _open_error(self.path, exc) from exc
        finally:
            conn.close()
        self.verified = True

    @property
    def stale_lock(self) -> str | None:
        """Who held this journal's lock before and died without releasing it, if anyone did."""
        return None if self._lock is None else self._lock.stale

    def _release(self) -> None:
        if self._writer is not None:
            self._writer.stop()
            self._writer = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # ---- plumbing ----------------------------------------------------------------------------

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._read_lock:
            return self._read.execute(sql, tuple(params)).fetchall()

    def _one(self, sql: str, params: Iterable[Any] = ()) -> Any:
        rows = self._query(sql, params)
        return rows[0][0] if rows else None

    def _w(self) -> _Writer:
        if self._writer is None:
            raise JournalError(f"{self.path}: opened read-only")
        return self._writer

    def write_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in the writer thread and wait until it is committed (call from a thread)."""
        result: T = self._w().submit(fn).result()
        return result

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in the writer thread; returns once it is committed."""
        result: T = await asyncio.wrap_future(self._w().submit(fn))
        return result

    def post(self, fn: WriteFn) -> None:
        """Queue `fn`; it commits with the next batch. Order with other writes is kept."""
        self._w().post(fn)

    def _post_record(self, fn: WriteFn) -> None:
        """A record's attempt or outcome: on an event loop's thread it runs there when the
        writer is idle (`_Writer.inline`), else it is posted. Order and commit as `post`."""
        writer = self._w()
        loop = _get_running_loop()
        if loop is None or not writer.inline(fn, loop, post=True)[0]:
            writer.post(fn)

    async def flush(self) -> None:
        if self._writer is not None:
            await self.write(lambda conn: None)

    def flush_sync(self) -> None:
        if self._writer is not None:
            self.write_sync(lambda conn: None)

    def close(self) -> None:
        self._release()
        with self._read_lock:
            self._read.close()

    @property
    def write_errors(self) -> list[BaseException]:
        return [] if self._writer is None else list(self._writer.errors)

    @property
    def failure(self) -> JournalWriteFailed | None:
        """Why the journal stopped taking writes (disk full...); None while it is healthy."""
        return None if self._writer is None else self._writer.failure

    # ---- metadata ----------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        value = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if value is None else str(value)

    def meta(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self._query("SELECT key, value FROM meta")}

    def set_meta(self, **values: str) -> None:
        """Posted; use `flush()` when it must be on disk."""
        items = list(values.items())
        self.post(
            lambda conn: conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                items,
            )
        )

    # ---- loading -----------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        """True once a source has been read to its end into this journal."""
        return self.get_meta("loaded") == "1"

    def last_record_id(self) -> int:
        return int(self._one("SELECT COALESCE(MAX(record_id), 0) FROM records"))

    def load(
        self,
        items: Iterable[SourceItem],
        *,
        description: str,
        fingerprint: str = "",
        on_progress: Callable[[int], None] | None = None,
        in_place: Callable[[int], tuple[str, int | None] | None] | None = None,
        on_commit: Callable[[LoadedChunk], None] | None = None,
        stop: threading.Event | None = None,
    ) -> int:
        """Append a source's items in order (blocking: call it in a thread). Returns the total.

        A load interrupted by a crash resumes where it stopped: items already in the journal
        (by source order) are not inserted again.

        `in_place(record_id)`: for a record Canvas already holds, (message, enrollment id): it
        is inserted done with action `none`, as `mark_in_place` would end it, so it is never
        claimable. `on_commit`: called from the writer thread as each chunk commits, so that a
        runner may claim its records while the load goes on. `stop`: once set, the load ends
        after the item it is reading, not marked loaded (the next load continues after it).
        """
        already = self.last_record_id()
        self.write_sync(
            lambda conn: conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [
                    ("source", description),
                    ("fingerprint", fingerprint),
                    ("created_at", self.get_meta("created_at") or repr(time.time())),
                ],
            )
        )
        chunk: list[tuple[Any, ...]] = []
        sizes = iter(_FIRST_CHUNKS)
        size = next(sizes, _LOAD_CHUNK)
        count = 0
        stopped = False
        # Two chunks in flight: the next one is built while SQLite writes the last one.
        writing: deque[concurrent.futures.Future[Any]] = deque()
        delivered = threading.Semaphore(0)  # chunks announced to `on_commit`
        chunks = 0
        sources: dict[str, tuple[int, list[str] | None]] = {}
        now = time.time()
        try:
            for count, item in enumerate(items, start=1):
                if count <= already:
                    continue
                prov = item.provenance
                source = sources.get(prov.source)
                if source is None:
                    source = sources[prov.source] = self._source_for_load(prov.source, prov.raw)
                params = _item_params(count, item, now, *source)
                if in_place is not None and params[12] == "pending":
                    settled = in_place(count)
                    if settled is not None:
                        params = _in_place_params(params, *settled)
                chunk.append(params)
                if len(chunk) >= size:
                    writing.append(self._insert(chunk, on_commit, delivered))
                    chunks += 1
                    chunk = []
                    size = next(sizes, _LOAD_CHUNK)
                    now = time.time()  # one timestamp a chunk: rows of a chunk land together
                    if len(writing) > 1:
                        writing.popleft().result()
                    if on_progress is not None:
                        on_progress(count)
                if stop is not None and stop.is_set():
                    stopped = True
                    break
            if chunk:
                writing.append(self._insert(chunk, on_commit, delivered))
                chunks += 1
        finally:
            # A source failing mid-way keeps what was read: the next load continues after it.
            for future in writing:
                future.result()
            if on_commit is not None:
                for _ in range(chunks):
                    delivered.acquire()
        total = max(count, already)
        if stopped:
            return total
        self.write_sync(
            lambda conn: conn.execute(
                "INSERT INTO meta (key, value) VALUES ('loaded', '1') "
                "ON CONFLICT(key) DO UPDATE SET value = '1'"
            )
        )
        if on_progress is not None:
            on_progress(total)
        return total

    def _source_for_load(self, name: str, raw: Mapping[str, str]) -> tuple[int, list[str] | None]:
        """The id of source `name` and the columns its rows are stored by (the first row's keys,
        the first time the source is loaded)."""

        return self.write_sync(lambda conn: _register_source(conn, name, raw))

    def insert_items(
        self, conn: sqlite3.Connection, items: Sequence[SourceItem], now: float
    ) -> list[int]:
        """(writer thread, inside the caller's transaction) Append `items` after the last
        record, pending (a rejected row failed, a duplicate skipped); returns their ids. For a
        caller that must commit them together with its own rows (`canvas-tui watch`)."""
        if not items:
            return []
        start = int(conn.execute("SELECT COALESCE(MAX(record_id), 0) FROM records").fetchone()[0])
        sources: dict[str, tuple[int, list[str] | None]] = {}
        rows: list[tuple[Any, ...]] = []
        for record_id, item in enumerate(items, start=start + 1):
            prov = item.provenance
            source = sources.get(prov.source)
            if source is None:
                source = sources[prov.source] = _register_source(conn, prov.source, prov.raw)
            rows.append(_item_params(record_id, item, now, *source))
        conn.executemany(_INSERT_RECORD, rows)
        first, last = start + 1, start + len(rows)
        conn.execute(
            "INSERT INTO records_text (rowid, user, course, section, message) "
            "SELECT record_id, user, course, section, message FROM records "
            "WHERE record_id BETWEEN ? AND ?",
            (first, last),
        )
        return list(range(first, last + 1))

    def has_later(self, record_id: int, record: EnrollmentRecord) -> bool:
        """Whether a record after `record_id` names the same enrollment (a later change of the
        same row, `canvas-tui watch`); a row the source rejected does not count."""
        return bool(self._query(_LATER, (record.user, record_id, record.key)))

    @staticmethod
    def supersede(
        conn: sqlite3.Connection, record_id: int, record: EnrollmentRecord, message: str
    ) -> int:
        """(writer thread) Skip the records before `record_id` that name the same enrollment and
        are still pending: a later change of the row replaces them (`canvas-tui watch`). Records
        already claimed are left to finish; the sender orders them per enrollment."""
        return int(
            conn.execute(
                _SUPERSEDE,
                (
                    State.SKIPPED.value,
                    message,
                    record.user,
                    State.PENDING.value,
                    record_id,
                    record.key,
                ),
            ).rowcount
        )

    @staticmethod
    def delete_records(conn: sqlite3.Connection, where: str, params: Sequence[Any]) -> int:
        """(writer thread) Remove the records `where` selects, with their attempts and search
        entries (journal compaction); the newest record always stays, so ids never repeat."""
        selected = (
            f"SELECT record_id FROM records WHERE ({where}) "  # noqa: S608 -- the caller's SQL
            "AND record_id < (SELECT MAX(record_id) FROM records)"
        )
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS compacted (record_id INTEGER PRIMARY KEY)")
        conn.execute("DELETE FROM compacted")
        conn.execute(f"INSERT INTO compacted {selected}", tuple(params))
        conn.execute("DELETE FROM attempts WHERE record_id IN (SELECT record_id FROM compacted)")
        conn.execute(
            "INSERT INTO records_text (records_text, rowid, user, course, section, message) "
            "SELECT 'delete', record_id, user, course, section, message FROM records "
            "WHERE record_id IN (SELECT record_id FROM compacted)"
        )
        removed = conn.execute(
            "DELETE FROM records WHERE record_id IN (SELECT record_id FROM compacted)"
        ).rowcount
        conn.execute("DELETE FROM compacted")
        return int(removed)

    def _source(self, source_id: int) -> tuple[str, list[str] | None]:
        """(name, columns) of a source id; read from the journal the first time."""
        found = self._sources.get(source_id)
        if found is None:
            for sid, name, columns in self._query("SELECT id, name, columns FROM sources"):
                self._sources[int(sid)] = (
                    str(name),
                    None if columns is None else list(json.loads(columns)),
                )
            found = self._sources.get(source_id, ("", None))
        return found

    def _row(self, values: tuple[Any, ...]) -> RecordRow:
        (
            record_id,
            source_id,
            line,
            key,
            user,
            course,
            section,
            role,
            status,
            state,
            action,
            attempts,
            category,
            message,
            error_report_id,
            enrollment_id,
            raw,
            updated_at,
            warnings,
            http_status,
            channel,
        ) = values
        source, columns = self._source(source_id)
        return RecordRow(
            record_id=record_id,
            source=source,
            line=line,
            key=key,
            user=user,
            course=course,
            section=section,
            role=role,
            status=status,
            state=State(state),
            action=action,
            attempts=attempts,
            category=category,
            message=message,
            error_report_id=error_report_id,
            canvas_enrollment_id=enrollment_id,
            raw=raw_of(raw, columns),
            updated_at=updated_at,
            warnings=warnings_of(warnings),
            http_status=http_status,
            channel=channel,
        )

    def _record_of(self, values: Sequence[Any]) -> EnrollmentRecord | None:
        """The record of `_RECORD_COLUMNS`; None for a row the source rejected."""
        source_id, line, raw, user, course, section, role, status, fields, warnings = values
        if fields is None:
            return None
        name, columns = self._source(source_id)
        provenance = Provenance(name, line, raw_of(raw, columns))
        return record_from_columns(
            (user, course, section, role, status), fields, warnings, provenance
        )

    def _insert(
        self,
        rows: list[tuple[Any, ...]],
        on_commit: Callable[[LoadedChunk], None] | None,
        delivered: threading.Semaphore,
    ) -> concurrent.futures.Future[Any]:
        """Queue a chunk's rows; `on_commit(chunk)` once committed, then `delivered` is
        released (a future's callbacks run after its waiters wake: the load waits for these
        so that no chunk is announced after the load has returned)."""
        first, last = rows[0][0], rows[-1][0]

        def insert(conn: sqlite3.Connection) -> None:
            conn.executemany(_INSERT_RECORD, rows)
            conn.execute(
                "INSERT INTO records_text (rowid, user, course, section, message) "
                "SELECT record_id, user, course, section, message FROM records "
                "WHERE record_id BETWEEN ? AND ?",
                (first, last),
            )

        future = self._w().submit(insert)
        if on_commit is not None:
            states = Counter(State(row[12]) for row in rows)
            failed = tuple((row[0], row[14], row[15]) for row in rows if row[12] == "failed")
            loaded = LoadedChunk(first, last, dict(states), failed)

            def committed(done: concurrent.futures.Future[Any]) -> None:
                try:
                    if not done.cancelled() and done.exception() is None:
                        on_commit(loaded)
                finally:
                    delivered.release()

            future.add_done_callback(committed)  # in the writer thread, at the commit
        return future

    # ---- RecordStore -------------------------------------------------------------------------

    def _where(self, state: State | None, text: str | None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if state is not None:
            clauses.append("state = ?")
            params.append(State(state).value)
        if text and len(text) >= _TRIGRAM:
            # the rows with every trigram, then those holding the text, case folded as the
            # trigram tokenizer folds it: LIKE for ASCII text (it folds ASCII only), else Python
            clauses.append(
                "record_id IN (SELECT rowid FROM records_text WHERE records_text MATCH ?)"
            )
            params.append(_trigrams(text))
        if text and len(text) >= _TRIGRAM and not text.isascii():
            clauses.append(
                "(journal_holds(user, ?) OR journal_holds(course, ?) "
                "OR journal_holds(section, ?) OR journal_holds(message, ?))"
            )
            params.extend([text.lower()] * 4)
        elif text:
            like = _like(text)
            clauses.append(
                "(user LIKE ? ESCAPE '\\' OR course LIKE ? ESCAPE '\\' "
                "OR section LIKE ? ESCAPE '\\' OR message LIKE ? ESCAPE '\\')"
            )
            params.extend([like] * 4)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def count(self, state: State | None = None, text: str | None = None) -> int:
        where, params = self._where(state, text)
        return int(self._one(f"SELECT COUNT(*) FROM records{where}", params))  # noqa: S608

    def counts(self) -> dict[State, int]:
        found = dict(self._query("SELECT state, COUNT(*) FROM records GROUP BY state"))
        return {s: int(found.get(s.value, 0)) for s in State}

    def category_counts(self, state: State | None = State.FAILED) -> dict[str, int]:
        where, params = self._where(state, None)
        if state is not None:
            where += _in_index(state)  # one range of records_state_category (at the first frame)
        sql = (
            f"SELECT category, COUNT(*) FROM records{where}"  # noqa: S608
            f"{' AND' if where else ' WHERE'} category IS NOT NULL GROUP BY category"
        )
        return {str(c): int(n) for c, n in self._query(sql, params)}

    def status_counts(
        self, state: State | None = State.PENDING, *, source: str | None = None
    ) -> dict[str, int]:
        """SIS status -> records in `state` (from `source` only, if given): what a start will
        ask of Canvas."""
        where, params = self._where(state, None)
        if source is not None:
            where += f"{' AND' if where else ' WHERE'} source_id = "
            where += "(SELECT id FROM sources WHERE name = ?)"
            params.append(source)
        sql = f"SELECT status, COUNT(*) FROM records{where} GROUP BY status"  # noqa: S608
        return {str(s): int(n) for s, n in self._query(sql, params)}

    def rows(
        self,
        offset: int,
        limit: int,
        *,
        state: State | None = None,
        text: str | None = None,
        order: str = "record_id",
        total: int | None = None,
    ) -> list[RecordRow]:
        descending = order.startswith("-")
        column = _ORDER_COLUMNS.get(order.lstrip("-"))
        if column is None:
            raise ValueError(f"cannot order records by {order!r}")
        direction = "DESC" if descending else "ASC"
        tiebreak = "" if column == "record_id" else f", record_id {direction}"
        where, params = self._where(state, text)
        if not text and column in _STATE_INDEXED and (where or column not in _OWN_INDEX):
            ids = self._window_ids(offset, limit, state, column, descending, total)
            return self._rows_of(ids)
        if not where and column == "record_id":
            # Ids are dense 1..N in source order, so the unfiltered view seeks instead of
            # stepping over `offset` rows (the bottom of a 100,000-row list stays instant).
            last = self.last_record_id()
            low, high = (offset, last) if not descending else (0, last - max(0, offset))
            sql = (
                f"SELECT {self._row_columns} FROM records "  # noqa: S608
                f"WHERE record_id > ? AND record_id <= ? ORDER BY record_id {direction} LIMIT ?"
            )
            return [self._row(v) for v in self._query(sql, [max(0, low), high, max(0, limit)])]
        offset, limit = max(0, offset), max(0, limit)
        backwards = not text and total is not None and offset > total // 2
        if backwards and total is not None:  # the bottom half, from the end (see _window_ids)
            descending = not descending
            direction = "DESC" if descending else "ASC"
            tiebreak = "" if column == "record_id" else f", record_id {direction}"
            offset, limit = max(0, total - offset - limit), max(0, min(limit, total - offset))
        sql = (
            f"SELECT {self._row_columns} FROM records{where} "  # noqa: S608
            f"ORDER BY {column} {direction}{tiebreak} LIMIT ? OFFSET ?"
        )
        found = [self._row(v) for v in self._query(sql, [*params, limit, offset])]
        return found[::-1] if backwards else found

    def _window_ids(
        self,
        offset: int,
        limit: int,
        state: State | None,
        column: str,
        descending: bool,
        total: int | None,
    ) -> list[int]:
        """The ids of a window in `column` order (then record id), read from the state-first
        indexes without a sort: under a state filter one index range, else the five states'
        ranges merged (SQLite merges a compound SELECT whose arms come ordered). SQLite still
        steps over `offset` index entries (about 30 ns each under a filter, 200 ns merged), so
        a window in the bottom half of `total` rows is read backwards from the end."""
        offset, limit = max(0, offset), max(0, limit)
        if total is not None and offset > total // 2:
            skip, take = max(0, total - offset - limit), max(0, min(limit, total - offset))
            ids = self._ordered_ids(skip, take, state, column, not descending)
            ids.reverse()
            return ids
        return self._ordered_ids(offset, limit, state, column, descending)

    def _ordered_ids(
        self, offset: int, limit: int, state: State | None, column: str, descending: bool
    ) -> list[int]:
        sql, params = _window_sql(state, column, descending)
        return [int(v[-1]) for v in self._query(sql, [*params, limit, offset])]

    def _rows_of(self, ids: Sequence[int]) -> list[RecordRow]:
        """The rows of these ids, in this order (a window: a few hundred at most)."""
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        found = {
            v[0]: v
            for v in self._query(
                f"SELECT {self._row_columns} FROM records WHERE record_id IN ({marks})",  # noqa: S608
                ids,
            )
        }
        return [self._row(found[i]) for i in ids if i in found]

    def get(self, record_id: int) -> RecordRow | None:
        found = self._query(
            f"SELECT {self._row_columns} FROM records WHERE record_id = ?",  # noqa: S608
            (record_id,),
        )
        return self._row(found[0]) if found else None

    def attempts(self, record_id: int) -> list[Attempt]:
        """The record's HTTP attempts, each with its URL and body as sent."""
        found = self._query(
            "SELECT number, started_at, finished_at, method, url, request_body, status, "
            "category, message, error_report_id, cost, body_delta FROM attempts "
            "WHERE record_id = ? ORDER BY id",
            (record_id,),
        )
        if self._root is None:
            self._root = self.get_meta("url_root")
        found = [(*v[:4], self._template(v[4]), *v[5:]) for v in found]
        own = any(v[-1] is not None or templated(v[4]) for v in found)
        record = self.record(record_id) if own else None
        out = []
        for number, started, finished, method, url, body, *rest, delta in found:
            if delta is not None and record is not None:
                body = body_of(delta, record)
            url = url_of(url, self._root, record)
            out.append(Attempt(number, started, finished, method, url, body, *rest))
        return out

    def rows_of_users(self, users: Collection[str]) -> list[RecordRow]:
        """Every record that names one of `users` (the `user` column: an API id, or a rejected
        row's bare id), in source order: one range of the `records_user` index per id, which
        schema 1 has too, so a term of journals is searched without reading their records."""
        wanted = list(dict.fromkeys(users))
        if not wanted:
            return []
        marks = ", ".join("?" for _ in wanted)
        sql = (
            f"SELECT {_ROW_COLUMNS} FROM records WHERE user IN ({marks}) "  # noqa: S608
            "ORDER BY record_id"
        )
        return [self._row(v) for v in self._query(sql, wanted)]

    def failed_ids(self, category: str | None = None) -> list[int]:
        if category is None:
            found = self._query(
                "SELECT record_id FROM records WHERE state = 'failed' ORDER BY record_id"
            )
        else:
            found = self._query(
                "SELECT record_id FROM records WHERE state = 'failed' AND category = ? "
                "ORDER BY record_id",
                (str(category),),
            )
        return [int(v[0]) for v in found]

    # ---- what the runner needs ---------------------------------------------------------------

    def record(self, record_id: int) -> EnrollmentRecord | None:
        """The normalized record to send; None for rows the source rejected. A claimed record
        comes from what the claim read."""
        with contextlib.suppress(KeyError):  # one lookup: the writer may settle it meanwhile
            return self._claimed[record_id]
        found = self._query(
            f"SELECT {_RECORD_COLUMNS} FROM records WHERE record_id = ?",  # noqa: S608
            (record_id,),
        )
        return self._record_of(found[0]) if found else None

    def iter_records(
        self, state: State = State.PENDING, *, chunk: int = 2000
    ) -> Iterator[tuple[int, EnrollmentRecord]]:
        """(record_id, record) of the sendable records in `state`, in source order, read in
        chunks (a SIS import's file is built from the pending ones)."""
        after = 0
        while True:
            found = self._query(
                f"SELECT record_id, {_RECORD_COLUMNS} FROM records "  # noqa: S608
                "WHERE state = ? AND record_id > ? AND fields IS NOT NULL "
                "ORDER BY record_id LIMIT ?",
                (State(state).value, after, chunk),
            )
            if not found:
                return
            for values in found:
                record = self._record_of(values[1:])
                if record is not None:
                    yield int(values[0]), record
            after = int(found[-1][0])

    def pending_ids(self, after: int = 0, limit: int = 500) -> list[int]:
        found = self._query(
            "SELECT record_id FROM records WHERE state = 'pending' AND record_id > ? "
            "ORDER BY record_id LIMIT ?",
            (after, limit),
        )
        return [int(v[0]) for v in found]

    def iter_rows(self, *, state: State | None = None, chunk: int = 2000) -> Iterator[RecordRow]:
        """Every row in source order, read in chunks (for reports)."""
        after = 0
        state_sql = "" if state is None else " AND state = ?"
        while True:
            params: list[Any] = [after]
            if state is not None:
                params.append(State(state).value)
            found = self._query(
                f"SELECT {self._row_columns} FROM records WHERE record_id > ?{state_sql} "  # noqa: S608
                "ORDER BY record_id LIMIT ?",
                [*params, chunk],
            )
            if not found:
                return
            for values in found:
                yield self._row(values)
            after = found[-1][0]

    def attempt_totals(self, *, unrecorded: bool = True) -> dict[str, int]:
        """requests (HTTP attempts), throttled refusals and retries, over the whole journal;
        `unrecorded`: count the requests of no record too (roster reads, the token check)."""
        requests, throttled, retries = self._query(
            "SELECT COUNT(*), COALESCE(SUM(category = 'throttled'), 0), "
            "COALESCE(SUM(will_retry), 0) FROM attempts"
        )[0]
        if unrecorded:
            requests += self.unrecorded_requests()
        return {"requests": int(requests), "throttled": int(throttled), "retries": int(retries)}

    def unrecorded_requests(self) -> int:
        """Requests that belong to no record (roster reads, the token check), all sessions."""
        return int(self.get_meta("unrecorded_requests") or 0)

    def reset_in_flight(self) -> list[int]:
        """On resume: records a crash left in flight go back to pending, to be re-sent."""

        def reset(conn: sqlite3.Connection) -> list[int]:
            # a record a SIS import carries stays in flight: its import is polled again
            ids = [
                int(v[0])
                for v in conn.execute(
                    "SELECT record_id FROM records WHERE state = 'in_flight' AND channel IS NOT ?",
                    (SIS_IMPORT_CHANNEL,),
                )
            ]
            conn.execute(
                "UPDATE records SET state = 'pending', updated_at = ?, "
                "message = 'was in flight when the run stopped; re-sent on resume' "
                "WHERE state = 'in_flight' AND channel IS NOT ?",
                (time.time(), SIS_IMPORT_CHANNEL),
            )
            return ids

        return self.write_sync(reset)

    async def claim(self, ids: list[int]) -> list[int]:
        """Mark those of these records still pending in flight, in order with every other
        write, and read them for `record()`: one statement, answered before its commit. The
        claim commits with the next batch; a crash before that leaves the records pending,
        which a resume re-sends just as it re-sends records left in flight."""
        now = time.time()
        marks = ", ".join("?" for _ in ids)

        def claim(conn: sqlite3.Connection) -> list[int]:
            found = conn.execute(
                "UPDATE records SET state = 'in_flight', updated_at = ?, channel = NULL "  # noqa: S608
                f"WHERE record_id IN ({marks}) AND state = 'pending' "
                f"RETURNING record_id, {_RECORD_COLUMNS}",
                (now, *ids),
            ).fetchall()
            read = {int(v[0]): self._record_of(v[1:]) for v in found}
            self._claimed.update(read)
            return [record_id for record_id in ids if record_id in read]

        if not ids:
            return []
        writer = self._w()
        ran, found = writer.inline(claim, asyncio.get_running_loop())
        if ran:
            inline: list[int] = found
            return inline
        result: list[int] = await asyncio.wrap_future(writer.submit(claim, early=True))
        return result

    async def unclaim(self, ids: list[int]) -> None:
        """Put claimed records back to pending: their requests never went out."""
        now = time.time()

        def unclaim(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE records SET state = 'pending', updated_at = ? "
                "WHERE record_id = ? AND state = 'in_flight'",
                [(now, record_id) for record_id in ids],
            )
            for record_id in ids:
                self._claimed.pop(record_id, None)

        await self.write(unclaim)

    def post_outcome(self, record_id: int, outcome: Outcome, *, attempts: int = 0) -> None:
        """Record how a claimed record ended (or that it went back to pending)."""
        params = _outcome_params(record_id, outcome, attempts, time.time())

        def settle(conn: sqlite3.Connection) -> None:
            conn.execute(_SET_OUTCOME, params)
            self._claimed.pop(record_id, None)

        self._post_record(settle)

    async def mark_in_place(self, in_place: Iterable[tuple[int, str, int | None]]) -> None:
        """End pending records done with action `none`, for a caller that knows Canvas already
        holds them (the plan): (record_id, message, enrollment id or None) each. One statement
        and one commit for all of them (10,000 posted outcomes would cost a batch each); the
        columns are those `post_outcome` writes. Records no longer pending are left as they are."""
        now = time.time()
        params = [
            _outcome_params(record_id, _done(message, enrollment_id), 0, now)
            for record_id, message, enrollment_id in in_place
        ]
        await self.write(lambda conn: conn.executemany(_SET_OUTCOME_IF_PENDING, params))

    # ---- SIS imports (engine/sis_import/) -------------------------------------------------------

    async def create_import(
        self,
        filename: str,
        body: bytes,
        rows: Sequence[tuple[int, int]],
        actions: Sequence[str],
        *,
        take: bool = True,
    ) -> int:
        """Keep a SIS import's file and take its records in flight on channel `sis_import`, in
        one commit: (row, record_id) per data row, and the action each row asks for. Raises
        JournalError, changing nothing, when a record is no longer pending. `take=False`: keep
        the file only, before the records are loaded (`take_import_records` follows). (Set-based:
        a 100,000-row import is a few statements, and no message changes, which the search
        index would pay for row by row.)"""
        now = time.time()

        def create(conn: sqlite3.Connection) -> int:
            # all or nothing inside the writer's batch: a refusal must leave no half import
            conn.execute("SAVEPOINT create_import")
            try:
                import_id = insert(conn)
            except BaseException:
                conn.execute("ROLLBACK TO create_import")
                conn.execute("RELEASE create_import")
                raise
            conn.execute("RELEASE create_import")
            return import_id

        def insert(conn: sqlite3.Connection) -> int:
            import_id = int(
                conn.execute(
                    "INSERT INTO imports (state, filename, body, rows, created_at, updated_at) "
                    "VALUES ('prepared', ?, ?, ?, ?, ?) RETURNING id",
                    (filename, body, len(rows), now, now),
                ).fetchone()[0]
            )
            conn.executemany(
                "INSERT INTO import_rows (import_id, row, record_id, action) VALUES (?, ?, ?, ?)",
                [
                    (import_id, row, record_id, action)
                    for (row, record_id), action in zip(rows, actions, strict=True)
                ],
            )
            if not take:
                return import_id
            taken = _take(conn, import_id, now)
            if taken != len(rows):
                raise JournalError(f"{len(rows) - taken} records of the import are not pending")
            return import_id

        return await self.write(create)

    async def take_import_records(self, import_id: int) -> int:
        """Take an import's records that are pending in flight on channel `sis_import` (after
        the load that follows an early upload, or on resume); returns how many it took."""
        now = time.time()
        return int(await self.write(lambda conn: _take(conn, import_id, now)))

    async def update_import(self, import_id: int, **values: Any) -> None:
        """Set columns of an import (`state`, `sis_import_id`, `workflow_state`, `progress`,
        `status`, `message`, `uploaded_at`) and commit them: a crash after this keeps them."""
        allowed = {
            "state",
            "sis_import_id",
            "workflow_state",
            "progress",
            "status",
            "message",
            "uploaded_at",
        }
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"not import columns: {sorted(unknown)}")
        columns = ", ".join(f"{name} = ?" for name in values)
        params = (*values.values(), time.time(), import_id)
        await self.write(
            lambda conn: conn.execute(
                f"UPDATE imports SET {columns}, updated_at = ? WHERE id = ?",  # noqa: S608
                params,
            )
        )

    def imports(self) -> list[ImportRecord]:
        """Every SIS import of the run, oldest first (none in a schema-2 journal)."""
        if not self._has_imports:
            return []
        found = self._query(
            "SELECT id, state, filename, rows, sis_import_id, workflow_state, progress, status, "
            "message, created_at, uploaded_at, updated_at FROM imports ORDER BY id"
        )
        return [ImportRecord(*values) for values in found]

    def import_body(self, import_id: int) -> bytes:
        return bytes(self._one("SELECT body FROM imports WHERE id = ?", (import_id,)) or b"")

    def import_rows(self, import_id: int) -> dict[int, int]:
        """row -> record_id of an import's data rows."""
        found = self._query(
            "SELECT row, record_id FROM import_rows WHERE import_id = ?", (import_id,)
        )
        return {int(row): int(record_id) for row, record_id in found}

    def import_records(self, import_id: int, state: State = State.IN_FLIGHT) -> list[int]:
        """The records of an import that are in `state` (in flight: not settled yet)."""
        found = self._query(
            "SELECT r.record_id FROM import_rows AS i JOIN records AS r "
            "ON r.record_id = i.record_id WHERE i.import_id = ? AND r.state = ? "
            "AND r.channel IS ? ORDER BY r.record_id",
            (import_id, State(state).value, SIS_IMPORT_CHANNEL),
        )
        return [int(v[0]) for v in found]

    def import_state_counts(self, import_id: int) -> dict[State, int]:
        """An import's records by state (one query: a panel reopened on a finished run)."""
        found = self._query(
            "SELECT r.state, COUNT(*) FROM import_rows AS i JOIN records AS r "
            "ON r.record_id = i.record_id WHERE i.import_id = ? GROUP BY r.state",
            (import_id,),
        )
        return {State(state): int(n) for state, n in found}

    async def settle_import(
        self,
        import_id: int,
        outcomes: Sequence[tuple[int, Outcome]],
        *,
        rest_done: bool = False,
        **values: Any,
    ) -> list[int]:
        """End an import's records (those still in flight on it) and mark it finished, in one
        commit: a crash before it leaves the import to be polled again, after it leaves nothing
        to do. `outcomes`: those records' outcomes; with `rest_done`, every other record of the
        import ends done (one statement for a 100,000-row import Canvas certified). `values`:
        import columns to set as well. Returns the records it settled."""
        now = time.time()
        update = {**values, "state": "finished"}
        columns = ", ".join(f"{name} = ?" for name in update)
        in_flight = (
            "SELECT r.record_id FROM import_rows AS i JOIN records AS r "
            "ON r.record_id = i.record_id WHERE i.import_id = ? "
            "AND r.state = 'in_flight' AND r.channel IS ?"
        )

        def settle(conn: sqlite3.Connection) -> list[int]:
            live = [int(v[0]) for v in conn.execute(in_flight, (import_id, SIS_IMPORT_CHANNEL))]
            alive = set(live)
            params = [
                _outcome_params(record_id, outcome, 0, now)
                for record_id, outcome in outcomes
                if record_id in alive
            ]
            conn.executemany(_SET_OUTCOME, params)
            if rest_done:
                conn.execute(
                    "UPDATE records SET state = 'done', updated_at = ? FROM import_rows AS i "
                    "WHERE i.import_id = ? AND records.record_id = i.record_id "
                    "AND records.state = 'in_flight' AND records.channel IS ?",
                    (now, import_id, SIS_IMPORT_CHANNEL),
                )
            conn.execute(
                f"UPDATE imports SET {columns}, updated_at = ? WHERE id = ?",  # noqa: S608
                (*update.values(), now, import_id),
            )
            if rest_done:
                return live
            return [record_id for record_id, _ in outcomes if record_id in alive]

        return await self.write(settle)

    def channel_counts(self) -> dict[str, int]:
        """Records sent, by channel: `sis_import`, and `rest` for those REST sent (attempts)."""
        if not self._has_imports:
            found = self._query("SELECT 'rest', COUNT(*) FROM records WHERE attempts > 0")
        else:
            found = self._query(
                "SELECT COALESCE(channel, 'rest'), COUNT(*) FROM records "
                "WHERE channel IS NOT NULL OR attempts > 0 GROUP BY 1"
            )
        return {str(k): int(n) for k, n in found if n}

    def post_attempt(self, record_id: int, event: AttemptLike) -> None:
        """Keep one HTTP attempt. Its URL is stored under the API root and its body as what it
        changes in the record's own body (journal_codec), both checked to give back the text."""
        category = None if event.category is None else str(event.category)
        rest = (
            event.status,
            category,
            None if event.message is None else clip(event.message),
            event.error_report_id,
            event.cost,
            event.remaining,
            int(event.will_retry),
            event.wait,
            event.started_at,
            event.finished_at,
        )
        number, method, url, body = event.number, event.method, event.url, event.request_body

        def insert(conn: sqlite3.Connection) -> None:
            record = self._sending(conn, record_id)
            delta = None
            if body is not None and record is not None:
                delta = body_delta(body, record)
            conn.execute(
                "INSERT INTO attempts (record_id, number, method, url, request_body, status, "
                "category, message, error_report_id, cost, remaining, will_retry, wait, "
                "started_at, finished_at, body_delta) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record_id,
                    number,
                    method,
                    self._shared(conn, self._stored_url(conn, url, record), record_id),
                    body if delta is None else None,
                    *rest,
                    delta,
                ),
            )

        self._post_record(insert)

    def _template(self, stored: str) -> str:
        """A stored URL with a shared template ("#n") replaced by the template."""
        if not stored.startswith("#"):
            return stored
        number = int(stored[1:])
        if number not in self._templates:
            self._templates.update(self._query("SELECT id, template FROM urls"))
        return self._templates[number]

    def _shared(self, conn: sqlite3.Connection, stored: str, record_id: int) -> str:
        """(write connection) "#n" for a templated URL a second record uses too, else `stored`."""
        if not templated(stored):
            return stored
        number = self._template_ids.get(stored)
        if number is None:
            first = self._first_seen.setdefault(stored, record_id)
            if first == record_id:
                if len(self._first_seen) > 10_000:  # templates of one record each: forget them
                    self._first_seen.clear()
                return stored
            conn.execute("INSERT OR IGNORE INTO urls (template) VALUES (?)", (stored,))
            number = int(
                conn.execute("SELECT id FROM urls WHERE template = ?", (stored,)).fetchone()[0]
            )
            self._template_ids[stored] = number
            self._templates[number] = stored  # readable at once, by the writer's edits too
        return f"#{number}"

    def _sending(self, conn: sqlite3.Connection, record_id: int) -> EnrollmentRecord | None:
        """(write connection) The record as it is being sent."""
        with contextlib.suppress(KeyError):  # one lookup: the writer may settle it meanwhile
            return self._claimed[record_id]
        found = conn.execute(
            f"SELECT {_RECORD_COLUMNS} FROM records WHERE record_id = ?",  # noqa: S608
            (record_id,),
        ).fetchone()
        return None if found is None else self._record_of(found)

    def _stored_url(
        self, conn: sqlite3.Connection, url: str, record: EnrollmentRecord | None
    ) -> str:
        """(write connection) `url` as stored: under the journal's API root, set by the first."""
        if self._root is None:
            self._root = url_root(url)
            if self._root is not None:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('url_root', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (self._root,),
                )
        return url_to_stored(url, self._root, record)

    def transition(
        self,
        ids: Iterable[int],
        to: State,
        *,
        only_from: Iterable[State],
        message: str | None = None,
        sendable_only: bool = False,
    ) -> list[tuple[int, State, str | None]]:
        """Operator moves (skip, retry), committed before returning, applied only where the
        record is still in `only_from` (and, with `sendable_only`, has a valid record to send).
        Returns (record_id, previous state, previous category) for each record that moved.

        Blocks for one commit: fine for an operator's keypress, not for the hot path.
        """
        wanted = list(ids)
        allowed = [s.value for s in only_from]
        marks = ", ".join("?" for _ in allowed)
        extra = " AND fields IS NOT NULL" if sendable_only else ""

        def move(conn: sqlite3.Connection) -> list[tuple[int, State, str | None]]:
            now = time.time()
            moved: list[tuple[int, State, str | None]] = []
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                found = conn.execute(
                    "SELECT record_id, state, category FROM records "  # noqa: S608
                    f"WHERE record_id IN ({', '.join('?' for _ in chunk)}) "
                    f"AND state IN ({marks}){extra}",
                    (*chunk, *allowed),
                ).fetchall()
                conn.executemany(
                    "UPDATE records SET state = ?, message = COALESCE(?, message), "
                    "updated_at = ? WHERE record_id = ?",
                    [(to.value, message, now, r) for r, _, _ in found],
                )
                moved.extend((int(r), State(st), c) for r, st, c in found)
            return moved

        if not wanted:
            return []
        return self.write_sync(move)

    def to_front(
        self,
        *,
        label: str,
        courses: Collection[str] = (),
        sections: Collection[str] = (),
        text: str | None = None,
    ) -> list[int]:
        """Move the pending records of these courses (by their API id forms; records that name
        only a section, by `sections`), or those matching the queue's `text` filter, to the
        front of the queue, before any earlier move's. Committed before returning (an
        operator's key); returns the ids moved, in source order."""
        course_list, section_list = list(courses), list(sections)
        candidates: list[int] | None = None
        if text:  # the queue's own match (its trigram index lives on the read side)
            where, params = self._where(State.PENDING, text)
            found = self._query(f"SELECT record_id FROM records{where}", params)  # noqa: S608
            candidates = [int(v[0]) for v in found]
        if candidates is None and not course_list and not section_list:
            return []

        def move(conn: sqlite3.Connection) -> list[int]:
            rank = int(
                conn.execute("SELECT COALESCE(MAX(rank), 0) + 1 FROM front_moves").fetchone()[0]
            )
            moved: list[int] = []
            if candidates is not None:
                for start in range(0, len(candidates), 500):
                    chunk = candidates[start : start + 500]
                    marks = ", ".join("?" for _ in chunk)
                    moved += [
                        int(v[0])
                        for v in conn.execute(
                            "SELECT record_id FROM records "  # noqa: S608
                            f"WHERE record_id IN ({marks}) AND state = 'pending'",
                            chunk,
                        )
                    ]
            else:
                cmarks = ", ".join("?" for _ in course_list) or "NULL"
                smarks = ", ".join("?" for _ in section_list) or "NULL"
                moved = [
                    int(v[0])
                    for v in conn.execute(
                        "SELECT record_id FROM records WHERE state = 'pending' "  # noqa: S608
                        f"AND (course IN ({cmarks}) OR (course IS NULL AND section IN ({smarks})))",
                        (*course_list, *section_list),
                    )
                ]
            moved.sort()
            again = 0  # records an earlier move put in front and still to send: counted once
            for start in range(0, len(moved), 500):
                chunk = moved[start : start + 500]
                marks = ", ".join("?" for _ in chunk)
                again += conn.execute(
                    f"SELECT COUNT(*) FROM front WHERE record_id IN ({marks})",  # noqa: S608
                    chunk,
                ).fetchone()[0]
            conn.executemany(
                "INSERT INTO front (record_id, rank) VALUES (?, ?) "
                "ON CONFLICT(record_id) DO UPDATE SET rank = excluded.rank",
                [(r, rank) for r in moved],
            )
            if moved:
                conn.execute(
                    "INSERT INTO front_moves (rank, at, label, records) VALUES (?, ?, ?, ?)",
                    (rank, time.time(), label, len(moved) - again),
                )
            return moved

        return self.write_sync(move)

    def front_queue(self) -> list[int]:
        """The moved records still to send (pending or in flight), in the order they go: the
        latest move's first, each move's in source order. Empty for a journal from before
        moves were recorded."""
        try:
            found = self._query(
                "SELECT f.record_id FROM front AS f JOIN records AS r "
                "ON r.record_id = f.record_id WHERE r.state IN ('pending', 'in_flight') "
                "ORDER BY f.rank DESC, f.record_id"
            )
        except sqlite3.OperationalError:  # no such table: an older journal, opened read-only
            return []
        return [int(v[0]) for v in found]

    def front_moves(self) -> list[tuple[int, float, str, int]]:
        """Every move to the front so far: (rank, when, what moved, how many records that no
        earlier move had moved)."""
        try:
            found = self._query("SELECT rank, at, label, records FROM front_moves ORDER BY rank")
        except sqlite3.OperationalError:
            return []
        return [(int(r), float(a), str(lb), int(n)) for r, a, lb, n in found]

    def post_fields(self, record_id: int, record: EnrollmentRecord, raw: Mapping[str, str]) -> None:
        """Replace a record's normalized fields after an operator edit. The bodies its earlier
        attempts sent are stored whole first: they were made from the fields before the edit."""
        key = record.key
        derived = _derived_key(record.user, record.course, record.section, record.role)
        values = (
            fields_to_json(record),
            None if key == derived else key,
            record.user,
            record.course,
            record.section,
            record.role,
            str(record.status),
            warnings_to_json(record.warnings),
            time.time(),
            record_id,
        )

        def edit(conn: sqlite3.Connection) -> None:
            before = self._sending(conn, record_id)
            sent = conn.execute(
                "SELECT id, url, request_body, body_delta FROM attempts WHERE record_id = ? "
                "AND (body_delta IS NOT NULL OR url LIKE '~%' OR url LIKE '#%')",
                (record_id,),
            ).fetchall()
            if before is not None:
                conn.executemany(
                    "UPDATE attempts SET url = ?, request_body = ?, body_delta = NULL WHERE id = ?",
                    [
                        (
                            url_to_stored(
                                url_of(self._template(url), self._root, before), self._root
                            ),
                            body if delta is None else body_of(delta, before),
                            attempt,
                        )
                        for attempt, url, body, delta in sent
                    ],
                )
            _, columns = self._source(
                conn.execute(
                    "SELECT source_id FROM records WHERE record_id = ?", (record_id,)
                ).fetchone()[0]
            )
            conn.execute(
                "UPDATE records SET raw = ?, fields = ?, key = ?, user = ?, course = ?, "
                "section = ?, role = ?, status = ?, warnings = ?, updated_at = ? "
                "WHERE record_id = ?",
                (raw_to_json(raw, columns), *values),
            )
            if record_id in self._claimed:
                self._claimed[record_id] = record

        self.post(edit)


# ---- schema 1 -----------------------------------------------------------------------------------


def _schema_version(conn: sqlite3.Connection) -> str | None:
    try:
        found = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError:  # no meta table: a new file
        return None
    return None if found is None else str(found[0])


def _statements(script: str) -> Iterator[str]:
    """The statements of a script (triggers whole), to run inside one transaction, which
    `executescript` would commit."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer
            buffer = ""


def _migrate(conn: sqlite3.Connection) -> None:
    """Rewrite a schema-1 journal as schema 2, in one transaction: records in their compact
    form (journal_codec), attempts as they were (full URLs and bodies read back as they are),
    the search index rebuilt."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DROP TRIGGER IF EXISTS records_text_update")
        conn.execute("DROP TABLE IF EXISTS records_text")
        # schema 1's indexes, by name: they would stay with records_v1 and keep the new
        # table's from being made (CREATE INDEX IF NOT EXISTS), then go with it
        for index in ("state", "course", "user", "category", "updated"):
            conn.execute(f"DROP INDEX IF EXISTS records_{index}")
        conn.execute("ALTER TABLE records RENAME TO records_v1")
        conn.execute("ALTER TABLE attempts ADD COLUMN body_delta TEXT")
        for statement in _statements(_SCHEMA):
            conn.execute(statement)
        sources: dict[str, tuple[int, list[str] | None]] = {}
        rows = conn.execute(
            "SELECT record_id, source, line, raw, key, user, course, section, role, status, "
            "fields, warnings, state, action, attempts, http_status, category, message, "
            "error_report_id, canvas_enrollment_id, cost, updated_at FROM records_v1 "
            "ORDER BY record_id"
        )
        while chunk := rows.fetchmany(_LOAD_CHUNK):
            out = []
            for values in chunk:
                record_id, source, line, raw, key, user, course, section, role, status = values[:10]
                fields, warnings, rest = values[10], values[11], values[12:]
                raw_row = json.loads(raw)
                if source not in sources:
                    sid = conn.execute(
                        "INSERT INTO sources (name, columns) VALUES (?, ?) RETURNING id",
                        (source, json.dumps(list(raw_row))),
                    ).fetchone()[0]
                    sources[source] = (int(sid), list(raw_row))
                sid, columns = sources[source]
                if fields is not None:
                    old = record_from_columns(
                        (user, course, section, role, status),
                        fields,
                        warnings,
                        Provenance(source, line, raw_row),
                    )
                    fields = fields_to_json(old)
                derived = _derived_key(user, course, section, role)
                out.append(
                    (
                        record_id,
                        sid,
                        line,
                        raw_to_json(raw_row, columns),
                        None if key == derived else key,
                        user,
                        course,
                        section,
                        role,
                        status,
                        fields,
                        warnings_to_json(warnings_of(warnings)),
                        *rest,
                    )
                )
            conn.executemany(
                "INSERT INTO records (record_id, source_id, line, raw, key, user, course, "
                "section, role, status, fields, warnings, state, action, attempts, http_status, "
                "category, message, error_report_id, canvas_enrollment_id, cost, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                out,
            )
        conn.execute("DROP TABLE records_v1")
        conn.execute("INSERT INTO records_text (records_text) VALUES ('rebuild')")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def _migrate_2(conn: sqlite3.Connection) -> None:
    """Schema 2 -> 3: each record's channel (NULL: REST) and the import tables, in one
    transaction; nothing else changes."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("ALTER TABLE records ADD COLUMN channel TEXT")
        for statement in _statements(_SCHEMA):
            conn.execute(statement)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def _old_schema_views(conn: sqlite3.Connection) -> None:
    """Read a schema-1 journal opened read-only through views of schema 2's shape (TEMP objects
    come first in name lookup and live outside the file). Its rows' JSON is read as it is."""
    conn.executescript(
        """
        CREATE TEMP TABLE sources (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
            columns TEXT);
        INSERT INTO temp.sources (name) SELECT DISTINCT source FROM main.records;
        CREATE TEMP VIEW records AS SELECT r.record_id, s.id AS source_id, r.line, r.raw,
            r.key, r.user, r.course, r.section, r.role, r.status, r.fields, r.warnings, r.state,
            r.action, r.attempts, r.http_status, r.category, r.message, r.error_report_id,
            r.canvas_enrollment_id, r.cost, r.updated_at, NULL AS channel
            FROM main.records AS r JOIN temp.sources AS s ON s.name = r.source;
        CREATE TEMP VIEW attempts AS SELECT *, NULL AS body_delta FROM main.attempts;
        """
    )


# ---- opening ----------------------------------------------------------------------------------


def _open_for_writing(path: Path) -> JournalLock:
    """Make sure `path` can be written, lock it for this process and create it 0600 (SQLite's
    -wal and -shm files copy the database file's mode). Raises JournalError saying why not."""
    try:
        private_dir(path.parent)
    except OSError as exc:
        raise _unwritable(path, exc) from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise _unwritable(path, PermissionError(errno.EACCES, "no write permission"))
    try:
        lock = JournalLock.acquire(path)
    except JournalBusy as exc:
        raise JournalError(str(exc)) from None
    except OSError as exc:
        raise _unwritable(path, exc) from None
    try:
        touch_private(path)
    except OSError as exc:
        lock.release()
        raise _unwritable(path, exc) from None
    return lock


def _unwritable(path: Path, exc: OSError | str) -> JournalError:
    reason = exc if isinstance(exc, str) else os.strerror(exc.errno) if exc.errno else str(exc)
    return JournalError(
        f"cannot write the journal {path}: {reason} ({path.parent} must be a writable "
        "directory); choose another place with --journal or [sync] journal_dir"
    )


def _open_error(path: Path, exc: sqlite3.DatabaseError) -> JournalError:
    """What an SQLite error while opening means to the operator."""
    text = str(exc)
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return _unwritable(path, text)
    if "malformed" in text or "corrupt" in text:
        return _damaged(path, text)
    if "disk is full" in text or "disk I/O" in text:
        return JournalWriteFailed(path, exc)
    return JournalError(f"{path}: not a canvas-tui journal ({exc})")


def _damaged(path: Path, detail: str) -> JournalError:
    return JournalError(
        f"{path}: the journal is damaged ({detail}); it cannot be resumed. Keep it for the "
        "record (`canvas-tui console --journal` may still show parts of it) and start a fresh "
        "run with a new --journal path"
    )


def _check_pages(conn: sqlite3.Connection, path: Path) -> None:
    """A resumed journal must be whole: a damaged page found mid-run would stop it half-way."""
    found = [str(v[0]) for v in conn.execute("PRAGMA quick_check(3)")]
    if found != ["ok"]:
        raise _damaged(path, "; ".join(found))


def wal_path(path: Path) -> Path:
    return Path(f"{path}-wal")


def _checkpoint(conn: sqlite3.Connection) -> None:
    """Fold the -wal file into the journal and empty it, so the one file is the whole truth
    even when another process (the console's reader) closes last and, read-only, cannot."""
    with contextlib.suppress(sqlite3.Error):
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


# ---- other runs' journals ---------------------------------------------------------------------


def _open_read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def written_enrollment_ids(
    paths: Iterable[Path], *, actions: Collection[str], excluding_source: str | None = None
) -> set[int]:
    """Enrollment ids of the records that ended done with one of `actions` in any of these
    journals (read-only; each file once). Files that are missing or not journals know nothing."""
    marks = ", ".join("?" for _ in actions)
    sql = (
        "SELECT canvas_enrollment_id FROM records WHERE state = 'done' "  # noqa: S608
        f"AND canvas_enrollment_id IS NOT NULL AND action IN ({marks}) AND "
    )
    by_sources = sql + "source_id IS NOT (SELECT id FROM sources WHERE name = ?)"  # noqa: S608
    by_version = {
        SCHEMA_VERSION: by_sources,
        _SCHEMA_2: by_sources,
        _OLD_SCHEMA: sql + "source IS NOT ?",
    }
    ids: set[int] = set()
    for path in dict.fromkeys(p.resolve() for p in paths):
        if not path.is_file():
            continue
        try:
            conn = _open_read_only(path)
        except sqlite3.Error:
            continue
        try:
            version = _schema_version(conn) or SCHEMA_VERSION
            query = by_version.get(version, by_version[SCHEMA_VERSION])
            ids.update(int(v[0]) for v in conn.execute(query, (*actions, excluding_source)))
        except sqlite3.Error:
            pass  # not a journal (or an unreadable one): it knows nothing
        finally:
            conn.close()
    return ids


def remove_empty_journal(path: Path) -> bool:
    """Delete a journal that holds no records (a run refused before loading); True if removed.
    Anything that cannot be read as a journal is kept."""
    try:
        conn = _open_read_only(path)
        try:
            empty = conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    if not empty:
        return False
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return True
