"""`canvas-tui sync`: the same engine the console drives, with a terminal or JSON-lines reporter.

On a TTY: a rich progress bar (rate, ETA, throttle headroom, failures). Otherwise (cron,
Kubernetes): one JSON object per line on stdout — a state summary every few seconds, one line per
failed record, a final summary. Exit codes are `exit_codes.ExitCode` (`run_exit_code`, unattended).
SIGINT/SIGTERM stop dispatching, let in-flight requests finish and leave a consistent, resumable
journal (exit 3). While it runs, consoles of the same user may attach (`canvas-tui console
--attach JOURNAL`, engine/attach.py) unless `--no-attach`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TextIO

from canvas_tui.canvas.errors import CanvasError, Category, hint_for
from canvas_tui.config import Config, ConfigError, check_base_url, load_config
from canvas_tui.engine.attach import AttachServer, serve_attach
from canvas_tui.engine.journal import Journal, JournalError, JournalWriteFailed
from canvas_tui.engine.plan.diff import planned_action
from canvas_tui.engine.report import failures_csv_path, write_report
from canvas_tui.engine.runner import RunCancelled
from canvas_tui.engine.session import Session, journal_path_for, open_session
from canvas_tui.engine.state import (
    Event,
    ImportStatus,
    Phase,
    RecordChanged,
    RunPhaseChanged,
    RunState,
)
from canvas_tui.exit_codes import ExitCode, run_exit_code, stop_on_signals
from canvas_tui.outputs import OutputPathError, check_output_paths
from canvas_tui.records import InputError, Source, State, sis_value
from canvas_tui.sources import open_source
from canvas_tui.text import printable

log = logging.getLogger("canvas_tui")

JSON_INTERVAL = float(os.environ.get("CANVAS_TUI_PROGRESS_INTERVAL", "5"))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _state_fields(state: RunState) -> dict[str, Any]:
    c = state.counts
    return {
        "phase": str(state.phase),
        "total": state.total,
        "done": c.get(State.DONE, 0),
        "failed": c.get(State.FAILED, 0),
        "skipped": c.get(State.SKIPPED, 0),
        "pending": c.get(State.PENDING, 0),
        "in_flight": c.get(State.IN_FLIGHT, 0),
        "rate": round(state.rate, 2),
        "eta": None if state.eta is None else round(state.eta, 1),
        "elapsed": round(state.elapsed, 2),
        "requests": state.requests,
        "throttled": state.throttled,
        "retries": state.retries,
        "limit": state.governor.limit,
        "remaining": state.governor.remaining,
        "failures_by_category": dict(state.failures_by_category),
        **({"sis_import": _import_fields(state.sis_import)} if state.sis_import else {}),
    }


def _import_fields(status: ImportStatus) -> dict[str, Any]:
    """The run's SIS import as Canvas reports it, for the progress lines."""
    return {
        "id": status.sis_import_id,
        "stage": status.stage,
        "workflow_state": status.workflow_state,
        "progress": round(status.progress, 1),
        "rows": status.rows,
        "warnings": status.warning_count,
        "errors": status.error_count,
        "done": status.done,
        "failed": status.failed,
        "rest_records": status.rest_records,
        "message": status.message,
    }


# ---- reporters ----------------------------------------------------------------------------------


