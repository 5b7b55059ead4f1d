"""Preflight: GET-only checks of everything the source names, and what a run will cost.

Every course is fetched once (does it exist, is it concluded — hard, or soft by its end date),
every course's active sections are listed once (does each section the source names belong to
it), and every user is checked — but only users that appear in no roster cost a request: the
rosters the plan reads anyway prove the others exist. So a deep check of a synced source costs
about one request per course plus its roster pages, not one per record.

The estimate uses the costs the governor measured (the X-Request-Cost average) and the latency
seen on these GETs, with Canvas's bucket: at most about hwm / 50 requests fit in flight, and
the sustained rate is bounded by leak / cost. Write requests may cost more than GETs; the
figure is a floor, and says so.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from canvas_tui.canvas.client import CanvasClient
from canvas_tui.canvas.errors import CanvasError
from canvas_tui.canvas.governor import Governor
from canvas_tui.config import Config
from canvas_tui.engine.estimate import (
    WRITE_FACTOR,
    Bucket,
    TimeRange,
    format_duration,
    run_seconds,
)
from canvas_tui.engine.plan.diff import Plan
from canvas_tui.engine.plan.executor import SourceCounts, choose_mode, compute_plan
from canvas_tui.engine.plan.rosters import (
    Roster,
    RosterIndex,
    fetch_rosters,
)
from canvas_tui.records import EnrollmentRecord, SourceItem, sis_value, split_api_id
from canvas_tui.sources import read_through

CHECK_CONCURRENCY = 8
DEFAULT_COST = 0.1  # X-Request-Cost assumed before any answer carried one
DEFAULT_LATENCY = 0.25  # seconds per request assumed before any answer


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # course | section | user
    ref: str  # the id as the source gives it (API id form)
    problem: str
    records: int  # how many records name it
    first: str  # where the first of them is (file:line)

    def __str__(self) -> str:
        many = f" ({self.records} records, first at {self.first})"
        return f"{self.kind} {sis_value(self.ref)}: {self.problem}{many}"


@dataclass(frozen=True, slots=True)
class Estimate:
    mode: str  # full | plan
    requests: int
    cost: float  # throttle units (at the low write factor)
    seconds: float  # the middle of `span`
    note: str = ""
    span: TimeRange | None = None
    chosen: bool = False  # the mode `sync` would pick on its own


@dataclass(slots=True)
class PreflightResult:
    courses: int = 0
    sections: int = 0
    users: int = 0
    users_seen_in_rosters: int = 0
    findings: list[Finding] = field(default_factory=list)
    requests: int = 0  # GETs this preflight sent (retries included)
    average_cost: float | None = None
    mean_latency: float | None = None
    estimates: list[Estimate] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "checked": {"courses": self.courses, "sections": self.sections, "users": self.users},
            "users_seen_in_rosters": self.users_seen_in_rosters,
            "findings": [
                {
                    "kind": f.kind,
                    "id": sis_value(f.ref),
                    "problem": f.problem,
                    "records": f.records,
                    "first": f.first,
                }
                for f in self.findings
            ],
            "requests": self.requests,
            "average_cost": self.average_cost,
            "mean_latency": self.mean_latency,
            "estimates": [
                {
                    "mode": e.mode,
                    "requests": e.requests,
                    "cost": round(e.cost, 2),
                    "seconds": round(e.seconds, 1),
                    "seconds_low": None if e.span is None else round(e.span.low, 1),
                    "seconds_high": None if e.span is None else round(e.span.high, 1),
                    "chosen": e.chosen,
                    "note": e.note,
                }
                for e in self.estimates
            ],
        }


class _Named:
    """The records naming one object: how many, and where the first is."""

    __slots__ = ("count", "first")

    def __init__(self) -> None:
        self.count = 0
        self.first = ""

    def add(self, record: EnrollmentRecord) -> None:
        if not self.count:
            self.first = str(record.provenance)
        self.count += 1


class _Meter:
    """Counts this preflight's requests and their latency (an observer for the client)."""

    def __init__(self) -> None:
        self.requests = 0
        self.latency = 0.0

    def __call__(self, event: Any) -> None:
        self.requests += 1
        self.latency += max(0.0, float(event.finished_at) - float(event.started_at))

    @property
    def mean_latency(self) -> float | None:
        return self.latency / self.requests if self.requests else None


def _concluded(course: Mapping[str, Any]) -> str | None:
    state = course.get("workflow_state")
    if state in ("completed", "deleted"):
        return f"is {'concluded' if state == 'completed' else 'deleted'} (workflow_state {state})"
    end = course.get("end_at")
    if course.get("restrict_enrollments_to_course_dates") and end:
        try:
            ended = datetime.fromisoformat(str(end))
        except ValueError:
            return None
        if ended.tzinfo is None:
            ended = ended.replace(tzinfo=UTC)
        if ended < datetime.now(UTC):
            return f"is concluded: its end date {end} has passed and enrollments keep to it"
    return None


