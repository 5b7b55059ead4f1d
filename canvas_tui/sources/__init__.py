"""Where enrollments come from: Canvas SIS CSV, mapped CSV, or a SQL query.

Every source iterates `EnrollmentRecord | RowProblem` lazily (records.py) and raises `InputError`
when it cannot be read at all; `records + problems == data rows` always holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from canvas_tui.records import InputError
from canvas_tui.sources.csv import CsvSource
from canvas_tui.sources.normalize import FIELDS, IdKind, Layout, RowNormalizer

if TYPE_CHECKING:
    from canvas_tui.config import SourceConfig
    from canvas_tui.sources.sql import SqlSource, mask_url


def __getattr__(name: str) -> Any:
    # SQLAlchemy takes ~0.25 s to import and only SQL sources need it: sources.sql is
    # imported when one is opened (or its names are asked for), not with the package
    if name in ("SqlSource", "mask_url"):
        from canvas_tui.sources import sql

        return getattr(sql, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FIELDS",
    "CsvSource",
    "IdKind",
    "InputError",
    "Layout",
    "RowNormalizer",
    "SqlSource",
    "layout_of",
    "mask_url",
    "open_source",
    "read_through",
]


def read_through(source: object, rows: int) -> None:
    """A pass read `source` to its end and found `rows` items: a file or query source sizes its
    next pass's duplicate index for them (`expected_rows`); other iterables ignore it."""
    if hasattr(source, "expected_rows"):
        source.expected_rows = rows


def layout_of(spec: SourceConfig) -> Layout:
    return Layout(
        format=spec.format,
        mapping=spec.mapping,
        defaults=spec.defaults,
        values=spec.values,
        ids=spec.ids,
    )


def open_source(spec: SourceConfig | str | Path) -> CsvSource | SqlSource:
    """A source for a config's [source], or for a path to a Canvas SIS enrollments.csv."""
    if isinstance(spec, str | Path):
        return CsvSource(spec)
    if spec.kind == "sql":
        if not spec.url or not spec.query:
            raise InputError("a SQL source needs [source] url and query")
        from canvas_tui.sources.sql import SqlSource

        return SqlSource(spec.url, spec.query, params=spec.params, layout=layout_of(spec))
    if spec.kind == "kafka":
        raise InputError(
            f'[source] kind = "kafka" is a stream (topic {spec.topic}): `canvas-tui watch` '
            "follows it; sync, plan and check read a file or a query"
        )
    if spec.path is None:
        raise InputError("no source file: give a path, or set [source] path in the config")
    return CsvSource(
        spec.path, layout=layout_of(spec), encoding=spec.encoding, delimiter=spec.delimiter
    )
