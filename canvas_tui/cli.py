"""Command line: one parser, each sub-command implemented in the module that owns it.

Modules are imported lazily so `canvas-tui sync` never pays for (or depends on) Textual.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from canvas_tui import __version__
from canvas_tui.exit_codes import ExitCode, error_line

# sub-command -> "module:function"; each function takes the parsed args and returns an exit code.
COMMANDS = {
    "console": "canvas_tui.tui.launch:console_main",
    "demo": "canvas_tui.tui.launch:demo_main",
    "sync": "canvas_tui.headless:main",
    "watch": "canvas_tui.commands.watch:main",
    "plan": "canvas_tui.commands.plan:main",
    "check": "canvas_tui.commands.check:main",
    "trace": "canvas_tui.commands.trace:main",
    "serve": "canvas_tui.tui.serve:main",
    "init": "canvas_tui.config:init_main",
    "simulate": "canvas_tui.simulator.serve:main",
    "completion": "canvas_tui.cli:completion_main",
}

# What each command's exit status means; printed by its --help and pinned by tests/test_cli.py.
EXIT_CODES: dict[str, dict[int, str]] = {
    "console": {
        0: "quit (whatever the records' state: the journal keeps it)",
        2: "usage, config, source or journal error; nothing was sent "
        "(--attach: no run serves the journal, or not safely)",
        3: "the run was aborted (token refused, engine stopped)",
    },
    "demo": {0: "quit", 2: "usage error or the demo data is missing", 3: "the engine stopped"},
    "sync": {
        0: "every record done or skipped",
        1: "the run finished; some records failed (see --report)",
        2: "usage, config, source or output path error, or the drop brake refused; "
        "nothing was sent (--dry-run: invalid rows, as `check`)",
        3: "aborted: token refused, unsafe URL, Canvas unreachable, or a signal",
    },
    "watch": {
        0: "stopped by SIGTERM or SIGINT: requests in flight finished, the journal is closed",
        2: "usage, config or journal error, or a source that cannot be read as configured "
        "(a missing file, a bad header, a query the database refuses) at start; nothing was "
        "sent (a database server that is down is waited out)",
        3: "aborted: token refused, the journal could not be written, or an internal error",
    },
    "plan": {
        0: "planned; nothing wrong",
        2: "usage, config or source error, or the preflight found problems or the brake "
        "would refuse the plan",
        3: "Canvas could not be read (token, network)",
    },
    "check": {
        0: "all well",
        2: "problems in the config, the source or the courses it names",
        3: "Canvas cannot be reached or refuses the token",
    },
    "trace": {
        0: "printed: records, source rows or a Canvas user name the person",
        1: "nothing names the person (as grep)",
        2: "usage or config error",
        3: "--live and Canvas could not be read (token, network)",
    },
    "serve": {0: "stopped (Ctrl+C, SIGTERM)", 2: "usage or config error, or no journal"},
    "init": {0: "written (or --example printed)", 2: "the file exists, or an answer is invalid"},
    "simulate": {0: "stopped", 2: "usage error"},
    "completion": {0: "printed"},
}

ENVIRONMENT = {
    "CANVAS_API_TOKEN": "the API token (overrides the config's token_file / token_command)",
    "CANVAS_BASE_URL": "the Canvas base URL (overrides [canvas] base_url)",
    "CANVAS_TUI_CONFIG": "the config file, when --config is not given",
    "CANVAS_TUI_PROGRESS_INTERVAL": "seconds between JSON progress lines (sync: default 5, watch: 60)",
    "XDG_CONFIG_HOME / XDG_STATE_HOME": "where the user config and the journals live",
    "NO_COLOR": "no colours in any output",
}


def _epilog(command: str | None) -> str:
    lines = []
    if command is None:
        lines.append(
            "exit codes: see each command's --help (0 ok, 1 some records failed, "
            "2 usage/config/input, nothing sent, 3 aborted)."
        )
    else:
        lines.append("exit codes:")
        lines += [f"  {code}  {meaning}" for code, meaning in EXIT_CODES[command].items()]
    lines.append("")
    lines.append("environment:")
    lines += [f"  {name:<34} {meaning}" for name, meaning in ENVIRONMENT.items()]
    lines.append("")
    lines.append(
        "config: --config FILE, else $CANVAS_TUI_CONFIG, ./canvas-tui.toml, then "
        "~/.config/canvas-tui/canvas-tui.toml. Shell completion: canvas-tui completion bash"
    )
    return "\n".join(lines)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        help="TOML config (default: $CANVAS_TUI_CONFIG, ./canvas-tui.toml, the user config dir)",
    )


def _add_logging(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log-file",
        metavar="FILE",
        help="append logs (with -v: every HTTP request and its status) to FILE; "
        "the token is never logged",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log each HTTP request (to --log-file, else stderr); -vv adds debug detail",
    )


def _sub(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str
) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=_epilog(name),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canvas-tui",
        description="Sync SIS enrollments into Canvas LMS: an operator console and a headless job. "
        "New here? `canvas-tui demo` tries the console on a built-in Canvas simulator; "
        "`canvas-tui init` writes a config for your Canvas.",
        epilog=_epilog(None),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"canvas-tui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    console = _sub(sub, "console", "the operator console (the default)")
    _add_common(console)
    console.add_argument("source", nargs="?", help="enrollments.csv (default: the config's source)")
    console.add_argument(
        "--journal", metavar="FILE", help="journal to write, or to open and triage"
    )
    console.add_argument("--read-only", action="store_true", help="inspect only; never write")
    console.add_argument(
        "--plan", action="store_true", help="diff against live rosters first; approve the plan"
    )
    console.add_argument(
        "--via",
        choices=("rest", "sis-import", "auto"),
        default=None,
        help="as `sync --via`: rest, one SIS import of the plan's changes (a plan to approve "
        "first), or auto: as sync decides, shown on the plan or READY screen "
        "(default: [sync] via, else rest)",
    )
    console.add_argument(
        "--attach",
        metavar="JOURNAL",
        help="follow the run another process drives on JOURNAL (a `sync`, a `watch`), read-only",
    )
    console.add_argument(
        "--control",
        action="store_true",
        help="with --attach: pause, resume, retry and skip through the running engine",
    )

    demo = _sub(sub, "demo", "the console on the built-in simulator and sample data")
    demo.add_argument("--seed", type=int, default=7, help="the simulated world's seed (default 7)")
    demo.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="run the simulated Canvas this many times faster (default 1)",
    )
    demo.add_argument(
        "--throttle-status",
        type=int,
        choices=(403, 429),
        default=429,
        help="how the simulator refuses when throttled: 429 (hosted Canvas) or 403",
    )
    demo.add_argument(
        "--via",
        choices=("rest", "sis-import", "auto"),
        default="rest",
        help="how the changes go: rest (default), or sis-import / auto for a bulk load "
        "through the SIS Import API (a plan first, then the import panel moves)",
    )
    demo.add_argument(
        "--sis-import-rate",
        type=float,
        default=None,
        metavar="ROWS",
        help="rows the simulated Canvas imports per second (default: slow enough to watch)",
    )

    sync = _sub(sub, "sync", "run the sync headless (cron, Kubernetes)")
    _add_common(sync)
    sync.add_argument("source", nargs="?", help="enrollments.csv (default: the config's source)")
    sync.add_argument("--journal", metavar="FILE", help="journal file; resumes if it exists")
    sync.add_argument("--report", metavar="FILE", help="write a JSON report (+ failures CSV)")
    sync.add_argument(
        "--report-records",
        choices=("all", "not-done", "failed", "none"),
        default="all",
        help="which per-record rows the JSON report lists (default all; not-done: all but "
        "the done ones; the failures CSV always has the failed ones)",
    )
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
    sync.add_argument(
        "--via",
        choices=("rest", "sis-import", "auto"),
        default=None,
        help="send the changes by REST, as one SIS import of the plan's changes (rows an import "
        "cannot express still go by REST), or auto: whichever is expected to be faster "
        "(default: [sync] via, else rest)",
    )
    sync.add_argument("--allow-drops", type=int, metavar="N", help="permit up to N drops")
    sync.add_argument(
        "--first",
        metavar="COURSE",
        action="append",
        default=[],
        help="send this course's pending records before any other, and the rest only once "
        "they have all ended (a SIS course id, or a Canvas id; repeatable, in order)",
    )
    sync.add_argument(
        "--retry-failed",
        action="store_true",
        help="when resuming a journal, send every failed record again (records that failed "
        "for network or server errors are always retried on resume)",
    )
    sync.add_argument(
        "--no-attach",
        action="store_true",
        help="serve no socket for `console --attach` (by default consoles of the same user "
        "may follow the run, and with --control pause, resume or retry it)",
    )
    sync.add_argument(
        "--log-format",
        choices=("auto", "rich", "json"),
        default="auto",
        help="progress as a bar (rich) or JSON lines (json); auto: a bar on a terminal",
    )
    _add_logging(sync)

    watch = _sub(sub, "watch", "a service: follow a changing source into Canvas, change by change")
    _add_common(watch)
    watch.add_argument(
        "source",
        nargs="?",
        help="an enrollments.csv to follow, or a drop folder (default: the config's source)",
    )
    watch.add_argument(
        "--journal", metavar="FILE", help="the service's journal (default: [watch] journal)"
    )
    watch.add_argument(
        "--interval", type=float, metavar="S", help="seconds between polls ([watch] interval)"
    )
    watch.add_argument("--max-concurrency", type=int, metavar="N", help="cap requests in flight")
    watch.add_argument(
        "--allow-drops", type=int, metavar="N", help="let up to N drops at once past the brake"
    )
    watch.add_argument(
        "--health",
        type=int,
        metavar="PORT",
        help="serve /healthz and /readyz on 127.0.0.1:PORT",
    )
    watch.add_argument(
        "--no-attach",
        action="store_true",
        help="serve no socket for `console --attach` (by default consoles of the same user "
        "may follow the service, and with --control pause, resume or retry it)",
    )
    _add_logging(watch)

    plan = _sub(sub, "plan", "diff the source against live rosters; change nothing")
    _add_common(plan)
    plan.add_argument("source", nargs="?", help="enrollments.csv (default: the config's source)")
    plan.add_argument("--out", metavar="PREFIX", help="write PREFIX.json and PREFIX.csv")
    _add_logging(plan)

    check = _sub(sub, "check", "validate config, source and connectivity (GET only)")
    _add_common(check)
    check.add_argument("source", nargs="?", help="enrollments.csv (default: the config's source)")
    check.add_argument(
        "--deep",
        action="store_true",
        help="check every user/course/section and estimate the sync's time",
    )
    _add_logging(check)

    trace = _sub(sub, "trace", "one person across every run's journal, the source and Canvas")
    _add_common(trace)
    trace.add_argument("user", help="a SIS user id, a login id, or a Canvas user id")
    trace.add_argument(
        "--journal",
        metavar="FILE",
        action="append",
        default=[],
        help="search this journal too (repeatable)",
    )
    trace.add_argument(
        "--journal-dir",
        metavar="DIR",
        help="the journals to search (default: the config's journal_dir, else the user state "
        "directory's runs/)",
    )
    trace.add_argument(
        "--source", metavar="FILE", help="the source to read (default: the config's)"
    )
    trace.add_argument("--no-source", action="store_true", help="read the journals only")
    trace.add_argument(
        "--live",
        action="store_true",
        help="also ask Canvas (GET only): who the id names, under every id they go by, and "
        "their enrollments in every state",
    )
    trace.add_argument("--json", action="store_true", help="one JSON document on stdout")
    _add_logging(trace)

    serve = _sub(
        sub,
        "serve",
        "the console in a browser, behind an access token (read-only unless --control)",
    )
    _add_common(serve)
    serve.add_argument(
        "--journal", metavar="FILE", help="the run to serve (default: the latest journal)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    serve.add_argument("--port", type=int, default=8910, help="port (default 8910)")
    serve.add_argument(
        "--control",
        action="store_true",
        help="tabs may pause, resume, retry and skip through the running engine (default: "
        "read-only)",
    )
    serve.add_argument(
        "--allow-remote",
        action="store_true",
        help="let --host be an address beyond this machine (put TLS in front of it)",
    )

    init = _sub(sub, "init", "write a starter config")
    init.add_argument(
        "path", nargs="?", default="canvas-tui.toml", help="where (default ./canvas-tui.toml)"
    )
    init.add_argument("--base-url", help="your Canvas, e.g. https://canvas.example.edu")
    init.add_argument("--token-file", help="a file holding the API token (chmod 600)")
    init.add_argument("--source", help="the enrollments.csv to sync")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.add_argument("--no-input", action="store_true", help="never ask; use flags and defaults")
    init.add_argument(
        "--example", action="store_true", help="print the example config with every key, documented"
    )

    sim = _sub(sub, "simulate", "serve the built-in Canvas simulator on loopback")
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback only)")
    sim.add_argument("--port", type=int, default=8900, help="port (default 8900)")
    sim.add_argument(
        "--time-scale", type=float, default=1.0, help="run this many times faster (default 1)"
    )
    sim.add_argument(
        "--throttle-status",
        type=int,
        choices=(403, 429),
        default=429,
        help="the status of a throttled answer: 429 (hosted Canvas) or 403",
    )
    sim.add_argument("--seed", type=int, default=7, help="the generated world's seed (default 7)")
    sim.add_argument(
        "--hwm", type=float, default=600.0, help="the throttle bucket's high-water mark (600)"
    )
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

    sim.add_argument(
        "--sis-import-rate",
        type=float,
        default=250.0,
        metavar="ROWS",
        help="rows a SIS import applies per world second (default 250; scaled by --time-scale)",
    )
    sim.add_argument(
        "--sis-import-start-delay",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="world seconds a new SIS import waits for its job to start (default 2)",
    )
    sim.add_argument(
        "--no-sis-imports",
        action="store_true",
        help="the root account has SIS imports disabled (create answers 403)",
    )

    completion = _sub(sub, "completion", "print a shell completion script")
    completion.add_argument(
        "shell",
        choices=("bash", "zsh"),
        help='bash: eval "$(canvas-tui completion bash)"; zsh: the same in ~/.zshrc',
    )
    return parser


def completion_main(args: argparse.Namespace) -> int:
    """Completion from the parser itself, so it never drifts from the options."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    cases = []
    for name, command in sub.choices.items():
        options = sorted(o for a in command._actions for o in a.option_strings)
        cases.append(f'    {name}) opts="{" ".join(options)}" ;;')
    script = _COMPLETION.format(commands=" ".join(sub.choices), cases="\n".join(cases))
    if args.shell == "zsh":
        script = "autoload -U +X bashcompinit && bashcompinit\n" + script
    print(script)
    return ExitCode.OK


