"""Enrollment-change messages (one JSON object per event on a topic) -> records.

The shape of a message is the shape of one row of a source: a flat JSON object whose keys are
the columns. With `[source] format = "canvas"` they are named as in Canvas's enrollments.csv;
with `"mapped"` they are the registrar's own names, given by `[source.mapping]`. `defaults`,
`values` and `ids` apply as they do to a CSV or SQL row, and each message becomes the same
`EnrollmentRecord` a row would (sources/normalize.py, the one place rows become records):

    {"course_id": "BIO-101", "section_id": "BIO-101-01", "user_id": "S001",
     "role": "student", "status": "active"}

- `status` says what the change is: `active` (an add, or back from a drop), `inactive`,
  `completed` (concluded) or `deleted` (a drop, as in enrollments.csv).
- A value is a string; a number is read as its decimal text and `true`/`false` as those words.
  `null`, `""` or a missing key is a blank column: Canvas keeps what it has (records.Unchanged).
- Keys Canvas's enrollments.csv does not know are ignored, with a warning on the record (in the
  "canvas" format), so a mistyped optional key is seen, not silently dropped.

A message that cannot be a record is a `RowProblem` naming why (not UTF-8, not JSON, not an
object, a nested value, a missing or bad column) and fails alone; an empty message (a Kafka
tombstone) is skipped. Nothing here stops the stream. Each message is read on its own: a stream
has no "duplicate row" (the same add after a drop is a change), so no duplicate index is kept.

The provenance of a message is its topic and partition as the source, and its offset as the
line: `enrollments:0:57` is partition 0, offset 57 of topic `enrollments`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

from canvas_tui.records import (
    LISTED,
    EnrollmentRecord,
    InputError,
    Provenance,
    RowProblem,
    SourceItem,
    clip,
)
from canvas_tui.sources.normalize import MAX_COLUMNS, Layout, RowNormalizer

MAX_MESSAGE_BYTES = 1 << 20  # Kafka's default message.max.bytes: a bigger one is no enrollment


def message_source(topic: str, partition: int) -> str:
    """The provenance source of a partition's messages: `topic:partition`."""
    return f"{topic}:{partition}"


def message_item(value: bytes | None, source: str, offset: int, layout: Layout) -> SourceItem:
    """One message -> a record, or the problem that stops it (never an exception)."""
    if value is None:
        return RowProblem(
            Provenance(source, offset, {}),
            "an empty message (a tombstone) carries no enrollment change: skipped",
            skip=True,
        )
    if len(value) > MAX_MESSAGE_BYTES:
        return _problem(source, offset, {}, f"a message of {len(value)} bytes: not an enrollment")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _problem(
            source, offset, {}, f"not UTF-8 text (byte {exc.start + 1}): {value[:80]!r}"
        )
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return _problem(source, offset, {"message": clip(text, 200)}, f"not a JSON object: {exc}")
    if not isinstance(data, dict):
        return _problem(
            source,
            offset,
            {"message": clip(text, 200)},
            f"a JSON {_json_type(data)} where an object of enrollment fields is expected",
        )
    return _fields_item(data, source, offset, layout)


def _fields_item(
    data: Mapping[str, object], source: str, offset: int, layout: Layout
) -> SourceItem:
    if len(data) > MAX_COLUMNS:
        head = {k: clip(str(v), 80) for k, v in list(data.items())[:LISTED]}
        return _problem(source, offset, head, f"{len(data)} keys: at most {MAX_COLUMNS} are read")
    raw: dict[str, str] = {}
    for key, value in data.items():
        text = _text(value)
        if text is None:
            raw[key] = clip(json.dumps(value), 200)
            return _problem(
                source,
                offset,
                raw,
                f"{key} holds a JSON {_json_type(value)}; expected text, a number, "
                "true/false or null",
                field=key,
            )
        raw[key] = text
    columns = list(raw)
    try:
        normalizer = RowNormalizer(source, columns, layout, header_line=0)
    except InputError as exc:
        message = str(exc).removeprefix(f"{source}: ").replace("in the source", "in the message")
        return _problem(source, offset, raw, message)
    item = normalizer.normalize([raw[c] for c in columns], offset)
    if isinstance(item, EnrollmentRecord) and normalizer.notes:
        notes = tuple(n.removeprefix(f"{source}: ") for n in normalizer.notes)
        return dataclasses.replace(item, warnings=(*item.warnings, *notes))
    return item


def _text(value: object) -> str | None:
    """A JSON value as a column's text; None for an object or array (no column holds one)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return json.dumps(value)  # 12 -> "12", not "12.0"; a float keeps its JSON spelling
    return None


def _json_type(value: object) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool) or value is None:
        return "literal"
    return "number"


def _problem(
    source: str, offset: int, raw: Mapping[str, str], message: str, *, field: str | None = None
) -> RowProblem:
    return RowProblem(Provenance(source, offset, dict(raw)), clip(message), field)
