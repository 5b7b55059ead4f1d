"""`canvas-tui trace USER`: one person across every run and the source, for the help desk.

Reads the journals of the journal directory (and any `--journal`), read-only, and the source;
with `--live` also Canvas (GET only): the person resolved by whatever id was given, then their
live enrollments. Prints oldest first, or one JSON document with `--json` (engine/trace.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from canvas_tui.canvas.errors import CanvasError, hint_for
from canvas_tui.config import Config, ConfigError, load_config
from canvas_tui.engine.trace import (
    TraceRequest,
    format_trace,
    journal_files,
    live_enrollments,
    person_forms,
    resolve_person,
    trace,
)
from canvas_tui.exit_codes import ExitCode, error_line
from canvas_tui.paths import default_journal_dir
from canvas_tui.records import InputError
from canvas_tui.sources import open_source

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
    people: list[dict[str, Any]] = []
    enrollments: list[dict[str, Any]] | None = None
    if client is not None:
        import asyncio  # only Canvas needs a loop: the journals and the source are read here

        try:
            people, enrollments = asyncio.run(_live(client, query))
        except CanvasError as exc:
            print(error_line(f"Canvas: {exc} — {hint_for(exc.category)}"), file=sys.stderr)
            return ExitCode.ABORTED
    try:
        found = trace(_request(config, args, people, enrollments))
    except InputError as exc:  # the source named by --source cannot be read
        print(error_line(str(exc)), file=sys.stderr)
        return ExitCode.USAGE
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


async def _live(
    client: CanvasClient, query: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Who the id names in Canvas, and their enrollments (GET only)."""
    try:
        people = await resolve_person(client, query)
        return people, await live_enrollments(client, people)
    finally:
        await client.aclose()


def _request(
    config: Config,
    args: argparse.Namespace,
    people: list[dict[str, Any]],
    enrollments: list[dict[str, Any]] | None,
) -> TraceRequest:
    items = None
    description = None
    if args.source and not Path(args.source).is_file():
        raise InputError(f"--source {args.source}: no such file")
    if not args.no_source:
        try:
            source = open_source(args.source) if args.source else open_source(config.source)
            items, description = source, source.description
        except InputError:
            if args.source:  # asked for by name: say so (the trace says it too)
                raise
    return TraceRequest(
        query=args.user,
        journals=_journals(config, args),
        source_items=items,
        source_description=description,
        extra_forms=[f for p in people for f in person_forms(p)],
        people=people,
        enrollments=enrollments,
    )
