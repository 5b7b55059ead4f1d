"""A person's trace: every record that named one person, in every journal and in the source.

The help desk's question is person-shaped ("I registered yesterday and I'm not in BIO 101"),
the journals are run-shaped. `trace` answers across runs: each journal of the directory is
opened read-only and asked for the records whose `user` is one of the person's ids (the
`records_user` index, in schema 1 and 2 alike: no record is decoded that is not the person's),
with each record's attempts as sent and Canvas's answers; then the source as it is now, each of
the person's rows with what a sync would do with it and whether a run already sent it as it
stands. On request, Canvas itself: the person resolved by any id they go by (so a login finds
the records that named their SIS id) and their live enrollments, each row's verdict against
them.

Pure core: no Textual, no printing (commands/trace.py prints, tui/screens/trace.py shows).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from canvas_tui.engine.journal import Journal, JournalError, journals_in
from canvas_tui.engine.state import RecordRow
from canvas_tui.records import (
    EnrollmentRecord,
    RowProblem,
    SourceItem,
    State,
    api_id,
    sis_value,
    split_api_id,
)
from canvas_tui.text import printable

if TYPE_CHECKING:
    from canvas_tui.config import SourceConfig

# The kinds of id a person goes by in the API; a bare value may be any of them, or a Canvas id.
USER_KINDS = ("sis_user_id", "sis_login_id", "sis_integration_id")
# Every state a user's enrollments listing can hold: the help desk needs the deleted and
# concluded ones too ("it was there yesterday").
ENROLLMENT_STATES = (
    "active",
    "invited",
    "creation_pending",
    "inactive",
    "completed",
    "rejected",
    "deleted",
)
TRACE_SCHEMA = 1  # of the --json document


def user_forms(user: str) -> tuple[str, ...]:
    """The `user` column values that may name this person: `S001` -> every SIS kind and the bare
    value (a Canvas id, or a row the source rejected, which keeps the id as written);
    `sis_user_id:S001` -> that form and the bare value."""
    text = user.strip()
    kind, value = split_api_id(text)
    if kind is not None:
        return (text, value)
    return (*(api_id(k, value) for k in USER_KINDS), value)


def person_forms(user: Mapping[str, Any]) -> tuple[str, ...]:
    """Every id a Canvas user object says the person goes by, as the journal would hold it."""
    out: list[str] = []
    if user.get("id") is not None:
        out.append(str(user["id"]))
    for key, kind in (
        ("sis_user_id", "sis_user_id"),
        ("login_id", "sis_login_id"),
        ("integration_id", "sis_integration_id"),
    ):
        value = user.get(key)
        if value:
            out += [api_id(kind, str(value)), str(value)]
    return tuple(dict.fromkeys(out))


# ---- what a trace holds -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TracedAttempt:
    number: int
    started_at: float
    finished_at: float | None
    method: str
    url: str  # never carries the token (the journal never held it)
    request_body: str | None
    status: int | None  # Canvas's answer; None for a transport error
    category: str | None
    message: str | None  # Canvas's text (or the transport error's)
    error_report_id: int | None


@dataclass(frozen=True, slots=True)
class TracedRecord:
    """One record of one run that named the person."""

    journal: str
    run_mode: str  # "plan" (diffed against the rosters first) or "full"
    record_id: int
    source: str
    line: int  # the file's line, or the query's row
    user: str  # how the record named the person (API id form)
    course: str | None
    section: str | None
    role: str
    status: str  # the SIS status asked for
    verdict: str  # what the run decided to do: create, reactivate, none, conclude, ...
    state: str  # pending, in_flight, done, failed, skipped
    category: str | None
    message: str | None
    http_status: int | None
    canvas_enrollment_id: int | None
    updated_at: float
    raw: Mapping[str, str]
    attempts: tuple[TracedAttempt, ...]
    in_source_now: str | None = None  # for runs of the current source: "same", "changed", "gone"

    @property
    def when(self) -> float:
        """When the record first went out (its first attempt), else when it last changed."""
        return self.attempts[0].started_at if self.attempts else self.updated_at

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.user, self.course or "", self.section or "", self.role)


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One row of the source as it is now that names the person."""

    source: str
    line: int
    user: str
    course: str | None
    section: str | None
    role: str
    status: str
    verdict: str  # what a sync would ask of Canvas; "invalid: ..." for a rejected row
    sent: str  # "sent as it stands in <journal> (#n, done)", "changed since ...", "in no run yet"
    raw: Mapping[str, str]
    live: str | None = None  # against the live enrollments (--live): in sync, missing, ...


