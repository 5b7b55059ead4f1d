"""Choosing the mode, computing the plan against Canvas, and applying it through the engine."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from canvas_tui.canvas.client import CanvasClient
from canvas_tui.canvas.errors import CanvasError
from canvas_tui.config import Config, PlanConfig, import_needs_plan
from canvas_tui.engine.actions import ActionResult, EnrollmentActions, Observer
from canvas_tui.engine.journal import Journal, journals_in, written_enrollment_ids
from canvas_tui.engine.plan.diff import (
    DELETE_TASKS,
    Plan,
    PlanBuilder,
    Step,
    Via,
)
from canvas_tui.engine.plan.rosters import (
    PAGE_SIZE,
    Roster,
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
from canvas_tui.sources import open_source, read_through

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
    found = journals_in(config.sync.journal_dir or default_journal_dir())
    return [*found, *(p for p in (config.sync.journal, *extra) if p is not None)]


async def compute_plan(
    client: CanvasClient,
    items: Iterable[SourceItem],
    config: Config,
    *,
    known_ids: set[int] | None = None,
    rosters: Mapping[str, Roster] | None = None,
    on_roster: Callable[[int, int], None] | None = None,
    counts: SourceCounts | None = None,
    keep_rows: bool = True,
    on_step: Callable[[Step], None] | None = None,
) -> Plan:
    """Read the rosters of the courses the source names (unless given) and build the plan.
    `items` must be re-readable (a source, or a list): it is streamed, never held.
    `keep_rows=False`: a plan only shown or written, never applied (see `Tally`)."""
    started = time.monotonic()
    if isinstance(items, Iterator):
        items = list(items)
    builder = await plan_builder(
        client,
        items,
        config,
        known_ids=known_ids,
        rosters=rosters,
        on_roster=on_roster,
        counts=counts,
        on_step=on_step,
        keep_rows=keep_rows,
    )
    plan = await asyncio.to_thread(_build, builder, items)
    plan.elapsed = time.monotonic() - started
    return plan


def _build(builder: PlanBuilder, items: Iterable[SourceItem]) -> Plan:
    for position, item in enumerate(items):
        builder.add(position, item)
    return builder.finish()


async def plan_builder(
    client: CanvasClient,
    items: Iterable[SourceItem],
    config: Config,
    *,
    known_ids: set[int] | None = None,
    rosters: Mapping[str, Roster] | None = None,
    on_roster: Callable[[int, int], None] | None = None,
    counts: SourceCounts | None = None,
    on_step: Callable[[Step], None] | None = None,
    keep_rows: bool = True,
) -> PlanBuilder:
    """`compute_plan` up to the records: the rosters read (unless given) and the ids they hide
    resolved; the builder then takes the source's items (`items`, re-readable) one by one.
    `keep_rows=False`: a plan only shown or written, never applied (see `Tally`)."""
    requests = 0
    answered = 0
    latency = 0.0

    def count(event: Any) -> None:
        nonlocal requests, answered, latency
        requests += 1
        finished = getattr(event, "finished_at", None)
        if finished is not None and getattr(event, "status", None) is not None:
            answered += 1
            latency += max(0.0, float(finished) - float(event.started_at))

    if rosters is None:
        if counts is None:
            counts = await asyncio.to_thread(SourceCounts.of, items)
        rosters = await fetch_rosters(
            client,
            counts.per_scope,
            observer=count,
            on_roster=on_roster,
            with_default=counts.defaults,
        )
    records = (i for i in items if isinstance(i, EnrollmentRecord))  # read only when needed
    aliases = await resolve_hidden_ids(client, records, rosters, observer=count)
    builder = PlanBuilder(
        items,
        rosters,
        config.plan,
        known_ids=known_ids,
        active_state=config.sync.enrollment_state,
        roster_requests=requests,
        aliases=aliases,
        keep_rows=keep_rows,
        on_step=on_step,
    )
    builder.plan.read_latency = latency / answered if answered else None
    return builder


def estimated_roster_pages(items: Iterable[SourceItem]) -> int:
    """Before reading anything: one page per 100 records of each roster, at least one each."""
    return SourceCounts.of(items).pages


def full_mode_lookups(items: Iterable[SourceItem]) -> tuple[int, int]:
    """(lookups full mode makes before writing, of which for blank fields). Every row but an
    `active` one that states all the fields a re-POST resets reads the user's enrollments first
    (repost.py, actions.py)."""
    counts = SourceCounts.of(items)
    return counts.lookups, counts.blank


@dataclass(slots=True)
class SourceCounts:
    """What choosing the mode and reading the rosters need of a source, gathered in one
    streaming pass: counts and the courses' keys, not the rows."""

    items: int = 0  # rows read: records and problems
    records: int = 0
    per_scope: Counter[str] = field(default_factory=Counter)  # records per roster, in order
    # the course rosters with course-only rows, and those rows' users (`default_scopes`)
    defaults: dict[str, set[str]] = field(default_factory=dict)
    lookups: int = 0  # full mode's lookups (`full_mode_lookups`)
    blank: int = 0  # ... of which for blank fields

    @classmethod
    def of(cls, items: Iterable[SourceItem]) -> SourceCounts:
        counts = cls()
        for item in items:
            counts.items += 1
            if isinstance(item, EnrollmentRecord):
                counts.add(item)
        read_through(items, counts.items)
        return counts

    def add(self, record: EnrollmentRecord) -> None:
        self.records += 1
        scope = scope_of(record)
        self.per_scope[scope] += 1
        if record.course and record.section is None:
            self.defaults.setdefault(scope, set()).add(record.user)
        if not blind_post_is_safe(record):
            self.lookups += 1
            self.blank += record.status is SisStatus.ACTIVE

    @property
    def pages(self) -> int:
        """Before reading anything: one page per 100 records of each roster, at least one."""
        return sum(math.ceil(n / PAGE_SIZE) for n in self.per_scope.values())


