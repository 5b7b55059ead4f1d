"""What `canvas-tui watch` reads: the pollers (a SQL query past its change cursor, a CSV file
read again when it changes, a drop folder's new files) and the cursor's typed round trip.

A poller runs in a thread and keeps only the items its `keep` says are changes
(engine/watch.py drops rows the snapshot holds as they are), so a whole read holds its changes."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from canvas_tui.config import Config, CsvMode, SourceConfig, WatchConfig
from canvas_tui.records import InputError, Source, SourceItem
from canvas_tui.sources import CsvSource, layout_of

_SETTLE_SECONDS = 1.0  # a drop-folder file is read once it has not changed for this long


# ---- the cursor -----------------------------------------------------------------------------


def encode_cursor(value: object) -> str:
    """A cursor value as the driver typed it, as JSON that `decode_cursor` types again."""
    if isinstance(value, dt.datetime):
        return json.dumps({"datetime": value.isoformat()})
    if isinstance(value, dt.date):
        return json.dumps({"date": value.isoformat()})
    if isinstance(value, bool):
        raise InputError("a boolean column cannot be a change cursor")
    if isinstance(value, int):
        return json.dumps({"int": value})
    if isinstance(value, decimal.Decimal):
        return json.dumps({"decimal": str(value)})
    if isinstance(value, float):
        return json.dumps({"float": value})
    return json.dumps({"text": str(value)})


def decode_cursor(text: str) -> object:
    ((kind, value),) = json.loads(text).items()
    if kind == "datetime":
        return dt.datetime.fromisoformat(value)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "decimal":
        return decimal.Decimal(value)
    return value


def behind(cursor: object, overlap: float) -> object:
    """The cursor moved back by the overlap (seconds for a time, units for a number)."""
    if isinstance(cursor, dt.datetime):
        return cursor - dt.timedelta(seconds=overlap)
    if isinstance(cursor, dt.date):
        return cursor - dt.timedelta(days=max(1, int(overlap // 86400)))
    if isinstance(cursor, int):
        return cursor - int(overlap)
    if isinstance(cursor, decimal.Decimal):
        return cursor - decimal.Decimal(str(overlap))
    if isinstance(cursor, float):
        return cursor - overlap
    return cursor  # text: no arithmetic; the same value is read again


# ---- reading the source ---------------------------------------------------------------------


@dataclass(slots=True)
class Batch:
    """One read of the source, applied in one transaction."""

    items: list[SourceItem]
    full: bool  # the whole source: a row it lacks is gone
    what: str  # for the log
    meta: dict[str, str] = field(default_factory=dict)  # committed with it (the cursor)
    file: tuple[str, str] | None = None  # a drop folder's file (name, digest), now processed
    seen: set[str] = field(default_factory=set)  # the keys of every row read, unchanged too
    unchanged: int = 0  # rows read that the snapshot holds as they are (not in `items`)
    # the first read, planned against the rosters: per item, whether Canvas needs it (the
    # others are in place already: they only join the snapshot)
    planned: list[bool] | None = None


Keep = Callable[[SourceItem], bool]  # a poller keeps only the items this says are changes


class Poller(Protocol):
    description: str
    # a CSV's: "snapshot" (each read is the whole roster: a row gone is a drop) or "delta"
    # (changes only, nothing dropped); None for a query or a topic
    csv_mode: CsvMode | None

    def read(self, state: WatchState, keep: Keep) -> Batch | None:
        """Blocking (a thread): the next batch of the items `keep` keeps, None when nothing
        changed. InputError when the source cannot be read (the service backs off and keeps its
        cursor)."""
        ...

    def whole(self) -> Source | None:
        """The whole source as it is now, for the drift check (None: no such thing)."""
        ...

    def check(self) -> None:
        """Blocking, once, before the journal opens: InputError when the source as configured
        cannot be read at all (a missing file, a bad header, a query the database refuses):
        `watch` exits 2 on it; SourceUnavailable when it is a server that is down now (the
        service starts and waits it out). A source that fails later is always waited out."""
        ...


@dataclass(slots=True)
class WatchState:
    """What the pollers need to know of the journal: kept in memory, committed with batches."""

    cursor: object = None
    full_at: float = 0.0  # when the SQL source was last read whole
    file: str | None = None  # the CSV file's last signature ("mtime:size:sha")
    processed: set[str] = field(default_factory=set)  # drop-folder files done


class SqlPoller:
    def __init__(self, spec: SourceConfig, watch: WatchConfig) -> None:
        from canvas_tui.sources.sql import mask_url

        if not spec.url or not spec.query:
            raise InputError("a SQL source needs [source] url and query")
        self.spec = spec
        self.watch = watch
        self.description = mask_url(spec.url)
        self.csv_mode: CsvMode | None = None

    def _source(self, since: object = None) -> Any:
        from canvas_tui.sources.sql import SqlSource

        spec = self.spec
        assert spec.url is not None and spec.query is not None
        return SqlSource(
            spec.url,
            spec.query,
            params=spec.params,
            layout=layout_of(spec),
            cursor_column=self.watch.cursor_column,
            since=since,
        )

    def read(self, state: WatchState, keep: Keep) -> Batch | None:
        watch = self.watch
        full_due = watch.full_every > 0 and time.time() - state.full_at >= watch.full_every
        since = None
        if watch.cursor_column is not None and state.cursor is not None and not full_due:
            since = behind(state.cursor, watch.cursor_overlap)
        source = self._source(since)
        items = [item for item in source if keep(item)]
        batch = Batch(items, since is None, "query" if since is None else "changes")
        newest = source.cursor_max
        if state.cursor is not None and (newest is None or newest < state.cursor):
            newest = state.cursor
        if newest is not None:
            batch.meta["watch_cursor"] = encode_cursor(newest)
        if since is None:
            batch.meta["watch_full_at"] = repr(time.time())
        return batch

    def whole(self) -> Source:
        return self._source()  # type: ignore[no-any-return]

    def check(self) -> None:
        # connect, run the query and read its columns (the layout's, the cursor's) and first
        # rows; a connection refused raises SourceUnavailable (sources/sql.py)
        _first(self._source())


class CsvFilePoller:
    """One CSV file, read again when its contents change: a snapshot (the default), or a delta,
    as configured."""

    DEFAULT_MODE: CsvMode = "snapshot"  # an export that rewrites the file holds every row

    def __init__(self, path: Path, spec: SourceConfig | None, watch: WatchConfig) -> None:
        self.path = path
        self.spec = spec
        self.watch = watch
        self.description = str(path)
        self.csv_mode: CsvMode | None = watch.csv_mode or self.DEFAULT_MODE

    def _source(self, path: Path) -> CsvSource:
        if self.spec is None:
            return CsvSource(path)
        spec = self.spec
        return CsvSource(
            path, layout=layout_of(spec), encoding=spec.encoding, delimiter=spec.delimiter
        )

    def read(self, state: WatchState, keep: Keep) -> Batch | None:
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise InputError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        signature = f"{stat.st_mtime_ns}:{stat.st_size}"
        if state.file is not None and state.file.startswith(signature + ":"):
            return None
        digest = _file_digest(self.path)
        marker = f"{signature}:{digest}"
        if state.file is not None and state.file.endswith(":" + digest):
            return Batch([], False, "unchanged file", {"watch_file": marker})  # touched only
        items = [item for item in self._source(self.path) if keep(item)]
        full = self.csv_mode == "snapshot"
        return Batch(items, full, f"file {self.path.name}", {"watch_file": marker})

    def whole(self) -> Source | None:
        return self._source(self.path) if self.csv_mode == "snapshot" else None

    def check(self) -> None:
        if not self.path.exists():
            raise InputError(
                f"{self.path}: no such file or folder; watch follows a CSV file (read again "
                "whenever it changes) or a drop folder (each new *.csv), which must exist at start"
            )
        if not self.path.is_file():
            raise InputError(f"{self.path}: not a CSV file or a folder")
        _first(self._source(self.path))  # readable, with a header the layout accepts


class CsvFolderPoller(CsvFilePoller):
    """A drop folder: each new `*.csv` file, in name order, once it has settled. Each file is a
    delta unless `[watch] csv_mode = "snapshot"` says it is the whole roster: a file that holds
    only some rows (today's adds, one course) then drops nothing it does not name."""

    DEFAULT_MODE: CsvMode = "delta"

    def read(self, state: WatchState, keep: Keep) -> Batch | None:
        try:
            names = sorted(p.name for p in self.path.iterdir() if _droppable(p))
        except OSError as exc:
            raise InputError(f"cannot list {self.path}: {exc.strerror or exc}") from None
        now = time.time()
        for name in names:
            if name in state.processed:
                continue
            path = self.path / name
            try:
                if now - path.stat().st_mtime < _SETTLE_SECONDS:
                    return None  # still being written; files stay in order
            except OSError:
                continue  # gone meanwhile
            items = [item for item in self._source(path) if keep(item)]
            full = self.csv_mode == "snapshot"
            return Batch(items, full, f"file {name}", file=(name, _file_digest(path)))
        return None

    def check(self) -> None:
        # its files are checked as they come (one that cannot be read holds the folder, retried)
        if not os.access(self.path, os.R_OK | os.X_OK):
            raise InputError(f"{self.path}: a drop folder this user cannot list and read")
        try:
            next(self.path.iterdir(), None)
        except OSError as exc:
            raise InputError(f"cannot list {self.path}: {exc.strerror or exc}") from None

    def whole(self) -> Source | None:
        """The newest file, when each file is a whole snapshot."""
        if self.csv_mode != "snapshot":
            return None
        names = sorted(p.name for p in self.path.iterdir() if _droppable(p))
        return self._source(self.path / names[-1]) if names else None


def _first(source: Source) -> None:
    """Open the source and read its header and first row, then let it go (InputError)."""
    items = iter(source)
    try:
        next(items, None)
    finally:
        close = getattr(items, "close", None)  # a generator: its file or connection closes now
        if close is not None:
            close()


def _droppable(path: Path) -> bool:
    name = path.name
    return (
        path.is_file()
        and name.lower().endswith(".csv")
        and not name.startswith(".")
        and not name.endswith((".part", ".tmp"))
    )


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    return digest.hexdigest()[:24]


def open_poller(config: Config, source: str | Path | None = None) -> Poller:
    """The poller for `canvas-tui watch [SOURCE]`: a CSV file or folder given, else the config's
    source (SQL, or its CSV path)."""
    watch = config.watch
    if source is not None:
        path = Path(source)
        if path.is_dir():
            return CsvFolderPoller(path, None, watch)
        return CsvFilePoller(path, None, watch)
    spec = config.source
    if spec.kind == "sql":
        return SqlPoller(spec, watch)
    if spec.kind == "kafka":  # engine/topic.py builds on this module: the front end opens it
        raise InputError("a kafka source's poller is engine.topic.TopicPoller")
    if spec.path is None:
        raise InputError("no source: give a file or folder, or set [source] path in the config")
    if spec.path.is_dir():
        return CsvFolderPoller(spec.path, spec, watch)
    return CsvFilePoller(spec.path, spec, watch)