@dataclass(frozen=True, slots=True)
class Trace:
    query: str
    forms: tuple[str, ...]  # the ids searched for
    journals: tuple[str, ...]  # searched, oldest run first
    records: tuple[TracedRecord, ...]  # oldest first
    source: str | None  # the source's description; None when not read
    source_rows: tuple[SourceRow, ...] = ()
    problems: tuple[str, ...] = ()  # journals or a source that could not be read, and why
    people: tuple[Mapping[str, Any], ...] = ()  # Canvas users the query resolved to (--live)
    enrollments: tuple[Mapping[str, Any], ...] | None = None  # live, on request
    elapsed: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["schema_version"] = TRACE_SCHEMA
        out["elapsed"] = round(self.elapsed, 4)
        for record, data in zip(self.records, out["records"], strict=True):
            data["when"] = record.when
        return out

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, default=str)


# ---- the journals -------------------------------------------------------------------------------


def journal_files(directory: Path | None, extra: Iterable[Path] = ()) -> list[Path]:
    """The journals of a directory (`*.journal`) and any named ones, each once."""
    found = [*journals_in(directory), *(p for p in extra if p.is_file())]
    return list(dict.fromkeys(p.resolve() for p in found))


def _attempt(a: Any) -> TracedAttempt:
    return TracedAttempt(
        a.number,
        a.started_at,
        a.finished_at,
        a.method,
        a.url,
        a.request_body,
        a.status,
        a.category,
        a.message,
        a.error_report_id,
    )


def planned_action(record: EnrollmentRecord) -> str:
    """diff.py's `planned_action`, imported on first use: the plan's modules bring the Canvas
    client and httpx (~0.3 s), which a trace of the journals alone never needs."""
    from canvas_tui.engine.plan.diff import planned_action as planned

    return planned(record)


def _verdict(journal: Journal, row: RecordRow) -> str:
    if row.action:
        return row.action
    if row.category == "invalid_input":
        return "invalid"
    record = journal.record(row.record_id)
    if record is None:
        return "none"
    # a full-mode record journals no action; only a pending one is "not sent yet" (a failed
    # one lists its requests right below)
    action = planned_action(record)
    return f"{action} (not sent yet)" if row.state is State.PENDING else action


def _search_journal(path: Path, forms: Sequence[str]) -> tuple[float, list[TracedRecord]]:
    """(when the run began, the person's records); raises JournalError or sqlite3.Error."""
    journal = Journal(path, read_only=True, immutable=True)
    try:
        meta_created = journal.get_meta("created_at")
        created = float(meta_created) if meta_created else path.stat().st_mtime
        rows = journal.rows_of_users(forms)
        if not rows:
            return created, []
        mode = journal.get_meta("mode") or "full"
        out = [
            TracedRecord(
                journal=str(path),
                run_mode=mode,
                record_id=row.record_id,
                source=row.source,
                line=row.line,
                user=row.user,
                course=row.course,
                section=row.section,
                role=row.role,
                status=row.status,
                verdict=_verdict(journal, row),
                state=row.state.value,
                category=row.category,
                message=row.message,
                http_status=row.http_status,
                canvas_enrollment_id=row.canvas_enrollment_id,
                updated_at=row.updated_at,
                raw=dict(row.raw),
                attempts=tuple(_attempt(a) for a in journal.attempts(row.record_id)),
            )
            for row in rows
        ]
        return created, out
    finally:
        journal.close()


def search_journals(
    paths: Iterable[Path], forms: Sequence[str]
) -> tuple[list[str], list[TracedRecord], list[str]]:
    """(journals searched, oldest run first; the person's records, oldest first; problems)."""
    import sqlite3

    runs: list[tuple[float, str]] = []
    records: list[TracedRecord] = []
    problems: list[str] = []
    for path in paths:
        try:
            created, found = _search_journal(path, forms)
        except (JournalError, sqlite3.Error, OSError, ValueError) as exc:
            problems.append(f"{path}: not read ({exc})")
            continue
        runs.append((created, str(path)))
        records += found
    runs.sort()
    order = {path: n for n, (_, path) in enumerate(runs)}
    records.sort(key=lambda r: (r.when, order[r.journal], r.record_id))
    return [p for _, p in runs], records, problems


# ---- the source ---------------------------------------------------------------------------------


def _problem_user(item: RowProblem) -> str:
    raw = item.provenance.raw
    return str(raw.get("user_integration_id") or raw.get("user_id") or "")


def source_rows_of(items: Iterable[SourceItem], forms: Sequence[str]) -> list[SourceItem]:
    """The source's rows that name the person (a rejected row by the id it carries)."""
    wanted = frozenset(forms)
    out: list[SourceItem] = []
    for item in items:
        if isinstance(item, EnrollmentRecord):
            if item.user in wanted:
                out.append(item)
        elif _problem_user(item) in wanted:
            out.append(item)
    return out


