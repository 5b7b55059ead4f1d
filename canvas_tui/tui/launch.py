"""The console's entry points: `canvas-tui [console]` and `canvas-tui demo`.

cli.py imports this module only when one of those commands runs, so `canvas-tui sync` and the
other headless commands never import Textual. Everything that can be refused (config, keymap,
source, journal, the engine process) is checked here before the app draws anything.

Start-up is on the operator's clock: the engine process is spawned as soon as the config is
read, and Textual and the app (~0.4 s of imports) load while the engine imports its own modules
and opens the journal. The HTTP client, the plan and SQLAlchemy (an SQL source's) load in the
engine only, Textual in the console only (tests/test_import_hygiene.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from canvas_tui.exit_codes import ExitCode, error_line
from canvas_tui.tui.actions import check_keymap

if TYPE_CHECKING:
    from canvas_tui.config import Config, SourceConfig
    from canvas_tui.engine.trace import TraceScope
    from canvas_tui.tui.session import ConsoleSession


def _fail(message: str) -> int:
    print(error_line(message), file=sys.stderr)
    return int(ExitCode.USAGE)


def console_main(args: argparse.Namespace) -> int:
    """`canvas-tui [console] [SOURCE] [--config] [--journal] [--read-only]`, or
    `console --attach JOURNAL [--control]`."""
    if getattr(args, "attach", None):
        return attach_main(args)
    if getattr(args, "control", False):
        return _fail(
            "--control goes with --attach JOURNAL: a console that runs its own engine "
            "has every control already"
        )
    from canvas_tui.config import ConfigError, load_config
    from canvas_tui.engine.journal import JournalError
    from canvas_tui.engine.protocol import EngineError, EngineSpec
    from canvas_tui.engine.remote import spawn_engine
    from canvas_tui.records import InputError
    from canvas_tui.sources import open_source

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _fail(str(exc))
    if getattr(args, "via", None):  # over [sync] via, as `sync --via`
        import dataclasses

        config = dataclasses.replace(config, sync=dataclasses.replace(config.sync, via=args.via))
    if config.path is None and not args.source and not args.journal:
        return _fail(
            "no config found ($CANVAS_TUI_CONFIG, ./canvas-tui.toml or the user config "
            "directory). New here? `canvas-tui demo` tries the console on a built-in Canvas "
            "simulator; `canvas-tui init` writes a config for your Canvas"
        )
    keymap = dict(config.keys)
    problems = check_keymap(keymap)
    if problems:
        return _fail("; ".join(problems))
    journal = Path(args.journal) if args.journal else config.sync.journal
    existing = journal is not None and journal.exists()
    source = None
    if args.source or not existing:
        try:
            source = open_source(args.source or config.source)
        except InputError as exc:
            if not args.read_only:
                return _fail(str(exc))
    for warning in config.warnings:
        print(f"canvas-tui: warning: {warning}", file=sys.stderr)
    if args.read_only and not existing:
        return _fail("--read-only inspects an existing journal: give --journal FILE")
    if journal is not None and not args.read_only:
        from canvas_tui.outputs import journal_path_problem

        if problem := journal_path_problem(journal):
            return _fail(f"journal {journal}: {problem}")
    session: ConsoleSession
    try:
        # opened before the UI starts, so a bad config or journal is a plain message and exit 2
        if args.read_only:
            from canvas_tui.engine.session import open_session

            session = open_session(config, source=source, journal_path=journal, read_only=True)
        else:
            # the engine sends from a process of its own: drawing and sending never share an
            # interpreter, and a console that dies leaves the engine to close the journal
            engine = spawn_engine(
                EngineSpec(
                    config,
                    source=(args.source or config.source) if source is not None else None,
                    journal_path=journal,
                )
            )
            import canvas_tui.tui.app  # noqa: F401 - Textual loads while the engine starts

            session = engine.wait()
    except (ConfigError, InputError, JournalError, EngineError) as exc:
        return _fail(str(exc))
    from canvas_tui.tui.app import ConsoleApp

    async def opener() -> ConsoleSession:
        return session

    label = source.description if source is not None else str(journal or "")
    app = ConsoleApp(
        opener,
        description=label,
        read_only=args.read_only,
        keymap=keymap,
        # READY until the start key, unless the config says otherwise; an existing journal
        # always opens for triage
        autostart=config.console.autostart and source is not None and not existing,
        journal_path=session.journal_path,
        trace_scope=_trace_scope(config, args.source or config.source),
        plan=console_plan(config, asked=args.plan),
    )
    return app.run() or 0


def console_plan(config: Config, *, asked: bool) -> bool | None:
    """What the console asks `plan_session` for; a plan needs the operator's approval here.
    True for --plan; None (the config decides, as in `sync`) when a drop policy or a SIS import
    needs a plan, or `via = "auto"` leaves the channel to the figures (sync's own rule then
    picks plan mode, and the channel, or full mode by REST; READY says which); False for none
    (otherwise the console never plans only because it is cheaper)."""
    from canvas_tui.config import import_needs_plan

    if asked:
        return True
    via = config.sync.via
    if config.plan.drop_policy != "never" or import_needs_plan(via) or via == "auto":
        return None
    return False


def _trace_scope(config: Config, source: SourceConfig | str) -> TraceScope:
    """Where the trace key (T) looks: every run of the journal directory, the source."""
    from canvas_tui.engine.trace import TraceScope
    from canvas_tui.paths import default_journal_dir

    fixed = (config.sync.journal,) if config.sync.journal is not None else ()
    return TraceScope(config.sync.journal_dir or default_journal_dir(), fixed, source)


def attach_main(args: argparse.Namespace) -> int:
    """`canvas-tui console --attach JOURNAL [--control]`: follow the run another process (a
    `sync`, a `watch`) drives on JOURNAL, over the socket it serves beside it
    (engine/attach.py). Nothing is loaded or sent from here; with --control the operator's
    commands go to that run's engine."""
    from canvas_tui.config import ConfigError, load_config
    from canvas_tui.engine.attach import attach_engine
    from canvas_tui.engine.protocol import EngineError

    if args.source or args.journal or args.plan or getattr(args, "via", None):
        return _fail("--attach follows a run as it is: give no SOURCE, --journal, --plan or --via")
    if args.read_only and args.control:
        return _fail("--read-only and --control contradict each other (read-only is the default)")
    journal = Path(args.attach).expanduser()
    if not journal.exists():
        return _fail(f"no journal {journal}")
    try:
        # only for the operator's keymap: the run's own config is the host's
        config = load_config(args.config)
    except ConfigError as exc:
        return _fail(str(exc))
    keymap = dict(config.keys)
    if problems := check_keymap(keymap):
        return _fail("; ".join(problems))
    try:
        session = attach_engine(journal, control=args.control)
    except EngineError as exc:
        return _fail(str(exc))
    from canvas_tui.tui.app import ConsoleApp

    async def opener() -> ConsoleSession:
        return session

    app = ConsoleApp(
        opener,
        description=f"attached · {journal}",
        read_only=not args.control,
        keymap=keymap,
        journal_path=session.journal_path,
        attached=True,
    )
    try:
        return app.run() or 0
    finally:
        with contextlib.suppress(Exception):  # a no-op after a quit: only disconnects
            asyncio.run(session.close())


