"""`canvas-tui watch`: a long-running service that follows a changing source into Canvas.

It polls the source (engine/watch_sources.py): a SQL query read past a change cursor
(`[watch] cursor_column`), a CSV file read again when it changes, or a drop folder whose new
files are read in name order.
Each read is diffed against the snapshot of the rows last applied, kept in the journal
(`watch_snapshot`): only rows that are new or changed become journal records, so an unchanged row
costs no Canvas request. Those records go through the same runner, executor and Canvas semantics as
`sync` (full mode: actions.py, lookups where a blank column must be kept). A row that disappears
from a snapshot read (a whole CSV, a full SQL read, or a SQL row whose enrollment changed) is a
drop under `[plan] drop_policy`, behind the same brake as `sync` (diff.brake_for), counted against
the snapshot's live rows per course; drops the brake holds stay held (and reported) until
allowed.

One read is committed in one transaction with its records, the snapshot's rows and the cursor: a
crash before the commit reads the same rows again, a crash after it resumes the records (creates
are idempotent, ends look up first), so no change is lost and none is journaled twice. Changes
of one enrollment reach Canvas in the order they were read: a later one supersedes one still
pending, they are sent one at a time, and one retried after a later one is not sent.

A drift check (`[watch] drift_at` daily, or `drift_every`) plans the whole source against the live
rosters (engine/plan/) and queues what it finds changed by hand in Canvas. Finished records older
than `[watch] keep_days` are compacted away, so the journal does not grow over a term.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from canvas_tui.canvas.errors import CanvasError, hint_for
from canvas_tui.engine.actions import ActionResult, EnrollmentActions, Observer
from canvas_tui.engine.journal import Journal, JournalError, JournalWriteFailed
from canvas_tui.engine.plan.diff import Action, StepKind, brake_for
from canvas_tui.engine.plan.executor import (
    PlanExecutor,
    SourceCounts,
    choose_mode,
    compute_plan,
    drop_record,
    journal_paths,
    known_enrollment_ids,
)
from canvas_tui.engine.runner import current_record
from canvas_tui.engine.session import Session
from canvas_tui.engine.state import Phase
from canvas_tui.engine.watch_sources import (
    Batch,
    Poller,
    WatchState,
    decode_cursor,
)
from canvas_tui.records import (
    UNCHANGED,
    EnrollmentRecord,
    InputError,
    Provenance,
    RowProblem,
    SisStatus,
    SourceItem,
    State,
    sis_value,
)

log = logging.getLogger(__name__)

WATCH_DROPS = "watch:drops"  # provenance of the records a drop from the source becomes
_DROP_STATUS = {
    "inactivate": SisStatus.INACTIVE,
    "conclude": SisStatus.COMPLETED,
    "delete": SisStatus.DELETED,
}
_LIVE = frozenset({SisStatus.ACTIVE, SisStatus.INACTIVE})
SUPERSEDED_LATE = "not sent: a later change of the row was queued after it"
_CSV_MODES = {
    "snapshot": "each read is the whole roster: a row gone from it is a drop (drop_policy, brake)",
    "delta": "each read holds changes only: a row it leaves out stays as it is in Canvas",
}
_MAX_BACKOFF = 60.0
COMPACT_EVERY = 3600.0  # seconds between two compactions
POLL_HANG = 600.0  # a poll (read and commit) still running after this long is a hang: not live

# The snapshot: one row per enrollment the source named when last read (and per rejected row,
# keyed "!..." so it is journaled once, not at every poll). `ref` rebuilds a drop's record.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS watch_snapshot ("
    " key TEXT PRIMARY KEY, digest TEXT NOT NULL, course TEXT NOT NULL, live INTEGER NOT NULL,"
    " row_id TEXT, held INTEGER NOT NULL DEFAULT 0, ref TEXT)",
    "CREATE INDEX IF NOT EXISTS watch_snapshot_row ON watch_snapshot(row_id)",
    "CREATE INDEX IF NOT EXISTS watch_snapshot_held ON watch_snapshot(held) WHERE held = 1",
    "CREATE TABLE IF NOT EXISTS watch_files (name TEXT PRIMARY KEY, digest TEXT, at REAL)",
)

Emit = Callable[..., None]  # emit(event, **fields): one JSON line in the front end


def backoff(failures: int, base: float = 1.0) -> float:
    """Seconds to wait after `failures` failures in a row: `base` doubled each time, at most
    `_MAX_BACKOFF` (the source's polls, Canvas's outages, the probe)."""
    return min(_MAX_BACKOFF, base * 2.0**failures)


# ---- identity and digest ---------------------------------------------------------------------


def record_key(record: EnrollmentRecord) -> str:
    """The enrollment a row names: Canvas's identity, plus the observed user of an observer."""
    return f"{record.key}|{record.associated_user or ''}"


