"""The plan itself: Step, Plan, the brake, and the rule of what a SIS row means against an
enrollment. Pure: nothing here reads Canvas."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from canvas_tui.config import PlanConfig
from canvas_tui.engine.actions import (
    DELETE_TASKS,
    planned_action,
    same_role,
)
from canvas_tui.engine.plan.rosters import Roster, RosterIndex, scope_of
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

LIVE_STATES = frozenset({"active", "invited", "creation_pending", "inactive"})
NEVER_DROPPED_TYPES = frozenset({"StudentViewEnrollment"})  # the course's test student
_TASK_STATE = dict(DELETE_TASKS.values())
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
