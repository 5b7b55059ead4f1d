"""The one wiring function: config + source -> journal; client with transport; runner.

Headless sync, the console and the demo all open a run through `open_session`, so they share one
set of rules: where the journal goes, that an existing journal is resumed (never re-loaded), that
the token only ever reaches the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import httpx

from canvas_tui.canvas.client import CanvasClient
from canvas_tui.canvas.governor import Governor

# default_journal_path, journal_path_for: re-exported (they live where the console, which
# decides the journal before the engine and its imports start, finds them)
from canvas_tui.config import Config, ConfigError
from canvas_tui.config import default_journal_path as default_journal_path
from canvas_tui.config import journal_path_for as journal_path_for
from canvas_tui.engine.actions import ActionResult, EnrollmentActions, Observer
from canvas_tui.engine.journal import Journal, JournalError, LoadedChunk
from canvas_tui.engine.protocol import invoke
from canvas_tui.engine.runner import RunGate, Runner
from canvas_tui.engine.state import RunCommands, RunState
from canvas_tui.records import EnrollmentRecord, InputError, Source
from canvas_tui.sources import layout_of, open_source

if TYPE_CHECKING:
    from canvas_tui.engine.plan.executor import SyncDecision

P = ParamSpec("P")
R = TypeVar("R")


def config_fingerprint(config: Config, source_description: str) -> str:
    """What makes two runs the same job (never the token): stored in the journal's metadata."""
    data = {
        "base_url": config.canvas.base_url,
        "source": source_description,
        "format": config.source.format,
        "mapping": dict(config.source.mapping),
        "defaults": dict(config.source.defaults),
        "notify": config.sync.notify,
        "enrollment_state": config.sync.enrollment_state,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def run_settings(config: Config) -> dict[str, str]:
    """What decides where and how records are sent: a resume must keep every one of them."""
    return {
        "base_url": config.canvas.base_url,
        "notify": json.dumps(config.sync.notify),
        "enrollment_state": config.sync.enrollment_state,
    }


def check_resume_settings(store: Journal, config: Config, source_description: str | None) -> None:
    """Refuse to resume a journal against another Canvas, or with other sending semantics:
    its done records would be taken as done there, and the rest sent differently.
    Raises JournalError saying what differs and how to start fresh."""
    recorded = {k: store.get_meta(k) for k in run_settings(config)}
    now = run_settings(config)
    if all(v is None for v in recorded.values()):
        # a journal from before these were recorded: only its fingerprint can tell
        fingerprint = store.get_meta("fingerprint")
        source = store.get_meta("source") or source_description or ""
        if not fingerprint or fingerprint == config_fingerprint(config, source):
            return
        differs = ["the configuration (base URL, notify, enrollment_state or the source's)"]
    else:
        differs = [
            f"{key} {recorded[key]} (now {now[key]})"
            for key in now
            if recorded[key] is not None and recorded[key] != now[key]
        ]
        if not differs:
            return
    raise JournalError(
        f"{store.path} was run with {'; '.join(differs)}. Resuming it here would count its "
        "done records as done in this Canvas. Resume with the settings it was run with, or "
        "start fresh: give a new --journal path (or none)"
    )


class _ReadOnly:
    async def apply(self, record: EnrollmentRecord, observer: Observer | None) -> ActionResult:
        raise JournalError("this session is read-only; nothing can be sent")


@dataclass
class Session:
    config: Config
    store: Journal
    runner: Runner
    # read-only: GET-only by use (rosters, lookups); None when no base URL / token is configured
    client: CanvasClient | None
    journal_path: Path
    source: Source | None = None
    resumed: bool = False  # the journal already held a loaded run: nothing is re-read
    notes: list[str] = field(default_factory=list)  # source remarks (ignored columns, ...)
    # record id -> (message, enrollment id) for a record Canvas already holds (a plan's): it
    # is loaded done (`Journal.load`'s `in_place`)
    in_place: Callable[[int], tuple[str, int | None] | None] | None = None

    async def load(self, on_progress: Callable[[int], None] | None = None) -> int:
        """Read the source into the journal (in a thread). A loaded journal is never re-read."""
        if self.store.loaded:
            return self.store.count()
        total = await self._load(on_progress=on_progress)
        self.runner.reload_counts()
        return total

    async def _load(self, **options: Any) -> int:
        await asyncio.to_thread(self.store.verify)  # before the first write
        source = self.source
        if source is None:
            source = self.source = open_source(self.config.source)
        description = source.description
        fingerprint = config_fingerprint(self.config, description)
        self.store.set_meta(**run_settings(self.config))  # committed with the load's first write
        total: int = await asyncio.to_thread(
            self.store.load,
            source,
            description=description,
            fingerprint=fingerprint,
            in_place=self.in_place,
            **options,
        )
        self.notes.extend(getattr(source, "notes", []) or [])
        if self.notes:
            self.store.set_meta(notes=json.dumps(self.notes))
        return total

    async def run(self, *, load_while_running: bool = False) -> RunState:
        """Load the source unless the journal holds it, then send until every record is final.
        `load_while_running`: the runner claims records as each chunk of the load commits,
        instead of after the whole load (the first request goes out after a few hundred rows;
        rows the source rejected are reported as `RecordChanged` events as they are loaded)."""
        if load_while_running and not self.store.loaded:
            await asyncio.to_thread(self.store.verify)  # before the first write
            stop = threading.Event()

            async def load(on_commit: Callable[[LoadedChunk], None]) -> int:
                return await self._load(on_commit=on_commit, stop=stop)

            await self.runner.load_while_running(load, stop.set)
        else:
            await self.load()
        await asyncio.to_thread(self.store.verify)  # a journal opened with verify_journal=False
        return await self.runner.run()

    async def plan(self, requested: bool | None = True) -> SyncDecision:
        """The plan the console shows before anything is loaded or sent (engine/plan/).
        `requested`: True for --plan, None when the config's drop policy asks for it."""
        # the plan's modules load when a plan is asked for: an engine opening a journal for the
        # console (or a resume) starts without them
        from canvas_tui.engine.plan.executor import plan_session

        return await plan_session(self, requested=requested)

    async def apply_plan(self, decision: SyncDecision) -> str | None:
        """Queue the plan; returns the channel taken and why (a SIS import's), else None."""
        from canvas_tui.engine.plan.executor import apply_plan

        await apply_plan(self, decision)
        return decision.via_message

    async def command(
        self,
        command: Callable[Concatenate[RunCommands, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """A RunControl command (`RunCommands.skip`, ...) as the console sends it: awaited, as
        from a `RemoteSession`; here the runner answers at once."""
        return invoke(self.runner, command, *args, **kwargs)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
        if self.store.failure is None:
            with contextlib.suppress(JournalError):
                self.runner.record_requests()  # reads since the run (the roster inspector)
        self.store.close()


def open_session(
    config: Config,
    *,
    source: Source | None = None,
    journal_path: Path | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    read_only: bool = False,
    governor: Governor | None = None,
    max_concurrency: int | None = None,
    verify_journal: bool = True,
) -> Session:
    """Wire a run. Raises ConfigError (no base URL / token, unsafe URL), JournalError (the file
    is not a journal) or InputError (the journal belongs to a different source).
    `verify_journal=False`: an existing journal's pages are checked when the session first
    loads or runs, not here (a console shows a million-record journal before that check)."""
    path = journal_path_for(config, journal_path)
    if read_only:
        governor = governor or Governor()
        # triage of a journal needs no Canvas; reading rosters does, with the usual URL rules
        client = None
        with contextlib.suppress(ConfigError):
            client = CanvasClient.from_config(config, transport, governor=governor)
        # `--read-only` never writes, not even SQLite's -wal/-shm beside the journal
        store = Journal(path, read_only=True, immutable=True)
        runner = Runner(store, _ReadOnly(), governor, layout=layout_of(config.source))
        return Session(config, store, runner, client, path, source, resumed=True)

    governor = governor or Governor()
    gate = RunGate()
    # config errors before any file opens
    client = CanvasClient.from_config(config, transport, governor=governor, sleep=gate.sleep)
    store = Journal(path, verify=verify_journal)
    try:
        previous = store.get_meta("source")
        resumed = store.loaded
        if source is not None and previous is not None and previous != source.description:
            raise InputError(
                f"{path} is the journal of {previous}, not {source.description}; "
                "give a new --journal path (or none) to start a new run"
            )
        if previous is not None:
            check_resume_settings(store, config, source.description if source else None)
        cap = max_concurrency or config.sync.max_concurrency
        if cap is not None:
            governor.set_cap(cap)
        actions = EnrollmentActions(
            client, notify=config.sync.notify, active_state=config.sync.enrollment_state
        )
        layout = getattr(source, "layout", None) or layout_of(config.source)
        runner = Runner(
            store,
            actions,
            governor,
            gate=gate,
            preflight=client.whoami,
            layout=layout,
            requests_sent=lambda: client.requests_sent,
        )
    except BaseException as exc:
        try:
            if isinstance(exc, sqlite3.DatabaseError):
                store.verify()  # a damaged file says so, as when its pages are checked at open
        finally:
            store.close()
        raise
    return Session(config, store, runner, client, path, source, resumed=resumed)