def choose_mode(
    items: SourceCounts | Iterable[SourceItem], policy: PlanConfig, requested: bool | None
) -> tuple[bool, str]:
    """(use the plan?, why). Explicit --plan / --no-plan wins; otherwise the cheaper mode, by
    the requests full mode would make (a write per record, plus a lookup per record it must read
    first) against the reads a plan makes first: the roster pages, and at most one section list
    per course with course-only rows (read only when one of their users is in the roster).
    `items`: the source's items, or their `SourceCounts` (what is read of them)."""
    if requested is not None:
        return requested, "plan mode (--plan)" if requested else "full mode (--no-plan)"
    if policy.drop_policy != "never":
        return True, f"plan mode: drop_policy is {policy.drop_policy} (only a plan sees drops)"
    counts = items if isinstance(items, SourceCounts) else SourceCounts.of(items)
    records, pages, sections = counts.records, counts.pages, len(counts.defaults)
    lookups, blank = counts.lookups, counts.blank
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
    """The source's items, read again, then one record per drop: what a planned run's journal
    holds. A record that is not the one planned at its position (the source changed since)
    is noted in `changed`: it is not taken as in place."""

    def __init__(
        self, source: Source, plan: Plan | None = None, builder: PlanBuilder | None = None
    ) -> None:
        self._source = source
        self._plan = builder.plan if builder is not None else plan
        self._builder = builder  # plan each item as it is read (a plan made while loading)
        self.changed: set[int] = set()
        self.notes = getattr(source, "notes", [])
        self.layout = getattr(source, "layout", None)

    @property
    def description(self) -> str:
        return self._source.description

    def in_place(self, record_id: int) -> tuple[str, int | None] | None:
        """(message, enrollment id) when the record at this id (1-based source order) is one
        the plan found in place and the source still gives it as planned (`Journal.load`'s
        `in_place`: call it as the load reads that record)."""
        plan = self._plan
        position = record_id - 1
        if plan is None or position in self.changed:
            return None
        tally = plan.tally
        at = bisect_left(tally.in_place, position)
        if at == len(tally.in_place) or tally.in_place[at] != position:
            return None
        return tally.in_place_message(at), tally.in_place_ids[at] or None

    def __iter__(self) -> Iterator[SourceItem]:
        if self._plan is None:
            yield from self._source
            return
        builder = self._builder
        if builder is not None:
            # planned as read: the plan is of these very items, so none has changed
            for position, item in enumerate(self._source):
                builder.add(position, item)
                yield item
            builder.finish()
            self._builder = None  # planned once: a second pass reads the planned items
            self.notes = getattr(self._source, "notes", [])
            for line, step in enumerate(self._plan.drops, start=1):
                yield drop_record(step, line)
            return
        digests = self._plan.tally.digests
        for position, item in enumerate(self._source):
            if item.__class__ is EnrollmentRecord and (
                position >= len(digests) or digests[position] != hash(item)
            ):
                self.changed.add(position)
            yield item
        self.notes = getattr(self._source, "notes", [])
        for line, step in enumerate(self._plan.drops, start=1):
            yield drop_record(step, line)