def narrow(source: object, forms: Sequence[str]) -> None:
    """Let a CSV source pass over, unparsed, the rows that hold none of the person's ids in
    any cell (`CsvSource.keep`): a cell is an id as written, and the normalizer only strips
    it, unless the layout translates user values (then every row is read)."""
    layout = getattr(source, "layout", None)
    if not hasattr(source, "keep") or layout is None:
        return
    if any("user" in name for name in (*layout.values, *layout.defaults)):
        return
    needles = frozenset(split_api_id(f)[1] for f in forms)

    def keep(row: list[str]) -> bool:
        return any(cell.strip() in needles for cell in row)

    source.keep = keep


def _record_key(item: EnrollmentRecord) -> tuple[str, str, str, str]:
    return (item.user, item.course or "", item.section or "", item.role)


def compare_with_runs(
    items: Sequence[SourceItem], description: str, records: Sequence[TracedRecord]
) -> tuple[list[SourceRow], list[TracedRecord]]:
    """Each source row, with what the latest run of this source did with it; and the records
    marked with whether the source still holds them as they were ("same", "changed", "gone")."""
    same = _same_source(description)
    mine = [r for r in records if same(r.source)]
    latest: dict[tuple[str, str, str, str], TracedRecord] = {}
    for record in mine:  # oldest first: the last one seen is the latest
        latest[record.key] = record
    rows: list[SourceRow] = []
    now: dict[tuple[str, str, str, str], Mapping[str, str]] = {}
    for item in items:
        prov = item.provenance
        if isinstance(item, RowProblem):
            raw = prov.raw
            # keyed as the journal keeps a rejected row: the ids as written (journal.py)
            role = str(raw.get("role") or raw.get("role_id") or "")
            problem_key = (
                _problem_user(item),
                raw.get("course_id") or "",
                raw.get("section_id") or "",
                role,
            )
            now[problem_key] = raw
            rows.append(
                SourceRow(
                    prov.source,
                    prov.line,
                    _problem_user(item),
                    raw.get("course_id") or None,
                    raw.get("section_id") or None,
                    role,
                    str(raw.get("status") or ""),
                    f"{'skipped' if item.skip else 'invalid'}: {item.message}",
                    "never sent: the row must be fixed first" if not item.skip else "never sent",
                    dict(raw),
                )
            )
            continue
        key = _record_key(item)
        now[key] = prov.raw
        before = latest.get(key)
        if before is None:
            sent = "in no run yet: the next sync sends it"
        elif dict(before.raw) == dict(prov.raw):
            sent = f"sent as it stands: {Path(before.journal).name} #{before.record_id} ({before.state})"
        else:
            sent = (
                f"changed since {Path(before.journal).name} #{before.record_id} "
                f"({before.state}, line {before.line} then): the next sync sends the new values"
            )
        rows.append(
            SourceRow(
                prov.source,
                prov.line,
                item.user,
                item.course,
                item.section,
                item.role,
                str(item.status),
                planned_action(item),
                sent,
                dict(prov.raw),
            )
        )
    marked: list[TracedRecord] = []
    for record in records:
        state = None
        if same(record.source):
            held = now.get(record.key)
            state = (
                "gone" if held is None else "same" if dict(held) == dict(record.raw) else "changed"
            )
        marked.append(_with(record, in_source_now=state))
    return rows, marked


def _same_source(description: str) -> Callable[[str], bool]:
    """Whether a journal's source is this one: the same description, or the same file by
    another path (a run given `./x.csv`, a trace given the absolute path)."""
    here = Path(description).resolve() if not description.startswith("sql:") else None
    known: dict[str, bool] = {}

    def same(other: str) -> bool:
        if other == description:
            return True
        if here is None or other.startswith("sql:"):
            return False
        if other not in known:
            try:
                known[other] = Path(other).resolve() == here
            except OSError:
                known[other] = False
        return known[other]

    return same


def _with(record: TracedRecord, **changes: Any) -> TracedRecord:
    from dataclasses import replace

    return replace(record, **changes)


# ---- Canvas (on request) ------------------------------------------------------------------------


class PersonReader(Protocol):
    """The Canvas reads a live trace makes (a `CanvasClient`)."""

    async def get_user(self, user: str) -> dict[str, Any]: ...

    async def list_enrollments(
        self, *, user: str | None = None, states: Iterable[str] = ()
    ) -> list[dict[str, Any]]: ...


