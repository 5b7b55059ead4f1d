"""`canvas-tui plan`: preflight, then the plan (engine/plan/), written to PREFIX.json and
PREFIX.csv. Only GET requests: it changes nothing."""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import sys
import time
from pathlib import Path
from typing import TextIO

import httpx

from canvas_tui.canvas.client import CanvasClient
from canvas_tui.canvas.errors import CanvasError
from canvas_tui.config import Config, ConfigError, load_config
from canvas_tui.engine.plan.executor import journal_paths, known_enrollment_ids
from canvas_tui.engine.plan.render import format_plan, write_plan
from canvas_tui.engine.preflight import Census, format_preflight, plan_and_preflight
from canvas_tui.exit_codes import ExitCode, error_line
from canvas_tui.outputs import OutputPathError, check_output_paths
from canvas_tui.paths import default_journal_dir
from canvas_tui.records import InputError, Source
from canvas_tui.sources import open_source


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
    out = out or sys.stdout
    try:
        config = load_config(args.config)
        source = open_source(args.source) if args.source else open_source(config.source)
        client = CanvasClient.from_config(config, transport)
    except (ConfigError, InputError) as exc:
        print(error_line(str(exc)), file=sys.stderr)
        return ExitCode.USAGE
    prefix = Path(args.out) if getattr(args, "out", None) else default_prefix(config)
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
    # Every pass over the source (census, plan, files) in one thread: glibc gives each thread
    # its own malloc arena and keeps what a pass freed there, so passes that land on different
    # pool threads (the pool starts another when the last has not yet marked itself idle, as
    # happens on a loaded machine) hold a pass's memory each: 121 MB became 170 at 1M rows.
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="plan-source")
    )
    try:
        # streamed: counted here, read again by the plan and the preflight, never held
        census = await asyncio.to_thread(Census.of, source)
        print(f"source: {source.description} ({census.counts.items} rows)", file=out)
        known = await asyncio.to_thread(known_enrollment_ids, journal_paths(config))
        checked, plan = await plan_and_preflight(
            client, source, config, known_ids=known, census=census
        )
    except CanvasError as exc:
        print(error_line(str(exc)), file=sys.stderr)
        return ExitCode.ABORTED
    finally:
        await client.aclose()
    for line in format_preflight(checked):
        print(line, file=out)
    for line in format_plan(plan):
        print(line, file=out)
    # in the thread that read the source for the plan (above), not a second arena
    json_path, csv_path = await asyncio.to_thread(
        write_plan, plan, prefix, extra={"preflight": checked.to_json()}
    )
    print(f"wrote {json_path} and {csv_path}", file=out)
    with contextlib.suppress(Exception):
        out.flush()
    # as `check`: problems in the source or Canvas's objects are 2; so is a brake that `sync`
    # would refuse on (it exits 2 there)
    problems = bool(checked.findings) or plan.brake.tripped
    return ExitCode.USAGE if problems else ExitCode.OK
