"""The run journal: one SQLite (WAL) file per run, the single source of truth for every record.

Writes go through one writer thread so the event loop never waits on SQLite. A write that must
be durable before a request goes out (claiming records as in flight) is awaited; results and
attempts are posted and committed in batches of a few milliseconds. WAL with synchronous=NORMAL
survives a killed process; a power loss may roll back the last few commits, which is safe: an
in-flight or done record that reverts to pending is re-sent, creates are idempotent and
inactivate/conclude/delete look the enrollment up before acting.

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
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from canvas_tui.engine.lock import JournalBusy, JournalLock
from canvas_tui.engine.state import Attempt, RecordRow
from canvas_tui.private_files import private_dir, touch_private
from canvas_tui.records import (
    UNCHANGED,
    EnrollmentRecord,
    Provenance,
    SisStatus,
    SourceItem,
    State,
    Unchanged,
    clip,
)

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    record_id INTEGER PRIMARY KEY,          -- 1-based source order
    source TEXT NOT NULL,
    line INTEGER NOT NULL,
    raw TEXT NOT NULL,                      -- the source row as JSON
    key TEXT NOT NULL,
    user TEXT NOT NULL,
    course TEXT,
    section TEXT,
    role TEXT NOT NULL,
    status TEXT NOT NULL,
    fields TEXT,                            -- normalized EnrollmentRecord JSON; NULL if rejected
    warnings TEXT NOT NULL DEFAULT '[]',
    state TEXT NOT NULL,
    action TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    http_status INTEGER,
    category TEXT,
    message TEXT,
    error_report_id INTEGER,
    canvas_enrollment_id INTEGER,
    cost REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS records_state ON records(state, record_id);
CREATE INDEX IF NOT EXISTS records_course ON records(course, record_id);
CREATE INDEX IF NOT EXISTS records_user ON records(user, record_id);
CREATE INDEX IF NOT EXISTS records_category ON records(category, record_id);
CREATE INDEX IF NOT EXISTS records_updated ON records(updated_at);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    record_id INTEGER NOT NULL,
    number INTEGER NOT NULL,
    method TEXT NOT NULL,
    url TEXT NOT NULL,
    request_body TEXT,
    status INTEGER,
    category TEXT,
    message TEXT,
    error_report_id INTEGER,
    cost REAL,
    remaining REAL,
    will_retry INTEGER NOT NULL DEFAULT 0,
    wait REAL,
    started_at REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS attempts_record ON attempts(record_id);
-- Substring search for the console (`rows(text=...)`) without scanning 100,000 rows: a trigram
-- index over the columns an operator searches. Filled per load chunk; kept current by a trigger.
CREATE VIRTUAL TABLE IF NOT EXISTS records_text USING fts5(
    user, course, section, message, content='records', content_rowid='record_id',
    tokenize='trigram'
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

# RecordRow field -> SQL column, for `rows(order=...)`. Only these may be interpolated into SQL.
_ORDER_COLUMNS = {
    "record_id": "record_id",
    "source": "source",
    "line": "line",
    "key": "key",
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

_ROW_COLUMNS = (
    "record_id, source, line, key, user, course, section, role, status, state, action, attempts, "
    "category, message, error_report_id, canvas_enrollment_id, raw, updated_at, warnings, "
    "http_status"
)

_SET_OUTCOME = (
    "UPDATE records SET state = ?, action = COALESCE(?, action), "
    "attempts = attempts + ?, http_status = ?, category = ?, message = ?, "
    "error_report_id = ?, canvas_enrollment_id = COALESCE(?, canvas_enrollment_id), "
    "cost = COALESCE(?, cost), updated_at = ? WHERE record_id = ?"
)
_SET_OUTCOME_IF_PENDING = _SET_OUTCOME + " AND state = 'pending'"

_LOAD_CHUNK = 2000
_BATCH_WINDOW = 0.004  # seconds the writer waits to gather posted writes into one commit

T = TypeVar("T")
WriteFn = Callable[[sqlite3.Connection], Any]


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


# ---- record <-> JSON --------------------------------------------------------------------------


def record_to_json(record: EnrollmentRecord) -> str:
    return json.dumps(
        {
            "user": record.user,
            "course": record.course,
            "section": record.section,
            "role": record.role,
            "enrollment_type": record.enrollment_type,
            "status": str(record.status),
            "role_id": record.role_id,
            "associated_user": record.associated_user,
            # "unchanged" (a blank column) is stored as itself, so a resume or a retry re-sends
            # no false or null that the source never gave
            "start_at": _kept(record.start_at),
            "end_at": _kept(record.end_at),
            "limit_section_privileges": _kept(record.limit_section_privileges),
            "notify": record.notify,
            "warnings": list(record.warnings),
        }
    )


def _kept(value: object) -> object:
    return UNCHANGED.value if value is UNCHANGED else value


def _date_of(value: str | None) -> str | Unchanged:
    # null is a blank date in journals written before "unchanged" existed
    return UNCHANGED if value is None or value == UNCHANGED.value else value


def _flag_of(value: bool | str | None) -> bool | Unchanged:
    return UNCHANGED if value is None or value == UNCHANGED.value else bool(value)


def _old_blank_flag(data: Mapping[str, Any], provenance: Provenance) -> Unchanged | None:
    """UNCHANGED for a flag a journal from before "unchanged" stored as false for a blank
    column (such a journal also stores null for blank dates; no later one does): resuming it
    must not turn a section limit off (Course#enroll_user, app/models/course.rb)."""
    old = data["start_at"] is None or data["end_at"] is None
    given = _raw_pick(provenance.raw, "limit_section_privileges")
    if old and data["limit_section_privileges"] is False and not given:
        return UNCHANGED
    return None


def record_from_json(text: str, provenance: Provenance) -> EnrollmentRecord:
    data = json.loads(text)
    return EnrollmentRecord(
        user=data["user"],
        course=data["course"],
        section=data["section"],
        role=data["role"],
        enrollment_type=data["enrollment_type"],
        status=SisStatus(data["status"]),
        provenance=provenance,
        role_id=data["role_id"],
        associated_user=data["associated_user"],
        start_at=_date_of(data["start_at"]),
        end_at=_date_of(data["end_at"]),
        limit_section_privileges=_old_blank_flag(data, provenance)
        or _flag_of(data["limit_section_privileges"]),
        notify=bool(data["notify"]),
        warnings=tuple(data["warnings"]),
    )


def _raw_pick(raw: Mapping[str, str], *names: str) -> str:
    for name in names:
        value = raw.get(name)
        if value:
            return value
    return ""


def _item_params(record_id: int, item: SourceItem, now: float) -> tuple[Any, ...]:
    prov = item.provenance
    raw = json.dumps(dict(prov.raw))
    if isinstance(item, EnrollmentRecord):
        return (
            record_id,
            prov.source,
            prov.line,
            raw,
            item.key,
            item.user,
            item.course,
            item.section,
            item.role,
            str(item.status),
            record_to_json(item),
            json.dumps(list(item.warnings)) if item.warnings else "[]",
            State.PENDING.value,
            None,
            None,
            None,
            now,
            now,
        )
    # A row the source rejected: accounted for at once, never sent.
    r = prov.raw
    user = _raw_pick(r, "user_id", "user_integration_id")
    course = _raw_pick(r, "course_id") or None
    section = _raw_pick(r, "section_id") or None
    role = _raw_pick(r, "role", "role_id")
    return (
        record_id,
        prov.source,
        prov.line,
        raw,
        "|".join((user, course or "", section or "", role)),
        user,
        course,
        section,
        role,
        _raw_pick(r, "status"),
        None,
        "[]",
        (State.SKIPPED if item.skip else State.FAILED).value,
        "skip" if item.skip else None,
        None if item.skip else "invalid_input",
        clip(str(item)),
        now,
        now,
    )


_INSERT_RECORD = (
    "INSERT INTO records (record_id, source, line, raw, key, user, course, section, role, status, "
    "fields, warnings, state, action, category, message, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _row(values: tuple[Any, ...]) -> RecordRow:
    (
        record_id,
        source,
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
    ) = values
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
        raw=json.loads(raw),
        updated_at=updated_at,
        warnings=tuple(json.loads(warnings)),
        http_status=http_status,
    )


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


# ---- the writer thread ------------------------------------------------------------------------


class _Writer(threading.Thread):
    """Owns the write connection; runs queued functions, many per transaction."""

    def __init__(self, path: Path) -> None:
        super().__init__(name=f"journal-writer:{path.name}", daemon=True)
        self._path = path
        self._queue: queue.SimpleQueue[
            tuple[WriteFn, concurrent.futures.Future[Any] | None] | None
        ] = queue.SimpleQueue()
        self._ready = concurrent.futures.Future[None]()
        self.errors: list[BaseException] = []
        self.failure: JournalWriteFailed | None = None  # set once; every later write fails

    def start_and_wait(self) -> None:
        self.start()
        self._ready.result()

    def submit(self, fn: WriteFn) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((fn, future))
        return future

    def post(self, fn: WriteFn) -> None:
        self._queue.put((fn, None))

    def stop(self) -> None:
        self._queue.put(None)
        self.join()

    def run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=True)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.executescript(_SCHEMA)
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (SCHEMA_VERSION,),
            )
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        try:
            self._loop(conn)
        finally:
            _checkpoint(conn)
            with contextlib.suppress(sqlite3.Error):  # a full disk may refuse the checkpoint
                conn.close()

    def _loop(self, conn: sqlite3.Connection) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            deadline = time.monotonic() + _BATCH_WINDOW
            # Someone awaiting a durable write: commit now; otherwise gather a few ms of results.
            urgent = first[1] is not None
            while len(batch) < 5000:
                try:
                    if urgent:
                        item = self._queue.get_nowait()
                    else:
                        item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
                urgent = urgent or item[1] is not None
            self._commit(conn, batch)

    def _commit(
        self,
        conn: sqlite3.Connection,
        batch: list[tuple[WriteFn, concurrent.futures.Future[Any] | None]],
    ) -> None:
        if self.failure is not None:  # nothing more is written once the journal failed
            for _, future in batch:
                if future is not None:
                    future.set_exception(self.failure)
            return
        results: list[tuple[concurrent.futures.Future[Any] | None, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, future in batch:
                try:
                    results.append((future, fn(conn), None))
                except Exception as exc:
                    if _storage_failure(exc) or not conn.in_transaction:
                        raise  # SQLite may have rolled the whole batch back: stop here
                    results.append((future, None, exc))
                    if future is None:
                        self.errors.append(exc)
            conn.execute("COMMIT")
        except Exception as exc:
            # A full disk or an I/O error: the batch is lost (SQLite has often rolled it back
            # already, so ROLLBACK itself may fail) and later writes would fare no better.
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            self.errors.append(exc)
            self.failure = JournalWriteFailed(self._path, exc)
            for _, future in batch:
                if future is not None:
                    future.set_exception(self.failure)
            return
        for future, value, error in results:
            if future is None:
                continue
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
        if version is not None and version != SCHEMA_VERSION:
            self.close()
            raise JournalError(
                f"{self.path}: journal schema {version}, this canvas-tui reads {SCHEMA_VERSION}"
            )

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
    ) -> int:
        """Append a source's items in order (blocking: call it in a thread). Returns the total.

        A load interrupted by a crash resumes where it stopped: items already in the journal
        (by source order) are not inserted again.
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
        count = 0
        # Two chunks in flight: the next one is built while SQLite writes the last one.
        writing: deque[concurrent.futures.Future[Any]] = deque()
        try:
            for count, item in enumerate(items, start=1):
                if count <= already:
                    continue
                chunk.append(_item_params(count, item, time.time()))
                if len(chunk) >= _LOAD_CHUNK:
                    writing.append(self._insert(chunk))
                    chunk = []
                    if len(writing) > 1:
                        writing.popleft().result()
                    if on_progress is not None:
                        on_progress(count)
            if chunk:
                writing.append(self._insert(chunk))
        finally:
            # A source failing mid-way keeps what was read: the next load continues after it.
            for future in writing:
                future.result()
        total = max(count, already)
        self.write_sync(
            lambda conn: conn.execute(
                "INSERT INTO meta (key, value) VALUES ('loaded', '1') "
                "ON CONFLICT(key) DO UPDATE SET value = '1'"
            )
        )
        if on_progress is not None:
            on_progress(total)
        return total

    def _insert(self, rows: list[tuple[Any, ...]]) -> concurrent.futures.Future[Any]:
        first, last = rows[0][0], rows[-1][0]

        def insert(conn: sqlite3.Connection) -> None:
            conn.executemany(_INSERT_RECORD, rows)
            conn.execute(
                "INSERT INTO records_text (rowid, user, course, section, message) "
                "SELECT record_id, user, course, section, message FROM records "
                "WHERE record_id BETWEEN ? AND ?",
                (first, last),
            )

        return self._w().submit(insert)

    # ---- RecordStore -------------------------------------------------------------------------

    def _where(self, state: State | None, text: str | None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if state is not None:
            clauses.append("state = ?")
            params.append(State(state).value)
        if text and len(text) >= _TRIGRAM:
            clauses.append(
                "record_id IN (SELECT rowid FROM records_text WHERE records_text MATCH ?)"
            )
            params.append('"' + text.replace('"', '""') + '"')  # one phrase = one substring
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
            where += f"{' AND' if where else ' WHERE'} source = ?"
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
    ) -> list[RecordRow]:
        descending = order.startswith("-")
        column = _ORDER_COLUMNS.get(order.lstrip("-"))
        if column is None:
            raise ValueError(f"cannot order records by {order!r}")
        direction = "DESC" if descending else "ASC"
        tiebreak = "" if column == "record_id" else f", record_id {direction}"
        where, params = self._where(state, text)
        if not where and column == "record_id":
            # Ids are dense 1..N in source order, so the unfiltered view seeks instead of
            # stepping over `offset` rows (the bottom of a 100,000-row list stays instant).
            last = self.last_record_id()
            low, high = (offset, last) if not descending else (0, last - max(0, offset))
            sql = (
                f"SELECT {_ROW_COLUMNS} FROM records "  # noqa: S608
                f"WHERE record_id > ? AND record_id <= ? ORDER BY record_id {direction} LIMIT ?"
            )
            return [_row(v) for v in self._query(sql, [max(0, low), high, max(0, limit)])]
        sql = (
            f"SELECT {_ROW_COLUMNS} FROM records{where} "  # noqa: S608
            f"ORDER BY {column} {direction}{tiebreak} LIMIT ? OFFSET ?"
        )
        return [_row(v) for v in self._query(sql, [*params, max(0, limit), max(0, offset)])]

    def get(self, record_id: int) -> RecordRow | None:
        found = self._query(
            f"SELECT {_ROW_COLUMNS} FROM records WHERE record_id = ?",  # noqa: S608
            (record_id,),
        )
        return _row(found[0]) if found else None

    def attempts(self, record_id: int) -> list[Attempt]:
        found = self._query(
            "SELECT number, started_at, finished_at, method, url, request_body, status, "
            "category, message, error_report_id, cost FROM attempts WHERE record_id = ? "
            "ORDER BY id",
            (record_id,),
        )
        return [Attempt(*v) for v in found]

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
        """The normalized record to send; None for rows the source rejected."""
        found = self._query(
            "SELECT source, line, raw, fields FROM records WHERE record_id = ?", (record_id,)
        )
        if not found or found[0][3] is None:
            return None
        source, line, raw, fields = found[0]
        return record_from_json(fields, Provenance(source, line, json.loads(raw)))

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
                f"SELECT {_ROW_COLUMNS} FROM records WHERE record_id > ?{state_sql} "  # noqa: S608
                "ORDER BY record_id LIMIT ?",
                [*params, chunk],
            )
            if not found:
                return
            for values in found:
                yield _row(values)
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
            ids = [
                int(v[0])
                for v in conn.execute("SELECT record_id FROM records WHERE state = 'in_flight'")
            ]
            conn.execute(
                "UPDATE records SET state = 'pending', updated_at = ?, "
                "message = 'was in flight when the run stopped; re-sent on resume' "
                "WHERE state = 'in_flight'",
                (time.time(),),
            )
            return ids

        return self.write_sync(reset)

    async def claim(self, ids: list[int]) -> list[int]:
        """Mark pending records in flight, durably, before their requests go out."""
        now = time.time()

        def claim(conn: sqlite3.Connection) -> list[int]:
            claimed = []
            for record_id in ids:
                cur = conn.execute(
                    "UPDATE records SET state = 'in_flight', updated_at = ? "
                    "WHERE record_id = ? AND state = 'pending'",
                    (now, record_id),
                )
                if cur.rowcount:
                    claimed.append(record_id)
            return claimed

        return await self.write(claim)

    async def unclaim(self, ids: list[int]) -> None:
        """Put claimed records back to pending: their requests never went out."""
        now = time.time()

        def unclaim(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE records SET state = 'pending', updated_at = ? "
                "WHERE record_id = ? AND state = 'in_flight'",
                [(now, record_id) for record_id in ids],
            )

        await self.write(unclaim)

    def post_outcome(self, record_id: int, outcome: Outcome, *, attempts: int = 0) -> None:
        """Record how a claimed record ended (or that it went back to pending)."""
        params = _outcome_params(record_id, outcome, attempts, time.time())
        self.post(lambda conn: conn.execute(_SET_OUTCOME, params))

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

    def post_attempt(self, record_id: int, event: AttemptLike) -> None:
        category = None if event.category is None else str(event.category)
        values = (
            record_id,
            event.number,
            event.method,
            event.url,
            event.request_body,
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
        self.post(
            lambda conn: conn.execute(
                "INSERT INTO attempts (record_id, number, method, url, request_body, status, "
                "category, message, error_report_id, cost, remaining, will_retry, wait, "
                "started_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
        )

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

    def post_fields(self, record_id: int, record: EnrollmentRecord, raw: Mapping[str, str]) -> None:
        """Replace a record's normalized fields after an operator edit."""
        values = (
            record_to_json(record),
            json.dumps(dict(raw)),
            record.key,
            record.user,
            record.course,
            record.section,
            record.role,
            str(record.status),
            json.dumps(list(record.warnings)),
            time.time(),
            record_id,
        )
        self.post(
            lambda conn: conn.execute(
                "UPDATE records SET fields = ?, raw = ?, key = ?, user = ?, course = ?, "
                "section = ?, role = ?, status = ?, warnings = ?, updated_at = ? "
                "WHERE record_id = ?",
                values,
            )
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
        f"AND canvas_enrollment_id IS NOT NULL AND action IN ({marks}) AND source IS NOT ?"
    )
    ids: set[int] = set()
    for path in dict.fromkeys(p.resolve() for p in paths):
        if not path.is_file():
            continue
        try:
            conn = _open_read_only(path)
        except sqlite3.Error:
            continue
        try:
            ids.update(int(v[0]) for v in conn.execute(sql, (*actions, excluding_source)))
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
