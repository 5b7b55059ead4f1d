"""Command line: one parser, each sub-command implemented in the module that owns it.

Modules are imported lazily so `canvas-tui sync` never pays for (or depends on) Textual.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from enum import IntEnum

from canvas_tui import __version__


class ExitCode(IntEnum):
    OK = 0  # every record done (or skipped on purpose)
    RECORDS_FAILED = 1  # the run finished, some records failed
    USAGE = 2  # usage, config or input error: nothing was sent
    ABORTED = 3  # the run stopped early: token rejected, unsafe URL, cancelled


# sub-command -> "module:function"; each function takes the parsed args and returns an exit code.
COMMANDS = {
    "console": "canvas_tui.tui.app:main",
    "demo": "canvas_tui.tui.app:demo_main",
    "sync": "canvas_tui.headless:main",
    "plan": "canvas_tui.engine.plan:main",
    "check": "canvas_tui.checks:main",
    "init": "canvas_tui.config:init_main",
    "simulate": "canvas_tui.simulator.serve:main",
}


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", "-c", metavar="FILE", help="TOML config (default: ./canvas-tui.toml)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canvas-tui",
        description="Sync SIS enrollments into Canvas LMS: an operator console and a headless job.",
    )
    parser.add_argument("--version", action="version", version=f"canvas-tui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    console = sub.add_parser("console", help="the operator console (the default)")
    _add_common(console)
    console.add_argument("source", nargs="?", help="enrollments.csv (default: the config's source)")
    console.add_argument(
        "--journal", metavar="FILE", help="journal to write, or to open and triage"
    )
    console.add_argument("--read-only", action="store_true", help="inspect only; never write")
    console.add_argument(
        "--plan", action="store_true", help="diff against live rosters first; approve the plan"
    )

    demo = sub.add_parser("demo", help="the console on the built-in simulator and sample data")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--time-scale", type=float, default=1.0)
    demo.add_argument("--throttle-status", type=int, choices=(403, 429), default=429)

    sync = sub.add_parser("sync", help="run the sync headless (cron, Kubernetes)")
    _add_common(sync)
    sync.add_argument("source", nargs="?", help="enrollments.csv (default: the config's source)")
    sync.add_argument("--journal", metavar="FILE", help="journal file; resumes if it exists")
    sync.add_argument("--report", metavar="FILE", help="write a JSON report (+ failures CSV)")
    sync.add_argument(
        "--dry-run",
        action="store_true",
        help="validate every row and count what each would ask of Canvas; no HTTP at all "
        "(`canvas-tui plan` diffs against the live rosters)",
    )
    sync.add_argument("--max-concurrency", type=int, metavar="N", help="cap requests in flight")
    sync.add_argument(
        "--plan",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="diff against live rosters first and send only the changes (default: when cheaper)",
    )
    sync.add_argument("--allow-drops", type=int, metavar="N", help="permit up to N drops")
    sync.add_argument(
        "--retry-failed",
        action="store_true",
        help="when resuming a journal, send every failed record again (records that failed "
        "for network or server errors are always retried on resume)",
    )
    sync.add_argument("--log-format", choices=("auto", "rich", "json"), default="auto")

    plan = sub.add_parser("plan", help="diff the source against live rosters; change nothing")
    _add_common(plan)
    plan.add_argument("source", nargs="?")
    plan.add_argument("--out", metavar="PREFIX", help="write PREFIX.json and PREFIX.csv")

    check = sub.add_parser("check", help="validate config, source and connectivity (GET only)")
    _add_common(check)
    check.add_argument("source", nargs="?")
    check.add_argument("--deep", action="store_true", help="check every user/course/section")

    init = sub.add_parser("init", help="write a starter config")
    init.add_argument("path", nargs="?", default="canvas-tui.toml")
    init.add_argument("--base-url")
    init.add_argument("--token-file")
    init.add_argument("--source")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.add_argument("--no-input", action="store_true", help="never ask; use flags and defaults")

    sim = sub.add_parser("simulate", help="serve the built-in Canvas simulator on loopback")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8900)
    sim.add_argument("--time-scale", type=float, default=1.0)
    sim.add_argument("--throttle-status", type=int, choices=(403, 429), default=429)
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--hwm", type=float, default=600.0)
    sim.add_argument("--post-cost", type=float, help="fixed cost of an enrollment POST")
    sim.add_argument("--latency", type=float, help="mean latency of a request, in seconds")
    sim.add_argument(
        "--faults",
        metavar="SPEC",
        help="e.g. 500=0.05,503=0.02,reset=0.02,slow=0.01,shape=0.02,drip=0.01",
    )
    sim.add_argument("--token", action="append", help="accepted token (repeatable)")
    sim.add_argument(
        "--no-sis-token",
        action="append",
        help="accepted token of an admin without read_sis/manage_sis: answers carry no SIS ids "
        "(repeatable)",
    )
    return parser


def command_line(argv: Sequence[str]) -> list[str]:
    """`canvas-tui [SOURCE] [options]` means the console: name it when no command is given."""
    args = list(argv)
    if not args or (args[0] not in COMMANDS and args[0] not in ("-h", "--help", "--version")):
        return ["console", *args]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(command_line(sys.argv[1:] if argv is None else argv))
    module_name, func_name = COMMANDS[args.command].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(args))