class PlanExecutor:
    """Sends a record's planned step; without a current step, the lookup-based SIS actions.

    The steps are not kept: a record that is the one planned at its line gets its step derived
    again from the same rosters (the plan is pure), so a million planned rows cost no memory."""

    def __init__(
        self,
        client: CanvasClient,
        fallback: EnrollmentActions,
        plan: Plan | None = None,
        *,
        active_state: str = "active",
    ) -> None:
        self._client = client
        self._fallback = fallback
        self._active_state = active_state
        self._plan = plan

    def _step(self, record: EnrollmentRecord) -> Step | None:
        plan = self._plan
        if plan is None or plan.records is None:
            return None
        position = plan.tally.position(record)
        return None if position is None else plan.records.step(position, record)

    async def apply(self, record: EnrollmentRecord, observer: Observer | None) -> ActionResult:
        if record.provenance.source == DROP_SOURCE:
            return await self._drop(record, observer)
        step = self._step(record)
        if step is None or step.via is Via.LOOKUP:
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
    source: Source | None = None  # what the plan read, for apply_plan (read again there)
    records: int | None = None  # the source's items, when they were counted
    # a plan made while loading (`prepare_sync(load=False)`): its records' counts, drops and
    # brake are known once the load has read them all (`plan_fields` then)
    builder: PlanBuilder | None = None
    actions: EnrollmentActions | None = None  # the plan's fallback actions (roles listed)
    via: str = "rest"  # asked for: rest | sis-import | auto; once applied, the channel taken
    via_message: str | None = None  # the channel taken and why (apply_plan)
    import_rows: Any = None  # the import's file as the plan wrote it (sis_import.channel.Collector)
    expected_via: str | None = None  # auto: the channel Apply takes as the plan's figures stand


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
    in_place: Callable[[int], tuple[str, int | None] | None] | None

    async def load(self, on_progress: Callable[[int], None] | None = None) -> int: ...


def read_items(source: Source) -> list[SourceItem]:
    """Every item in a list: for small sources and tests; runs stream (`SourceCounts`)."""
    return list(source)


def _actions(session: PlanSession) -> EnrollmentActions:
    client = session.client
    assert client is not None, "a writable session"
    sync = session.config.sync
    return EnrollmentActions(client, notify=sync.notify, active_state=sync.enrollment_state)


def _executor(
    session: PlanSession, plan: Plan | None = None, fallback: EnrollmentActions | None = None
) -> PlanExecutor:
    """The session's executor: the planned steps, else the lookup-based SIS actions."""
    client = session.client
    assert client is not None, "a writable session"
    fallback = fallback or _actions(session)
    return PlanExecutor(client, fallback, plan, active_state=session.config.sync.enrollment_state)


async def plan_session(
    session: PlanSession,
    *,
    requested: bool | None,
    on_progress: Callable[[str], None] | None = None,
    via: str | None = None,
    while_loading: bool = False,
) -> SyncDecision:
    """Pick the mode and, in plan mode, compute the plan; nothing is loaded or sent yet.

    A resumed journal is never re-planned; its remaining rows are sent as they are (drops by
    their recorded enrollment id, source rows with lookups). The console shows the plan (and
    its would-be drops) between this and `apply_plan`.

    `while_loading`: when the plan can have no drops (drop_policy never, so the brake cannot
    refuse it) and goes by REST, stop after the rosters: the load plans each record as it reads
    it (`SyncDecision.builder`), so the first record goes out without a pass over the source
    first.
    """
    client = session.client
    assert client is not None, "a writable session"
    config = session.config
    if session.resumed:
        session.runner.use_executor(_executor(session))
        from canvas_tui.engine.sis_import.attach import resume_imports

        polling = await resume_imports(session)
        message = "resuming the journal: its remaining rows are sent as they are"
        decision = SyncDecision(False, message + (f"; {polling}" if polling else ""))
        decision.via = session.store.get_meta("via") or "rest"
        decision.via_message = polling
        return decision
    via = via or config.sync.via
    # sis-import (asked for or configured) means plan mode, and refuses an explicit --no-plan
    forced = import_needs_plan(via) and requested is None
    if import_needs_plan(via) and requested is False:
        decision = SyncDecision(False, "full mode (--no-plan)")
        decision.refused = (
            "--via sis-import uploads the plan's changes, and --no-plan asks for no plan: "
            "drop --no-plan (or use --via rest). Nothing was sent"
        )
        return decision
    if forced:
        requested = True
    source = session.source or open_source(config.source)
    # One streaming pass counts what the mode and the rosters need (none for --no-plan); the
    # load and the plan read the source again rather than hold it.
    counts = None if requested is False else await asyncio.to_thread(SourceCounts.of, source)
    planned, why = choose_mode(counts or SourceCounts(), config.plan, requested)
    items = None if counts is None else counts.items
    if not planned:
        session.source = source
        session.runner.use_executor(_executor(session))
        decision = SyncDecision(False, why, records=items)
        if config.sync.via != "rest":
            decision.via_message = "REST: an import carries a plan's changes, and this is full mode"
        return decision
    known = await asyncio.to_thread(
        known_enrollment_ids, journal_paths(config, session.journal_path)
    )

    def progress(done: int, total: int) -> None:
        if on_progress is not None and (done == total or done % 25 == 0):
            on_progress(f"rosters read: {done}/{total}")

    collector = None
    if via != "rest":  # the import's rows are written as the plan computes each step
        from canvas_tui.engine.sis_import.channel import Collector

        collector = Collector(active_state=config.sync.enrollment_state, notify=config.sync.notify)
    if forced:
        why = "plan mode (--via sis-import: an import carries the plan's changes)"
    on_step = collector.add if collector is not None else None
    # The account's roles, which the first write needs, are listed beside the rosters.
    actions = _actions(session)
    roles = asyncio.create_task(actions.warm())
    try:
        if while_loading and config.plan.drop_policy == "never" and via == "rest":
            builder = await plan_builder(
                client, source, config, known_ids=known, on_roster=progress, counts=counts
            )
            plan = builder.plan
            fields = {
                "mode": "plan",
                "roster_pages": plan.roster_pages,
                "roster_requests": plan.roster_requests,
            }
            decision = SyncDecision(True, why, plan, None, fields, source, items, builder)
        else:
            plan = await compute_plan(
                client,
                source,
                config,
                known_ids=known,
                on_roster=progress,
                counts=counts,
                on_step=on_step,
            )
            decision = SyncDecision(True, why, plan, None, plan_fields(plan), source, items)
    except BaseException:
        roles.cancel()  # no plan: nothing will be sent
        with contextlib.suppress(asyncio.CancelledError):
            await roles
        raise
    await roles  # one round trip, begun with the rosters' (it raises nothing: `warm`)
    decision.actions = actions
    decision.via = via
    decision.import_rows = collector
    if via == "auto" and collector is not None:
        from canvas_tui.engine.sis_import.attach import preview_channel

        decision.expected_via = preview_channel(session, plan, via, collector).via
    return decision