def demo_main(args: argparse.Namespace) -> int:
    """`canvas-tui demo`: the console on the built-in simulator and the example data. The
    simulator runs inside the engine's process, so its work never competes with drawing."""
    import tempfile

    from canvas_tui.config import load_config
    from canvas_tui.resources import ResourceMissing, resource_path
    from canvas_tui.simulator import DEMO_TOKEN
    from canvas_tui.simulator.demo import DEMO_URL

    try:
        csv_path = resource_path("demo.csv")  # inside the package when installed from a wheel
    except ResourceMissing as exc:
        return _fail(str(exc))
    config = load_config(None, env={"CANVAS_API_TOKEN": DEMO_TOKEN, "CANVAS_BASE_URL": DEMO_URL})
    scratch = Path(tempfile.mkdtemp(prefix="canvas-tui-demo-"))
    try:
        return _demo(args, config, csv_path, scratch)
    finally:
        # the demo's journal is a throwaway (several MB a run): nothing is left in the temp dir
        shutil.rmtree(scratch, ignore_errors=True)


def _demo(args: argparse.Namespace, config: Config, csv_path: Path, scratch: Path) -> int:
    import dataclasses
    import functools

    from canvas_tui.engine.protocol import EngineError, EngineSpec
    from canvas_tui.engine.remote import spawn_engine
    from canvas_tui.engine.trace import TraceScope
    from canvas_tui.simulator.demo import DEMO_SIS_IMPORT_RATE, demo_transport

    journal = scratch / "journal.sqlite"
    via = args.via
    rate = args.sis_import_rate or DEMO_SIS_IMPORT_RATE
    if via != "rest":
        # a bulk load: the plan's changes go in one SIS import (it needs the plan, which the
        # console shows for approval first), its panel moving at the simulator's import rate
        config = dataclasses.replace(config, sync=dataclasses.replace(config.sync, via=via))
    spec = EngineSpec(
        config,
        source=csv_path,
        journal_path=journal,
        # the engine builds the simulator in its own process, from this (pickled by reference)
        transport=functools.partial(
            demo_transport, args.seed, args.time_scale, args.throttle_status, rate
        ),
    )
    try:
        engine = spawn_engine(spec)
        from canvas_tui.tui.app import ConsoleApp  # Textual loads while the engine starts

        session = engine.wait()
    except EngineError as exc:
        return _fail(str(exc))

    async def opener() -> ConsoleSession:
        return session

    app = ConsoleApp(
        opener,
        description=f"demo · {csv_path.name} · simulator seed {args.seed}"
        + (f" · via {via}" if via != "rest" else ""),
        journal_path=None,  # a throwaway: never offered for resuming
        # ... but the trace key (T) reads it and the demo data, or it would find no one
        trace_scope=TraceScope(None, (journal,), csv_path),
        autostart=True,  # the demo is there to be watched; its Canvas is the simulator
        plan=via != "rest",  # an import carries a plan's changes
    )
    try:
        return app.run() or 0
    finally:
        # the engine process holds the journal open until closed (a no-op after a quit)
        with contextlib.suppress(Exception):
            asyncio.run(session.close())
