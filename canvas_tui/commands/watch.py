"""`canvas-tui watch [SOURCE]`: the service front end (engine/watch.py does the work).

JSON lines on stdout, one object per event (`watching`, `changes`, `record_done`,
`record_failed`, `record_skipped`, `progress`, `source_unavailable`, `canvas_unreachable`,
`brake`, `drift`, `compacted`, `stopped`, ...).
SIGTERM and SIGINT stop it gracefully: no new request goes out, those in flight finish, the
journal is closed (exit 0); a second signal exits at once (the journal stays consistent).
SIGHUP runs a drift check now. `--health PORT` serves GET /healthz (liveness) and /readyz
(readiness: the source and Canvas answer, the journal takes writes) on 127.0.0.1 only. Consoles
of the same user may attach (`canvas-tui console --attach JOURNAL`) unless `--no-attach`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from canvas_tui.config import Config, ConfigError, load_config
from canvas_tui.engine.journal import JournalError
from canvas_tui.engine.session import open_session
from canvas_tui.engine.state import Event, RecordChanged
from canvas_tui.exit_codes import ExitCode, stop_on_signals
from canvas_tui.paths import default_journal_dir
from canvas_tui.records import InputError, SourceUnavailable, State, sis_value

log = logging.getLogger("canvas_tui")

PROGRESS_INTERVAL = float(os.environ.get("CANVAS_TUI_PROGRESS_INTERVAL", "60"))
_FINAL_EVENTS = {
    State.DONE: "record_done",
    State.FAILED: "record_failed",
    State.SKIPPED: "record_skipped",
}


class JsonLines:
    """One JSON object per line, flushed: what journald and Kubernetes collect best."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def __call__(self, event: str, **fields: Any) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        line = json.dumps({"ts": f"{stamp}Z", "event": event, **fields}, default=str)
        self._out.write(line + "\n")
        self._out.flush()


class _JsonLogHandler(logging.Handler):
    """Library warnings as JSON lines too, so a log collector sees one format."""

    def __init__(self, emit: JsonLines) -> None:
        super().__init__(logging.WARNING)
        self._emit = emit

    def emit(self, record: logging.LogRecord) -> None:
        self._emit("log", level=record.levelname.lower(), message=record.getMessage())


def journal_for(config: Config, given: str | None) -> Path:
    """The service's one journal: --journal, [watch] journal, else journal_dir/watch.journal
    (a fixed name, so a restart resumes it)."""
    # absolute: logs, the attach socket and attached consoles name it from anywhere
    if given:
        return Path(given).absolute()
    if config.watch.journal is not None:
        return config.watch.journal.absolute()
    return ((config.sync.journal_dir or default_journal_dir()) / "watch.journal").absolute()


def main(args: argparse.Namespace) -> int:
    emit = JsonLines(sys.stdout)
    handler = _JsonLogHandler(emit)
    log.addHandler(handler)
    try:
        return int(_main(args, emit))
    finally:
        log.removeHandler(handler)


def _main(args: argparse.Namespace, emit: JsonLines) -> ExitCode:
    from canvas_tui.engine.watch import WatchService
    from canvas_tui.engine.watch_sources import Poller, open_poller

    if (args.allow_drops or 0) < 0 or (args.interval is not None and args.interval <= 0):
        emit("error", message="--allow-drops must be 0 or more, --interval above 0", exit_code=2)
        return ExitCode.USAGE
    if args.health is not None and not 0 < args.health < 65536:
        emit("error", message="--health takes a TCP port (1-65535)", exit_code=2)
        return ExitCode.USAGE
    try:
        config = load_config(args.config)
        for warning in config.warnings:
            emit("log", level="warning", message=warning)
        if config.source.kind == "kafka" and args.source is None:
            from canvas_tui.engine.topic import TopicPoller  # aiokafka: the kafka extra

            poller: Poller = TopicPoller(config.source)
        else:
            poller = open_poller(config, args.source)
        # before the journal is made: a missing file or a refused query is the config's fault
        # (exit 2); a database server that is down is waited out like one that goes down later
        # (the first poll says so, `source_unavailable`, and retries with a back-off)
        with contextlib.suppress(SourceUnavailable):
            poller.check()
        journal = journal_for(config, args.journal)
        session = open_session(config, journal_path=journal, max_concurrency=args.max_concurrency)
    except (ConfigError, InputError, JournalError) as exc:
        emit("error", message=str(exc), exit_code=2)
        return ExitCode.USAGE
    service = WatchService(
        session, poller, emit=emit, allow_drops=args.allow_drops, interval=args.interval
    )
    return asyncio.run(_serve(service, args, emit))


