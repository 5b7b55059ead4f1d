"""The plan itself: Step, Plan, the brake, and the rule of what a SIS row means against an
enrollment. Pure: nothing here reads Canvas."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum, StrEnum
from functools import lru_cache
from typing import Any

from canvas_tui.config import PlanConfig
from canvas_tui.engine import roster_match
from canvas_tui.engine.plan.rosters import (
    Roster,
    RosterIndex,
    course_id_of,
    live_per_course,
    scope_of,
)
from canvas_tui.engine.repost import PostFields, differs, post_fields
from canvas_tui.engine.roster_match import (
    names_enrollment,
    user_key,
)
from canvas_tui.records import (
    EnrollmentRecord,
    RowProblem,
    SisStatus,
    SourceItem,
    sis_value,
    split_api_id,
)

# SIS status -> (the DELETE task that applies it, the enrollment_state that task leaves, §2.7)
DELETE_TASKS = {
    SisStatus.INACTIVE: ("inactivate", "inactive"),
    SisStatus.COMPLETED: ("conclude", "completed"),
    SisStatus.DELETED: ("delete", "deleted"),
}
LIVE_STATES = frozenset({"active", "invited", "creation_pending", "inactive"})
NEVER_DROPPED_TYPES = frozenset({"StudentViewEnrollment"})  # the course's test student
_TASK_STATE = dict(DELETE_TASKS.values())
# drop_policy -> the states in which a dropped enrollment needs nothing more (deleted aside)
DROP_SETTLED: Mapping[str, frozenset[str]] = {
    "inactivate": frozenset({"inactive", "completed", "rejected"}),
    "conclude": frozenset({"completed", "rejected"}),
    "delete": frozenset(),
}


# ---- the rule: what a SIS row means against the enrollments it names ----------------------
# Shared by the plan (`plan_record`), the lookup-based SIS actions (actions.py) and the roster
# inspector's verdict (verdict.py); which enrollments a row names is roster_match.py's answer.

# The enrollment states in which a row's status holds already. An `active` row's entry is the
# inspector's: an invited or creation_pending user has yet to accept, which it calls in sync, while
# a sync re-POSTs them unless they are in the state it creates rows in (`active_in_place`).
HOLDS: dict[SisStatus, frozenset[str]] = {
    SisStatus.ACTIVE: frozenset({"active", "invited", "creation_pending"}),
    **{status: frozenset({state}) for status, (_task, state) in DELETE_TASKS.items()},
    SisStatus.DELETED_LAST_COMPLETED: frozenset({"deleted", "completed"}),
}
GONE = frozenset({SisStatus.DELETED, SisStatus.DELETED_LAST_COMPLETED})  # asks for no enrollment


def planned_action(record: EnrollmentRecord) -> str:
    """What a record will ask of Canvas, before looking anything up (dry runs, the console)."""
    if record.status is SisStatus.ACTIVE:
        return "create"
    if record.status is SisStatus.DELETED_LAST_COMPLETED:
        return "delete_or_conclude"
    return DELETE_TASKS[record.status][0]


def same_role(enrollment: Mapping[str, Any], record: EnrollmentRecord, role_id: str | None) -> bool:
    """Whether an enrollment (Canvas JSON) has the record's role (see `roster_match.same_role`)."""
    return roster_match.same_role(enrollment, record.role, record.enrollment_type, role_id)


def active_in_place(
    mine: Iterable[Mapping[str, Any]], active_state: str
) -> list[Mapping[str, Any]]:
    """An `active` row's enrollments that need no state change: a re-POST never changes an
    active row's state (§2.4), so active holds whatever state the config creates rows in."""
    return [e for e in mine if e.get("enrollment_state") in (active_state, "active")]


def keeps_another(
    record: EnrollmentRecord,
    role_id: str | None,
    mine: Iterable[Mapping[str, Any]],
    candidates: Iterable[Mapping[str, Any]],
    same_observed: Callable[[Mapping[str, Any]], bool],
) -> bool:
    """deleted_last_completed deletes when the user keeps another enrollment that is not deleted
    (Enrollment.active: invited, inactive and completed count), same role and observed user,
    anywhere in the course (lib/sis/enrollment_importer.rb), and concludes otherwise."""
    mine_ids = {e.get("id") for e in mine}
    return any(
        e.get("enrollment_state") != "deleted" and e.get("id") not in mine_ids and same_observed(e)
        for e in candidates
        if same_role(e, record, role_id)
    )