def _value(value: object) -> object:
    return "\0unchanged" if value is UNCHANGED else value


def record_digest(record: EnrollmentRecord) -> str:
    """What a re-send would change: stable across processes (not Python's hash)."""
    data = [
        record.user,
        record.course,
        record.section,
        record.role,
        record.role_id,
        record.enrollment_type,
        str(record.status),
        record.associated_user,
        _value(record.start_at),
        _value(record.end_at),
        _value(record.limit_section_privileges),
        record.notify,
    ]
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()[:24]


def _raw_digest(raw: Any) -> str:
    return hashlib.sha256(json.dumps(dict(raw), sort_keys=True).encode()).hexdigest()[:24]


def _ref(record: EnrollmentRecord) -> str:
    return json.dumps(
        {
            "user": record.user,
            "course": record.course,
            "section": record.section,
            "role": record.role,
            "type": record.enrollment_type,
            "role_id": record.role_id,
            "observed": record.associated_user,
        }
    )


def _drop_of(ref: str, policy: str, line: int, reason: str) -> EnrollmentRecord:
    data = json.loads(ref)
    raw = {
        "course_id": sis_value(data["course"]),
        "user_id": sis_value(data["user"]),
        "role": data["role"],
        "section_id": sis_value(data["section"]),
        "status": str(_DROP_STATUS.get(policy, SisStatus.INACTIVE)),
        "task": policy,
        "reason": reason,
    }
    return EnrollmentRecord(
        user=data["user"],
        course=data["course"],
        section=data["section"],
        role=data["role"],
        enrollment_type=data["type"],
        status=_DROP_STATUS.get(policy, SisStatus.INACTIVE),
        provenance=Provenance(WATCH_DROPS, line, raw),
        role_id=data["role_id"],
        associated_user=data["observed"],
    )


def _added(
    conn: sqlite3.Connection, ids: Sequence[int], superseded: int = 0
) -> dict[tuple[State, str | None], int]:
    """(writer thread) The records `ids` (one run of ids) by state and category, as the runner
    counts them, and the `superseded` ones (pending, now skipped)."""
    if not ids:
        return {}
    counts: dict[tuple[State, str | None], int] = {
        (State(state), category): int(n)
        for state, category, n in conn.execute(
            "SELECT state, category, COUNT(*) FROM records WHERE record_id BETWEEN ? AND ? "
            "GROUP BY state, category",
            (min(ids), max(ids)),
        )
    }
    if superseded:
        pending, skipped = (State.PENDING, None), (State.SKIPPED, None)
        counts[pending] = counts.get(pending, 0) - superseded
        counts[skipped] = counts.get(skipped, 0) + superseded
    return counts


@runtime_checkable
class Acknowledging(Protocol):
    """A poller whose source hears what the journal holds (a topic commits its consumer
    offsets, engine/topic.py): `acknowledge` after each poll, `close` when the service ends."""

    async def acknowledge(self, store: Journal) -> object: ...

    def close(self) -> None: ...


# ---- applying a read -----------------------------------------------------------------------


@dataclass(slots=True)
class Applied:
    """What one read changed in the journal."""

    ids: list[int] = field(default_factory=list)  # new records, pending (or final at once)
    read: int = 0
    changes: int = 0  # rows new or changed
    unchanged: int = 0
    invalid: int = 0
    drops: int = 0  # drops queued
    left: int = 0  # drops not sent: drop_policy never, or ended in the source already
    held: int = 0  # drops the brake holds
    brake: tuple[str, ...] = ()
    in_place: int = 0  # the first read, planned: rows Canvas holds already (nothing queued)
    superseded: int = 0  # earlier changes still pending that the new ones replace
    # the new records by (state, category), for the runner's counts
    added: dict[tuple[State, str | None], int] = field(default_factory=dict, repr=False)
    # what the snapshot's in-memory mirror (`WatchService._digests`) must learn at the commit
    upserted: list[tuple[str, str]] = field(default_factory=list, repr=False)
    removed: list[str] = field(default_factory=list, repr=False)


class WatchExecutor:
    """The plan's executor (a drift check's drops), and a watch drop's end-by-lookup."""

    def __init__(
        self, actions: EnrollmentActions, planned: PlanExecutor, store: Journal | None = None
    ) -> None:
        self._actions = actions
        self._planned = planned
        self._store = store
        # Two changes of one enrollment in flight at once could reach Canvas in either order;
        # the runner starts them in record order, so a lock per enrollment keeps that order.
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # key -> lock, [users]

    async def apply(self, record: EnrollmentRecord, observer: Observer | None) -> ActionResult:
        key = record_key(record)
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                # A change sent late (it failed for a network or server error, and is retried
                # after a later change of the row went through) must not undo the later one.
                record_id = current_record()
                if (
                    self._store is not None
                    and record_id is not None
                    and record.associated_user is None
                    and self._store.has_later(record_id, record)
                ):
                    return ActionResult("none", None, SUPERSEDED_LATE)
                if record.provenance.source == WATCH_DROPS:
                    task = record.provenance.raw["task"]
                    return await self._actions.end(record, task, observer)
                return await self._planned.apply(record, observer)
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]


