"""`canvas-tui check`: is the config sound, does the source read, can this token see the courses?

Only GET requests are sent: the token's own user, then each distinct course (or section, for
rows that name only a section) in the source. Exit 0 when all is well, 2 for config or input
problems (nothing can be trusted to run), 3 when Canvas cannot be reached or refuses the token.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TextIO

import httpx

from canvas_tui.canvas.client import CanvasClient
from canvas_tui.canvas.errors import CanvasError, Category, hint_for
from canvas_tui.canvas.ids import path_segment
from canvas_tui.config import Config, ConfigError, check_base_url, load_config
from canvas_tui.engine.preflight import deep_check, format_preflight
from canvas_tui.exit_codes import ExitCode, error_line
from canvas_tui.records import EnrollmentRecord, InputError, RowProblem, Source, SourceItem
from canvas_tui.sources import open_source

COURSE_CONCURRENCY = 8  # the governor bounds requests anyway; this bounds the task count
SHOWN = 10  # examples per list in the report

NOT_FOUND = frozenset({Category.COURSE_NOT_FOUND, Category.SECTION_NOT_FOUND, Category.NOT_FOUND})
UNREACHABLE = frozenset({Category.AUTH, Category.NETWORK, Category.SERVER, Category.THROTTLED})


@dataclass
class SourceSummary:
    description: str
    records: int = 0
    failed: int = 0
    skipped: int = 0
    warned: int = 0
    by_field: Counter[str] = field(default_factory=Counter)
    examples: dict[str, RowProblem] = field(default_factory=dict)  # first problem per field
    # ("course" | "section", API id) -> the first line naming it
    contexts: dict[tuple[str, str], int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # role names that are no built-in role word (sent as custom roles) -> the first line naming it
    custom_roles: dict[str, int] = field(default_factory=dict)

    def add(self, item: SourceItem) -> None:
        if isinstance(item, EnrollmentRecord):
            self.records += 1
            self.warned += bool(item.warnings)
            if item.enrollment_type is None and item.role_id is None and item.role:
                self.custom_roles.setdefault(item.role, item.provenance.line)
            if item.course is not None:
                self.contexts.setdefault(("course", item.course), item.provenance.line)
            elif item.section is not None:
                self.contexts.setdefault(("section", item.section), item.provenance.line)
            return
        if item.skip:
            self.skipped += 1
            kind = "duplicate"
        else:
            self.failed += 1
            kind = item.field or "row"
        self.by_field[kind] += 1
        self.examples.setdefault(kind, item)


def summarize(source: Source) -> SourceSummary:
    summary = SourceSummary(source.description)
    for item in source:
        summary.add(item)
    summary.notes = list(getattr(source, "notes", []))
    return summary


@dataclass
class Reachability:
    who: str = ""
    visible: list[tuple[str, str]] = field(default_factory=list)
    concluded: list[tuple[str, str]] = field(default_factory=list)
    missing: list[tuple[tuple[str, str], str]] = field(default_factory=list)  # (context, why)
    unknown_roles: list[str] = field(default_factory=list)  # custom role names Canvas lacks
    roles_unchecked: str | None = None  # why the account's roles could not be listed
    error: CanvasError | None = None  # what stopped the check (token refused, unreachable)
    sis_access: str = ""  # what the token may read of SIS ids (see `sis_access`)


async def reach(
    config: Config,
    contexts: Iterable[tuple[str, str]],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    custom_roles: Iterable[str] = (),
) -> Reachability:
    """Who the token is, then a GET of every course/section and, when the source names custom
    roles, of the account's roles; never anything but GETs."""
    out = Reachability()
    try:
        client = CanvasClient.from_config(config, transport, max_attempts=3)
    except ConfigError as exc:  # e.g. a token with a line break in it
        # the URL and the token's presence were checked: what is left is the client's refusal
        refused = exc.__cause__
        out.error = (
            refused if isinstance(refused, CanvasError) else CanvasError(Category.UNSAFE, str(exc))
        )
        return out
    async with client:
        try:
            me = await client.whoami()
        except CanvasError as exc:
            out.error = exc
            return out
        out.who = f"{me.get('name', '?')} (user {me.get('id', '?')})"
        limit = asyncio.Semaphore(COURSE_CONCURRENCY)

        async def one(context: tuple[str, str]) -> None:
            kind, ref = context
            async with limit:
                if out.error is not None:
                    return
                try:
                    if kind == "section":
                        await client.get_section(ref)
                    else:
                        course = await client.get_course(ref)
                        if course.get("workflow_state") == "completed":
                            out.concluded.append(context)
                except CanvasError as exc:
                    if exc.category in UNREACHABLE:
                        out.error = out.error or exc
                    else:
                        out.missing.append((context, f"{exc.category}: {exc.message}"))
                    return
                out.visible.append(context)

        await asyncio.gather(*(one(c) for c in contexts))
        if out.error is None and out.visible:
            out.sis_access = await sis_access(client, out.visible[0])
        wanted = sorted(set(custom_roles))
        if wanted and out.error is None:
            # as the sync resolves them (engine/actions.py): active roles of the root account
            try:
                roles = await client.list_roles("self")
            except CanvasError as exc:
                if exc.fatal:
                    out.error = exc
                    return out
                out.roles_unchecked = f"{exc.category}: {exc.message}"
            else:
                known = {
                    str(r["role"])
                    for r in roles
                    if r.get("workflow_state", "active") in ("active", "built_in") and "role" in r
                }
                out.unknown_roles = [name for name in wanted if name not in known]
    return out