_COMPLETION = """_canvas_tui() {{
  local cur=${{COMP_WORDS[COMP_CWORD]}} cmd=${{COMP_WORDS[1]}} opts=""
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "{commands} --help --version" -- "$cur")); return
  fi
  case "$cmd" in
{cases}
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}}
complete -o filenames -F _canvas_tui canvas-tui"""


def command_line(argv: Sequence[str]) -> list[str]:
    """`canvas-tui [SOURCE] [options]` means the console: name it when no command is given."""
    args = list(argv)
    if not args or (args[0] not in COMMANDS and args[0] not in ("-h", "--help", "--version")):
        return ["console", *args]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from canvas_tui.startup import skip_unused_imports

    skip_unused_imports()
    parser = build_parser()
    args = parser.parse_args(command_line(sys.argv[1:] if argv is None else argv))
    module_name, func_name = COMMANDS[args.command].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    if not (getattr(args, "verbose", 0) or getattr(args, "log_file", None)):
        return int(func(args))
    from canvas_tui.logs import remove_logging, setup_logging

    try:
        handler = setup_logging(args.log_file, args.verbose)
    except OSError as exc:
        print(error_line(f"--log-file {args.log_file}: {exc.strerror or exc}"), file=sys.stderr)
        return ExitCode.USAGE
    try:
        return int(func(args))
    finally:
        remove_logging(handler)