def plan_fields(plan: Plan) -> dict[str, Any]:
    """What `sync` reports of a plan."""
    return {
        "mode": "plan",
        "roster_pages": plan.roster_pages,
        "roster_requests": plan.roster_requests,
        "changes": plan.change_count,
        "drops": len(plan.drops),
        # the source's records by action, as `canvas-tui plan` counts them
        **{f"plan_{a}": n for a, n in plan.record_counts().items()},
        "plan_canvas_only": len(plan.canvas_only),
    }


async def apply_plan(session: PlanSession, decision: SyncDecision, *, load: bool = True) -> None:
    """Queue a computed plan: the journal gets the source rows then the drops, rows already in
    place are loaded done, and the runner sends each change's planned request. `load=False`
    leaves the load to the run (`Session.run(load_while_running=True)`) when the plan goes by
    REST. With `via` sis-import (or auto, when faster) the changes an import can express go in
    one SIS import, the rest by REST beside it (engine/sis_import/): the journal is loaded here.
    """
    plan, source = decision.plan, decision.source
    if plan is None or source is None or session.store.loaded:
        return
    early = None
    if decision.via != "rest":  # an import uploads while the journal loads (Canvas works)
        from canvas_tui.engine.sis_import.attach import start_early

        early = await start_early(session, plan, decision.via, decision.import_rows)
    planned = session.source = PlannedSource(source, plan, decision.builder)
    session.in_place = planned.in_place
    session.store.set_meta(mode="plan")
    session.runner.use_executor(_executor(session, plan, decision.actions), token_checked=True)
    if load or decision.via != "rest":
        await session.load()
    if decision.via != "rest":
        from canvas_tui.engine.sis_import.attach import finish_early, use_channel

        if early is not None:
            choice = await finish_early(session, early, planned.changed)
        else:
            choice = await use_channel(session, plan, decision.via)
        decision.via = choice.via
        decision.via_message = choice.why
        decision.fields["via"] = choice.via
        if choice.crossover is not None:
            decision.fields["import_crossover"] = choice.crossover


async def prepare_sync(
    session: PlanSession,
    *,
    requested: bool | None,
    allow_drops: int | None,
    on_progress: Callable[[str], None] | None = None,
    via: str | None = None,
    load: bool = True,
) -> SyncDecision:
    """Headless: `plan_session`, the brake (unless `allow_drops` covers the drops), `apply_plan`.
    `via`: rest | sis-import | auto (None: the config's `[sync] via`); an import needs a plan.
    `load=False`: the run loads (see `apply_plan`)."""
    decision = await plan_session(
        session, requested=requested, on_progress=on_progress, via=via, while_loading=not load
    )
    if decision.refused:
        return decision
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
    await apply_plan(session, decision, load=load)
    return decision
