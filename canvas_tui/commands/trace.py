"""`canvas-tui trace USER`: one person across every run and the source, for the help desk.

Reads the journals of the journal directory (and any `--journal`), read-only, and the source;
with `--live` also Canvas (GET only): the person resolved by whatever id was given, then their
live enrollments. Prints oldest first, or one JSON document with `--json` (engine/trace.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from canvas_tui.canvas.errors import CanvasError, hint_for
from canvas_tui.config import Config, ConfigError, load_config
from canvas_tui.engine.trace import (
    Trace,
    TraceRequest,
    journal_files,
    live_enrollments,
    person_forms,
    resolve_person,
    trace,
)
from canvas_tui.exit_codes import ExitCode, error_line
from canvas_tui.paths import default_journal_dir
from canvas_tui.records import InputError, sis_value
from canvas_tui.sources import open_source
from canvas_tui.text import printable

if TYPE_CHECKING:
    import httpx

    from canvas_tui.canvas.client import CanvasClient


def main(
    args: argparse.Namespace,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    out: TextIO | None = None,
) -> int:
    """Exit 0: something names the person; 1: nothing does; 2: usage or config error;
    3: `--live` and Canvas could not be read."""
    out = out or sys.stdout
    query = str(args.user).strip()
    if not query:
        print(error_line("give the person's SIS user id, login id or Canvas id"), file=sys.stderr)
        return ExitCode.USAGE
    try:
        config = load_config(args.config)
        client = None
        if args.live:  # httpx and the client load only for Canvas
            from canvas_tui.canvas.client import CanvasClient

            client = CanvasClient.from_config(config, transport)
    except ConfigError as exc:
        print(error_line(str(exc)), file=sys.stderr)
        return ExitCode.USAGE
    try:
        found = asyncio.run(_trace(config, args, client))
    except CanvasError as exc:
        print(error_line(f"Canvas: {exc} — {hint_for(exc.category)}"), file=sys.stderr)
        return ExitCode.ABORTED
    if args.json:
        print(found.dumps(), file=out)
    else:
        for line in format_trace(found):
            print(line, file=out)
    anything = found.records or found.source_rows or found.people
    return ExitCode.OK if anything else ExitCode.RECORDS_FAILED  # 1: as grep


def _journals(config: Config, args: argparse.Namespace) -> list[Path]:
    extra = [Path(p).expanduser() for p in args.journal]
    if config.sync.journal is not None:  # the config's one fixed journal
        extra.insert(0, config.sync.journal)
    directory = args.journal_dir or config.sync.journal_dir or default_journal_dir()
    return journal_files(Path(directory).expanduser(), extra)


async def _trace(config: Config, args: argparse.Namespace, client: CanvasClient | None) -> Trace:
    people: list[dict[str, Any]] = []
    enrollments: list[dict[str, Any]] | None = None
    if client is not None:
        try:
            people = await resolve_person(client, args.user)
            enrollments = await live_enrollments(client, people)
        finally:
            await client.aclose()
    items = None
    description = None
    if not args.no_source:
        try:
            source = open_source(args.source) if args.source else open_source(config.source)
            items, description = source, source.description
        except InputError:
            if args.source:  # asked for by name: say so (the trace says it too)
                raise
    request = TraceRequest(
        query=args.user,
        journals=_journals(config, args),
        source_items=items,
        source_description=description,
        extra_forms=[f for p in people for f in person_forms(p)],
        people=people,
        enrollments=enrollments,
    )
    return await asyncio.to_thread(trace, request)


# ---- text ---------------------------------------------------------------------------------------


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
        f"{len(found.journals)} journals searched; {len(found.records)} records name the person",
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