class WatchService:
    """The service loop over an open session (engine/session.py)."""

    def __init__(
        self,
        session: Session,
        poller: Poller,
        *,
        emit: Emit,
        allow_drops: int | None = None,
        interval: float | None = None,
    ) -> None:
        self.session = session
        self.config = session.config
        self.store = session.store
        self.runner = session.runner
        self.poller = poller
        self.emit = emit
        self.allow_drops = allow_drops
        self.interval = interval if interval is not None else self.config.watch.interval
        self.state = WatchState()
        self.stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._drift_now = asyncio.Event()
        # health: each loop's last sign of life, and what is wrong now
        self.started = time.time()
        self.heartbeat = time.monotonic()  # when the poll loop last started a poll or a wait
        self.polling_since: float | None = None  # the poll under way, if any
        self.source_error: str | None = None
        self.canvas_error: str | None = None
        self.brake: tuple[str, ...] = ()
        self.polls = 0
        self.last_drift: dict[str, Any] | None = None
        self.exit_code = 0
        self._drift_line = 0
        self._brake_said = 0.0
        self._recheck_held = False
        # the snapshot's key -> digest, mirrored in memory for the reader thread's first cut
        self._digests: dict[str, str] = {}
        self._first = False

    # ---- health ------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        state = self.runner.snapshot()
        counts = {str(s): n for s, n in state.counts.items()}
        journal = self.store.failure
        # Alive: the event loop answers (this runs on it) and no poll has hung: a whole read of
        # a big source may take a while, a query stuck on a lock for ten minutes is a hang.
        now = time.monotonic()
        hung = self.polling_since is not None and now - self.polling_since > POLL_HANG
        alive = not hung and now - self.heartbeat < POLL_HANG + _MAX_BACKOFF + self.interval
        # ready: the token was taken and the source read at least once, and nothing is out now
        ready = (
            alive
            and self.polls > 0
            and journal is None
            and not self.source_error
            and not self.canvas_error
        )
        return {
            "live": alive,
            "ready": ready,
            "source_error": self.source_error,
            "canvas_error": self.canvas_error,
            "journal_error": None if journal is None else str(journal),
            "brake": list(self.brake),
            "polls": self.polls,
            "phase": str(state.phase),
            "counts": counts,
            "requests": state.requests,
            "last_drift": self.last_drift,
        }

    # ---- setup -----------------------------------------------------------------------------

    def _setup(self, conn: sqlite3.Connection) -> None:
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING",
            [("loaded", "1"), ("mode", "watch"), ("created_at", repr(time.time()))],
        )

    async def open(self) -> None:
        """Create the watch tables and read back the cursor and what was processed."""
        store = self.store
        previous = store.get_meta("source")
        if previous is not None and previous != self.poller.description:
            raise InputError(
                f"{store.path} is the journal of {previous}, not {self.poller.description}; "
                "give another [watch] journal (or --journal) for another source"
            )
        await asyncio.to_thread(store.verify)
        await store.write(self._setup)
        from canvas_tui.engine.session import run_settings

        store.set_meta(source=self.poller.description, **run_settings(self.config))
        await store.flush()
        cursor = store.get_meta("watch_cursor")
        self.state.cursor = None if cursor is None else decode_cursor(cursor)
        self.state.full_at = float(store.get_meta("watch_full_at") or 0.0)
        self.state.file = store.get_meta("watch_file")
        names = await store.write(
            lambda conn: conn.execute("SELECT name FROM watch_files").fetchall()
        )
        self.state.processed = {str(name) for (name,) in names}
        self._drift_line = int(store.get_meta("watch_drift_lines") or 0)
        held = await store.write(
            lambda conn: conn.execute(
                "SELECT COUNT(*) FROM watch_snapshot WHERE held = 1"
            ).fetchone()
        )
        # drops the brake held are weighed again at the first poll, whatever the source does
        # (an operator restarts with --allow-drops to let them go)
        self._recheck_held = bool(held[0])
        rows = await store.write(
            lambda conn: conn.execute(
                "SELECT key, digest FROM watch_snapshot WHERE key NOT LIKE '!%'"
            ).fetchall()
        )
        self._digests = {str(k): str(d) for k, d in rows}
        count = await store.write(
            lambda conn: conn.execute("SELECT COUNT(*) FROM watch_snapshot").fetchone()
        )
        self._first = not count[0]  # nothing read yet: the first read may be planned
        self.runner.reload_counts()

    # ---- one poll ---------------------------------------------------------------------------

    def _apply(self, conn: sqlite3.Connection, batch: Batch) -> Applied:
        """(writer thread) The batch, its snapshot rows and its cursor, all or nothing."""
        conn.execute("SAVEPOINT watch_batch")
        try:
            applied = self._apply_in(conn, batch)
            applied.added = _added(conn, applied.ids, applied.superseded)
        except BaseException:
            conn.execute("ROLLBACK TO watch_batch")
            conn.execute("RELEASE watch_batch")
            raise
        conn.execute("RELEASE watch_batch")
        return applied

    def _apply_in(self, conn: sqlite3.Connection, batch: Batch) -> Applied:
        now = time.time()
        out = Applied(read=len(batch.items) + batch.unchanged, unchanged=batch.unchanged)
        row_column = self.config.watch.row_id_column
        policy = self.config.plan
        inserts: list[SourceItem] = []
        upserts: list[tuple[Any, ...]] = []
        seen: set[str] = set(batch.seen)
        moved: set[str] = set()  # keys an updated row named before (a section move)
        planned = batch.planned
        for position, item in enumerate(batch.items):
            raw = item.provenance.raw
            row_id = raw.get(row_column) if row_column else None
            if isinstance(item, EnrollmentRecord):
                key, digest = record_key(item), record_digest(item)
                seen.add(key)
                if row_id:
                    moved.update(
                        k
                        for (k,) in conn.execute(
                            "SELECT key FROM watch_snapshot WHERE row_id = ? AND key != ?",
                            (row_id, key),
                        )
                    )
                found = conn.execute(
                    "SELECT digest, held FROM watch_snapshot WHERE key = ?", (key,)
                ).fetchone()
                if found is not None and found[0] == digest:
                    out.unchanged += 1
                    if found[1]:
                        conn.execute("UPDATE watch_snapshot SET held = 0 WHERE key = ?", (key,))
                    continue
                live = int(item.status in _LIVE)
                upserts.append((key, digest, item.course_label, live, row_id, _ref(item)))
                if planned is not None and not planned[position]:
                    out.in_place += 1  # the plan found it in Canvas as the row says
                    continue
                out.changes += 1
                inserts.append(item)
            else:
                assert isinstance(item, RowProblem)
                digest = _raw_digest(raw)
                key = f"!{row_id or digest}"
                seen.add(key)
                if row_id:  # a row made invalid drops nothing: its enrollment stays known
                    seen.update(
                        k
                        for (k,) in conn.execute(
                            "SELECT key FROM watch_snapshot WHERE row_id = ?", (row_id,)
                        )
                    )
                found = conn.execute(
                    "SELECT digest FROM watch_snapshot WHERE key = ?", (key,)
                ).fetchone()
                if found is not None and found[0] == digest:
                    out.unchanged += 1
                    continue
                out.invalid += not item.skip
                inserts.append(item)
                upserts.append((key, digest, "", 0, row_id, None))
        gone = moved - seen
        if batch.full:
            gone.update(
                k for (k,) in conn.execute("SELECT key FROM watch_snapshot") if k not in seen
            )
        for (k,) in conn.execute("SELECT key FROM watch_snapshot WHERE held = 1").fetchall():
            if k not in seen:
                gone.add(k)
            else:  # back in the source: nothing to drop
                conn.execute("UPDATE watch_snapshot SET held = 0 WHERE key = ?", (k,))
        rejected = {k for k in gone if k.startswith("!")}
        gone -= rejected
        conn.executemany("DELETE FROM watch_snapshot WHERE key = ?", [(k,) for k in rejected])
        out.ids = self.store.insert_items(conn, inserts, now)
        out.superseded += self._supersede(conn, out.ids, inserts)
        if upserts:
            conn.executemany(
                "INSERT INTO watch_snapshot (key, digest, course, live, row_id, held, ref) "
                "VALUES (?, ?, ?, ?, ?, 0, ?) ON CONFLICT(key) DO UPDATE SET "
                "digest = excluded.digest, course = excluded.course, live = excluded.live, "
                "row_id = COALESCE(excluded.row_id, row_id), held = 0, ref = excluded.ref",
                upserts,
            )
            out.upserted = [(u[0], u[1]) for u in upserts if not u[0].startswith("!")]
        if gone:
            self._drops(conn, sorted(gone), policy.drop_policy, out, now)
        for key, value in batch.meta.items():
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
        if batch.file is not None:
            conn.execute(
                "INSERT OR REPLACE INTO watch_files (name, digest, at) VALUES (?, ?, ?)",
                (*batch.file, now),
            )
        return out

    def _supersede(
        self, conn: sqlite3.Connection, ids: Sequence[int], items: Sequence[SourceItem]
    ) -> int:
        """A change queued while an earlier one of the same row waits replaces it: the earlier
        one is skipped, so Canvas never sees them out of order (an observer's rows, which share
        the key, are left alone). Returns how many were skipped."""
        skipped = 0
        for record_id, item in zip(ids, items, strict=True):
            if isinstance(item, EnrollmentRecord) and item.associated_user is None:
                skipped += self.store.supersede(
                    conn, record_id, item, f"superseded by a later change of the row (#{record_id})"
                )
        return skipped

    def _drops(
        self,
        conn: sqlite3.Connection,
        gone: Sequence[str],
        drop_policy: str,
        out: Applied,
        now: float,
    ) -> None:
        rows = [
            conn.execute(
                "SELECT key, course, live, ref FROM watch_snapshot WHERE key = ?", (k,)
            ).fetchone()
            for k in gone
        ]
        rows = [r for r in rows if r is not None and r[3] is not None]
        live = [r for r in rows if r[2]]
        if drop_policy != "never" and live:
            sizes = dict(
                conn.execute(
                    "SELECT course, COUNT(*) FROM watch_snapshot "
                    "WHERE live = 1 AND key NOT LIKE '!%' GROUP BY course"
                ).fetchall()
            )
            brake = brake_for(Counter(r[1] for r in live), sizes, self.config.plan)
            if not brake.allows(self.allow_drops):
                conn.executemany(
                    "UPDATE watch_snapshot SET held = 1 WHERE key = ?", [(r[0],) for r in live]
                )
                out.held, out.brake = len(live), brake.reasons
                rows = [r for r in rows if not r[2]]  # the ended ones still leave
                live = []
        line = int(
            (
                conn.execute("SELECT value FROM meta WHERE key = 'watch_drop_lines'").fetchone()
                or [0]
            )[0]
        )
        records: list[SourceItem] = []
        final: list[tuple[int, str]] = []  # positions in `records` that are not sent, and why
        for key, _course, is_live, ref in rows:
            line += 1
            if drop_policy == "never":
                reason = "gone from the source; drop_policy is never: left in Canvas"
            elif not is_live:
                reason = "gone from the source; it had ended there already: nothing to send"
            else:
                reason = f"gone from the source; drop_policy {drop_policy}"
            records.append(_drop_of(ref, drop_policy, line, reason))
            if drop_policy == "never" or not is_live:
                final.append((len(records) - 1, reason))
            conn.execute("DELETE FROM watch_snapshot WHERE key = ?", (key,))
            out.removed.append(key)
        ids = self.store.insert_items(conn, records, now)
        out.superseded += self._supersede(conn, ids, records)
        for position, reason in final:
            conn.execute(
                "UPDATE records SET state = ?, action = 'skip', message = ? WHERE record_id = ?",
                (State.SKIPPED.value, reason, ids[position]),
            )
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('watch_drop_lines', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (str(line),),
        )
        out.ids.extend(ids)
        out.left += len(final)
        out.drops += len(records) - len(final)

    def _read(self) -> Batch | None:
        """(a thread) One read of the source, keeping only the rows the snapshot does not hold
        as they are: an unchanged row is counted and forgotten at once, so a whole read of a big
        source holds its changes, not its rows. Rejected rows are always kept (the writer
        decides; they are few)."""
        seen: set[str] = set()
        unchanged = 0
        digests = self._digests

        def keep(item: SourceItem) -> bool:
            nonlocal unchanged
            if item.__class__ is not EnrollmentRecord:
                return True
            assert isinstance(item, EnrollmentRecord)
            key = record_key(item)
            seen.add(key)
            if digests.get(key) == record_digest(item):
                unchanged += 1
                return False
            return True

        batch = self.poller.read(self.state, keep)
        if batch is not None:
            batch.seen, batch.unchanged = seen, unchanged
        return batch

    async def _plan_first(self, batch: Batch) -> None:
        """The first read of a source (an empty snapshot) is what a `sync` would send: when a
        plan is cheaper than a request or two per row (engine/plan's own choice), read the
        rosters and mark which rows Canvas needs; the rest join the snapshot as they are. A
        service started beside a Canvas already in step then sends almost nothing. Drops of
        enrollments only Canvas has are the drift check's, not this read's."""
        config = dataclasses.replace(
            self.config, plan=dataclasses.replace(self.config.plan, drop_policy="never")
        )
        counts = await asyncio.to_thread(SourceCounts.of, batch.items)
        use, why = choose_mode(counts, config.plan, None)
        if not use or self.session.client is None:
            return
        self.emit("first_read", records=counts.records, mode="plan", why=why)
        try:
            known = await asyncio.to_thread(
                known_enrollment_ids, journal_paths(self.config, self.store.path)
            )
            plan = await compute_plan(
                self.session.client, batch.items, config, known_ids=known, counts=counts
            )
        except CanvasError as exc:  # every row is sent instead, when Canvas answers
            self.emit("first_read", mode="full", why=f"the rosters could not be read: {exc}")
            return
        flags = [False] * len(batch.items)

        def mark() -> None:  # derives the steps again: in a thread
            for step in plan.iter_changes():
                if step.record_index is not None:
                    flags[step.record_index] = True

        await asyncio.to_thread(mark)
        batch.planned = flags

    async def poll_once(self) -> Applied | None:
        """Read the source once and commit what changed. InputError: the source is out."""
        batch = await asyncio.to_thread(self._read)
        if batch is not None and self._first and batch.full and batch.items:
            await self._plan_first(batch)
        if batch is None and self._recheck_held:
            batch = Batch([], False, "held drops")
        self._recheck_held = False
        if batch is None:
            return None
        applied: Applied = await self.store.write(lambda conn: self._apply(conn, batch))
        self._first = self._first and not batch.items
        # the batch is committed: only now does the next read start past it
        digests = self._digests
        digests.update(applied.upserted)
        for key in applied.removed:
            digests.pop(key, None)
        if "watch_cursor" in batch.meta:
            self.state.cursor = decode_cursor(batch.meta["watch_cursor"])
        if "watch_full_at" in batch.meta:
            self.state.full_at = float(batch.meta["watch_full_at"])
        if "watch_file" in batch.meta:
            self.state.file = batch.meta["watch_file"]
        if batch.file is not None:
            self.state.processed.add(batch.file[0])
        if applied.ids:
            self.runner.count_added(applied.added)
            self._wake.set()
        if (
            applied.changes
            or applied.drops
            or applied.left
            or applied.held
            or applied.invalid
            or applied.in_place
        ):
            fields = {
                k: v
                for k, v in dataclasses.asdict(applied).items()
                if k not in ("ids", "upserted", "removed", "added")
            }
            self.emit("changes", what=batch.what, records=len(applied.ids), **fields)
        # the held drops are weighed again at every poll: say so when they change, else hourly
        if applied.brake and (
            applied.brake != self.brake or time.monotonic() - self._brake_said > 3600
        ):
            self._brake_said = time.monotonic()
            self.emit(
                "brake",
                held=applied.held,
                reasons=list(applied.brake),
                hint="review them, then restart with --allow-drops N (or raise the brake)",
            )
        self.brake = applied.brake
        return applied

    # ---- the loops -----------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            self.heartbeat = self.polling_since = time.monotonic()
            wait = self.interval
            try:
                await self.poll_once()
                if isinstance(self.poller, Acknowledging):
                    await self.poller.acknowledge(self.store)
            except InputError as exc:
                failures += 1
                wait = backoff(failures, self.interval)
                if self.source_error is None or failures % 10 == 1:
                    self.emit("source_unavailable", message=str(exc), retry_in=round(wait, 2))
                self.source_error = str(exc)
            except JournalWriteFailed as exc:
                self.emit("journal_failed", message=str(exc))
                self.exit_code = 3
                self.stopping.set()
                return
            except Exception as exc:  # a bug, or data no one foresaw: say so, keep the cursor
                failures += 1
                wait = backoff(failures, self.interval)
                log.exception("watch: a poll failed")
                self.emit("poll_failed", message=f"{type(exc).__name__}: {exc}", retry_in=wait)
                self.source_error = f"{type(exc).__name__}: {exc}"
            else:
                if self.source_error is not None:
                    self.emit("source_back", after_failures=failures)
                self.source_error = None
                failures = 0
                self.polls += 1
            finally:
                self.polling_since = None
                self.heartbeat = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), wait)

    async def _send_loop(self) -> None:
        while not self.stopping.is_set():
            counts = self.runner.snapshot().counts
            if counts.get(State.PENDING, 0) or counts.get(State.IN_FLIGHT, 0):
                state = await self.runner.run()
                if state.phase is Phase.ABORTED and not self.stopping.is_set():
                    # only what no waiting cures aborts a runner that pauses itself: the
                    # token refused, the journal unwritable
                    self.emit("aborted", reason=state.abort_reason)
                    self.exit_code = 3
                    self.stopping.set()
                    return
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def _canvas_watch(self) -> None:
        """The runner pauses itself when Canvas is unreachable (the breaker): try again after
        a back-off that grows while it stays away."""
        failures = 0
        done_at_outage = 0
        while not self.stopping.is_set():
            state = self.runner.snapshot()
            done = state.counts.get(State.DONE, 0)
            if state.paused_reason:
                if self.canvas_error is None:
                    done_at_outage = done
                failures += 1
                wait = backoff(failures)
                self.canvas_error = state.paused_reason
                self.emit("canvas_unreachable", message=state.paused_reason, retry_in=wait)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), wait)
                if not self.stopping.is_set():
                    self.runner.resume()  # the breaker resets; transient failures are re-queued
                continue
            if self.canvas_error is not None and (
                done > done_at_outage or not state.counts.get(State.PENDING, 0)
            ):
                self.canvas_error = None  # a record went through since: Canvas answers again
                self.emit("canvas_back", after_retries=failures)
                failures = 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 0.25)

    def _next_drift(self, after: float) -> float | None:
        watch = self.config.watch
        times: list[float] = []
        if watch.drift_every > 0:
            times.append(after + watch.drift_every)
        clock = watch.drift_time()
        if clock is not None:
            base = dt.datetime.fromtimestamp(after, dt.UTC)
            at = base.replace(hour=clock[0], minute=clock[1], second=0, microsecond=0)
            if at.timestamp() <= after:
                at += dt.timedelta(days=1)
            times.append(at.timestamp())
        return min(times) if times else None

    async def _drift_loop(self) -> None:
        due = self._next_drift(time.time())
        while not self.stopping.is_set():
            wait = 3600.0 if due is None else max(0.0, due - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drift_now.wait(), min(wait, 5.0))
            if self.stopping.is_set():
                return
            if not self._drift_now.is_set() and (due is None or time.time() < due):
                continue
            self._drift_now.clear()
            try:
                await self.drift_check()
            except (CanvasError, InputError) as exc:
                hint = f" — {hint_for(exc.category)}" if isinstance(exc, CanvasError) else ""
                self.emit("drift_failed", message=f"{exc}{hint}", retry_in=300)
                due = time.time() + 300
                continue
            due = self._next_drift(time.time())

    def request_drift(self) -> None:
        """Run a drift check now (the next loop turn)."""
        self._drift_now.set()

    async def drift_check(self) -> dict[str, Any]:
        """Plan the whole source against the live rosters; queue what differs."""
        source = self.poller.whole()
        if source is None:
            result: dict[str, Any] = {"skipped": "a delta source has no whole to compare"}
            self.emit("drift", **result)
            self.last_drift = result
            return result
        client = self.session.client
        assert client is not None
        started = time.monotonic()
        known = await asyncio.to_thread(
            known_enrollment_ids, journal_paths(self.config, self.store.path)
        )
        # the source itself, read again on each pass (never held), as `canvas-tui plan` reads it
        plan = await compute_plan(client, source, self.config, known_ids=known)
        changes: list[SourceItem] = []
        counts: Counter[str] = Counter()

        def collect() -> None:  # reads the source again: in a thread
            for step in plan.iter_changes():
                if step.kind is StepKind.RECORD and step.record is not None:
                    changes.append(step.record)
                    counts[step.action.value] += 1

        await asyncio.to_thread(collect)
        drops = plan.drops
        held: list[str] = []
        if drops and not plan.brake.allows(self.allow_drops):
            held = list(plan.brake.reasons)
        else:
            for step in drops:
                self._drift_line += 1
                changes.append(drop_record(step, self._drift_line))
                counts[f"drop_{step.action.value}"] += 1
        line = self._drift_line

        def queue(
            conn: sqlite3.Connection,
        ) -> tuple[list[int], dict[tuple[State, str | None], int]]:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('watch_drift_lines', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(line),),
            )
            ids = self.store.insert_items(conn, changes, time.time())
            superseded = self._supersede(conn, ids, changes)
            return ids, _added(conn, ids, superseded)

        ids, added = await self.store.write(queue)
        if ids:
            self.runner.count_added(added)
            self._wake.set()
        result = {
            "records": plan.tally.actions.total(),
            "in_place": plan.tally.actions.get(Action.NONE, 0),
            "queued": len(ids),
            "by_action": dict(counts),
            "roster_requests": plan.roster_requests,
            "drops_held": len(drops) if held else 0,
            "brake": held,
            "elapsed": round(time.monotonic() - started, 2),
            "at": time.time(),
        }
        self.last_drift = result
        self.emit("drift", **result)
        return result

    async def _compact_loop(self) -> None:
        keep = self.config.watch.keep_days
        if keep <= 0:  # keep everything
            await self.stopping.wait()
            return
        while not self.stopping.is_set():
            try:
                removed = await self.compact(time.time() - keep * 86400)
            except JournalError as exc:
                self.emit("compaction_failed", message=str(exc))
            else:
                if removed:
                    self.emit("compacted", records=removed, keep_days=keep)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), COMPACT_EVERY)

    async def compact(self, before: float) -> int:
        """Remove finished records last changed before `before` (the snapshot keeps what the
        next read is diffed against)."""
        finals = ", ".join(f"'{s.value}'" for s in (State.DONE, State.FAILED, State.SKIPPED))
        removed: int = await self.store.write(
            lambda conn: self.store.delete_records(
                conn, f"state IN ({finals}) AND updated_at < ?", (before,)
            )
        )
        return removed  # the runner's counts follow at its next run's end

    async def run(self) -> int:
        """Until `stop()`: 0 after a stop, 3 when the token is refused or the journal fails."""
        await self.open()
        client = self.session.client
        assert client is not None
        await self._check_token(client)
        if self.stopping.is_set():
            return self.exit_code
        self.runner.use_executor(self._executor(), token_checked=True)
        mode: dict[str, str] = {}
        if self.poller.csv_mode is not None:  # what a row missing from a file means, said once
            mode = {
                "csv_mode": self.poller.csv_mode,
                "csv_mode_means": _CSV_MODES[self.poller.csv_mode],
            }
        self.emit(
            "watching",
            source=self.poller.description,
            journal=str(self.store.path),
            interval=self.interval,
            cursor=None if self.state.cursor is None else str(self.state.cursor),
            pending=self.runner.snapshot().counts.get(State.PENDING, 0),
            **mode,
        )
        loops = [
            asyncio.create_task(self._poll_loop(), name="watch-poll"),
            asyncio.create_task(self._send_loop(), name="watch-send"),
            asyncio.create_task(self._canvas_watch(), name="watch-canvas"),
            asyncio.create_task(self._drift_loop(), name="watch-drift"),
            asyncio.create_task(self._compact_loop(), name="watch-compact"),
        ]
        try:
            # a loop that ends before a stop is a bug: stop, so the supervisor restarts us
            stopped = asyncio.create_task(self.stopping.wait())
            await asyncio.wait([stopped, *loops], return_when=asyncio.FIRST_COMPLETED)
            if not self.stopping.is_set():
                ended = next(t for t in loops if t.done())
                self.emit("internal_error", loop=ended.get_name())
                self.exit_code = 3
                self.stopping.set()
            stopped.cancel()
        finally:
            self.runner.cancel()  # requests in flight finish; the rest stays pending
            await asyncio.gather(*loops, return_exceptions=True)
            for task in loops:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    log.error("watch loop %s failed", task.get_name(), exc_info=task.exception())
                    self.exit_code = self.exit_code or 3
            if isinstance(self.poller, Acknowledging):
                await self._close_poller(self.poller)
        return self.exit_code

    async def _close_poller(self, poller: Acknowledging) -> None:
        """Acknowledge what finished while stopping, then let the source go."""
        try:
            await poller.acknowledge(self.store)
        except Exception as exc:  # the source or the journal is out: the next start redoes it
            log.warning("watch: a last acknowledgement failed: %s", exc)
        await asyncio.to_thread(poller.close)

    async def _check_token(self, client: Any) -> None:
        """The token, once: refused is fatal (3); Canvas away is waited out."""
        policy = client.retry_policy
        # one attempt a probe: this loop's own back-off waits out an outage, and says so
        client.retry_policy = dataclasses.replace(policy, max_attempts=1, throttle_attempts=3)
        try:
            await self._probe(client)
        finally:
            client.retry_policy = policy

    async def _probe(self, client: Any) -> None:
        failures = 0
        while not self.stopping.is_set():
            try:
                await client.whoami()
            except CanvasError as exc:
                if exc.fatal:
                    self.emit("aborted", reason=f"{exc} — {hint_for(exc.category)}")
                    self.exit_code = 3
                    self.stopping.set()
                    return
                failures += 1
                wait = backoff(failures)
                self.canvas_error = str(exc)
                self.emit("canvas_unreachable", message=str(exc), retry_in=wait)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), wait)
                continue
            if self.canvas_error is not None:
                self.emit("canvas_back")
            self.canvas_error = None
            return

    def _executor(self) -> WatchExecutor:
        client = self.session.client
        assert client is not None
        sync = self.config.sync
        actions = EnrollmentActions(client, notify=sync.notify, active_state=sync.enrollment_state)
        planned = PlanExecutor(client, actions, None, active_state=sync.enrollment_state)
        return WatchExecutor(actions, planned, self.store)

    def stop(self) -> None:
        self.stopping.set()
        self._wake.set()
        self._drift_now.set()  # the drift loop's wait ends too
