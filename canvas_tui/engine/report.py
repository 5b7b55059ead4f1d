"""The run's report: a JSON summary with every record's outcome, and the failures as a Canvas SIS
enrollments.csv that can be fed straight back as a source once the causes are fixed.

Both are written by streaming the journal, so a 100,000-record report never sits in memory.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canvas_tui.engine.journal import ImportRecord, Journal
from canvas_tui.engine.state import RecordRow, RunState
from canvas_tui.private_files import open_private
from canvas_tui.records import State, sis_value
from canvas_tui.sources.csv import FAILURES_MARK, neutralize_formula

SCHEMA_VERSION = 2  # of the JSON report: canvas_tui/schemas/report.schema.json; bump on a change
# Which per-record rows the JSON lists; "not-done": every record but those done.
RECORD_CHOICES = ("all", "not-done", "failed", "none")
SIS_COLUMNS = ("course_id", "user_id", "role", "section_id", "status")
# Trailing columns saying why a row failed; Canvas's importer and ours ignore unknown columns.
REASON_COLUMNS = (FAILURES_MARK, "canvas_tui_message")


@dataclass(frozen=True, slots=True)
class ReportPaths:
    json: Path
    failures_csv: Path


def failures_csv_path(report: Path) -> Path:
    """`report.json` -> `report.failures.csv`."""
    return report.with_name(f"{report.stem}.failures.csv")


def summary(store: Journal, state: RunState | None = None) -> dict[str, Any]:
    """Counts by state and category, requests, throttles, retries, elapsed (no per-record data)."""
    counts = store.counts()
    meta = store.meta()
    totals = store.attempt_totals()
    return {
        "schema_version": SCHEMA_VERSION,
        "journal": str(store.path),
        "source": meta.get("source"),
        "base_url": meta.get("base_url"),  # the Canvas the run sent to
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "phase": str(state.phase) if state is not None else None,
        "abort_reason": state.abort_reason if state is not None else None,
        "total": sum(counts.values()),
        "counts": {str(s): n for s, n in counts.items()},
        "failures_by_category": store.category_counts(State.FAILED),
        "requests": totals["requests"],
        "throttled": totals["throttled"],
        "retries": totals["retries"],
        "elapsed": round(
            state.elapsed if state is not None else float(meta.get("elapsed") or 0.0), 3
        ),
        "channels": store.channel_counts(),
        "sis_imports": [_import_summary(i) for i in store.imports()],
    }


def _import_summary(record: ImportRecord) -> dict[str, Any]:
    """A SIS import of the run: what was uploaded and how Canvas ended it."""
    return {
        "id": record.sis_import_id,
        "file": record.filename,
        "rows": record.rows,
        "state": record.state,
        "workflow_state": record.workflow_state,
        "progress": record.progress,
        "message": record.message,
    }


def _outcome(row: RecordRow, source: str | None) -> dict[str, Any]:
    """A record's line of the report: its fields that say something (schema 2 leaves out nulls,
    no warnings, and the source when it is the report's own), so 100,000 records stay small."""
    full = {
        "record_id": row.record_id,
        "source": row.source,
        "line": row.line,
        "user": row.user,
        "course": row.course,
        "section": row.section,
        "role": row.role,
        "status": row.status,
        "state": str(row.state),
        "action": row.action,
        "attempts": row.attempts,
        "http_status": row.http_status,
        "category": row.category,
        "message": row.message,
        "error_report_id": row.error_report_id,
        "canvas_enrollment_id": row.canvas_enrollment_id,
        "warnings": list(row.warnings),
        # which way it went to Canvas: sis_import, rest (requests were sent), else left out
        "channel": row.channel or ("rest" if row.attempts else None),
    }
    return {
        k: v
        for k, v in full.items()
        if v is not None and v != [] and not (k == "source" and v == source)
    }


def write_report(
    store: Journal, path: str | Path, state: RunState | None = None, *, records: str = "all"
) -> ReportPaths:
    """Write `path` (JSON) and its failures CSV beside it; returns both paths. `records`: which
    per-record rows the JSON lists (all | failed | none); the failures CSV has every failed one."""
    if records not in RECORD_CHOICES:
        raise ValueError(f"records must be one of {RECORD_CHOICES}, not {records!r}")
    path = Path(path)
    csv_path = failures_csv_path(path)
    head = summary(store, state)
    head["failures_csv"] = str(csv_path)
    head["records_listed"] = records
    rows: Iterator[RecordRow] = iter(())
    if records == "failed":
        rows = store.iter_rows(state=State.FAILED)
    elif records == "not-done":
        rows = (row for row in store.iter_rows() if row.state != State.DONE)
    elif records == "all":
        rows = store.iter_rows()
    source = head["source"]
    with open_private(path, "w", encoding="utf-8") as out:
        text = json.dumps(head, indent=2)
        out.write(text[: text.rindex("}")].rstrip() + ',\n  "records": [')
        for n, row in enumerate(rows):
            line = json.dumps(_outcome(row, source), separators=(",", ":"))
            out.write(("\n    " if n == 0 else ",\n    ") + line)
        out.write("\n  ]\n}\n")
    write_failures_csv(store, csv_path)
    return ReportPaths(path, csv_path)


def _sis_row(store: Journal, row: RecordRow) -> dict[str, str]:
    """The five SIS columns: the source's own values where it used SIS names, else derived from
    the normalized record (mapped CSV, SQL)."""
    raw = {k.strip().lower(): v for k, v in row.raw.items()}
    record = store.record(row.record_id)
    derived = {
        "course_id": sis_value(record.course) if record else sis_value(row.course),
        "user_id": sis_value(record.user) if record else sis_value(row.user),
        "role": record.role if record else row.role,
        "section_id": sis_value(record.section) if record else sis_value(row.section),
        "status": str(record.status) if record else row.status,
    }
    return {c: raw[c] if c in raw else derived[c] for c in SIS_COLUMNS}


def _failed(store: Journal) -> Iterator[RecordRow]:
    return store.iter_rows(state=State.FAILED)


def write_failures_csv(store: Journal, path: str | Path) -> int:
    """Failed records as enrollments.csv (+ the source's extra columns + why); returns the count."""
    extras: list[str] = []
    seen = {*SIS_COLUMNS, *REASON_COLUMNS}
    for row in _failed(store):
        for key in row.raw:
            if key.strip().lower() not in seen:
                seen.add(key.strip().lower())
                extras.append(key)
    n = 0
    with open_private(Path(path), "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow([neutralize_formula(c) for c in (*SIS_COLUMNS, *extras, *REASON_COLUMNS)])
        for row in _failed(store):
            sis = _sis_row(store, row)
            cells = (
                *(sis[c] for c in SIS_COLUMNS),
                *(row.raw.get(c, "") for c in extras),
                row.category or "",
                row.message or "",
            )
            # people open this file in a spreadsheet: no cell may run as a formula there
            writer.writerow([neutralize_formula(c) for c in cells])
            n += 1
    return n