async def sis_access(client: CanvasClient, context: tuple[str, str]) -> str:
    """What the token may read of SIS data, from one enrollment of a visible course or section:
    Canvas leaves `sis_user_id`/`sis_section_id` out without read_sis and `sis_import_id` out
    without manage_sis (instructure/canvas-lms lib/api/v1/enrollment.rb). One GET."""
    kind, ref = context
    params = [("per_page", 1), *(("state[]", s) for s in ("active", "inactive", "completed"))]
    try:
        response = await client.request(
            "GET", f"{kind}s/{path_segment(ref)}/enrollments", params=params
        )
    except CanvasError as exc:
        return f"unknown (could not list enrollments of {kind} {ref}: {exc.message})"
    sample = response.json()
    if not isinstance(sample, list) or not sample or not isinstance(sample[0], dict):
        return f"unknown ({kind} {ref} has no enrollment to look at)"
    enrollment = sample[0]
    read_sis = "sis_user_id" in enrollment and "sis_section_id" in enrollment
    manage_sis = "sis_import_id" in enrollment
    if read_sis:
        sis = "SIS ids: readable (read_sis)"
    else:
        sis = (
            "SIS ids: NOT readable (no read_sis): rosters are matched by Canvas ids, each SIS "
            "id in the source looked up once"
        )
    imports = (
        "SIS import ids: readable (manage_sis)"
        if manage_sis
        else (
            "SIS import ids: NOT readable (no manage_sis): plan mode treats SIS-imported "
            "enrollments as manual and never drops them"
        )
    )
    return f"{sis}; {imports}"