class Move(Enum):
    """What a row that is not `active` asks of the enrollments it names."""

    CREATE_INACTIVE = "create inactive"  # none live, `inactive`: POST it in state inactive
    CREATE_THEN_END = "create, then end"  # none live, `completed` (or no row at all): then DELETE
    ALREADY_GONE = "already deleted"  # none live, `deleted`, a deleted row: nothing to do
    RESTATE = "restate"  # explicit dates or flag differ: set them, then end (or `todo` if refused)
    IN_PLACE = "in place"  # every live one holds already
    END = "end"  # DELETE `todo` with `task`


@dataclass(frozen=True, slots=True)
class Settlement:
    move: Move
    status: SisStatus  # inactive, completed or deleted (deleted_last_completed resolved)
    task: str  # the DELETE task that applies `status`
    target: str  # the state it leaves
    live: list[Mapping[str, Any]]  # the row's enrollments that are not deleted
    todo: list[Mapping[str, Any]]  # the live ones not in `target`
    reused: Mapping[str, Any] | None = None  # the deleted row a create revives
    changed: Mapping[str, Any] | None = None  # RESTATE: the first live one whose values differ


def settle(
    record: EnrollmentRecord, mine: Sequence[Mapping[str, Any]], *, keeps_another: bool = False
) -> Settlement:
    """The rule for a row that is not `active`, given the enrollments it names (every state)
    and, for deleted_last_completed, whether the user keeps another (`keeps_another`). It follows
    Canvas's SIS importer (§6.5): `inactive` creates an inactive enrollment when none is live,
    `completed` and `deleted` without any create one and end it, and a deleted row stays deleted."""
    status = record.status
    if status is SisStatus.DELETED_LAST_COMPLETED:
        status = SisStatus.DELETED if keeps_another else SisStatus.COMPLETED
    assert status is not SisStatus.ACTIVE, "active rows are not ended"
    task, target = DELETE_TASKS[status]
    live = [e for e in mine if e.get("enrollment_state") != "deleted"]
    todo = [e for e in live if e.get("enrollment_state") not in HOLDS[status]]
    reused = mine[0] if mine else None

    def settled(move: Move, changed: Mapping[str, Any] | None = None) -> Settlement:
        return Settlement(move, status, task, target, live, todo, reused, changed)

    if not live:
        if status is SisStatus.INACTIVE:
            return settled(Move.CREATE_INACTIVE)
        if status is SisStatus.COMPLETED or not mine:
            return settled(Move.CREATE_THEN_END)
        return settled(Move.ALREADY_GONE)
    changed = next((e for e in live if differs(record, e)), None)
    if changed is not None and status is not SisStatus.DELETED:
        return settled(Move.RESTATE, changed)
    return settled(Move.END if todo else Move.IN_PLACE)


# ---- the plan -------------------------------------------------------------------------------


class StepKind(StrEnum):
    RECORD = "record"  # a source row
    ENROLLMENT = "enrollment"  # in Canvas, not in the SIS


class Action(StrEnum):
    """What a step does to the enrollment; the values are the journal's and the plan files'."""

    CREATE = "create"
    REACTIVATE = "reactivate"
    UPDATE = "update"
    INACTIVATE = "inactivate"
    CONCLUDE = "conclude"
    DELETE = "delete"
    NONE = "none"  # in place already: nothing is sent


ACTIONS = tuple(Action)  # in the order the summaries list them


class Via(StrEnum):
    """The request(s) a step is sent with; the values are the plan files' `via` column."""

    NOTHING = ""
    LOOKUP = "lookup"  # decided when sent, by the lookup-based SIS actions
    POST = "POST"
    PUT_REACTIVATE = "PUT reactivate"
    DELETE_INACTIVATE = "DELETE task=inactivate"
    DELETE_CONCLUDE = "DELETE task=conclude"
    DELETE_DELETE = "DELETE task=delete"
    POST_THEN_CONCLUDE = "POST, DELETE task=conclude"  # create, then end (Canvas's importer)
    POST_THEN_DELETE = "POST, DELETE task=delete"

    @classmethod
    def delete(cls, task: str) -> Via:
        """The DELETE with `task` (inactivate, conclude, delete)."""
        return _DELETE_WITH[task]

    @classmethod
    def post_then(cls, task: str) -> Via:
        """A create, then the DELETE with `task` (conclude, delete)."""
        return _POST_THEN[task]

    @property
    def task(self) -> str | None:
        """The DELETE task this sends, if any."""
        return _TASK_OF.get(self)

    @property
    def posts(self) -> bool:
        """Whether it POSTs the enrollment (and so carries the values a POST re-applies)."""
        return self is Via.POST or self in _POST_THEN.values()


