"""Reading the rosters a plan diffs against, and indexing them by user."""

from __future__ import annotations

import asyncio
import contextlib
import marshal
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, overload

from canvas_tui.canvas.client import CanvasClient, Observer
from canvas_tui.canvas.errors import CanvasError, Category
from canvas_tui.engine.roster_match import (
    ALL_STATES,
    DefaultSection,
    UserKey,
    default_section_from,
    user_key,
    user_keys,
)
from canvas_tui.records import (
    EnrollmentRecord,
    SourceItem,
    sis_value,
    split_api_id,
)

PAGE_SIZE = 100  # enrollments per roster page (the client's per_page)


# ---- reading rosters ------------------------------------------------------------------------


# Fields of Canvas's Enrollment JSON that nothing reading a roster looks at (the plan, the
# verdict, the preflight): a roster keeps its enrollments without them (issue 14). The rosters of
# a large source hold every enrollment Canvas has in its courses, and these (the grades object,
# two URLs, activity, timestamps) are more than half of each one's memory.
UNREAD_FIELDS = frozenset(
    {
        "grades",
        "html_url",
        "last_activity_at",
        "last_attended_at",
        "total_activity_time",
        "root_account_id",
        "sis_account_id",
        "course_integration_id",
        "section_integration_id",
        "created_at",
        "updated_at",
    }
)


def kept(enrollment: dict[str, Any]) -> dict[str, Any]:
    """What a roster keeps of an enrollment: a new dict, since one that only loses keys keeps
    its size."""
    return {k: v for k, v in enrollment.items() if k not in UNREAD_FIELDS}


# ---- the roster store --------------------------------------------------------------------------

# The rosters of a fetch stay in memory up to this many enrollments in all, then move to a
# RosterStore (issue 14). Kept in memory, an enrollment costs ~0.95 KB of RSS with its index; a
# re-sync of a term meets as many as it has rows. Below this, planning stays as fast as with
# dicts (against the store, each record's enrollments are a query and unmarshalled: 25-45 us
# more a record, BENCHMARKS.md "A re-sync: the rosters in a store"); above it, memory stops
# growing with the rosters. Small: what was held before the spill is freed then, but the
# allocator's arenas it filled stay (others' objects land among its own): at 20,000 that was
# ~30 MB of Python's arenas kept for the rest of a re-sync (BENCHMARKS.md, "wt/rss2").
SPILL_AT = 2_000
_CHUNK = 512  # enrollments read from the store at a time when a roster is iterated
_SCOPE_SHIFT = 32  # an enrollment's row id: (its roster's number << 32) | its place in it