class Reporter(Protocol):
    def info(self, message: str, **fields: Any) -> None: ...
    def error(self, message: str, code: int) -> None: ...
    def failure(self, fields: dict[str, Any]) -> None: ...
    def progress(self, state: RunState) -> None: ...
    def summary(self, fields: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class JsonReporter:
    """One JSON object per line: what log collectors (k8s, journald) index best."""

    interval = JSON_INTERVAL

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._last = 0.0
        self._last_phase: str | None = None

    def _emit(self, event: str, fields: dict[str, Any]) -> None:
        self._out.write(json.dumps({"ts": _now(), "event": event, **fields}) + "\n")
        self._out.flush()

    def info(self, message: str, **fields: Any) -> None:
        self._emit("info", {"message": message, **fields})

    def error(self, message: str, code: int) -> None:
        self._emit("error", {"message": message, "exit_code": code})

    def failure(self, fields: dict[str, Any]) -> None:
        self._emit("record_failed", fields)

    def progress(self, state: RunState) -> None:
        now = time.monotonic()
        phase_changed = str(state.phase) != self._last_phase
        if now - self._last >= self.interval or phase_changed:
            self._last, self._last_phase = now, str(state.phase)
            self._emit("progress", _state_fields(state))

    def summary(self, fields: dict[str, Any]) -> None:
        self._emit("summary", fields)

    def close(self) -> None:
        pass


class RichReporter:
    """A progress bar with rate, ETA, headroom and failures; failures print above it."""

    interval = 0.25

    def __init__(self, out: TextIO, *, force_terminal: bool | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.console = Console(file=out, force_terminal=force_terminal, highlight=False)
        self._progress = Progress(
            TextColumn("[bold]{task.description:<9}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            console=self.console,
            transient=False,
        )
        self._task = self._progress.add_task("sync", total=None, detail="")
        self._started = False

    def info(self, message: str, **fields: Any) -> None:
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        self.console.print(printable(f"{message} {extra}".rstrip()), markup=False)

    def error(self, message: str, code: int) -> None:
        self.console.print(f"[bold red]canvas-tui: error:[/] {_escape(message)}")

    def failure(self, fields: dict[str, Any]) -> None:
        where = f"{fields.get('source')}:{fields.get('line')}"
        self.console.print(
            f"[red]failed[/] {_escape(where)} {_escape(str(fields.get('user')))} "
            f"in {_escape(str(fields.get('course')))}: "
            f"[bold]{_escape(str(fields.get('category')))}[/] {_escape(str(fields.get('message')))}"
        )

    def progress(self, state: RunState) -> None:
        if not self._started:
            self._progress.start()
            self._started = True
        g = state.governor
        headroom = "?" if g.remaining is None else f"{g.remaining:.0f}"
        eta = "?" if state.eta is None else f"{state.eta:.0f}s"
        failed = state.counts.get(State.FAILED, 0)
        detail = (
            f"{state.rate:.1f}/s ETA {eta} | {g.in_flight}/{g.limit} in flight | "
            f"headroom {headroom} | [red]{failed} failed[/] | {state.throttled} throttled"
        )
        sis = state.sis_import
        if sis is not None and not sis.final:
            # while Canvas imports, the REST rate and ETA say nothing of when the run ends (and
            # the line is cut at the terminal's width): the import's progress goes first
            left = sis.time_left
            detail = (
                f"import {sis.sis_import_id or '-'} {_escape(sis.workflow_state or sis.stage)}"
                f" {sis.progress:.0f}% of {sis.rows} rows"
                + (f", ≈{left:.0f}s left" if left is not None else "")
                + f" | {sis.warning_count + sis.error_count} messages | [red]{failed} failed[/]"
                f" | REST {g.in_flight}/{g.limit} in flight"
            )
        elif sis is not None:
            detail += (
                f" | import {sis.sis_import_id or '-'} {_escape(sis.workflow_state or sis.stage)}"
                f" {sis.progress:.0f}% ({sis.rows} rows, {sis.warning_count + sis.error_count}"
                " messages)"
            )
        self._progress.update(
            self._task,
            description=str(state.phase),
            total=state.total or None,
            completed=state.finished,
            detail=detail,
        )

    def summary(self, fields: dict[str, Any]) -> None:
        self.close()
        counts = fields["counts"]
        self.console.print(
            f"[bold]{fields['phase']}[/]: {counts['done']} done, {counts['failed']} failed, "
            f"{counts['skipped']} skipped, {counts['pending']} pending of {fields['total']} "
            f"in {fields['elapsed']:.1f}s; {fields['requests']} requests, "
            f"{fields['throttled']} throttled, {fields['retries']} retries"
        )
        channels = fields.get("channels") or {}
        if channels:
            by = ", ".join(
                f"{n} by {name.replace('_', ' ')}" for name, n in sorted(channels.items())
            )
            self.console.print(printable(f"  sent: {by}"), markup=False)
        for action, n in sorted(fields.get("would_send", {}).items()):
            self.console.print(printable(f"  would {action}: {n}"), markup=False)
        for category, n in sorted(fields.get("failures_by_category", {}).items()):
            self.console.print(printable(f"  {category}: {n}"), markup=False)
        if fields.get("abort_reason"):
            self.console.print(f"[bold red]stopped:[/] {_escape(fields['abort_reason'])}")
        for key in ("journal", "report", "failures_csv"):
            if fields.get(key):
                self.console.print(printable(f"  {key}: {fields[key]}"), markup=False)

    def close(self) -> None:
        if self._started:
            self._progress.stop()
            self._started = False


def _escape(text: str) -> str:
    """Outside text for a rich markup string: no markup, no terminal control (text.py)."""
    from rich.markup import escape

    return escape(printable(text))


class _PrintableFormatter(logging.Formatter):
    """Warnings quote Canvas's messages: on a terminal they pass through `printable` too."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


def _reporter(fmt: str) -> Reporter:
    if fmt == "json" or (fmt == "auto" and not sys.stdout.isatty()):
        return JsonReporter(sys.stdout)
    return RichReporter(sys.stdout, force_terminal=True if fmt == "rich" else None)


class _JsonLogHandler(logging.Handler):
    """Library warnings as JSON lines too, so a log collector sees one format."""

    def __init__(self, reporter: JsonReporter) -> None:
        super().__init__(logging.WARNING)
        self._reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        self._reporter.info(record.getMessage(), level=record.levelname.lower())


# ---- the command --------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> int:
    reporter = _reporter(getattr(args, "log_format", "auto") or "auto")
    handler: logging.Handler
    if isinstance(reporter, JsonReporter):
        handler = _JsonLogHandler(reporter)
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(_PrintableFormatter())
    handler.setLevel(logging.WARNING)
    log.addHandler(handler)
    try:
        return int(_main(args, reporter))
    finally:
        reporter.close()
        log.removeHandler(handler)


def _main(args: argparse.Namespace, reporter: Reporter) -> ExitCode:
    if (getattr(args, "allow_drops", None) or 0) < 0:
        reporter.error("--allow-drops must be 0 or more", ExitCode.USAGE)
        return ExitCode.USAGE
    if args.max_concurrency is not None and args.max_concurrency < 1:
        reporter.error("--max-concurrency must be at least 1", ExitCode.USAGE)
        return ExitCode.USAGE
    try:
        config = load_config(args.config)
        for warning in config.warnings:
            reporter.info(warning, level="warning")
        source = open_source(args.source) if args.source else None
        report = args.report or (None if args.dry_run else config.sync.report)
        if args.dry_run:
            _check_outputs(report, None)
            return _dry_run(config, source, args, reporter)
        journal = journal_path_for(config, Path(args.journal) if args.journal else None)
        _check_outputs(report, journal)
        session = open_session(
            config, source=source, journal_path=journal, max_concurrency=args.max_concurrency
        )
    except (ConfigError, InputError, JournalError, OutputPathError) as exc:
        reporter.error(str(exc), ExitCode.USAGE)
        return ExitCode.USAGE
    return asyncio.run(_sync(session, reporter, args))


def _check_outputs(report: str | Path | None, journal: Path | None) -> None:
    """Every file this run will write, before anything is sent (raises OutputPathError)."""
    report_path = Path(report) if report else None
    csv_path = failures_csv_path(report_path) if report_path is not None else None
    check_output_paths(
        [("--report", report_path), ("failures CSV", csv_path)],
        journal=journal,
    )


def _failure_fields(session: Session, event: RecordChanged) -> dict[str, Any]:
    row = session.store.get(event.record_id)
    fields: dict[str, Any] = {"record_id": event.record_id, "category": event.category}
    if row is not None:
        fields.update(
            source=row.source,
            line=row.line,
            user=sis_value(row.user),
            course=sis_value(row.course or row.section),
            section=sis_value(row.section),
            role=row.role,
            status=row.status,
        )
    fields["message"] = event.message
    category: Category | None = None
    if event.category is not None:
        with contextlib.suppress(ValueError):
            category = Category(event.category)
    if category is not None:
        fields["hint"] = hint_for(
            category,
            user=str(fields.get("user", "")),
            course=str(fields.get("course", "")),
            section=str(fields.get("section", "")),
            role=str(fields.get("role", "")),
        )
    return fields


async def _sync(session: Session, reporter: Reporter, args: argparse.Namespace) -> ExitCode:
    loop = asyncio.get_running_loop()
    runner = session.runner
    signalled: str | None = None

    def stop(sig: signal.Signals) -> None:
        nonlocal signalled
        signalled = sig.name
        reporter.info("stopping: letting requests in flight finish (signal again to force)")
        runner.cancel()

    stop_on_signals(loop, stop)

    attach: AttachServer | None = None
    if not getattr(args, "no_attach", False):
        attach = serve_attach(session, warn=lambda m: reporter.info(m, level="warning"))

    phase_changed = asyncio.Event()  # wakes the JSON progress lines' tick

    def on_event(event: Event) -> None:
        if isinstance(event, RecordChanged) and event.state == State.FAILED:
            reporter.failure(_failure_fields(session, event))
        elif isinstance(event, RunPhaseChanged):
            phase_changed.set()
            if event.phase == Phase.ABORTED:
                reporter.error(f"run aborted: {event.reason}", ExitCode.ABORTED)

    refused = False  # nothing queued: an empty journal is removed
    discard = False  # queued, but aborted before any request for a record: the journal goes too
    try:
        try:
            # Plan or full mode (engine/plan/); the brake may refuse before anything is sent.
            from canvas_tui.engine.plan.executor import prepare_sync

            # The load goes on while the run sends (`Session.run`): the first records go out
            # after a few hundred rows, not after the whole source.
            decision = await prepare_sync(
                session,
                requested=getattr(args, "plan", None),
                allow_drops=getattr(args, "allow_drops", None),
                on_progress=reporter.info,
                load=False,
                via=getattr(args, "via", None),
            )
            reporter.info(decision.message, **decision.fields)
            if decision.via_message:
                reporter.info(decision.via_message, via=decision.via)
            if decision.refused is not None:
                reporter.error(decision.refused, ExitCode.USAGE)
                refused = True
                return ExitCode.USAGE
        except CanvasError as exc:
            reporter.error(
                f"could not read the rosters: {exc} — {hint_for(exc.category)}", ExitCode.ABORTED
            )
            refused = True
            return ExitCode.ABORTED
        except RunCancelled:  # a signal while the rosters were being read
            reporter.error("stopped before anything was sent", ExitCode.ABORTED)
            return ExitCode.ABORTED
        except InputError as exc:
            reporter.error(str(exc), ExitCode.USAGE)
            return ExitCode.USAGE
        except JournalWriteFailed as exc:  # the disk filled while the source was loaded
            reporter.error(str(exc), ExitCode.ABORTED)
            return ExitCode.ABORTED
        if session.store.stale_lock:
            reporter.info(
                f"the journal's lock was left by {session.store.stale_lock}, a process that "
                "is gone; taken over",
                level="warning",
            )
        # records: what the journal holds, or (loading) what the source's count found
        total = session.store.count() if session.store.loaded else decision.records
        reporter.info(
            "resuming" if session.resumed else "starting",
            journal=str(session.journal_path),
            records=total,
            **({"attach": str(attach.path)} if attach is not None else {}),
        )
        # Rows the source rejected are failures too: those a resume finds are reported before
        # anything is sent, those the load adds as it reads them (RecordChanged events).
        for row in session.store.iter_rows(state=State.FAILED):
            reporter.failure(
                _failure_fields(
                    session, RecordChanged(row.record_id, row.state, row.category, row.message)
                )
            )
        if signalled:
            sent = any(i.state != "prepared" for i in session.store.imports())
            reporter.error(
                "stopped; the SIS import uploaded meanwhile is polled when the journal resumes"
                if sent
                else "stopped before anything was sent; the journal resumes",
                ExitCode.ABORTED,
            )
            return ExitCode.ABORTED
        if getattr(args, "retry_failed", False):
            queued = runner.retry_failed()
            reporter.info("queued the failed records again", records=queued)
        first = getattr(args, "first", None) or []
        if first and not session.store.loaded:
            # "all of this course before anything else" needs every row of it in the journal:
            # the whole load first (a load that goes on while the run sends would let the rest
            # start before the course's later rows are read)
            await session.load()
        for course in reversed(first):  # the first named goes first
            moved = runner.to_front(course=course)
            if moved:
                reporter.info("moved to the front", course=course, records=moved)
            elif decision.via == "sis-import":
                # the import took the plan's changes as one file, which Canvas applies as a
                # whole: there is no order within it to change
                reporter.info(
                    f"--first {course}: no pending records of that course; the SIS import "
                    "carries the plan's changes in one file, applied together (--first orders "
                    "only what goes by REST)",
                    level="warning",
                )
            else:
                reporter.info(
                    f"--first {course}: no pending records of that course", level="warning"
                )
        runner.stop_when_unreachable = True  # exit 3, records pending; the next run resumes
        unsubscribe = runner.subscribe(on_event)
        ticker = asyncio.create_task(_tick(runner.snapshot, reporter, phase_changed))
        try:
            state = await session.run(load_while_running=True)
        finally:
            ticker.cancel()
            unsubscribe()
        for note in session.notes:
            reporter.info(note, level="warning")
        if decision.builder is not None and decision.plan is not None and session.store.loaded:
            # planned as the load read the source: what it found, as a plan made first says
            from canvas_tui.engine.plan.executor import plan_fields

            reporter.info("the plan, as the load made it", **plan_fields(decision.plan))
        reporter.progress(state)  # the bar ends where the run did
        if signalled and not state.abort_reason:
            reason = f"stopped by {signalled}: requests in flight finished, pending records stay"
            state = dataclasses.replace(state, abort_reason=reason)
        report_path = args.report or session.config.sync.report
        fields = _state_fields(state)
        fields["counts"] = {str(s): n for s, n in state.counts.items()}
        fields["abort_reason"] = state.abort_reason
        fields["journal"] = str(session.journal_path)
        fields["mode"] = "plan" if decision.planned else "full"
        fields["via"] = decision.via
        fields["channels"] = session.store.channel_counts()
        # e.g. a token refused at the first request: a journal would only hold pending rows that
        # the next run reads again anyway, and clutter the state directory
        discard = (
            state.phase is Phase.ABORTED
            and not session.resumed
            and session.store.failure is None  # its in-flight records must stay known
            and session.store.attempt_totals(unrecorded=False)["requests"] == 0
            and not session.store.imports()  # an import's id must survive for the resume
        )
        if discard:
            fields["journal"] = None
        code = run_exit_code(state, attended=False)
        if report_path:
            try:
                paths = write_report(
                    session.store,
                    Path(report_path),
                    state,
                    records=getattr(args, "report_records", "all"),
                )
            except OSError as exc:  # e.g. the disk that stopped the journal is full too
                reporter.error(f"cannot write the report {report_path}: {exc}", code)
            else:
                fields["report"] = str(paths.json)
                fields["failures_csv"] = str(paths.failures_csv)
        fields["exit_code"] = int(code)
        reporter.summary(fields)
        return code
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        if attach is not None:  # attached consoles see the final state, then are let go
            await attach.close()
        await session.close()
        if refused:  # the brake stopped it before anything was queued: no empty journal left
            from canvas_tui.engine.journal import remove_empty_journal

            remove_empty_journal(session.journal_path)
        if discard:
            _discard_journal(session.journal_path)


def _discard_journal(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def _tick(
    snapshot: Callable[[], RunState], reporter: Reporter, phase_changed: asyncio.Event
) -> None:
    """Progress: a bar redraws every second; JSON lines come every `interval` and at once on a
    phase change (`phase_changed`), with no wake in between (issue 14: an idle run's 1 Hz tick)."""
    interval: float | None = getattr(reporter, "interval", None)
    if interval is None:
        while True:
            reporter.progress(snapshot())
            await asyncio.sleep(1.0)
    while True:
        phase_changed.clear()
        reporter.progress(snapshot())
        with contextlib.suppress(TimeoutError):
            # a little past the reporter's due time, so its own `interval` check passes
            async with asyncio.timeout(interval + 0.01):
                await phase_changed.wait()


def _dry_run(
    config: Config, source: Source | None, args: argparse.Namespace, reporter: Reporter
) -> ExitCode:
    """Validate the source and say what each record would ask of Canvas; no HTTP at all."""
    if config.canvas.base_url:
        check_base_url(config.canvas.base_url)
    if source is None:
        source = open_source(config.source)
    with tempfile.TemporaryDirectory(prefix="canvas-tui-dry-run-") as tmp:
        store = Journal(Path(tmp) / "dry-run.journal")
        try:
            total = store.load(source, description=source.description)
            for note in getattr(source, "notes", []) or []:
                reporter.info(note, level="warning")
            actions: dict[str, int] = {}
            for row in store.iter_rows(state=State.PENDING):
                record = store.record(row.record_id)
                if record is not None:
                    action = planned_action(record)
                    actions[action] = actions.get(action, 0) + 1
            for row in store.iter_rows(state=State.FAILED):
                reporter.failure(
                    {
                        "record_id": row.record_id,
                        "source": row.source,
                        "line": row.line,
                        "user": row.user,
                        "course": row.course,
                        "category": row.category,
                        "message": row.message,
                    }
                )
            counts = store.counts()
            failed = counts[State.FAILED]
            # nothing was sent, so bad rows are input problems: 2, as `check` says them
            code = ExitCode.USAGE if failed else ExitCode.OK
            fields: dict[str, Any] = {
                "phase": "dry_run",
                "total": total,
                "counts": {str(s): n for s, n in counts.items()},
                "would_send": actions,
                "failures_by_category": store.category_counts(State.FAILED),
                "elapsed": 0.0,
                "requests": 0,
                "throttled": 0,
                "retries": 0,
                "exit_code": int(code),
            }
            if args.report:
                paths = write_report(
                    store, Path(args.report), records=getattr(args, "report_records", "all")
                )
                fields["report"] = str(paths.json)
                fields["failures_csv"] = str(paths.failures_csv)
            reporter.summary(fields)
            return code
        finally:
            store.close()
