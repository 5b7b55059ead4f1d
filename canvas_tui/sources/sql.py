"""SQL sources: a SQLAlchemy URL and a text query, streamed inside a read-only transaction.

The result's column names play the part of a CSV header, so the same `Layout` (Canvas column names,
or a mapping) and the same `RowNormalizer` apply; a record's line is its 1-based row in the result.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any, Final

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from canvas_tui.records import InputError, SourceItem, SourceUnavailable
from canvas_tui.sources.normalize import Layout, RowNormalizer

_BATCH: Final = 1000  # rows per fetch from the server-side cursor

# Extras that install each dialect's driver (pyproject [project.optional-dependencies]).
_EXTRAS: Final = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql", "mssql": "mssql"}


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, safe for logs and provenance."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


class SqlSource:
    """Rows of `query` (bound with `params`) from the database at `url`, streamed."""

    def __init__(
        self,
        url: str,
        query: str,
        *,
        params: Mapping[str, object] | None = None,
        layout: Layout | None = None,
        cursor_column: str | None = None,
        since: object = None,
    ) -> None:
        """`cursor_column` (a column the query selects; a plain name, checked by the config):
        `cursor_max` is its largest value in the rows read, as the driver typed it, and with
        `since` only rows whose value is at least `since` are read (`canvas-tui watch`)."""
        self.url = url
        self.query = query
        self.params = dict(params or {})
        self.layout = layout or Layout()
        self.notes: list[str] = []
        self.cursor_column = cursor_column
        self.cursor_max: Any = None
        if cursor_column is not None and since is not None:
            # the query as a subquery: its own ORDER BY and parameters stay as they are
            self.query = (
                f"SELECT * FROM ({query}) AS canvas_tui_changes "  # noqa: S608 -- a checked name
                f"WHERE {cursor_column} >= :canvas_tui_since ORDER BY {cursor_column}"
            )
            self.params["canvas_tui_since"] = since
        self._masked = mask_url(url)
        needed = set(text(query).compile().params)
        missing = sorted(needed - set(self.params))
        if missing:
            raise InputError(
                f"the query uses {', '.join(':' + m for m in missing)} but [source.params] has no "
                f"value for {'it' if len(missing) == 1 else 'them'}"
            )

    @property
    def description(self) -> str:
        return self._masked

    def __iter__(self) -> Iterator[SourceItem]:
        self.notes = []
        self.cursor_max = None
        try:
            engine = create_engine(self.url, poolclass=NullPool)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise InputError(self._driver_hint(exc)) from None
        try:
            try:
                conn = engine.connect()
            except SQLAlchemyError as exc:
                message = f"cannot connect to {self._masked}: {_reason(exc)}"
                if engine.dialect.name == "sqlite":  # a file, not a server: the path is wrong
                    raise InputError(message) from None
                raise SourceUnavailable(message) from None
            with conn:
                yield from self._stream(conn)
        finally:
            engine.dispose()

    def _stream(self, conn: Connection) -> Iterator[SourceItem]:
        label = f"sql:{self._masked}"
        try:
            self._read_only(conn)
            result = conn.execution_options(yield_per=_BATCH).execute(text(self.query), self.params)
        except SQLAlchemyError as exc:
            raise _failed(exc, f"the query failed on {self._masked}: {_reason(exc)}") from None
        with result:
            if not result.returns_rows:
                raise InputError(f"the query on {self._masked} returned no result set")
            keys = list(result.keys())
            normalizer = RowNormalizer(label, keys, self.layout, header_line=0)
            self.notes.extend(normalizer.notes)
            normalize = normalizer.normalize
            number = 0
            track = keys.index(self.cursor_column) if self.cursor_column in keys else None
            if self.cursor_column is not None and track is None:
                raise InputError(
                    f"the query on {self._masked} does not select the cursor column "
                    f"{self.cursor_column} ([watch] cursor_column)"
                )
            try:
                for batch in result.partitions():  # fetchmany(_BATCH), not a fetchone per row
                    for row in batch:
                        number += 1
                        if track is not None:
                            value = row[track]
                            if value is not None and (
                                self.cursor_max is None or value > self.cursor_max
                            ):
                                self.cursor_max = value
                        # Most SIS columns are text already; only the others pay a conversion.
                        cells = [v if v.__class__ is str else _cell(v) for v in row]
                        yield normalize(cells, number)
            except SQLAlchemyError as exc:
                raise _failed(
                    exc, f"reading row {number + 1} from {self._masked} failed: {_reason(exc)}"
                ) from None
            if number == 0:
                self.notes.append(f"{label}: the query returned no rows")
        conn.rollback()  # nothing was written; end the read-only transaction cleanly

    def _read_only(self, conn: Connection) -> None:
        """Make the transaction read-only where the dialect can, so a query can never write."""
        dialect = conn.dialect.name
        if dialect == "sqlite":
            conn.exec_driver_sql("PRAGMA query_only = ON")
        elif dialect in ("postgresql", "oracle"):
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        elif dialect in ("mysql", "mariadb"):
            conn.exec_driver_sql("START TRANSACTION READ ONLY")
        else:
            self.notes.append(
                f"{dialect}: read-only transactions are not enforced; use a read-only login"
            )

    def _driver_hint(self, exc: Exception) -> str:
        try:
            backend = make_url(self.url).get_backend_name()
        except ArgumentError:
            return f"invalid database URL {self._masked}: expected dialect+driver://user@host/db"
        extra = _EXTRAS.get(backend)
        install = f"; install it with: pip install 'canvas-tui[{extra}]'" if extra else ""
        return f"no database driver for {self._masked}: {exc}{install}"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):  # datetime too
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's own words, without SQLAlchemy's boilerplate or the statement echo."""
    orig = getattr(exc, "orig", None)
    message = str(orig) if orig is not None else str(exc)
    lines = [line for line in message.strip().splitlines() if line.strip()]
    return " / ".join(lines[:3]) or type(exc).__name__


def _failed(exc: SQLAlchemyError, message: str) -> InputError:
    """A server that answered and refused the query (a table, a column, a grant) is the
    query's fault; one that went away meanwhile (the dialect's own disconnect test, which sets
    `connection_invalidated`) may come back."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return SourceUnavailable(message)
    return InputError(message)