class RosterStore:
    """The rosters of one fetch in a private SQLite file: each enrollment (what `kept` keeps,
    marshalled) at a row id that orders it as the rosters are ordered, its user keys in a
    table indexed once every roster is read, and the ids a plan's records claim.

    The file is SQLite's private temporary database (`connect("")`): made in the system's
    temporary directory, unlinked as soon as it is opened, and gone when the connection
    closes or the process ends. It is a cache of what Canvas answered, so it has no journal
    and no syncs; its page cache (a few MB) is all it keeps in memory. The executor derives
    steps from it while the load plans rows in a thread, so every use takes one lock, and an
    iteration reads a chunk at a time, never holding a cursor across a yield."""

    def __init__(self) -> None:
        self._db = sqlite3.connect("", check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.executescript(
            """
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            PRAGMA cache_size = -4096;
            CREATE TABLE enrollment (
                rowid INTEGER PRIMARY KEY, id INTEGER, course TEXT, state, data BLOB
            );
            CREATE TABLE user_key (kind TEXT, value TEXT, enr INTEGER, uid INTEGER);
            CREATE TABLE claimed (owner INTEGER, id INTEGER, PRIMARY KEY (owner, id));
            """
        )
        self._sizes: dict[int, int] = {}  # enrollments per roster number
        self._course_ids: dict[int, int] = {}  # each roster's first enrollment's course_id
        self._owners = 0  # the indexes that claimed ids here (`claims`)
        self.indexed = False

    def add(self, roster: int, enrollments: Iterable[Mapping[str, Any]]) -> None:
        """Enrollments at the end of a roster (its pages, in order)."""
        at = self._sizes.get(roster, 0)
        base = roster << _SCOPE_SHIFT
        rows: list[tuple[int, int | None, str, Any, bytes]] = []
        keys: list[tuple[str, str, int, int | None]] = []
        for enrollment in enrollments:
            rowid = base | at
            at += 1
            eid = enrollment.get("id")
            rows.append(
                (
                    rowid,
                    None if eid is None else int(eid),
                    _course_label(enrollment),
                    enrollment.get("enrollment_state"),
                    marshal.dumps(dict(enrollment)),
                )
            )
            uid = enrollment.get("user_id")
            user = None if uid is None else int(uid)
            keys.extend((kind or "", value, rowid, user) for kind, value in user_keys(enrollment))
            if roster not in self._course_ids and enrollment.get("course_id") is not None:
                self._course_ids[roster] = int(enrollment["course_id"])
        self._sizes[roster] = at
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO enrollment VALUES (?, ?, ?, ?, ?)", rows)
            self._db.executemany("INSERT INTO user_key VALUES (?, ?, ?, ?)", keys)
            self._db.execute("COMMIT")

    def discard(self, roster: int) -> None:
        """Forget what was read of a roster (its read failed: it holds nothing)."""
        low, high = _span(roster)
        with self._lock:
            self._db.execute("DELETE FROM enrollment WHERE rowid BETWEEN ? AND ?", (low, high))
            self._db.execute("DELETE FROM user_key WHERE enr BETWEEN ? AND ?", (low, high))
        self._sizes.pop(roster, None)
        self._course_ids.pop(roster, None)

    def index(self) -> None:
        """Index the user keys and ids, once every roster is read (one sort, not a B-tree
        grown page by page)."""
        with self._lock:
            self._db.execute("CREATE INDEX user_key_at ON user_key (kind, value, enr)")
            self._db.execute("CREATE INDEX enrollment_id ON enrollment (id)")
        self.indexed = True

    def size(self, roster: int) -> int:
        return self._sizes.get(roster, 0)

    def course_id(self, roster: int) -> int | None:
        return self._course_ids.get(roster)

    def iterate(
        self, roster: int, start: int = 0, stop: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """A roster's enrollments in order, from place `start` up to `stop`, a chunk at a time."""
        low, high = _span(roster)
        if stop is not None:
            high = min(high, low + stop - 1)
        return self._scan(low + start, high)

    def _scan(
        self, low: int, high: int, where: str = "", args: tuple[Any, ...] = ()
    ) -> Iterator[dict[str, Any]]:
        """The enrollments at row ids `low`..`high` (and `where`, on `e`), in row id order, a
        chunk at a time: each chunk starts after the last one's row id."""
        at = low
        while at <= high:
            with self._lock:
                chunk = self._db.execute(
                    "SELECT rowid, data FROM enrollment e WHERE rowid BETWEEN ? AND ? "  # noqa: S608
                    f"{where} ORDER BY rowid LIMIT ?",
                    (at, high, *args, _CHUNK),
                ).fetchall()
            if not chunk:
                return
            for _rowid, data in chunk:
                yield _loads(data)
            at = chunk[-1][0] + 1

    def of_user(self, roster: int, kind: str | None, value: str) -> list[dict[str, Any]]:
        low, high = _span(roster)
        with self._lock:
            found = self._db.execute(
                "SELECT e.data FROM user_key k JOIN enrollment e ON e.rowid = k.enr "
                "WHERE k.kind = ? AND k.value = ? AND k.enr BETWEEN ? AND ? ORDER BY k.enr",
                (kind or "", value, low, high),
            ).fetchall()
        return [_loads(data) for (data,) in found]

    def user_id(self, kind: str | None, value: str) -> int | None:
        """The `user_id` of the last enrollment (in the rosters' order) with this user key."""
        with self._lock:
            found = self._db.execute(
                "SELECT uid FROM user_key WHERE kind = ? AND value = ? AND uid IS NOT NULL "
                "ORDER BY enr DESC LIMIT 1",
                (kind or "", value),
            ).fetchone()
        return None if found is None else int(found[0])

    def user_key_count(self) -> int:
        with self._lock:
            found = self._db.execute(
                "SELECT COUNT(*) FROM (SELECT 1 FROM user_key WHERE uid IS NOT NULL "
                "GROUP BY kind, value)"
            ).fetchone()
        return int(found[0])

    def user_key_items(self) -> Iterator[tuple[UserKey, int]]:
        """Every user key with its `user_id` (as `user_id`), a chunk at a time."""
        after: tuple[str, str] = ("", "")
        first = True
        while True:
            with self._lock:
                chunk = self._db.execute(
                    "SELECT kind, value, (SELECT uid FROM user_key i WHERE i.kind = k.kind "
                    "AND i.value = k.value AND uid IS NOT NULL ORDER BY enr DESC LIMIT 1) "
                    "FROM user_key k WHERE uid IS NOT NULL AND (? OR (kind, value) > (?, ?)) "
                    "GROUP BY kind, value ORDER BY kind, value LIMIT ?",
                    (first, *after, _CHUNK),
                ).fetchall()
            if not chunk:
                return
            for kind, value, uid in chunk:
                yield (kind or None, value), int(uid)
            first = False
            after = (chunk[-1][0], chunk[-1][1])

    def claims(self) -> int:
        """A number under which an index claims ids: each plan its own."""
        self._owners += 1
        return self._owners

    def claim(self, owner: int, ids: Iterable[int]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO claimed VALUES (?, ?)", ((owner, i) for i in ids)
            )
            self._db.execute("COMMIT")

    def unclaimed(self, owner: int, rosters: Iterable[int]) -> Iterator[dict[str, Any]]:
        """Each enrollment with an id that `owner` did not claim, at its first place in the
        rosters' order, in that order (`RosterIndex.unclaimed`)."""
        for roster in rosters:
            yield from self._scan(
                *_span(roster),
                "AND id IS NOT NULL AND id NOT IN (SELECT id FROM claimed WHERE owner = ?) "
                "AND rowid = (SELECT MIN(rowid) FROM enrollment f WHERE f.id = e.id)",
                (owner,),
            )

    def live_per_course(self, rosters: Iterable[int], states: Iterable[str]) -> dict[str, int]:
        """Distinct enrollment ids per course label among these rosters' enrollments in
        `states` (`live_per_course`)."""
        numbers = ", ".join(str(int(r)) for r in rosters)
        if not numbers:
            return {}
        wanted = list(states)
        marks = ", ".join("?" for _ in wanted)
        # One scan, each row's roster number tested against the list. An OR of the rosters'
        # rowid ranges made SQLite gather every matching rowid first (its memory's high-water
        # mark 15 MB instead of 8 at 300,000 enrollments), freed into holes of the malloc heap
        # that stayed for the rest of the run (7 MB free there; 20 MB at a million).
        with self._lock:
            found = self._db.execute(
                "SELECT course, COUNT(DISTINCT id) FROM enrollment "  # noqa: S608 (ints)
                f"WHERE (rowid >> {_SCOPE_SHIFT}) IN ({numbers}) AND state IN ({marks}) "
                "AND id IS NOT NULL GROUP BY course",
                wanted,
            ).fetchall()
        return {str(course): int(n) for course, n in found}

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _loads(data: bytes) -> dict[str, Any]:
    # marshal: the bytes are this process's own `marshal.dumps` of Canvas's decoded JSON, in a
    # private file SQLite unlinked as it made it (nothing else can write there)
    loaded: dict[str, Any] = marshal.loads(data)  # noqa: S302
    return loaded


def _span(roster: int) -> tuple[int, int]:
    low = roster << _SCOPE_SHIFT
    return low, low + (1 << _SCOPE_SHIFT) - 1


def _course_label(enrollment: Mapping[str, Any]) -> str:
    """The course an enrollment counts in for the brake (diff.py's `_label`)."""
    return str(enrollment.get("sis_course_id") or enrollment.get("course_id") or "")


class StoredEnrollments(Sequence[dict[str, Any]]):
    """A roster's enrollments in a RosterStore, read in order as they are iterated (each
    iteration makes new dicts: nothing holds them)."""

    __slots__ = ("number", "store")

    def __init__(self, store: RosterStore, number: int) -> None:
        self.store = store
        self.number = number

    def __len__(self) -> int:
        return self.store.size(self.number)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.store.iterate(self.number)

    @overload
    def __getitem__(self, at: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, at: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, at: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        size = len(self)
        if isinstance(at, slice):
            start, stop, step = at.indices(size)
            if step != 1:
                return list(self)[at]
            return list(self.store.iterate(self.number, start, max(start, stop)))
        place = at + size if at < 0 else at
        if not 0 <= place < size:
            raise IndexError(at)
        return next(self.store.iterate(self.number, place, place + 1))


Enrollments = list[dict[str, Any]] | StoredEnrollments


@dataclass(slots=True)
class Roster:
    scope: str  # `course/<API id>` or `section/<API id>` (see scope_of)
    # a list, or past SPILL_AT enrollments in a fetch, a view of them in its RosterStore
    enrollments: Enrollments = field(default_factory=list)
    pages: int = 0
    error: CanvasError | None = None
    # the course's default section, read for the rows that name no section (None: not read)
    default: DefaultSection | None = None


def scope_of(record: EnrollmentRecord) -> str:
    """Which roster a record is diffed against: `course/<id>`, else `section/<id>`."""
    if record.course:
        return f"course/{record.course}"
    assert record.section, "a record names a course or a section"
    return f"section/{record.section}"


def default_scopes(items: Iterable[SourceItem]) -> dict[str, set[str]]:
    """The course rosters whose default section a plan may need, each with the users of its
    course-only rows: the section list is read only when one of them is in the roster."""
    scopes: dict[str, set[str]] = defaultdict(set)
    for item in items:
        if isinstance(item, EnrollmentRecord) and item.course and item.section is None:
            scopes[scope_of(item)].add(item.user)
    return dict(scopes)


def needs_default(enrollments: Sequence[Mapping[str, Any]], users: Iterable[str]) -> bool:
    """Whether a course-only row may match one of these enrollments, so its course's default
    section must be known. A user absent from the roster has nothing to match (the row is a
    create whichever section is the default), but only a Canvas id or an `sis_user_id` the
    roster carries can prove the absence: Canvas omits `sis_user_id` without read_sis, and
    login and integration ids ride on the user object only when Canvas includes it."""
    wanted = [user_key(user) for user in users]
    asked = set(wanted)
    present: set[UserKey] = set()  # the users' keys the roster holds (one pass: it may stream)
    sis_shown = True
    empty = True
    for e in enrollments:
        empty = False
        sis_shown = sis_shown and "sis_user_id" in e
        present.update(key for key in user_keys(e) if key in asked)
    if empty:
        return False
    for key in wanted:
        if key in present or key[0] not in (None, "sis_user_id"):
            return True
        if key[0] == "sis_user_id" and not sis_shown:
            return True
    return False


def scope_label(scope: str) -> str:
    kind, _, ref = scope.partition("/")
    return f"{kind} {sis_value(ref)}"


async def fetch_rosters(
    client: CanvasClient,
    scopes: Iterable[str],
    *,
    concurrency: int | None = None,
    observer: Observer | None = None,
    on_roster: Callable[[int, int], None] | None = None,
    with_default: Iterable[str] | Mapping[str, Iterable[str]] = (),
    spill_at: int | None = None,
) -> dict[str, Roster]:
    """Every page of every roster, in every state, and for the course scopes in `with_default`
    the course's sections, to tell its default section: always for a scope given alone, and
    for one given with its course-only rows' users (`default_scopes`) only when the roster
    holds one of them (`needs_default`). A roster that cannot be read (unknown course, no
    permission) is kept with its error; a fatal error (token, unsafe URL) or Canvas out of
    reach is raised, and the other reads are cancelled.

    Every roster is read at once unless `concurrency` says otherwise: the governor already
    holds the requests in flight to what Canvas's bucket allows, and a tighter gate here
    only leaves that room unused (each roster's pages follow one another).

    Each page goes where the rosters are kept as it arrives: their lists, and once they hold
    more than `spill_at` enrollments in all (None: SPILL_AT), a RosterStore (see `_Held`)."""
    wanted = list(dict.fromkeys(scopes))
    defaults: Mapping[str, Iterable[str] | None] = (
        with_default if isinstance(with_default, Mapping) else dict.fromkeys(with_default)
    )
    gate = asyncio.Semaphore(concurrency) if concurrency else contextlib.nullcontext()
    rosters: dict[str, Roster] = {}
    done = 0
    held = _Held(rosters, SPILL_AT if spill_at is None else spill_at)

    async def read(number: int, scope: str) -> None:
        nonlocal done
        roster = held.new(number, scope)

        def on_page(pages: int, _items: int) -> None:
            roster.pages = pages

        def each_page(page: list[dict[str, Any]]) -> None:
            held.add(number, roster, page)

        kind, _, ref = scope.partition("/")
        async with gate:
            listed = False
            try:
                by_section = kind == "section"
                await client.list_enrollments(
                    course=None if by_section else ref,
                    section=ref if by_section else None,
                    states=ALL_STATES,
                    on_page=on_page,
                    observer=observer,
                    keep=kept,
                    each_page=each_page,
                )
                listed = True
                if not by_section and scope in defaults:
                    users = defaults[scope]
                    if users is None or needs_default(roster.enrollments, users):
                        sections = await client.list_course_sections(ref, observer=observer)
                        roster.default = default_section_from(sections)
            except CanvasError as error:
                # a plan without the rosters is no plan: Canvas unreachable after every retry
                # ends it as surely as a rejected token does
                if error.fatal or error.category is Category.NETWORK:
                    raise
                roster.error = error
                if not listed:  # a roster that could not be read holds nothing
                    held.discard(number, roster)
        done += 1
        if on_roster is not None:
            on_roster(done, len(wanted))

    try:
        async with asyncio.TaskGroup() as group:  # the first error cancels the other reads
            for number, scope in enumerate(wanted):
                group.create_task(read(number, scope))
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None  # the plan stops with the error itself
    if held.store is not None:
        await asyncio.to_thread(held.store.index)
    return rosters


class _Held:
    """Where a fetch's pages go as they arrive: the rosters' lists, until they hold more than
    `spill_at` enrollments in all; then every roster moves to a RosterStore, and so do the
    pages after."""

    def __init__(self, rosters: dict[str, Roster], spill_at: int) -> None:
        self.rosters = rosters
        self.spill_at = spill_at
        self.store: RosterStore | None = None
        self.count = 0
        self.numbers: dict[str, int] = {}  # each roster's number in the store

    def new(self, number: int, scope: str) -> Roster:
        self.numbers[scope] = number
        enrollments: Enrollments = (
            [] if self.store is None else StoredEnrollments(self.store, number)
        )
        roster = self.rosters[scope] = Roster(scope, enrollments)
        return roster

    def add(self, number: int, roster: Roster, page: list[dict[str, Any]]) -> None:
        if self.store is not None:
            self.store.add(number, page)
            return
        assert isinstance(roster.enrollments, list)
        roster.enrollments.extend(page)
        self.count += len(page)
        if self.count > self.spill_at:
            self.spill()

    def spill(self) -> None:
        store = self.store = RosterStore()
        for scope, roster in self.rosters.items():
            number = self.numbers[scope]
            assert isinstance(roster.enrollments, list)
            store.add(number, roster.enrollments)
            roster.enrollments = StoredEnrollments(store, number)

    def discard(self, number: int, roster: Roster) -> None:
        if self.store is None:
            roster.enrollments = []
        else:
            self.store.discard(number)


# ---- who is who -----------------------------------------------------------------------------


class RosterIndex:
    """The rosters, indexed by user, and which enrollment ids the SIS claims.

    `aliases` maps API ids the rosters cannot show (SIS ids, to a token without read_sis) to
    Canvas ids: records are matched through them (see `resolve_hidden_ids`). Rosters in a
    RosterStore are indexed there: each lookup is a query, and nothing grows here with them."""

    def __init__(
        self, rosters: Mapping[str, Roster], aliases: Mapping[str, str] | None = None
    ) -> None:
        self.rosters = rosters
        self.aliases = dict(aliases or {})
        self._claimed: set[int] = set()  # in a store: the ids not yet written there
        self._store = _store_of(rosters)
        self._owner = 0
        self._numbers: dict[str, int] = {}
        self._by_user: dict[str, dict[UserKey, list[dict[str, Any]]]] = {}
        self.user_ids: Mapping[UserKey, int]
        if self._store is not None:
            self._numbers = {
                scope: r.enrollments.number
                for scope, r in rosters.items()
                if isinstance(r.enrollments, StoredEnrollments)
            }
            self.user_ids = _StoredUserIds(self._store)
            self._owner = self._store.claims()
            return
        user_ids: dict[UserKey, int] = {}
        for scope, roster in rosters.items():
            index: dict[UserKey, list[dict[str, Any]]] = defaultdict(list)
            for enrollment in roster.enrollments:
                for key in user_keys(enrollment):
                    index[key].append(enrollment)
                    if enrollment.get("user_id") is not None:
                        user_ids[key] = int(enrollment["user_id"])
            self._by_user[scope] = index
        self.user_ids = user_ids

    def of_user(self, scope: str, user: str) -> list[dict[str, Any]]:
        if self._store is not None:
            number = self._numbers.get(scope)
            if number is None:
                return []
            return self._store.of_user(number, *user_key(user))
        return self._by_user.get(scope, {}).get(user_key(user), [])

    def knows_user(self, user: str) -> bool:
        return user_key(user) in self.user_ids

    def claim(self, ids: Iterable[int]) -> None:
        """Enrollment ids a record claims: never dropped (`unclaimed`)."""
        self._claimed.update(ids)
        if self._store is not None and len(self._claimed) >= _CHUNK:
            self._store.claim(self._owner, self._claimed)
            self._claimed.clear()

    def unclaimed(self) -> Iterator[dict[str, Any]]:
        """Every enrollment with an id no record claimed, once (at its first place), in the
        rosters' order."""
        if self._store is not None:
            self._store.claim(self._owner, self._claimed)
            self._claimed.clear()
            yield from self._store.unclaimed(self._owner, (self._numbers[s] for s in self.rosters))
            return
        claimed = self._claimed
        seen: set[int] = set()
        for roster in self.rosters.values():
            for enrollment in roster.enrollments:
                eid = enrollment.get("id")
                if eid is None or int(eid) in claimed or int(eid) in seen:
                    continue
                seen.add(int(eid))
                yield enrollment

    def visible(self, record: EnrollmentRecord) -> EnrollmentRecord:
        """The record with its ids in the form the rosters carry, for matching only."""
        if not self.aliases:
            return record
        alias = self.aliases.get
        return replace(
            record,
            user=alias(record.user, record.user),
            section=alias(record.section, record.section) if record.section else None,
            associated_user=(
                alias(record.associated_user, record.associated_user)
                if record.associated_user
                else None
            ),
        )


class _StoredUserIds(Mapping[UserKey, int]):
    """`RosterIndex.user_ids` of rosters in a store: each user key's `user_id`, by query."""

    def __init__(self, store: RosterStore) -> None:
        self._store = store

    def __getitem__(self, key: UserKey) -> int:
        found = self._store.user_id(*key)
        if found is None:
            raise KeyError(key)
        return found

    def __contains__(self, key: object) -> bool:
        return (
            isinstance(key, tuple)
            and len(key) == 2
            and isinstance(key[1], str)
            and self._store.user_id(key[0], key[1]) is not None
        )

    def __iter__(self) -> Iterator[UserKey]:
        return (key for key, _uid in self._store.user_key_items())

    def __len__(self) -> int:
        return self._store.user_key_count()


def _store_of(rosters: Mapping[str, Roster]) -> RosterStore | None:
    """The store the rosters are in; None when they are lists. One fetch's rosters are all in
    one store or all lists (`_Held`)."""
    stores = {
        id(r.enrollments.store): r.enrollments.store
        for r in rosters.values()
        if isinstance(r.enrollments, StoredEnrollments)
    }
    if not stores:
        return None
    if (
        len(stores) > 1
        or len(stores) < 1
        or any(not isinstance(r.enrollments, StoredEnrollments) for r in rosters.values())
    ):
        raise ValueError("rosters from more than one fetch, or partly in a store")
    return next(iter(stores.values()))


def live_per_course(rosters: Mapping[str, Roster], states: Iterable[str]) -> dict[str, int]:
    """How many distinct enrollments in `states` each course's rosters hold (the brake's
    denominators), by the course's label (its SIS id, else its Canvas id)."""
    store = _store_of(rosters)
    if store is not None:
        numbers = [
            r.enrollments.number
            for r in rosters.values()
            if isinstance(r.enrollments, StoredEnrollments)
        ]
        return store.live_per_course(numbers, states)
    wanted = frozenset(states)
    live: dict[str, set[int]] = defaultdict(set)
    for roster in rosters.values():
        for enrollment in roster.enrollments:
            if enrollment.get("enrollment_state") in wanted and enrollment.get("id") is not None:
                live[_course_label(enrollment)].add(int(enrollment["id"]))
    return {c: len(ids) for c, ids in live.items()}


def course_id_of(roster: Roster) -> int | None:
    """The `course_id` of the roster's first enrollment that has one."""
    enrollments = roster.enrollments
    if isinstance(enrollments, StoredEnrollments):
        return enrollments.store.course_id(enrollments.number)
    return next((int(e["course_id"]) for e in enrollments if e.get("course_id") is not None), None)


def sis_hidden(rosters: Mapping[str, Roster]) -> bool:
    """Whether the rosters were read without the SIS fields: Canvas omits `sis_user_id` and
    `sis_section_id` unless the token may read_sis (instructure/canvas-lms
    lib/api/v1/enrollment.rb), so matching on them would call every enrollment missing."""
    return any(
        "sis_user_id" not in e or "sis_section_id" not in e
        for r in rosters.values()
        for e in r.enrollments[:1]
    )


async def resolve_hidden_ids(
    client: CanvasClient,
    records: Iterable[EnrollmentRecord],
    rosters: Mapping[str, Roster],
    *,
    observer: Observer | None = None,
) -> dict[str, str]:
    """When the rosters carry no SIS ids, the Canvas id of every user and section the records
    name by SIS id (`GET users/sis_user_id:X` answers with the id without read_sis), each once.

    An id Canvas does not know stays unresolved: its record fails when sent, as it would
    anyway. When the token cannot look them up either, the plan stops: it would otherwise see
    every enrollment as missing (creates) and every SIS enrollment as unclaimed (drops)."""
    if not sis_hidden(rosters):
        return {}
    users: set[str] = set()
    sections: set[str] = set()
    for record in records:
        users.update(r for r in (record.user, record.associated_user) if r and _named_by_sis(r))
        if record.section and _named_by_sis(record.section):
            sections.add(record.section)
    aliases: dict[str, str] = {}

    async def resolve(ref: str, section: bool) -> None:  # all at once: the governor paces them
        try:
            if section:
                found = await client.get_section(ref, observer=observer)
            else:
                found = await client.get_user(ref, observer=observer)
        except CanvasError as error:
            if error.status == 404:
                return
            if error.fatal or error.category is Category.NETWORK:
                raise
            raise CanvasError(
                Category.PERMISSION,
                "this token may not read SIS ids (Canvas's read_sis permission), so the "
                "rosters show none, and it cannot look them up either "
                f"(GET {'sections' if section else 'users'}/{ref}: {error.message}). "
                "Nothing was planned or sent: use a token whose role has read_sis, or one "
                "that may view users and sections",
                status=error.status,
            ) from error
        aliases[ref] = str(found["id"])

    try:
        async with asyncio.TaskGroup() as group:
            for ref in sorted(users):
                group.create_task(resolve(ref, False))
            for ref in sorted(sections):
                group.create_task(resolve(ref, True))
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return aliases


def _named_by_sis(ref: str) -> bool:
    kind, value = split_api_id(ref)
    return kind is not None or not value.isdigit()