async def resolve_person(client: PersonReader, query: str) -> list[dict[str, Any]]:
    """The Canvas users `query` may name (an SIS id, a login, an integration id or a Canvas id),
    each once; none when Canvas knows none of them."""
    from canvas_tui.canvas.errors import CanvasError

    text = query.strip()
    kind, value = split_api_id(text)
    tries = [text] if kind is not None else [api_id(k, value) for k in USER_KINDS]
    if kind is None and value.isdigit():
        tries.insert(0, value)
    found: dict[object, dict[str, Any]] = {}
    for ref in tries:
        try:
            user = await client.get_user(ref)
        except CanvasError as exc:
            if exc.status == 404:
                continue
            raise
        found.setdefault(user.get("id"), user)
    return list(found.values())


async def live_enrollments(
    client: PersonReader, people: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Every enrollment of these people in Canvas, every state."""
    out: list[dict[str, Any]] = []
    for person in people:
        out += await client.list_enrollments(user=str(person["id"]), states=ENROLLMENT_STATES)
    return out


def _as_row(item: EnrollmentRecord) -> RecordRow:
    prov = item.provenance
    return RecordRow(
        record_id=prov.line,
        source=prov.source,
        line=prov.line,
        key=item.key,
        user=item.user,
        course=item.course,
        section=item.section,
        role=item.role_id or item.role,
        status=str(item.status),
        state=State.PENDING,
        action=None,
        attempts=0,
        category=None,
        message=None,
        error_report_id=None,
        canvas_enrollment_id=None,
    )


def _in_course(enrollment: Mapping[str, Any], item: EnrollmentRecord) -> bool:
    """Whether the enrollment is in the course (else the section) the row names."""
    ref, kind_key, id_key = (
        (item.course, "sis_course_id", "course_id")
        if item.course
        else (item.section, "sis_section_id", "course_section_id")
    )
    kind, value = split_api_id(ref or "")
    if kind is not None:
        return str(enrollment.get(kind_key) or "") == value
    return str(enrollment.get(id_key) or "") == value


def live_verdicts(
    rows: Sequence[SourceRow], items: Sequence[SourceItem], enrollments: Sequence[Mapping[str, Any]]
) -> list[SourceRow]:
    """Each valid source row's verdict against the person's live enrollments of its course
    (the roster inspector's rule, engine/plan/verdict.py)."""
    from canvas_tui.engine.plan.verdict import compare

    out: list[SourceRow] = []
    for row, item in zip(rows, items, strict=True):
        if not isinstance(item, EnrollmentRecord):
            out.append(row)
            continue
        theirs = [e for e in enrollments if _in_course(e, item)]
        diff = compare(theirs, [_as_row(item)])
        line = next((x for x in diff.lines if x.record_id == item.provenance.line), None)
        verdict = "" if line is None else str(line.verdict)
        if line is not None and line.canvas_state:
            verdict += f" (Canvas: {line.canvas_state})"
        out.append(_with_row(row, live=verdict or None))
    return out


def _with_row(row: SourceRow, **changes: Any) -> SourceRow:
    from dataclasses import replace

    return replace(row, **changes)


@dataclass(frozen=True, slots=True)
class TraceScope:
    """Where a trace looks: the journals of a directory and any others, and a source (a
    config's [source], or a path), read when the trace is made."""

    journal_dir: Path | None = None
    journals: tuple[Path, ...] = ()
    source: SourceConfig | str | Path | None = None


# ---- the whole trace ----------------------------------------------------------------------------


@dataclass
class TraceRequest:
    query: str
    journals: Sequence[Path] = ()
    source_items: Iterable[SourceItem] | None = None  # None: the source is not read
    source_description: str | None = None
    extra_forms: Sequence[str] = ()  # ids Canvas resolved the person to
    people: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    enrollments: Sequence[Mapping[str, Any]] | None = None


def trace(request: TraceRequest) -> Trace:
    """The person's trace from the journals and the source (blocking: call it in a thread)."""
    began = time.perf_counter()
    forms = tuple(dict.fromkeys([*user_forms(request.query), *request.extra_forms]))
    journals, records, problems = search_journals(request.journals, forms)
    rows: list[SourceRow] = []
    if request.source_items is not None:
        description = request.source_description or ""
        narrow(request.source_items, forms)
        try:
            items = source_rows_of(request.source_items, forms)
        except Exception as exc:  # InputError, a driver's error: the journals still answer
            problems.append(f"the source {description} could not be read: {exc}")
            items = []
        rows, records = compare_with_runs(items, description, records)
        if request.enrollments is not None:
            rows = live_verdicts(rows, items, request.enrollments)
    return Trace(
        query=request.query,
        forms=forms,
        journals=tuple(journals),
        records=tuple(records),
        source=request.source_description if request.source_items is not None else None,
        source_rows=tuple(rows),
        problems=tuple(problems),
        people=tuple(request.people),
        enrollments=None if request.enrollments is None else tuple(request.enrollments),
        elapsed=time.perf_counter() - began,
    )


# ---- as text (the command prints it, the console shows it) ---------------------------------------------------------------------------------------


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def _where(course: str | None, section: str | None) -> str:
    return " / ".join(sis_value(v) for v in (course, section) if v) or "?"


def format_trace(found: Trace) -> list[str]:
    """The trace as an operator reads it, oldest first; untrusted text made printable."""
    p = printable
    lines = [
        f"Trace of {p(found.query)}: ids searched {', '.join(p(f) for f in found.forms)}",
        f"{len(found.journals)} journal{'' if len(found.journals) == 1 else 's'} searched; "
        f"{len(found.records)} record{' names' if len(found.records) == 1 else 's name'} the person",
    ]
    for person in found.people:
        lines.append(
            f"Canvas user {person.get('id')}: {p(str(person.get('name') or ''))} "
            f"(sis_user_id {p(str(person.get('sis_user_id') or '-'))}, "
            f"login {p(str(person.get('login_id') or '-'))})"
        )
    for record in found.records:
        lines.append("")
        lines.append(
            f"{_when(record.when)}  {Path(record.journal).name} ({record.run_mode} mode) "
            f"record #{record.record_id}  {p(record.source)}:{record.line}"
        )
        lines.append(
            f"  {p(_where(record.course, record.section))} · {p(record.role)} · "
            f"{p(record.status)} · as {p(record.user)} → {p(record.verdict)}"
        )
        for a in record.attempts:
            answer = "no answer" if a.status is None else f"HTTP {a.status}"
            detail = f" {p(a.category)}" if a.category else ""
            message = f": {p(a.message)}" if a.message else ""
            lines.append(
                f"  #{a.number} {_when(a.started_at)} {a.method} {p(a.url)}"
                + (f" {p(a.request_body)}" if a.request_body else "")
            )
            lines.append(f"     → {answer}{detail}{message}")
        final = record.state
        if record.canvas_enrollment_id is not None:
            final += f" · Canvas enrollment {record.canvas_enrollment_id}"
        if record.category:
            final += f" · {p(record.category)}"
        if record.message:
            final += f" · {p(record.message)}"
        lines.append(f"  final: {final}")
        if record.in_source_now == "changed":
            lines.append("  the source's row has changed since")
        elif record.in_source_now == "gone":
            lines.append("  the source no longer has this row")
    if found.source is not None:
        lines.append("")
        lines.append(f"The source now: {p(found.source)} ({len(found.source_rows)} rows)")
        for row in found.source_rows:
            live = f" · Canvas: {p(row.live)}" if row.live else ""
            lines.append(
                f"  line {row.line}: {p(_where(row.course, row.section))} · {p(row.role)} · "
                f"{p(row.status)} → {p(row.verdict)}{live}"
            )
            lines.append(f"     {p(row.sent)}")
    if found.enrollments is not None:
        lines.append("")
        lines.append(f"Live in Canvas: {len(found.enrollments)} enrollments")
        lines += [f"  {line}" for line in _enrollment_lines(found.enrollments)]
    if not (found.records or found.source_rows or found.people):
        lines.append("")
        lines.append(
            "Nothing names this person. A login, or a Canvas id of someone the source names by "
            "SIS id, is found with --live (it asks Canvas who the id is)."
        )
    for problem in found.problems:
        lines.append(f"warning: {p(problem)}")
    return lines


def _enrollment_lines(enrollments: Iterable[Mapping[str, Any]]) -> Sequence[str]:
    out = []
    for e in sorted(
        enrollments, key=lambda e: (str(e.get("sis_course_id") or e.get("course_id")), e.get("id"))
    ):
        course = e.get("sis_course_id") or e.get("course_id")
        section = e.get("sis_section_id") or e.get("course_section_id")
        out.append(
            printable(
                f"{course} / {section} · {e.get('role') or e.get('type')} · "
                f"{e.get('enrollment_state')} · enrollment {e.get('id')}"
            )
        )
    return out


__all__ = [
    "SourceRow",
    "Trace",
    "TraceRequest",
    "TraceScope",
    "TracedAttempt",
    "TracedRecord",
    "format_trace",
    "journal_files",
    "live_enrollments",
    "narrow",
    "person_forms",
    "resolve_person",
    "trace",
    "user_forms",
]