class Report:
    """Plain lines for a terminal or a log; warnings and problems are prefixed to grep for."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, text: str = "") -> None:
        print(text, file=self.out)


def main(
    args: argparse.Namespace,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    out: TextIO | None = None,
) -> int:
    say = Report(out or sys.stdout)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        say(f"config: error: {exc}")
        return ExitCode.USAGE
    say(f"config: {config.path or 'none (defaults + environment)'}")
    for warning in config.warnings:
        say(f"  warning: {warning}")
    code: int = ExitCode.OK

    summary = _check_source(args, config, say)
    if summary is None or summary.failed or not summary.records:
        code = ExitCode.USAGE

    ready = _check_canvas_settings(config, say)
    if not ready:
        return ExitCode.USAGE
    contexts = list(summary.contexts) if summary is not None else []
    roles = list(summary.custom_roles) if summary is not None else []
    result = asyncio.run(reach(config, contexts, transport=transport, custom_roles=roles))
    reach_code = _report_reachability(result, summary, say)
    code = max(code, reach_code)
    if getattr(args, "deep", False) and code != ExitCode.ABORTED:
        # Every user, course and section, and what a run will cost (engine/preflight.py).
        deep = run_deep_check(config, args.source, say.out, transport=transport)
        code = max(code, deep)
    say(
        {
            ExitCode.OK: "result: OK",
            ExitCode.USAGE: "result: problems found (exit 2)",
            ExitCode.ABORTED: "result: cannot reach or authenticate to Canvas (exit 3)",
        }[ExitCode(code)]
    )
    return code


def run_deep_check(
    config: Config,
    source_arg: str | None,
    out: TextIO = sys.stdout,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> int:
    """For `canvas-tui check --deep`: 0 when all is well, 2 with findings (as `check`), 3 when
    Canvas cannot be read."""
    try:
        source = open_source(source_arg) if source_arg else open_source(config.source)
        client = CanvasClient.from_config(config, transport)
    except (ConfigError, InputError) as exc:
        print(error_line(str(exc)), file=out)
        return ExitCode.USAGE

    async def go() -> int:
        try:
            result, _plan = await deep_check(client, source, config)  # streams the source
        except CanvasError as exc:
            print(error_line(str(exc)), file=out)
            return ExitCode.ABORTED
        except InputError as exc:
            print(error_line(str(exc)), file=out)
            return ExitCode.USAGE
        finally:
            await client.aclose()
        for line in format_preflight(result):
            print(line, file=out)
        return ExitCode.USAGE if result.findings else ExitCode.OK

    return asyncio.run(go())


def _check_source(
    args: argparse.Namespace, config: Config, say: Callable[[str], None]
) -> SourceSummary | None:
    spec = args.source or config.source
    try:
        source = open_source(spec)
        summary = summarize(source)
    except InputError as exc:
        say(f"source: error: {exc}")
        return None
    say(f"source: {summary.description}")
    for note in summary.notes:
        say(f"  note: {note}")
    rows = summary.records + summary.failed + summary.skipped
    say(
        # the words `plan` and `sync` use too: invalid rows fail, duplicates are skipped
        f"  {rows:,} rows: {summary.records:,} records, {summary.failed:,} invalid, "
        f"{summary.skipped:,} duplicates; {summary.warned:,} records with warnings"
    )
    for kind, count in summary.by_field.most_common(SHOWN):
        say(f"  problem: {kind} x{count}, first: {summary.examples[kind]}")
    if summary.failed or summary.skipped:
        say(
            "  (the first row of each problem is shown; every one of them: "
            "`canvas-tui sync --dry-run --report FILE` lists them in FILE.failures.csv)"
        )
    if rows == 0:
        say("  problem: no data rows after the header, so there is nothing to sync")
    say(f"  {len(summary.contexts):,} distinct courses/sections")
    return summary


def _check_canvas_settings(config: Config, say: Callable[[str], None]) -> bool:
    try:
        check_base_url(config.canvas.base_url)
    except ConfigError as exc:
        say(f"canvas: error: {exc}")
        return False
    say(f"canvas: {config.canvas.base_url}")
    if config.canvas.token is None or not config.canvas.token:
        why = config.canvas.token_error or (
            "set CANVAS_API_TOKEN, or [canvas] token_file or token_command"
        )
        say(f"  error: no API token: {why}")
        return False
    say(f"  token: from {config.canvas.token_origin} (never shown)")
    return True


def _report_reachability(
    result: Reachability, summary: SourceSummary | None, say: Callable[[str], None]
) -> int:
    if result.error is not None and not result.who:
        error = result.error
        status = f" (HTTP {error.status})" if error.status else ""
        say(f"  error: {error.category}{status}: {error.message}")
        return ExitCode.ABORTED
    say(f"  token user: {result.who}")
    if summary is None or not summary.contexts:
        return ExitCode.OK
    total = len(summary.contexts)
    say(f"  courses/sections visible: {len(result.visible):,} of {total:,}")
    if result.sis_access:
        say(f"  token may read: {result.sis_access}")
    code: int = ExitCode.OK
    for context, why in sorted(result.missing)[:SHOWN]:
        line = summary.contexts[context]
        say(f"  problem: {context[0]} {context[1]} (first at line {line}): {why}")
    if result.missing:
        code = ExitCode.USAGE
    for name in result.unknown_roles:
        line = summary.custom_roles[name]
        # the same hint the sync's failure carries (canvas/errors.py)
        say(
            f"  problem: role {name!r} (first at line {line}): {hint_for(Category.INVALID_ROLE, role=name)}"
        )
        code = ExitCode.USAGE
    if result.roles_unchecked:
        say(
            f"  warning: could not list the account's roles to check custom role names: {result.roles_unchecked}"
        )
    for kind, ref in sorted(result.concluded)[:SHOWN]:
        say(f"  warning: {kind} {ref} is concluded; Canvas refuses new enrollments in it")
    if result.error is not None:
        say(f"  error: stopped: {result.error.category}: {result.error.message}")
        code = ExitCode.ABORTED
    return code
