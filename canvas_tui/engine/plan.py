"""Reconcile: diff the source against the live Canvas rosters, then apply only the changes.

For every course (or section, for section-only rows) the source names, the whole roster is read
in every state (`state[]`: the default list hides completed and deleted rows, CANVAS_API.md §2.6),
a page at a time through the same client and governor as a sync. Each source record is matched to
the enrollments with the same user, role and section (the identity Canvas reuses on a re-POST,
§2.4) and gets one action: create, reactivate, update, inactivate, conclude, delete or none.
Every enrollment no record claims is a *drop*, and follows `[plan] drop_policy` (never by default).

Who owns an enrollment. Only enrollments the SIS made may be dropped: those with a
`sis_import_id` (Canvas's SIS import made them) and those canvas-tui itself wrote for an SIS row.
Canvas keeps no mark on API-made rows, so canvas-tui's journals are the record: any journal in the
journal directory (`[sync] journal_dir`, default `runs/`), the configured `[sync] journal` and the
current run's journal, whose row ended done with a create/reactivate/update, names its enrollment
id. An enrollment that is neither is manual and is left alone unless `manual_enrollments =
"include"`. The failure mode is the safe one: a journal deleted or moved elsewhere turns its
enrollments into "manual", which are kept. A POST that Canvas answered with an older hand-made row
(same user, role and section) counts as canvas-tui's: the SIS asserted that enrollment.

Brake: a plan whose drops exceed `brake_max_share` of any course's live roster, or
`brake_max_count` in all, is not applied unless the operator allows that many drops
(`--allow-drops N` headless, an approval dialog in the console).

Applying: the plan's steps become the run's journal (the source rows, then one row per drop), rows
that need nothing are marked done at once, and the rest go through the same runner, governor,
journal and controls as a sync. A record edited by the operator, or resumed from a journal in a
later process, no longer has a current step and falls back to the lookup-based SIS actions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import math
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import httpx

from canvas_tui.canvas.client import CanvasClient
from canvas_tui.canvas.errors import CanvasError, Category
from canvas_tui.canvas.governor import Governor
from canvas_tui.config import Config, ConfigError, PlanConfig, check_base_url, load_config
from canvas_tui.engine.actions import (
    ALL_STATES,
    DELETE_TASKS,
    ActionResult,
    EnrollmentActions,
    Observer,
    planned_action,
    same_role,
)
from canvas_tui.engine.estimate import format_duration
from canvas_tui.engine.journal import written_enrollment_ids
from canvas_tui.engine.repost import PostFields, blind_post_is_safe, differs, post_fields
from canvas_tui.engine.roster_match import (
    DefaultSection,
    UserKey,
    default_section_from,
    names_enrollment,
    user_key,
    user_keys,
)
from canvas_tui.engine.session import Session
from canvas_tui.paths import default_journal_dir
from canvas_tui.records import (
    EnrollmentRecord,
    InputError,
    Provenance,
    RowProblem,
    SisStatus,
    Source,
    SourceItem,
    sis_value,
    split_api_id,
)
from canvas_tui.sources import open_source

DROP_SOURCE = "plan:drops"  # provenance of the journal rows a plan adds for drops
PAGE_SIZE = 100  # enrollments per roster page (the client's per_page)
# Auto mode picks the plan when full mode's requests (a write per record, plus the lookups it makes
# first) >= PLAN_RATIO x estimated roster pages: even if every record turned out to need a write,
# the plan's extra reads cost at most 1/PLAN_RATIO (10 %).
PLAN_RATIO = 10
# ... or when full mode's lookups alone are >= LOOKUP_RATIO x those pages: each page replaces up
# to 100 lookups, and the estimate (one page per 100 rows of a roster) can be short of a big
# roster's real size, hence the margin.
LOOKUP_RATIO = 2

LIVE_STATES = frozenset({"active", "invited", "creation_pending", "inactive"})
NEVER_DROPPED_TYPES = frozenset({"StudentViewEnrollment"})  # the course's test student
_TASK_STATUS = {task: status for status, (task, _) in DELETE_TASKS.items()}
_TASK_STATE = dict(DELETE_TASKS.values())
_WRITE_ACTIONS = ("create", "create_inactive", "reactivate", "update")
ACTIONS = ("create", "reactivate", "update", "inactivate", "conclude", "delete", "none")


# ---- the plan -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """What one source record, or one enrollment gone from the SIS, will ask of Canvas."""

    kind: str  # "record" (a source row) or "enrollment" (in Canvas, not in the SIS)
    action: str  # one of ACTIONS
    course: str  # the course as an operator names it (SIS id, else Canvas id)
    user: str
    role: str
    section: str
    reason: str
    record_index: int | None = None  # 0-based position among the source's items
    record: EnrollmentRecord | None = None
    enrollment_ids: tuple[int, ...] = ()  # what the step changes (or matched, for none)
    course_id: int | None = None  # Canvas course id, for the DELETE / PUT routes
    canvas_state: str | None = None  # the matched enrollment's state now
    via: str = ""  # POST, PUT reactivate, DELETE task=..., lookup (decided at send time)
    drop: bool = False
    manual: bool = False  # neither SIS-imported nor written by canvas-tui
    refs: tuple[str, str, str | None] | None = None  # a drop's user, course, section as API ids
    # a POST's values for what Canvas re-applies: the record's, and Canvas's for its blanks
    fields: PostFields | None = None

    @property
    def requests(self) -> int:
        """HTTP requests the step needs when applied (lookups count their list request)."""
        if self.action == "none":
            return 0
        if self.via == "lookup":
            return 2
        if self.via.startswith("POST, DELETE"):
            return 2
        return max(1, len(self.enrollment_ids)) if self.via.startswith("DELETE") else 1

    def row(self) -> dict[str, Any]:
        provenance = self.record.provenance if self.record is not None else None
        return {
            "kind": self.kind,
            "action": self.action,
            "course": self.course,
            "section": self.section,
            "user": self.user,
            "role": self.role,
            "status": str(self.record.status) if self.record is not None else "",
            "canvas_state": self.canvas_state or "",
            "enrollment_ids": " ".join(str(i) for i in self.enrollment_ids),
            "via": self.via,
            "drop": self.drop,
            "manual": self.manual,
            "reason": self.reason,
            "source": provenance.source if provenance else "",
            "line": provenance.line if provenance else "",
        }


@dataclass(frozen=True, slots=True)
class Brake:
    """Whether the plan's drops are too many to apply without the operator's say-so."""

    drops: int
    max_share: float
    max_count: int | None
    by_course: Mapping[str, tuple[int, int]]  # course -> (drops, live enrollments)
    reasons: tuple[str, ...]

    @property
    def tripped(self) -> bool:
        return bool(self.reasons)

    def allows(self, allow_drops: int | None) -> bool:
        """True when the plan may be applied: under the thresholds, or the operator allowed at
        least this many drops."""
        return not self.tripped or (allow_drops is not None and self.drops <= allow_drops)


@dataclass(slots=True)
class Plan:
    steps: list[Step]
    scopes: int  # rosters read
    roster_pages: int
    roster_requests: int  # HTTP attempts spent reading them (retries included)
    roster_errors: dict[str, str]  # scope -> why its roster could not be read
    invalid_rows: int  # source rows that failed validation (they end failed in a sync)
    policy: PlanConfig
    brake: Brake
    elapsed: float = 0.0
    duplicate_rows: int = 0  # exact repeats of an earlier row (skipped in a sync)

    def record_counts(self) -> Counter[str]:
        """Actions of the source's records only (not of enrollments only Canvas has)."""
        return Counter(s.action for s in self.steps if s.kind == "record")

    def counts(self) -> Counter[str]:
        return Counter(s.action for s in self.steps)

    def by_course(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = defaultdict(Counter)
        for step in self.steps:
            out[step.course][step.action] += 1
        return dict(sorted(out.items()))

    @property
    def changes(self) -> list[Step]:
        return [s for s in self.steps if s.action != "none"]

    @property
    def drops(self) -> list[Step]:
        return [s for s in self.steps if s.drop and s.action != "none"]

    @property
    def change_requests(self) -> int:
        return sum(s.requests for s in self.steps)

    def summary(self) -> dict[str, Any]:
        return {
            "records": sum(1 for s in self.steps if s.kind == "record"),
            "invalid_rows": self.invalid_rows,
            "duplicate_rows": self.duplicate_rows,
            "canvas_only": sum(1 for s in self.steps if s.kind == "enrollment"),
            "actions": {a: self.counts().get(a, 0) for a in ACTIONS},
            "drops": len(self.drops),
            "manual_left_alone": sum(1 for s in self.steps if s.manual and s.action == "none"),
            "drop_policy": self.policy.drop_policy,
            "manual_enrollments": self.policy.manual_enrollments,
            "rosters": self.scopes,
            "roster_pages": self.roster_pages,
            "roster_requests": self.roster_requests,
            "roster_errors": dict(self.roster_errors),
            "change_requests": self.change_requests,
            "brake": {
                "tripped": self.brake.tripped,
                "reasons": list(self.brake.reasons),
                "max_share": self.brake.max_share,
                "max_count": self.brake.max_count,
            },
            "elapsed": round(self.elapsed, 3),
        }


# ---- reading rosters ------------------------------------------------------------------------


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
                        section=ref, states=ALL_STATES, on_page=on_page, observer=observer
                    )
                else:
                    roster.enrollments = await client.list_enrollments(
                        course=ref, states=ALL_STATES, on_page=on_page, observer=observer
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


def _observed_id(record: EnrollmentRecord, index: RosterIndex) -> int | None:
    """The Canvas id of the student an observer row names, when a roster (or the row) shows it."""
    assert record.associated_user is not None
    observed = index.user_ids.get(user_key(record.associated_user))
    kind, value = split_api_id(record.associated_user)
    if observed is None and kind is None and value.isdigit():
        return int(value)
    return observed


def _same_observed(
    enrollment: Mapping[str, Any], record: EnrollmentRecord, index: RosterIndex
) -> bool:
    if record.associated_user is None:
        return enrollment.get("associated_user_id") is None
    observed = _observed_id(record, index)
    # An observed user seen in no roster cannot be resolved here; any observer row matches then
    # (plan_record sends such a row by lookup when the user has an observer link it could be).
    return observed is None or enrollment.get("associated_user_id") == observed


def known_enrollment_ids(paths: Iterable[Path]) -> set[int]:
    """Enrollment ids canvas-tui wrote for an SIS row (not for a drop), read from its journals."""
    return written_enrollment_ids(paths, actions=_WRITE_ACTIONS, excluding_source=DROP_SOURCE)


def journal_paths(config: Config, *extra: Path | None) -> list[Path]:
    """The journals whose enrollments count as canvas-tui's (see the module docstring)."""
    directory = config.sync.journal_dir or default_journal_dir()
    found = sorted(directory.glob("*.journal")) if directory.is_dir() else []
    return [*found, *(p for p in (config.sync.journal, *extra) if p is not None)]


# ---- computing the plan ---------------------------------------------------------------------


def _label(enrollment: Mapping[str, Any], sis: str, canvas: str) -> str:
    return str(enrollment.get(sis) or enrollment.get(canvas) or "")


def _ref(enrollment: Mapping[str, Any], sis: str, canvas: str) -> str:
    """The API id form of a label: `sis_user_id:S1`, or the Canvas id."""
    value = enrollment.get(sis)
    return f"{sis}:{value}" if value else str(enrollment.get(canvas) or "")


def _differs(record: EnrollmentRecord, enrollment: Mapping[str, Any]) -> str | None:
    """What a re-POST would rewrite on an enrollment that is otherwise in place (§2.4); a field
    the source left blank is never a difference."""
    return differs(record, enrollment)


def _ids(enrollments: Iterable[Mapping[str, Any]]) -> tuple[int, ...]:
    return tuple(int(e["id"]) for e in enrollments if e.get("id") is not None)


def _course_id(enrollments: Sequence[Mapping[str, Any]]) -> int | None:
    return next((int(e["course_id"]) for e in enrollments if e.get("course_id") is not None), None)


def plan_record(
    index_position: int,
    record: EnrollmentRecord,
    index: RosterIndex,
    *,
    active_state: str = "active",
) -> tuple[Step, list[dict[str, Any]]]:
    """The step for one record, and the enrollments it claims (never dropped)."""
    scope = scope_of(record)
    base = {
        "kind": "record",
        "course": record.course_label,
        "user": sis_value(record.user),
        "role": record.role,
        "section": sis_value(record.section),
        "record_index": index_position,
        "record": record,
    }
    roster = index.rosters.get(scope)
    if roster is None or roster.error is not None:
        why = roster.error.message if roster and roster.error else "not read"
        unread = Step(
            action=_lookup_action(record),
            reason=f"roster unavailable ({why}); decided when sent",
            via="lookup",
            **base,  # type: ignore[arg-type]
        )
        return unread, []
    match = index.visible(record)  # ids the rosters can show (a token without read_sis)
    users = index.of_user(scope, match.user)
    role_id = record.role_id
    default = roster.default if record.section is None else None
    mine = [
        e
        for e in users
        if names_enrollment(
            e,
            user=match.user,
            role=record.role,
            section=match.section,
            enrollment_type=record.enrollment_type,
            role_id=role_id,
            default=default,
        )
        and _same_observed(e, match, index)
    ]
    if (
        match.associated_user is not None
        and _observed_id(match, index) is None
        and any(
            e.get("associated_user_id") is not None for e in users if same_role(e, record, role_id)
        )
    ):
        # The observed student is in no roster (new to the course, say), so which of the user's
        # observer links is the row's cannot be told here: a parent of two children must not
        # see one child's link taken for the other's. The actions look the student up.
        unknown = Step(
            action=_lookup_action(record),
            reason="observed user in no roster read; decided when sent",
            via="lookup",
            **base,  # type: ignore[arg-type]
        )
        return unknown, mine
    if mine and default is not None and not default.known:
        ambiguous = Step(
            action=_lookup_action(record),
            reason=f"{default.describe(record.course_label)}; decided when sent",
            via="lookup",
            **base,  # type: ignore[arg-type]
        )
        return ambiguous, mine
    course_id = _course_id(mine) or _course_id(roster.enrollments)
    state_of = Counter(str(e.get("enrollment_state")) for e in mine)
    current = ",".join(sorted(state_of)) or None
    live = [e for e in mine if e.get("enrollment_state") != "deleted"]

    def step(
        action: str,
        reason: str,
        via: str,
        targets: Sequence[Mapping[str, Any]],
        reused: Mapping[str, Any] | None = None,
    ) -> Step:
        return Step(
            action=action,
            reason=reason,
            via=via,
            enrollment_ids=_ids(targets),
            course_id=_course_id(targets) or course_id,
            canvas_state=current,
            fields=post_fields(record, reused) if via.startswith("POST") else None,
            **base,  # type: ignore[arg-type]
        )

    status = record.status
    if status is SisStatus.ACTIVE:
        # A re-POST never changes an active row's state (§2.4), so active is in place whatever
        # state the config creates rows in.
        in_place = [e for e in mine if e.get("enrollment_state") in (active_state, "active")]
        if in_place:
            changed = _differs(record, in_place[0])
            if changed:
                reason = f"{changed} differs in Canvas"
                return step("update", reason, "POST", in_place[:1], in_place[0]), mine
            state_now = in_place[0].get("enrollment_state")
            return step("none", f"already {state_now} in Canvas", "", in_place[:1]), mine
        inactive = [e for e in mine if e.get("enrollment_state") == "inactive"]
        if inactive and active_state == "active" and not _differs(record, inactive[0]):
            return step("reactivate", "inactive in Canvas", "PUT reactivate", inactive[:1]), mine
        if mine:
            return step("reactivate", f"{current} in Canvas", "POST", mine[:1], mine[0]), mine
        return step("create", "not in Canvas", "POST", []), mine
    if status is SisStatus.DELETED_LAST_COMPLETED:
        if record.course is None:
            return step(_lookup_action(record), "needs the whole course", "lookup", live), mine
        mine_ids = set(_ids(mine))
        # Another enrollment that is not deleted (Enrollment.active), same role and observed
        # user, anywhere in the course (lib/sis/enrollment_importer.rb; see actions._change).
        keeps_another = any(
            e.get("enrollment_state") != "deleted"
            and int(e["id"]) not in mine_ids
            and _same_observed(e, match, index)
            for e in users
            if same_role(e, record, role_id)
        )
        status = SisStatus.DELETED if keeps_another else SisStatus.COMPLETED
    task, target = DELETE_TASKS[status]
    if not live:
        if status is SisStatus.INACTIVE:
            # a deleted row is reused by the POST: it keeps what the row leaves blank
            reused = mine[0] if mine else None
            return step("create", "not in Canvas; created inactive", "POST", [], reused), mine
        if status is SisStatus.COMPLETED or not mine:
            # Canvas's importer creates it in that state: a create, then the task
            why = f"{current or 'not'} in Canvas; created, then {target}"
            reused = mine[0] if mine else None
            return step("create", why, f"POST, DELETE task={task}", [], reused), mine
        return step("none", "already deleted", "", mine[:1]), mine
    if status is not SisStatus.DELETED and any(_differs(record, e) for e in live):
        # explicit dates or flag to set first: EnrollmentActions._restate_then does it
        return step(_lookup_action(record), "values differ in Canvas", "lookup", live), mine
    todo = [e for e in live if e.get("enrollment_state") != target]
    if not todo:
        return step("none", f"already {target}", "", live[:1]), mine
    return step(task, f"{current} in Canvas", f"DELETE task={task}", todo), mine


def _lookup_action(record: EnrollmentRecord) -> str:
    action = planned_action(record)
    return "conclude" if action == "delete_or_conclude" else action


def plan_drop(enrollment: Mapping[str, Any], policy: PlanConfig, *, managed: bool) -> Step | None:
    """The step for an enrollment no record claims; None when there is nothing to say."""
    state = str(enrollment.get("enrollment_state"))
    if state == "deleted" or enrollment.get("type") in NEVER_DROPPED_TYPES:
        return None
    base = {
        "kind": "enrollment",
        "course": _label(enrollment, "sis_course_id", "course_id"),
        "user": _label(enrollment, "sis_user_id", "user_id"),
        "role": str(enrollment.get("role") or enrollment.get("type") or ""),
        "section": _label(enrollment, "sis_section_id", "course_section_id"),
        "enrollment_ids": _ids([enrollment]),
        "course_id": _course_id([enrollment]),
        "canvas_state": state,
        "manual": not managed,
        "refs": (
            _ref(enrollment, "sis_user_id", "user_id"),
            _ref(enrollment, "sis_course_id", "course_id"),
            _ref(enrollment, "sis_section_id", "course_section_id"),
        ),
    }
    if not managed and policy.manual_enrollments != "include":
        return Step(
            action="none",
            reason="not in the SIS; manual (no sis_import_id, not written by canvas-tui): left alone",
            **base,  # type: ignore[arg-type]
        )
    drop_policy = policy.drop_policy
    if drop_policy == "never":
        return Step(action="none", reason="not in the SIS; drop_policy is never", **base)  # type: ignore[arg-type]
    target = _TASK_STATE[drop_policy]
    settled = {
        "inactivate": {"inactive", "completed", "rejected"},
        "conclude": {"completed", "rejected"},
        "delete": set(),
    }[drop_policy]
    if state in settled:
        return Step(action="none", reason=f"not in the SIS; already {state}", **base)  # type: ignore[arg-type]
    return Step(
        action=drop_policy,
        reason=f"not in the SIS; drop_policy {drop_policy} -> {target}",
        via=f"DELETE task={drop_policy}",
        drop=True,
        **base,  # type: ignore[arg-type]
    )


def evaluate_brake(
    steps: Sequence[Step], rosters: Mapping[str, Roster], policy: PlanConfig
) -> Brake:
    """Drops per course against the course's live roster, and in all."""
    live: dict[str, set[int]] = defaultdict(set)
    for roster in rosters.values():
        for enrollment in roster.enrollments:
            if (
                enrollment.get("enrollment_state") in LIVE_STATES
                and enrollment.get("id") is not None
            ):
                course = _label(enrollment, "sis_course_id", "course_id")
                live[course].add(int(enrollment["id"]))
    drops = Counter(s.course for s in steps if s.drop and s.action != "none")
    by_course = {c: (n, len(live.get(c, ()))) for c, n in sorted(drops.items())}
    reasons: list[str] = []
    for course, (n, size) in by_course.items():
        share = n / size if size else 1.0
        if share > policy.brake_max_share:
            reasons.append(
                f"{course}: {n} of {size} live enrollments ({share:.0%}) would be dropped; "
                f"brake_max_share is {policy.brake_max_share:.0%}"
            )
    total = sum(drops.values())
    if policy.brake_max_count is not None and total > policy.brake_max_count:
        reasons.append(f"{total} drops in all; brake_max_count is {policy.brake_max_count}")
    return Brake(total, policy.brake_max_share, policy.brake_max_count, by_course, tuple(reasons))


def build_plan(
    items: Sequence[SourceItem],
    rosters: Mapping[str, Roster],
    policy: PlanConfig,
    *,
    known_ids: set[int] | None = None,
    active_state: str = "active",
    roster_requests: int = 0,
    aliases: Mapping[str, str] | None = None,
) -> Plan:
    """Pure: the steps for the source's records and for the enrollments they do not claim."""
    index = RosterIndex(rosters, aliases)
    steps: list[Step] = []
    claimed: set[int] = set()
    invalid = duplicates = 0
    for position, item in enumerate(items):
        if isinstance(item, RowProblem):
            duplicates += item.skip
            invalid += not item.skip
            continue
        step, mine = plan_record(position, item, index, active_state=active_state)
        steps.append(step)
        claimed.update(_ids(mine))
    known = known_ids or set()
    seen: set[int] = set()
    for roster in rosters.values():
        for enrollment in roster.enrollments:
            eid = enrollment.get("id")
            if eid is None or int(eid) in claimed or int(eid) in seen:
                continue
            seen.add(int(eid))
            managed = enrollment.get("sis_import_id") is not None or int(eid) in known
            drop = plan_drop(enrollment, policy, managed=managed)
            if drop is not None:
                steps.append(drop)
    return Plan(
        steps=steps,
        scopes=len(rosters),
        roster_pages=sum(r.pages for r in rosters.values()),
        roster_requests=roster_requests,
        roster_errors={s: str(r.error) for s, r in rosters.items() if r.error is not None},
        invalid_rows=invalid,
        policy=policy,
        brake=evaluate_brake(steps, rosters, policy),
        duplicate_rows=duplicates,
    )


async def compute_plan(
    client: CanvasClient,
    items: Sequence[SourceItem],
    config: Config,
    *,
    known_ids: set[int] | None = None,
    rosters: Mapping[str, Roster] | None = None,
    on_roster: Callable[[int, int], None] | None = None,
) -> Plan:
    """Read the rosters of the courses the source names (unless given) and build the plan."""
    started = time.monotonic()
    requests = 0

    def count(_event: Any) -> None:
        nonlocal requests
        requests += 1

    if rosters is None:
        scopes = [scope_of(i) for i in items if isinstance(i, EnrollmentRecord)]
        rosters = await fetch_rosters(
            client,
            scopes,
            observer=count,
            on_roster=on_roster,
            with_default=default_scopes(items),
        )
    records = [i for i in items if isinstance(i, EnrollmentRecord)]
    aliases = await resolve_hidden_ids(client, records, rosters, observer=count)
    plan = build_plan(
        items,
        rosters,
        config.plan,
        known_ids=known_ids,
        active_state=config.sync.enrollment_state,
        roster_requests=requests,
        aliases=aliases,
    )
    plan.elapsed = time.monotonic() - started
    return plan


def estimated_roster_pages(items: Iterable[SourceItem]) -> int:
    """Before reading anything: one page per 100 records of each roster, at least one each."""
    per_scope = Counter(scope_of(i) for i in items if isinstance(i, EnrollmentRecord))
    return sum(math.ceil(n / PAGE_SIZE) for n in per_scope.values())


def full_mode_lookups(items: Iterable[SourceItem]) -> tuple[int, int]:
    """(lookups full mode makes before writing, of which for blank fields). Every row but an
    `active` one that states all the fields a re-POST resets reads the user's enrollments first
    (repost.py, actions.py)."""
    lookups = blank = 0
    for item in items:
        if isinstance(item, EnrollmentRecord) and not blind_post_is_safe(item):
            lookups += 1
            if item.status is SisStatus.ACTIVE:
                blank += 1
    return lookups, blank


def choose_mode(
    items: Sequence[SourceItem], policy: PlanConfig, requested: bool | None
) -> tuple[bool, str]:
    """(use the plan?, why). Explicit --plan / --no-plan wins; otherwise the cheaper mode, by
    the requests full mode would make (a write per record, plus a lookup per record it must read
    first) against the reads a plan makes first: the roster pages, and at most one section list
    per course with course-only rows (read only when one of their users is in the roster)."""
    if requested is not None:
        return requested, "plan mode (--plan)" if requested else "full mode (--no-plan)"
    if policy.drop_policy != "never":
        return True, f"plan mode: drop_policy is {policy.drop_policy} (only a plan sees drops)"
    records = sum(1 for i in items if isinstance(i, EnrollmentRecord))
    pages = estimated_roster_pages(items)
    sections = len(default_scopes(items))
    lookups, blank = full_mode_lookups(items)
    full = records + lookups
    reads = (
        f"; {blank} active rows leave limit_section_privileges or dates blank, so full mode "
        "would read each before writing it (a blind POST would reset them)"
        if blank
        else ""
    )
    plan_reads = f"about {pages} roster pages" + (
        f" and up to {sections} section lists" if sections else ""
    )
    # A course's section list is one request, no estimate: the lookup margin covers the pages.
    if records and (
        full >= PLAN_RATIO * (pages + sections) or lookups >= LOOKUP_RATIO * pages + sections
    ):
        return True, (
            f"plan mode (auto): {records} records, about {full} requests in full mode "
            f"({lookups} of them lookups) against {plan_reads} to read first{reads}"
        )
    return False, (
        f"full mode (auto): {records} records, about {full} requests ({lookups} lookups), "
        f"against {plan_reads}; a plan pays off from {PLAN_RATIO} requests or "
        f"{LOOKUP_RATIO} lookups per page (and one more per section list){reads}"
    )


# ---- writing it down ------------------------------------------------------------------------


CSV_COLUMNS = (
    "kind",
    "action",
    "course",
    "section",
    "user",
    "role",
    "status",
    "canvas_state",
    "enrollment_ids",
    "via",
    "drop",
    "manual",
    "reason",
    "source",
    "line",
)


def write_plan(
    plan: Plan, prefix: Path, *, extra: Mapping[str, Any] | None = None
) -> tuple[Path, Path]:
    """PREFIX.json (summary, per course, every change) and PREFIX.csv (every step)."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    json_path = prefix.with_name(prefix.name + ".json")
    csv_path = prefix.with_name(prefix.name + ".csv")
    document = {
        "summary": plan.summary(),
        "by_course": {c: dict(n) for c, n in plan.by_course().items()},
        "brake_by_course": {
            c: {"drops": d, "live": n} for c, (d, n) in plan.brake.by_course.items()
        },
        "changes": [s.row() for s in plan.changes],
        **(dict(extra) if extra else {}),
    }
    json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for step in plan.steps:
            writer.writerow(step.row())
    return json_path, csv_path


def format_plan(plan: Plan, *, max_courses: int = 40) -> list[str]:
    """The console summary: per action, per course, the brake."""
    records = plan.record_counts()
    canvas_only = [s for s in plan.steps if s.kind == "enrollment"]
    lines = [
        # the words `check` and `sync` use too: records, invalid (fail), duplicates (skipped)
        f"plan: {records.total()} records, {plan.invalid_rows} invalid, "
        f"{plan.duplicate_rows} duplicates; {plan.scopes} rosters in {plan.roster_pages} pages "
        f"({plan.roster_requests} requests, {format_duration(plan.elapsed)})",
        # "none": the record is already in place in Canvas
        "  records: " + "  ".join(f"{a} {records.get(a, 0)}" for a in ACTIONS),
        f"  in Canvas only: {len(canvas_only)} (drops: {len(plan.drops)} by drop_policy "
        f"{plan.policy.drop_policy}; manual, left alone: "
        f"{sum(1 for s in canvas_only if s.manual and s.action == 'none')})",
        f"  requests to apply: {plan.change_requests}",
    ]
    changed = [(c, n) for c, n in plan.by_course().items() if sum(n.values()) != n.get("none", 0)]
    if changed:
        lines.append("  per course (changes only):")
        for course, n in changed[:max_courses]:
            parts = ", ".join(f"{a} {n[a]}" for a in ACTIONS if a != "none" and n.get(a))
            lines.append(f"    {course}: {parts}")
        if len(changed) > max_courses:
            lines.append(f"    ... {len(changed) - max_courses} more courses (see the JSON)")
    for scope, error in plan.roster_errors.items():
        lines.append(f"  roster of {scope_label(scope)} unavailable: {error}")
    if plan.brake.tripped:
        reasons = plan.brake.reasons
        lines.append(f"  BRAKE: {plan.brake.drops} drops exceed the thresholds:")
        lines.extend(f"    {r}" for r in reasons[:max_courses])
        if len(reasons) > max_courses:
            lines.append(f"    ... {len(reasons) - max_courses} more (see the JSON)")
    return lines


# ---- applying it through the engine ---------------------------------------------------------


def drop_record(step: Step, line: int) -> EnrollmentRecord:
    """A journal row for a drop, so it is sent, retried and reported like any record."""
    status = _TASK_STATUS[step.action]
    raw = {
        "course_id": step.course,
        "user_id": step.user,
        "role": step.role,
        "section_id": step.section,
        "status": str(status),
        "canvas_enrollment_id": str(step.enrollment_ids[0]),
        "canvas_course_id": str(step.course_id),
        "task": step.action,
        "reason": step.reason,
    }
    assert step.refs is not None, "a drop step carries its enrollment's ids"
    user, course, section = step.refs
    return EnrollmentRecord(
        user=user,
        course=course,
        section=section or None,
        role=step.role,
        enrollment_type=None,
        status=status,
        provenance=Provenance(DROP_SOURCE, line, raw),
    )


class PlannedSource:
    """The source's items, then one record per drop: what a planned run's journal holds."""

    def __init__(self, source: Source, items: Sequence[SourceItem], drops: Sequence[Step]) -> None:
        self._source = source
        self._items = items
        self._drops = drops
        self.notes = getattr(source, "notes", [])
        self.layout = getattr(source, "layout", None)

    @property
    def description(self) -> str:
        return self._source.description

    def __iter__(self) -> Iterator[SourceItem]:
        yield from self._items
        for line, step in enumerate(self._drops, start=1):
            yield drop_record(step, line)


class PlanExecutor:
    """Sends a record's planned step; without a current step, the lookup-based SIS actions."""

    def __init__(
        self,
        client: CanvasClient,
        fallback: EnrollmentActions,
        steps: Iterable[Step] = (),
        *,
        active_state: str = "active",
    ) -> None:
        self._client = client
        self._fallback = fallback
        self._active_state = active_state
        self._steps = {
            (s.record.provenance.source, s.record.provenance.line): s
            for s in steps
            if s.record is not None
        }

    async def apply(self, record: EnrollmentRecord, observer: Observer | None) -> ActionResult:
        if record.provenance.source == DROP_SOURCE:
            return await self._drop(record, observer)
        step = self._steps.get((record.provenance.source, record.provenance.line))
        if step is None or step.record != record or step.via == "lookup":
            return await self._fallback.apply(record, observer)  # edited, resumed or unknown
        if step.via == "PUT reactivate" and step.course_id is not None:
            done = await self._client.reactivate_enrollment(
                str(step.course_id), step.enrollment_ids[0], observer=observer
            )
            return ActionResult("reactivate", _int(done.get("id")))
        if step.via == "POST" and step.fields is not None:
            state = "inactive" if record.status is SisStatus.INACTIVE else self._active_state
            result = await self._fallback.post(record, state, step.fields, observer)
            return ActionResult(step.action, result.enrollment_id, result.message)
        if step.via.startswith("POST, DELETE"):
            status = _TASK_STATUS[step.via.rpartition("=")[2]]
            result = await self._fallback.create_and_end(record, status, observer, step.fields)
            return ActionResult(result.action, result.enrollment_id, result.message)
        if step.via.startswith("DELETE") and step.course_id is not None:
            last: dict[str, Any] = {}
            for enrollment_id in step.enrollment_ids:
                last = await self._client.delete_enrollment(
                    str(step.course_id), enrollment_id, step.action, observer=observer
                )
            return ActionResult(step.action, _int(last.get("id")))
        return await self._fallback.apply(record, observer)

    async def _drop(self, record: EnrollmentRecord, observer: Observer | None) -> ActionResult:
        raw = record.provenance.raw
        task, course, enrollment = raw["task"], raw["canvas_course_id"], raw["canvas_enrollment_id"]
        try:
            done = await self._client.delete_enrollment(course, enrollment, task, observer=observer)
        except CanvasError as error:
            # DELETE cannot see deleted rows (§2.7): gone already is what a delete wanted.
            if task == "delete" and error.status == 404:
                return ActionResult("none", int(enrollment), "nothing to do: already deleted")
            raise
        return ActionResult(task, _int(done.get("id")), raw.get("reason"))


def _in_place(steps: Iterable[Step]) -> Iterator[tuple[int, str, int | None]]:
    """The records the plan found in place, as `Journal.mark_in_place` takes them."""
    for s in steps:
        if s.kind == "record" and s.action == "none" and s.record_index is not None:
            warnings = s.record.warnings if s.record else ()
            message = "; ".join([*warnings, f"plan: {s.reason}"])
            yield s.record_index + 1, message, s.enrollment_ids[0] if s.enrollment_ids else None


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None


@dataclass(slots=True)
class SyncDecision:
    """What `sync` decided before sending anything."""

    planned: bool
    message: str
    plan: Plan | None = None
    refused: str | None = None  # why nothing may be sent (the brake)
    fields: dict[str, Any] = field(default_factory=dict)
    source: Source | None = None  # what the plan read, for apply_plan
    items: Sequence[SourceItem] = ()


def read_items(source: Source) -> list[SourceItem]:
    return list(source)


def _executor(session: Session, steps: Iterable[Step] = ()) -> PlanExecutor:
    """The session's executor: the planned steps, else the lookup-based SIS actions."""
    client = session.client
    assert client is not None, "a writable session"
    sync = session.config.sync
    fallback = EnrollmentActions(client, notify=sync.notify, active_state=sync.enrollment_state)
    return PlanExecutor(client, fallback, steps, active_state=sync.enrollment_state)


async def plan_session(
    session: Session,
    *,
    requested: bool | None,
    on_progress: Callable[[str], None] | None = None,
) -> SyncDecision:
    """Pick the mode and, in plan mode, compute the plan; nothing is loaded or sent yet.

    A resumed journal is never re-planned; its remaining rows are sent as they are (drops by
    their recorded enrollment id, source rows with lookups). The console shows the plan (and
    its would-be drops) between this and `apply_plan`.
    """
    client = session.client
    assert client is not None, "a writable session"
    config = session.config
    if session.resumed:
        session.runner.use_executor(_executor(session))
        return SyncDecision(False, "resuming the journal: its remaining rows are sent as they are")
    source = session.source or open_source(config.source)
    items = await asyncio.to_thread(read_items, source)
    planned, why = choose_mode(items, config.plan, requested)
    if not planned:
        session.source = PlannedSource(source, items, [])
        session.runner.use_executor(_executor(session))
        return SyncDecision(False, why)
    known = await asyncio.to_thread(
        known_enrollment_ids, journal_paths(config, session.journal_path)
    )

    def progress(done: int, total: int) -> None:
        if on_progress is not None and (done == total or done % 25 == 0):
            on_progress(f"rosters read: {done}/{total}")

    plan = await compute_plan(client, items, config, known_ids=known, on_roster=progress)
    fields = {
        "mode": "plan",
        "roster_pages": plan.roster_pages,
        "roster_requests": plan.roster_requests,
        "changes": len(plan.changes),
        "drops": len(plan.drops),
        # the source's records by action, as `canvas-tui plan` counts them
        **{f"plan_{a}": n for a, n in plan.record_counts().items()},
        "plan_canvas_only": sum(1 for s in plan.steps if s.kind == "enrollment"),
    }
    decision = SyncDecision(True, why, plan, None, fields)
    decision.source, decision.items = source, items
    return decision


async def apply_plan(session: Session, decision: SyncDecision) -> None:
    """Queue a computed plan: the journal gets the source rows then the drops, rows already in
    place end done at once, and the runner sends each change's planned request."""
    plan, source = decision.plan, decision.source
    if plan is None or source is None or session.store.loaded:
        return
    session.source = PlannedSource(source, decision.items, plan.drops)
    await session.load()
    session.store.set_meta(mode="plan")
    await session.store.mark_in_place(_in_place(plan.steps))
    session.runner.reload_counts()
    session.runner.use_executor(_executor(session, plan.changes), token_checked=True)


async def prepare_sync(
    session: Session,
    *,
    requested: bool | None,
    allow_drops: int | None,
    on_progress: Callable[[str], None] | None = None,
) -> SyncDecision:
    """Headless: `plan_session`, the brake (unless `allow_drops` covers the drops), `apply_plan`."""
    decision = await plan_session(session, requested=requested, on_progress=on_progress)
    plan = decision.plan
    if plan is None:
        return decision
    if not plan.brake.allows(allow_drops):
        reasons = "; ".join(plan.brake.reasons)
        allowed = "" if allow_drops is None else f" (--allow-drops {allow_drops} is fewer)"
        decision.refused = (
            f"brake: the plan would drop {plan.brake.drops} enrollments{allowed}: {reasons}. "
            f"Nothing was sent. Review them with `canvas-tui plan --out PREFIX`, then re-run "
            f"with --allow-drops {plan.brake.drops} to apply them"
        )
        return decision
    await apply_plan(session, decision)
    return decision


# ---- `canvas-tui plan` ----------------------------------------------------------------------


def client_for(config: Config, transport: httpx.AsyncBaseTransport | None = None) -> CanvasClient:
    """A client for a read-only command (`plan`, `check --deep`); ConfigError if it cannot be."""
    check_base_url(config.canvas.base_url)
    if config.canvas.token is None or not config.canvas.token.reveal():
        raise ConfigError(
            "no API token: set CANVAS_API_TOKEN, or [canvas] token_file or token_command"
        )
    try:
        return CanvasClient(
            config.canvas.base_url,
            config.canvas.token.reveal(),
            governor=Governor(),
            timeout=config.canvas.timeout,
            transport=transport,
        )
    except CanvasError as exc:
        raise ConfigError(str(exc)) from None


def default_prefix(config: Config) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return (config.sync.journal_dir or default_journal_dir()) / f"plan-{stamp}"


def main(
    args: argparse.Namespace,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    out: TextIO | None = None,
) -> int:
    """`canvas-tui plan [SOURCE] [--out PREFIX]`: preflight, then the plan; changes nothing.

    Exit 0: planned, nothing wrong; 2: config or source error, or the plan was made but the
    preflight found problems or the brake would stop it; 3: Canvas could not be read."""
    from canvas_tui.exit_codes import ExitCode, error_line

    out = out or sys.stdout
    try:
        config = load_config(args.config)
        source = open_source(args.source) if args.source else open_source(config.source)
        client = client_for(config, transport)
    except (ConfigError, InputError) as exc:
        print(error_line(str(exc)), file=sys.stderr)
        return ExitCode.USAGE
    prefix = Path(args.out) if getattr(args, "out", None) else default_prefix(config)
    from canvas_tui.outputs import OutputPathError, check_output_paths

    try:  # before a single roster page is read
        check_output_paths(
            ("--out", prefix.with_name(prefix.name + ext)) for ext in (".json", ".csv")
        )
    except OutputPathError as exc:
        print(error_line(str(exc)), file=sys.stderr)
        return ExitCode.USAGE
    try:
        return asyncio.run(_plan_command(config, source, client, prefix, out))
    except InputError as exc:
        print(error_line(str(exc)), file=sys.stderr)
        return ExitCode.USAGE


async def _plan_command(
    config: Config, source: Source, client: CanvasClient, prefix: Path, out: TextIO
) -> int:
    from canvas_tui.engine.preflight import format_preflight, preflight
    from canvas_tui.exit_codes import ExitCode, error_line

    try:
        items = await asyncio.to_thread(read_items, source)
        print(f"source: {source.description} ({len(items)} rows)", file=out)
        known = await asyncio.to_thread(known_enrollment_ids, journal_paths(config))
        requests = 0

        def count(_event: Any) -> None:
            nonlocal requests
            requests += 1

        records = [i for i in items if isinstance(i, EnrollmentRecord)]
        started = time.monotonic()
        rosters = await fetch_rosters(
            client,
            [scope_of(r) for r in records],
            observer=count,
            with_default=default_scopes(records),
        )
        plan = await compute_plan(client, items, config, known_ids=known, rosters=rosters)
        plan.roster_requests = requests
        plan.elapsed = time.monotonic() - started  # the rosters were read here, not in it
        chosen = "plan" if choose_mode(items, config.plan, None)[0] else "full"
        checked = await preflight(client, records, rosters=rosters, plan=plan, chosen=chosen)
    except CanvasError as exc:
        print(error_line(str(exc)), file=sys.stderr)
        return ExitCode.ABORTED
    finally:
        await client.aclose()
    for line in format_preflight(checked):
        print(line, file=out)
    for line in format_plan(plan):
        print(line, file=out)
    json_path, csv_path = write_plan(plan, prefix, extra={"preflight": checked.to_json()})
    print(f"wrote {json_path} and {csv_path}", file=out)
    with contextlib.suppress(Exception):
        out.flush()
    # as `check`: problems in the source or Canvas's objects are 2; so is a brake that `sync`
    # would refuse on (it exits 2 there)
    problems = bool(checked.findings) or plan.brake.tripped
    return ExitCode.USAGE if problems else ExitCode.OK


__all__ = [
    "ACTIONS",
    "DROP_SOURCE",
    "Brake",
    "Plan",
    "PlanExecutor",
    "PlannedSource",
    "Roster",
    "Step",
    "SyncDecision",
    "apply_plan",
    "build_plan",
    "choose_mode",
    "client_for",
    "compute_plan",
    "fetch_rosters",
    "known_enrollment_ids",
    "main",
    "plan_session",
    "prepare_sync",
    "write_plan",
]
