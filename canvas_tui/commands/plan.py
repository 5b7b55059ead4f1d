"""`canvas-tui plan`: preflight, then the plan, written to PREFIX.json and PREFIX.csv; changes nothing."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import httpx

from canvas_tui.canvas.client import CanvasClient
from canvas_tui.canvas.errors import CanvasError
from canvas_tui.canvas.governor import Governor
from canvas_tui.config import Config, ConfigError, check_base_url, load_config
from canvas_tui.engine.plan.executor import (
    choose_mode,
    compute_plan,
    journal_paths,
    known_enrollment_ids,
    read_items,
)
from canvas_tui.engine.plan.render import format_plan, write_plan
from canvas_tui.engine.plan.rosters import default_scopes, fetch_rosters, scope_of
from canvas_tui.paths import default_journal_dir
from canvas_tui.records import (
    EnrollmentRecord,
    InputError,
    Source,
)
from canvas_tui.sources import open_source


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
    from canvas_tui.cli import ExitCode, error_line

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
    from canvas_tui.cli import ExitCode, error_line
    from canvas_tui.engine.preflight import format_preflight, preflight

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