_DELETE_WITH = {
    "inactivate": Via.DELETE_INACTIVATE,
    "conclude": Via.DELETE_CONCLUDE,
    "delete": Via.DELETE_DELETE,
}
_POST_THEN = {"conclude": Via.POST_THEN_CONCLUDE, "delete": Via.POST_THEN_DELETE}
_TASK_OF = {via: task for table in (_DELETE_WITH, _POST_THEN) for task, via in table.items()}


@dataclass(frozen=True, slots=True)
class Step:
    """What one source record, or one enrollment gone from the SIS, will ask of Canvas."""

    kind: StepKind
    action: Action
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
    via: Via = Via.NOTHING
    drop: bool = False
    manual: bool = False  # neither SIS-imported nor written by canvas-tui
    refs: tuple[str, str, str | None] | None = None  # a drop's user, course, section as API ids
    # a POST's values for what Canvas re-applies: the record's, and Canvas's for its blanks
    # (also set for a step on an existing enrollment: what it holds, with the record's values)
    fields: PostFields | None = None

    @property
    def requests(self) -> int:
        """HTTP requests the step needs when applied (lookups count their list request)."""
        if self.action is Action.NONE:
            return 0
        if self.via is Via.LOOKUP:
            return 2
        if self.via.posts and self.via.task is not None:
            return 2  # the create, then the DELETE
        return max(1, len(self.enrollment_ids)) if self.via.task is not None else 1

    def row(self) -> dict[str, Any]:
        provenance = self.record.provenance if self.record is not None else None
        return {
            "kind": self.kind.value,
            "action": self.action.value,
            "course": self.course,
            "section": self.section,
            "user": self.user,
            "role": self.role,
            "status": str(self.record.status) if self.record is not None else "",
            "canvas_state": self.canvas_state or "",
            "enrollment_ids": " ".join(str(i) for i in self.enrollment_ids),
            "via": self.via.value,
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


class Tally:
    """The source's steps, counted as they are computed: a plan of a million rows keeps these
    (and a few bytes per row in arrays), never a Step per row.

    The per-row arrays serve only a plan that is applied (the executor finds each record's
    planned step, the load marks the records in place); `rows=False` keeps none of them, for a
    plan that is shown or written down (`canvas-tui plan`, `check --deep`)."""

    __slots__ = (
        "actions",
        "by_course",
        "change_requests",
        "digests",
        "in_place",
        "in_place_ids",
        "in_place_kinds",
        "lines",
        "message_numbers",
        "messages",
        "rows",
    )

    def __init__(self, *, rows: bool = True) -> None:
        self.rows = rows
        self.actions: Counter[Action] = Counter()
        self.by_course: dict[str, Counter[Action]] = defaultdict(Counter)
        self.change_requests = 0
        # per source item (problems too), in source order: its line and its record's hash
        self.lines = array("i")  # 32 bits: a source has fewer than 2**31 lines
        self.digests = array("q")
        # records found in place: position, enrollment id (0: none), the journal's message (its
        # number in `messages`: a handful of phrases, 2 bytes a row instead of a reference's 8)
        self.in_place = array("i")
        self.in_place_ids = array("q")
        self.in_place_kinds = array("H")
        self.messages: list[str] = []
        self.message_numbers: dict[str, int] = {}

    def item(self, item: SourceItem) -> None:
        if not self.rows:
            return
        self.lines.append(item.provenance.line)
        self.digests.append(hash(item) if item.__class__ is EnrollmentRecord else 0)

    def add(self, step: Step) -> None:
        self.actions[step.action] += 1
        self.by_course[step.course][step.action] += 1
        self.change_requests += step.requests
        if step.action is Action.NONE and step.record_index is not None and self.rows:
            self.in_place.append(step.record_index)
            self.in_place_ids.append(step.enrollment_ids[0] if step.enrollment_ids else 0)
            warnings = step.record.warnings if step.record else ()
            # the reasons are a handful of phrases: one string each, not one per row
            message = "; ".join(warnings) + "; " if warnings else ""
            message += _in_place_message(step.reason)
            number = self.message_numbers.get(message)
            if number is None:
                number = self.message_numbers[message] = len(self.messages)
                self.messages.append(message)
                if number > 0xFFFF and self.in_place_kinds.typecode == "H":  # many warnings
                    self.in_place_kinds = array("I", self.in_place_kinds)
            self.in_place_kinds.append(number)

    def in_place_message(self, at: int) -> str:
        """The journal's message for the `at`-th record found in place."""
        return self.messages[self.in_place_kinds[at]]

    def position(self, record: EnrollmentRecord) -> int | None:
        """The record's position in the source as planned; None when it is not that record
        (edited since, or another line)."""
        lines = self.lines
        at = bisect_left(lines, record.provenance.line)
        if at < len(lines) and lines[at] == record.provenance.line:
            return at if self.digests[at] == hash(record) else None
        return None


@lru_cache(maxsize=64)
def _in_place_message(reason: str) -> str:
    return f"plan: {reason}"


class RecordSteps:
    """The source records' steps, derived again on each pass over the (re-readable) source
    against the rosters read: the plan is pure, so the same rows give the same steps."""

    def __init__(self, items: Iterable[SourceItem], index: RosterIndex, active_state: str):
        self.items = items
        self.index = index
        self.active_state = active_state

    def __iter__(self) -> Iterator[Step]:
        for position, item in enumerate(self.items):
            if item.__class__ is EnrollmentRecord:
                assert isinstance(item, EnrollmentRecord)
                yield self.step(position, item)

    def step(self, position: int, record: EnrollmentRecord) -> Step:
        return plan_record(position, record, self.index, active_state=self.active_state)[0]


@dataclass(slots=True)
class Plan:
    canvas_only: list[Step]  # the enrollments no record claims (the drops among them)
    tally: Tally  # the records' steps, counted
    scopes: int  # rosters read
    roster_pages: int
    roster_requests: int  # HTTP attempts spent reading them (retries included)
    roster_errors: dict[str, str]  # scope -> why its roster could not be read
    invalid_rows: int  # source rows that failed validation (they end failed in a sync)
    policy: PlanConfig
    brake: Brake
    elapsed: float = 0.0
    duplicate_rows: int = 0  # exact repeats of an earlier row (skipped in a sync)
    read_latency: float | None = None  # seconds per roster read, as measured (the channel's
    # choice: engine/sis_import/choose.py)
    # derives the records' steps again; None in a copy sent to the console (`detached`)
    records: RecordSteps | None = None

    def iter_steps(self) -> Iterator[Step]:
        """Every step: the source's records in order (derived again), then Canvas's own."""
        if self.records is not None:
            yield from self.records
        yield from self.canvas_only

    @property
    def steps(self) -> list[Step]:
        return list(self.iter_steps())

    def detached(self) -> Plan:
        """The plan without the source and rosters: its counts, drops and brake (the console)."""
        return replace(self, records=None, tally=_summary_tally(self.tally))

    def record_counts(self) -> Counter[Action]:
        """Actions of the source's records only (not of enrollments only Canvas has)."""
        return Counter(self.tally.actions)

    def counts(self) -> Counter[Action]:
        counts = self.record_counts()
        counts.update(s.action for s in self.canvas_only)
        return counts

    def by_course(self) -> dict[str, Counter[Action]]:
        out: dict[str, Counter[Action]] = defaultdict(Counter)
        for course, counts in self.tally.by_course.items():
            out[course].update(counts)
        for step in self.canvas_only:
            out[step.course][step.action] += 1
        return dict(sorted(out.items()))

    def iter_changes(self) -> Iterator[Step]:
        return (s for s in self.iter_steps() if s.action is not Action.NONE)

    @property
    def changes(self) -> list[Step]:
        return list(self.iter_changes())

    @property
    def change_count(self) -> int:
        return sum(n for a, n in self.counts().items() if a is not Action.NONE)

    @property
    def drops(self) -> list[Step]:
        return [s for s in self.canvas_only if s.drop and s.action is not Action.NONE]

    @property
    def change_requests(self) -> int:
        return self.tally.change_requests + sum(s.requests for s in self.canvas_only)

    def summary(self) -> dict[str, Any]:
        counts = self.counts()
        return {
            "records": self.tally.actions.total(),
            "invalid_rows": self.invalid_rows,
            "duplicate_rows": self.duplicate_rows,
            "canvas_only": len(self.canvas_only),
            "actions": {a.value: counts.get(a, 0) for a in ACTIONS},
            "drops": len(self.drops),
            "manual_left_alone": sum(
                1 for s in self.canvas_only if s.manual and s.action is Action.NONE
            ),
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


def _summary_tally(tally: Tally) -> Tally:
    """The counts of a tally, without its per-row arrays."""
    out = Tally()
    out.actions, out.by_course, out.change_requests = (
        tally.actions,
        tally.by_course,
        tally.change_requests,
    )
    return out


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


# ---- computing the plan ---------------------------------------------------------------------


def _label(enrollment: Mapping[str, Any], sis: str, canvas: str) -> str:
    return str(enrollment.get(sis) or enrollment.get(canvas) or "")


def _ref(enrollment: Mapping[str, Any], sis: str, canvas: str) -> str:
    """The API id form of a label: `sis_user_id:S1`, or the Canvas id."""
    value = enrollment.get(sis)
    return f"{sis}:{value}" if value else str(enrollment.get(canvas) or "")


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
    # Each step is built once, not as a copy of a base step (a frozen Step's __init__ is most of
    # what planning a row costs): `made` is what every step of this record shares.
    course_label, user, section = record.course_label, sis_value(record.user), record.section
    section_label = sis_value(section)

    def made(action: Action, reason: str, via: Via, **more: Any) -> Step:
        return Step(
            StepKind.RECORD,
            action,
            course_label,
            user,
            record.role,
            section_label,
            reason,
            index_position,
            record,
            via=via,
            **more,
        )

    roster = index.rosters.get(scope)
    if roster is None or roster.error is not None:
        why = roster.error.message if roster and roster.error else "not read"
        reason = f"roster unavailable ({why}); decided when sent"
        return made(_lookup_action(record), reason, Via.LOOKUP), []
    seen = index.visible(record)  # ids the rosters can show (a token without read_sis)
    users = index.of_user(scope, seen.user)
    role_id = record.role_id
    default = roster.default if record.section is None else None
    mine = [
        e
        for e in users
        if names_enrollment(
            e,
            user=seen.user,
            role=record.role,
            section=seen.section,
            enrollment_type=record.enrollment_type,
            role_id=role_id,
            default=default,
        )
        and _same_observed(e, seen, index)
    ]
    if (
        seen.associated_user is not None
        and _observed_id(seen, index) is None
        and any(
            e.get("associated_user_id") is not None for e in users if same_role(e, record, role_id)
        )
    ):
        # The observed student is in no roster (new to the course, say), so which of the user's
        # observer links is the row's cannot be told here: a parent of two children must not
        # see one child's link taken for the other's. The actions look the student up.
        reason = "observed user in no roster read; decided when sent"
        return made(_lookup_action(record), reason, Via.LOOKUP), mine
    if mine and default is not None and not default.known:
        reason = f"{default.describe(record.course_label)}; decided when sent"
        return made(_lookup_action(record), reason, Via.LOOKUP), mine
    course_id = _course_id(mine) or course_id_of(roster)
    current = ",".join(sorted({str(e.get("enrollment_state")) for e in mine})) or None
    live = [e for e in mine if e.get("enrollment_state") != "deleted"]

    def step(
        action: Action,
        reason: str,
        via: Via,
        targets: Sequence[Mapping[str, Any]],
        reused: Mapping[str, Any] | None = None,
    ) -> Step:
        return made(
            action,
            reason,
            via,
            enrollment_ids=_ids(targets),
            course_id=_course_id(targets) or course_id,
            canvas_state=current,
            # a POST's values; for a step on one enrollment, the values it leaves there (what
            # a SIS import row must carry, since a blank date there clears it: sis_import/)
            fields=post_fields(record, reused)
            if via.posts
            else (post_fields(record, targets[0]) if targets else None),
        )

    if record.status is SisStatus.ACTIVE:
        in_place = active_in_place(mine, active_state)
        if in_place:
            changed = differs(record, in_place[0])
            if changed:
                reason = f"{changed} differs in Canvas"
                return step(Action.UPDATE, reason, Via.POST, in_place[:1], in_place[0]), mine
            state_now = in_place[0].get("enrollment_state")
            return step(
                Action.NONE, f"already {state_now} in Canvas", Via.NOTHING, in_place[:1]
            ), mine
        inactive = [e for e in mine if e.get("enrollment_state") == "inactive"]
        if inactive and active_state == "active" and not differs(record, inactive[0]):
            return step(
                Action.REACTIVATE, "inactive in Canvas", Via.PUT_REACTIVATE, inactive[:1]
            ), mine
        if mine:
            return step(
                Action.REACTIVATE, f"{current} in Canvas", Via.POST, mine[:1], mine[0]
            ), mine
        return step(Action.CREATE, "not in Canvas", Via.POST, []), mine
    keeps = False
    if record.status is SisStatus.DELETED_LAST_COMPLETED:
        if record.course is None:
            return step(_lookup_action(record), "needs the whole course", Via.LOOKUP, live), mine
        keeps = keeps_another(
            record, role_id, mine, users, lambda e: _same_observed(e, seen, index)
        )
    rule = settle(record, mine, keeps_another=keeps)
    task, target = rule.task, rule.target
    match rule.move:
        case Move.CREATE_INACTIVE:
            # a deleted row is reused by the POST: it keeps what the row leaves blank
            why = "not in Canvas; created inactive"
            return step(Action.CREATE, why, Via.POST, [], rule.reused), mine
        case Move.CREATE_THEN_END:
            # Canvas's importer creates it in that state: a create, then the task
            why = f"{current or 'not'} in Canvas; created, then {target}"
            return step(Action.CREATE, why, Via.post_then(task), [], rule.reused), mine
        case Move.ALREADY_GONE:
            return step(Action.NONE, "already deleted", Via.NOTHING, mine[:1]), mine
        case Move.RESTATE:
            # explicit dates or flag to set first: EnrollmentActions._restate_then does it
            why = "values differ in Canvas"
            return step(_lookup_action(record), why, Via.LOOKUP, rule.live), mine
        case Move.IN_PLACE:
            return step(Action.NONE, f"already {target}", Via.NOTHING, rule.live[:1]), mine
        case Move.END:
            return step(Action(task), f"{current} in Canvas", Via.delete(task), rule.todo), mine


def _lookup_action(record: EnrollmentRecord) -> Action:
    action = planned_action(record)
    return Action.CONCLUDE if action == "delete_or_conclude" else Action(action)


def plan_drop(enrollment: Mapping[str, Any], policy: PlanConfig, *, managed: bool) -> Step | None:
    """The step for an enrollment no record claims; None when there is nothing to say."""
    state = str(enrollment.get("enrollment_state"))
    if state == "deleted" or enrollment.get("type") in NEVER_DROPPED_TYPES:
        return None
    base = Step(
        kind=StepKind.ENROLLMENT,
        action=Action.NONE,
        course=_label(enrollment, "sis_course_id", "course_id"),
        user=_label(enrollment, "sis_user_id", "user_id"),
        role=str(enrollment.get("role") or enrollment.get("type") or ""),
        section=_label(enrollment, "sis_section_id", "course_section_id"),
        reason="",
        enrollment_ids=_ids([enrollment]),
        course_id=_course_id([enrollment]),
        canvas_state=state,
        manual=not managed,
        refs=(
            _ref(enrollment, "sis_user_id", "user_id"),
            _ref(enrollment, "sis_course_id", "course_id"),
            _ref(enrollment, "sis_section_id", "course_section_id"),
        ),
    )
    if not managed and policy.manual_enrollments != "include":
        return replace(
            base,
            reason="not in the SIS; manual (no sis_import_id, not written by canvas-tui): left alone",
        )
    drop_policy = policy.drop_policy
    if drop_policy == "never":
        return replace(base, reason="not in the SIS; drop_policy is never")
    target = _TASK_STATE[drop_policy]
    if state in DROP_SETTLED[drop_policy]:
        return replace(base, reason=f"not in the SIS; already {state}")
    return replace(
        base,
        action=Action(drop_policy),
        reason=f"not in the SIS; drop_policy {drop_policy} -> {target}",
        via=Via.delete(drop_policy),
        drop=True,
    )


def evaluate_brake(
    steps: Sequence[Step], rosters: Mapping[str, Roster], policy: PlanConfig
) -> Brake:
    """Drops per course against the course's live roster, and in all."""
    live = live_per_course(rosters, LIVE_STATES)
    drops = Counter(s.course for s in steps if s.drop and s.action is not Action.NONE)
    return brake_for(drops, live, policy)


def brake_for(drops: Mapping[str, int], live: Mapping[str, int], policy: PlanConfig) -> Brake:
    """The brake over `drops` per course against each course's `live` enrollments: a plan's
    (against the rosters) and `canvas-tui watch`'s (against the source's last snapshot)."""
    by_course = {c: (n, live.get(c, 0)) for c, n in sorted(drops.items())}
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


class PlanBuilder:
    """`build_plan` one source item at a time, so that a sync may plan each record as its load
    reads it (and send it as soon as its chunk is in the journal) instead of in a pass of its
    own first. `plan` exists from the start and fills in as items are added: its tally (what the
    executor derives a step from) covers every item added; its drops, brake and Canvas-only
    steps are known once `finish()` has seen them all."""

    def __init__(
        self,
        items: Iterable[SourceItem],
        rosters: Mapping[str, Roster],
        policy: PlanConfig,
        *,
        known_ids: set[int] | None = None,
        active_state: str = "active",
        roster_requests: int = 0,
        aliases: Mapping[str, str] | None = None,
        on_step: Callable[[Step], None] | None = None,
        keep_rows: bool = True,
    ) -> None:
        """`keep_rows=False`: a plan only shown or written, never applied (see `Tally`)."""
        self._rosters = rosters
        self._on_step = on_step  # sees each record's step as it is computed (a SIS import)
        self._known = known_ids or set()
        self._active_state = active_state
        self.index = RosterIndex(rosters, aliases)
        self.plan = Plan(
            canvas_only=[],
            tally=Tally(rows=keep_rows),
            scopes=len(rosters),
            roster_pages=sum(r.pages for r in rosters.values()),
            roster_requests=roster_requests,
            roster_errors={s: str(r.error) for s, r in rosters.items() if r.error is not None},
            invalid_rows=0,
            policy=policy,
            brake=evaluate_brake((), rosters, policy),
            records=RecordSteps(items, self.index, active_state),
        )

    def add(self, position: int, item: SourceItem) -> None:
        """The source's item at `position` (0-based, every item in order)."""
        plan = self.plan
        plan.tally.item(item)
        if isinstance(item, RowProblem):
            plan.duplicate_rows += item.skip
            plan.invalid_rows += not item.skip
            return
        step, mine = plan_record(position, item, self.index, active_state=self._active_state)
        plan.tally.add(step)
        if self._on_step is not None:
            self._on_step(step)
        self.index.claim(_ids(mine))

    def finish(self) -> Plan:
        """The enrollments no record claims (the drops among them) and the brake."""
        plan, known = self.plan, self._known
        canvas_only: list[Step] = []
        for enrollment in self.index.unclaimed():
            managed = enrollment.get("sis_import_id") is not None or int(enrollment["id"]) in known
            drop = plan_drop(enrollment, plan.policy, managed=managed)
            if drop is not None:
                canvas_only.append(drop)
        plan.canvas_only = canvas_only
        plan.brake = evaluate_brake(canvas_only, self._rosters, plan.policy)
        return plan


def build_plan(
    items: Iterable[SourceItem],
    rosters: Mapping[str, Roster],
    policy: PlanConfig,
    *,
    known_ids: set[int] | None = None,
    active_state: str = "active",
    roster_requests: int = 0,
    aliases: Mapping[str, str] | None = None,
    keep_rows: bool = True,
    on_step: Callable[[Step], None] | None = None,
) -> Plan:
    """Pure: the steps for the source's records and for the enrollments they do not claim.
    `on_step` sees each record's step as it is computed (a SIS import writes its file from
    them, rather than derive every step a second time).

    `items` is read once here and again whenever the records' steps are asked for (a source
    reads its file or query again; an iterator is kept as a list): the plan holds counts, and
    unless `keep_rows` is False, the few bytes per row that applying it needs (`Tally`)."""
    if isinstance(items, Iterator):
        items = list(items)
    builder = PlanBuilder(
        items,
        rosters,
        policy,
        known_ids=known_ids,
        active_state=active_state,
        roster_requests=roster_requests,
        aliases=aliases,
        on_step=on_step,
        keep_rows=keep_rows,
    )
    for position, item in enumerate(items):
        builder.add(position, item)
    return builder.finish()
