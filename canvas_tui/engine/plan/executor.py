"""Choosing the mode, computing the plan against Canvas, and applying it through the engine."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from canvas_tui.canvas.client import CanvasClient
from canvas_tui.canvas.errors import CanvasError
from canvas_tui.config import Config, PlanConfig
from canvas_tui.engine.actions import ActionResult, EnrollmentActions, Observer
from canvas_tui.engine.journal import Journal, written_enrollment_ids
from canvas_tui.engine.plan.diff import (
    DELETE_TASKS,
    Action,
    Plan,
    Step,
    StepKind,
    Via,
    build_plan,
)
from canvas_tui.engine.plan.rosters import (
    PAGE_SIZE,
    Roster,
    default_scopes,
    fetch_rosters,
    resolve_hidden_ids,
    scope_of,
)
from canvas_tui.engine.repost import blind_post_is_safe
from canvas_tui.engine.runner import Runner
from canvas_tui.paths import default_journal_dir
from canvas_tui.records import (
    EnrollmentRecord,
    Provenance,
    SisStatus,
    Source,
    SourceItem,
)
from canvas_tui.sources import open_source

DROP_SOURCE = "plan:drops"  # provenance of the journal rows a plan adds for drops
# Auto mode picks the plan when full mode's requests (a write per record, plus the lookups it makes
# first) >= PLAN_RATIO x estimated roster pages: even if every record turned out to need a write,
# the plan's extra reads cost at most 1/PLAN_RATIO (10 %).
PLAN_RATIO = 10
# ... or when full mode's lookups alone are >= LOOKUP_RATIO x those pages: each page replaces up
# to 100 lookups, and the estimate (one page per 100 rows of a roster) can be short of a big
# roster's real size, hence the margin.
LOOKUP_RATIO = 2
_TASK_STATUS = {task: status for status, (task, _) in DELETE_TASKS.items()}
_WRITE_ACTIONS = ("create", "create_inactive", "reactivate", "update")


def known_enrollment_ids(paths: Iterable[Path]) -> set[int]:
    """Enrollment ids canvas-tui wrote for an SIS row (not for a drop), read from its journals."""
    return written_enrollment_ids(paths, actions=_WRITE_ACTIONS, excluding_source=DROP_SOURCE)


def journal_paths(config: Config, *extra: Path | None) -> list[Path]:
    """The journals whose enrollments count as canvas-tui's (see the module docstring)."""
    directory = config.sync.journal_dir or default_journal_dir()
    found = sorted(directory.glob("*.journal")) if directory.is_dir() else []
    return [*found, *(p for p in (config.sync.journal, *extra) if p is not None)]


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


# ---- applying it through the engine ---------------------------------------------------------


def drop_record(step: Step, line: int) -> EnrollmentRecord:
    """A journal row for a drop, so it is sent, retried and reported like any record."""
    status = _TASK_STATUS[step.action.value]
    raw = {
        "course_id": step.course,
        "user_id": step.user,
        "role": step.role,
        "section_id": step.section,
        "status": str(status),
        "canvas_enrollment_id": str(step.enrollment_ids[0]),
        "canvas_course_id": str(step.course_id),
        "task": step.action.value,
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
        if step is None or step.record != record or step.via is Via.LOOKUP:
            return await self._fallback.apply(record, observer)  # edited, resumed or unknown
        if step.via is Via.PUT_REACTIVATE and step.course_id is not None:
            done = await self._client.reactivate_enrollment(
                str(step.course_id), step.enrollment_ids[0], observer=observer
            )
            return ActionResult("reactivate", _int(done.get("id")))
        if step.via is Via.POST and step.fields is not None:
            state = "inactive" if record.status is SisStatus.INACTIVE else self._active_state
            result = await self._fallback.post(record, state, step.fields, observer)
            return ActionResult(step.action.value, result.enrollment_id, result.message)
        task = step.via.task
        if step.via.posts and task is not None:
            status = _TASK_STATUS[task]
            result = await self._fallback.create_and_end(record, status, observer, step.fields)
            return ActionResult(result.action, result.enrollment_id, result.message)
        if task is not None and step.course_id is not None:
            last: dict[str, Any] = {}
            for enrollment_id in step.enrollment_ids:
                last = await self._client.delete_enrollment(
                    str(step.course_id), enrollment_id, task, observer=observer
                )
            return ActionResult(step.action.value, _int(last.get("id")))
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
        if s.kind is StepKind.RECORD and s.action is Action.NONE and s.record_index is not None:
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


class PlanSession(Protocol):
    """What planning needs of a run's session: engine/session.py's `Session` is one, and calls
    into this module (a protocol, so the plan never imports the session)."""

    config: Config
    client: CanvasClient | None
    store: Journal
    runner: Runner
    journal_path: Path
    source: Source | None
    resumed: bool

    async def load(self, on_progress: Callable[[int], None] | None = None) -> int: ...


def read_items(source: Source) -> list[SourceItem]:
    return list(source)


def _executor(session: PlanSession, steps: Iterable[Step] = ()) -> PlanExecutor:
    """The session's executor: the planned steps, else the lookup-based SIS actions."""
    client = session.client
    assert client is not None, "a writable session"
    sync = session.config.sync
    fallback = EnrollmentActions(client, notify=sync.notify, active_state=sync.enrollment_state)
    return PlanExecutor(client, fallback, steps, active_state=sync.enrollment_state)


async def plan_session(
    session: PlanSession,
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
        "plan_canvas_only": sum(1 for s in plan.steps if s.kind is StepKind.ENROLLMENT),
    }
    decision = SyncDecision(True, why, plan, None, fields)
    decision.source, decision.items = source, items
    return decision


async def apply_plan(session: PlanSession, decision: SyncDecision) -> None:
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
    session: PlanSession,
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