async def _bounded(jobs: Iterable[Callable[[], Awaitable[None]]], limit: int) -> None:
    gate = asyncio.Semaphore(max(1, limit))

    async def run(job: Callable[[], Awaitable[None]]) -> None:
        async with gate:
            await job()

    outcomes = await asyncio.gather(*(run(job) for job in jobs), return_exceptions=True)
    for outcome in outcomes:  # a fatal error (token, unsafe URL) surfaces as itself
        if isinstance(outcome, BaseException):
            raise outcome


class Census:
    """What the preflight checks, gathered in one pass over the records: how many name each
    course, section and user, and where the first is (counts, not the records), with the
    source's `SourceCounts` for the estimates."""

    def __init__(self) -> None:
        self.named: dict[tuple[str, str], _Named] = defaultdict(_Named)
        self.sections_of: dict[str, set[str]] = defaultdict(set)
        self.pairs: dict[tuple[str, str], _Named] = defaultdict(_Named)
        self.lone: set[str] = set()  # sections named without their course
        self.counts = SourceCounts()

    @classmethod
    def of(cls, items: Iterable[SourceItem]) -> Census:
        census = cls()
        for item in items:
            census.counts.items += 1
            if isinstance(item, EnrollmentRecord):
                census.add(item)
        read_through(items, census.counts.items)
        return census

    def add(self, record: EnrollmentRecord) -> None:
        named = self.named
        self.counts.add(record)
        if record.course:
            named["course", record.course].add(record)
            if record.section:
                self.sections_of[record.course].add(record.section)
                self.pairs[record.course, record.section].add(record)
        elif record.section:
            self.lone.add(record.section)
        if record.section:
            named["section", record.section].add(record)
        named["user", record.user].add(record)
        if record.associated_user:
            named["user", record.associated_user].add(record)