async def _serve(service: Any, args: argparse.Namespace, emit: JsonLines) -> ExitCode:
    loop = asyncio.get_running_loop()

    def stop(sig: signal.Signals) -> None:
        emit("stopping", signal=sig.name, message="letting requests in flight finish")
        service.stop()

    stop_on_signals(loop, stop)
    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
        loop.add_signal_handler(signal.SIGHUP, service.request_drift)

    session = service.session

    def on_event(event: Event) -> None:
        # one line per change sent (or not): what an operator greps for "when did U1 get in"
        if not isinstance(event, RecordChanged) or event.state not in _FINAL_EVENTS:
            return
        row = session.store.get(event.record_id)
        fields: dict[str, Any] = {"record_id": event.record_id}
        if row is not None:
            fields.update(
                source=row.source,
                line=row.line,
                user=sis_value(row.user),
                course=sis_value(row.course or row.section),
                section=sis_value(row.section),
                status=row.status,  # (not the action: the outcome may not be committed yet)
            )
        if event.state == State.FAILED:
            fields["category"] = event.category
        emit(_FINAL_EVENTS[event.state], message=event.message, **fields)

    unsubscribe = session.runner.subscribe(on_event)
    attach = None
    if not getattr(args, "no_attach", False):
        from canvas_tui.engine.attach import serve_attach

        # `canvas-tui console --attach JOURNAL` follows the service live (engine/attach.py)
        attach = serve_attach(
            session, warn=lambda m: emit("log", level="warning", message=m), service=True
        )
        if attach is not None:
            emit("attach", socket=str(attach.path))
    server = None
    tasks: list[asyncio.Task[None]] = []
    try:
        if args.health is not None:
            try:
                server = await serve_health(service, args.health)
            except OSError as exc:
                emit("error", message=f"--health {args.health}: {exc.strerror}", exit_code=2)
                return ExitCode.USAGE
            emit("health", url=f"http://127.0.0.1:{args.health}/healthz")
        tasks.append(asyncio.create_task(_progress(service, emit)))
        try:
            code = await service.run()
        except (InputError, JournalError) as exc:
            emit("error", message=str(exc), exit_code=2)
            return ExitCode.USAGE
        state = session.runner.snapshot()
        emit(
            "stopped",
            exit_code=code,
            counts={str(s): n for s, n in state.counts.items()},
            requests=state.requests,
            journal=str(session.journal_path),
        )
        return ExitCode(code)
    finally:
        unsubscribe()
        for task in tasks:
            task.cancel()
        if server is not None:
            server.close()
        if attach is not None:  # attached consoles see the final state, then are let go
            await attach.close()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
                loop.remove_signal_handler(sig)
        await session.close()


async def _progress(service: Any, emit: JsonLines) -> None:
    while True:
        await asyncio.sleep(PROGRESS_INTERVAL)
        health = service.health()
        emit(
            "progress",
            counts=health["counts"],
            requests=health["requests"],
            polls=health["polls"],
            ready=health["ready"],
        )


async def serve_health(service: Any, port: int) -> asyncio.Server:
    """GET /healthz: 200 while the loops run; GET /readyz: 200 when the source and Canvas
    answer and the journal takes writes, else 503 with what is wrong. Loopback only."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            parts = request.decode("latin-1").split()
            path = parts[1] if len(parts) >= 2 else ""
            health = service.health()
            if path in ("/healthz", "/livez"):
                ok = health["live"]
            elif path == "/readyz":
                ok = health["ready"]
            else:
                ok = None
            body = json.dumps(health if ok is not None else {"error": "not found"}).encode()
            status = "404 Not Found" if ok is None else "200 OK" if ok else "503 Unavailable"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", port)
