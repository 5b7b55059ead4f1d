"""Reading the rosters a plan diffs against, and indexing them by user."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

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


@dataclass(slots=True)
class Roster:
    scope: str  # `course/<API id>` or `section/<API id>` (see scope_of)
    enrollments: list[dict[str, Any]] = field(default_factory=list)
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
    if not enrollments:
        return False
    present: set[UserKey] = {key for e in enrollments for key in user_keys(e)}
    sis_shown = all("sis_user_id" in e for e in enrollments)
    for user in users:
        key = user_key(user)
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
) -> dict[str, Roster]:
    """Every page of every roster, in every state, and for the course scopes in `with_default`
    the course's sections, to tell its default section: always for a scope given alone, and
    for one given with its course-only rows' users (`default_scopes`) only when the roster
    holds one of them (`needs_default`). A roster that cannot be read (unknown course, no
    permission) is kept with its error; a fatal error (token, unsafe URL) or Canvas out of
    reach is raised, and the other reads are cancelled.

    Every roster is read at once unless `concurrency` says otherwise: the governor already
    holds the requests in flight to what Canvas's bucket allows, and a tighter gate here
    only leaves that room unused (each roster's pages follow one another)."""
    wanted = list(dict.fromkeys(scopes))
    defaults: Mapping[str, Iterable[str] | None] = (
        with_default if isinstance(with_default, Mapping) else dict.fromkeys(with_default)
    )
    gate = asyncio.Semaphore(concurrency) if concurrency else contextlib.nullcontext()
    rosters: dict[str, Roster] = {}
    done = 0

    async def read(scope: str) -> None:
        nonlocal done
        roster = rosters[scope] = Roster(scope)

        def on_page(pages: int, _items: int) -> None:
            roster.pages = pages

        kind, _, ref = scope.partition("/")
        async with gate:
            try:
                if kind == "section":
                    roster.enrollments = await client.list_enrollments(
                        section=ref,
                        states=ALL_STATES,
                        on_page=on_page,
                        observer=observer,
                        keep=kept,
                    )
                else:
                    roster.enrollments = await client.list_enrollments(
                        course=ref,
                        states=ALL_STATES,
                        on_page=on_page,
                        observer=observer,
                        keep=kept,
                    )
                    if scope in defaults:
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
        done += 1
        if on_roster is not None:
            on_roster(done, len(wanted))

    try:
        async with asyncio.TaskGroup() as group:  # the first error cancels the other reads
            for scope in wanted:
                group.create_task(read(scope))
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None  # the plan stops with the error itself
    return rosters


# ---- who is who -----------------------------------------------------------------------------


class RosterIndex:
    """The rosters, indexed by user, and which enrollment ids the SIS claims.

    `aliases` maps API ids the rosters cannot show (SIS ids, to a token without read_sis) to
    Canvas ids: records are matched through them (see `resolve_hidden_ids`)."""

    def __init__(
        self, rosters: Mapping[str, Roster], aliases: Mapping[str, str] | None = None
    ) -> None:
        self.rosters = rosters
        self.aliases = dict(aliases or {})
        self._by_user: dict[str, dict[tuple[str | None, str], list[dict[str, Any]]]] = {}
        self.user_ids: dict[tuple[str | None, str], int] = {}
        for scope, roster in rosters.items():
            index: dict[tuple[str | None, str], list[dict[str, Any]]] = defaultdict(list)
            for enrollment in roster.enrollments:
                for key in user_keys(enrollment):
                    index[key].append(enrollment)
                    if enrollment.get("user_id") is not None:
                        self.user_ids[key] = int(enrollment["user_id"])
            self._by_user[scope] = index

    def of_user(self, scope: str, user: str) -> list[dict[str, Any]]:
        return self._by_user.get(scope, {}).get(user_key(user), [])

    def knows_user(self, user: str) -> bool:
        return user_key(user) in self.user_ids

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