async def preflight(
    client: CanvasClient,
    records: Iterable[EnrollmentRecord] | Census,
    *,
    rosters: Mapping[str, Roster] | None = None,
    plan: Plan | None = None,
    concurrency: int = CHECK_CONCURRENCY,
    chosen: str | None = None,
) -> PreflightResult:
    """Check every course, section and user the records name (GET only); raise only on a
    fatal error (token rejected, unsafe URL). `rosters` spare the GETs of users seen in them.
    `records`: the records, or their `Census` when it was taken already."""
    meter = _Meter()
    result = PreflightResult()
    census = records if isinstance(records, Census) else Census.of(records)
    named, sections_of, pairs = census.named, census.sections_of, census.pairs
    lone, counts = census.lone, census.counts

    def finding(kind: str, ref: str, problem: str, by: _Named | None = None) -> None:
        named_by = named[kind, ref] if by is None else by
        result.findings.append(Finding(kind, ref, problem, named_by.count, named_by.first))

    async def check(kind: str, ref: str, call: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await call()
        except CanvasError as error:
            if error.fatal:
                raise
            if error.status == 404:
                finding(kind, ref, "does not exist" + _missing_hint(kind))
            else:
                finding(kind, ref, f"could not be checked: {error}")
            return None

    courses: dict[str, Mapping[str, Any]] = {}
    course_refs = sorted({ref for kind, ref in named if kind == "course"})

    def course_job(ref: str) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            found = await check("course", ref, lambda: client.get_course(ref, observer=meter))
            if found is not None:
                courses[ref] = found
                problem = _concluded(found)
                if problem:
                    finding("course", ref, problem)

        return job

    await _bounded((course_job(r) for r in course_refs), concurrency)
    result.courses = len(course_refs)

    def sections_job(course: str, wanted: set[str]) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            listed = await check(
                "course", course, lambda: client.list_course_sections(course, observer=meter)
            )
            if listed is None:
                return
            ids: set[tuple[str | None, str]] = {
                ("sis_section_id", str(s.get("sis_section_id"))) for s in listed
            }
            ids |= {(None, str(s.get("id"))) for s in listed}
            for section in sorted(wanted):
                if split_api_id(section) not in ids:
                    finding(
                        "section",
                        section,
                        f"is not an active section of course {sis_value(course)}",
                        pairs[course, section],
                    )

        return job

    # Sections the source names with their course: one list per course that exists.
    await _bounded(
        (sections_job(c, s) for c, s in sorted(sections_of.items()) if c in courses),
        concurrency,
    )
    lone_sections = sorted(lone)

    def section_job(ref: str) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            await check("section", ref, lambda: client.get_section(ref, observer=meter))

        return job

    await _bounded((section_job(s) for s in lone_sections), concurrency)
    result.sections = len({ref for kind, ref in named if kind == "section"})

    index = RosterIndex(rosters or {})
    users = sorted({ref for kind, ref in named if kind == "user"})
    unseen = [u for u in users if not index.knows_user(u)]
    result.users = len(users)
    result.users_seen_in_rosters = len(users) - len(unseen)

    def user_job(ref: str) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            await check("user", ref, lambda: client.get_user(ref, observer=meter))

        return job

    await _bounded((user_job(u) for u in unseen), concurrency)
    result.findings.sort(key=lambda f: (f.kind, f.ref))
    result.requests = meter.requests
    result.average_cost = client.governor.state().average_cost
    result.mean_latency = meter.mean_latency
    result.estimates = estimate(
        counts,
        client.governor,
        average_cost=result.average_cost,
        latency=result.mean_latency,
        plan=plan,
        chosen=chosen,
    )
    return result


def _missing_hint(kind: str) -> str:
    return {
        "course": " (or is deleted)",
        "section": " (or is deleted)",
        "user": " (or has no login in this account)",
    }[kind]


def estimate(
    counts: SourceCounts,
    governor: Governor,
    *,
    average_cost: float | None,
    latency: float | None,
    plan: Plan | None = None,
    chosen: str | None = None,
) -> list[Estimate]:
    """Requests, throttle units and a time range for a full sync (of the source `counts`
    counted) and, given a plan, for applying
    it (engine/estimate.py: the governor's T* from the GETs measured here). `chosen` is the mode
    `sync` would pick."""
    cost = average_cost if average_cost is not None else DEFAULT_COST
    latency = latency if latency is not None and latency > 0 else DEFAULT_LATENCY
    bucket = Bucket(hwm=governor.hwm, up_front=governor.up_front, leak=governor.leak)
    note = "measured GETs" if average_cost is not None else "assumed cost and latency"
    # a write per record, after a lookup (a GET) for every row a blind POST would not suit:
    # the counting choose_mode does; plus the token check
    full_reads, full_writes = 1 + counts.lookups, counts.records
    shapes = [("full", full_reads, full_writes)]
    if plan is not None:
        shapes.append(
            ("plan", 1 + (plan.roster_requests or plan.roster_pages), plan.change_requests)
        )
    out = []
    for mode, reads, writes in shapes:
        span = run_seconds(
            reads=reads, writes=writes, read_latency=latency, read_cost=cost, bucket=bucket
        )
        units = (reads + writes * WRITE_FACTOR[0]) * cost
        out.append(Estimate(mode, reads + writes, units, span.middle, note, span, mode == chosen))
    return out


def format_preflight(result: PreflightResult) -> list[str]:
    lines = [
        f"preflight: {result.courses} courses, {result.sections} sections, {result.users} users "
        f"checked ({result.users_seen_in_rosters} users proven by the rosters); "
        f"{result.requests} GET requests",
    ]
    if result.findings:
        lines.append(f"  {len(result.findings)} problems:")
        lines.extend(f"    {f}" for f in result.findings)
    else:
        lines.append("  every course, section and user exists; no course is concluded")
    cost = "?" if result.average_cost is None else f"{result.average_cost:.3f}"
    latency = "?" if result.mean_latency is None else f"{result.mean_latency * 1000:.0f} ms"
    lines.append(f"  measured: X-Request-Cost average {cost}, latency {latency}")
    for e in result.estimates:
        when = e.span if e.span is not None else format_duration(e.seconds)
        pick = "; sync picks this mode" if e.chosen else ""
        lines.append(
            f"  estimate ({e.mode}): {e.requests} requests, {e.cost:.1f} throttle units, "
            f"{when} ({e.note}; writes taken as {WRITE_FACTOR[0]:g}-{WRITE_FACTOR[1]:g}x a GET"
            f"{pick})"
        )
    return lines


async def plan_and_preflight(
    client: CanvasClient,
    items: Iterable[SourceItem],
    config: Config,
    *,
    known_ids: set[int] | None = None,
    census: Census | None = None,
) -> tuple[PreflightResult, Plan]:
    """Read the rosters (they prove most users exist), plan, then preflight: what `plan` shows.
    The result counts the preflight's own GETs; the plan's `roster_requests`, the rosters'.
    `items` is re-readable (a source, or a list) and streamed: one pass takes the `Census`
    (unless given), one more the plan. The plan is for showing and writing down, not for
    applying: it keeps no per-row arrays (`Tally`)."""
    if isinstance(items, Iterator):
        items = list(items)
    if census is None:
        census = await asyncio.to_thread(Census.of, items)
    counts = census.counts
    meter = _Meter()
    started = time.monotonic()
    rosters = await fetch_rosters(
        client,
        counts.per_scope,
        observer=meter,
        with_default=counts.defaults,  # course-only rows act on the default section
    )
    plan = await compute_plan(
        client, items, config, known_ids=known_ids, rosters=rosters, keep_rows=False
    )
    plan.roster_requests = meter.requests
    plan.elapsed = time.monotonic() - started  # the rosters were read here, not in it
    planned, _why = choose_mode(counts, config.plan, None)
    chosen = "plan" if planned else "full"
    result = await preflight(client, census, rosters=rosters, plan=plan, chosen=chosen)
    return result, plan


async def deep_check(
    client: CanvasClient, items: Iterable[SourceItem], config: Config
) -> tuple[PreflightResult, Plan]:
    """`check --deep`: `plan_and_preflight`, every GET (the rosters' too) in the result's count."""
    result, plan = await plan_and_preflight(client, items, config)
    result.requests += plan.roster_requests
    return result, plan
