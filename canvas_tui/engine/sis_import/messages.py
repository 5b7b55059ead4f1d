"""Canvas's messages about an import, tied back to the rows (and so the records) they are about.

Canvas keeps every row-level problem as a SisBatchError with its row number (1-based, header = 1)
and gives them two ways (app/models/sis_batch.rb):

- inline, in `processing_errors` / `processing_warnings`: at most 24 of each, as `[file, message]`
  pairs *without* the row, then `["and N more ... that were not included", "Download the error
  file to see all ..."]`;
- whole, in `errors_attachment`: a CSV `sis_import_id,file,message,row` (`write_errors_to_file`).

The errors file is the one with rows, so it is read whenever Canvas offers one. Without it (an
old Canvas, or a download refused), an inline message is tied to a row by the ids it quotes
(`User not found for enrollment (User ID: u, Course ID: c, Section ID: s)`, §6.5); a message
that names no row cannot certify any row, which `MappedMessages.complete` says.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from canvas_tui.canvas.errors import Category

MORE = re.compile(r"^and (\d+) more (errors|warnings) that were not included", re.IGNORECASE)
_QUOTED = re.compile(r"(User ID|Course ID|Section ID|user|course|section):\s*([^,()]*)")
_THRESHOLD = re.compile(r"change_threshold|threshold", re.IGNORECASE)

# Canvas's row messages (lib/sis/enrollment_importer.rb, §6.5) -> the category an operator acts on
_CATEGORIES: tuple[tuple[str, Category], ...] = (
    ("user not found", Category.USER_NOT_FOUND),
    ("non-existent associated user", Category.USER_NOT_FOUND),
    ("neither course nor section existed", Category.COURSE_NOT_FOUND),
    ("non-existent section", Category.SECTION_NOT_FOUND),
    ("non-existent course", Category.COURSE_NOT_FOUND),
    ("that are unrelated", Category.SECTION_NOT_FOUND),
    ("improper role", Category.INVALID_ROLE),
    ("concluded", Category.CONCLUDED),
    ("improper status", Category.INVALID_INPUT),
    ("bad date format", Category.INVALID_INPUT),
    ("no course_id or section_id", Category.INVALID_INPUT),
    ("no user_id given", Category.INVALID_INPUT),
)


def category_of(message: str) -> Category:
    lowered = message.lower()
    for text, category in _CATEGORIES:
        if text in lowered:
            return category
    return Category.BAD_REQUEST


def is_threshold(message: str) -> bool:
    return bool(_THRESHOLD.search(message))


@dataclass(frozen=True, slots=True)
class RowMessage:
    row: int
    message: str
    error: bool  # Canvas's error (failure) rather than a warning


@dataclass(slots=True)
class MappedMessages:
    """Each row's messages, and what could not be tied to a row."""

    by_row: dict[int, list[RowMessage]] = field(default_factory=lambda: defaultdict(list))
    unmapped: list[str] = field(default_factory=list)  # messages that name no row of the file
    expected: int = 0  # how many row messages Canvas counted (warning_count + error_count)

    @property
    def mapped(self) -> int:
        return sum(len(v) for v in self.by_row.values())

    @property
    def complete(self) -> bool:
        """Every message Canvas counted is tied to a row: the rows without one are clean."""
        return not self.unmapped and self.mapped >= self.expected


def inline_messages(status: Mapping[str, Any]) -> tuple[list[tuple[str, str, bool]], int]:
    """(file, message, is_error) of the inlined messages, and how many were left out."""
    out: list[tuple[str, str, bool]] = []
    left_out = 0
    for key, error in (("processing_errors", True), ("processing_warnings", False)):
        for pair in status.get(key) or []:
            if not isinstance(pair, Sequence) or len(pair) < 2:
                continue
            file, message = str(pair[0]), str(pair[1])
            more = MORE.match(file)
            if more:
                left_out += int(more.group(1))
                continue
            out.append((file, message, error))
    return out, left_out


def counted(status: Mapping[str, Any]) -> tuple[int, int]:
    """(warning_count, error_count) as Canvas counts them (data.counts), else as inlined."""
    counts = (status.get("data") or {}).get("counts") or {}
    inline, left_out = inline_messages(status)
    warnings = counts.get("warning_count")
    errors = counts.get("error_count")
    if warnings is None or errors is None:
        n_errors = sum(1 for *_x, e in inline if e)
        return len(inline) - n_errors + left_out, n_errors
    return int(warnings), int(errors)


def read_errors_file(text: str, rows: Iterable[int]) -> MappedMessages:
    """The errors_attachment CSV (`sis_import_id,file,message,row`) tied to the file's rows.
    The file does not say warning or error; its messages are all taken as the row's failure."""
    known = set(rows)
    mapped = MappedMessages()
    reader = csv.DictReader(io.StringIO(text))
    for cells in reader:
        message = (cells.get("message") or "").strip()
        raw_row = (cells.get("row") or "").strip()
        if raw_row.isdigit() and int(raw_row) in known:
            row = int(raw_row)
            mapped.by_row[row].append(RowMessage(row, message, error=False))
        elif message:
            mapped.unmapped.append(message)
    return mapped


def map_inline(
    messages: Iterable[tuple[str, str, bool]], file_rows: Iterable[tuple[int, Mapping[str, str]]]
) -> MappedMessages:
    """Inline messages tied to rows by the ids they quote: a message goes to every row of the
    file with that user, course and section (the importer found them all alike)."""
    index: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for row, cells in file_rows:
        user = cells.get("user_id") or cells.get("user_integration_id") or ""
        index[(user, cells.get("course_id") or "", cells.get("section_id") or "")].append(row)
    mapped = MappedMessages()
    for _file, message, error in messages:
        quoted = {k.lower().split()[0]: v.strip() for k, v in _QUOTED.findall(message)}
        key = (quoted.get("user", ""), quoted.get("course", ""), quoted.get("section", ""))
        rows = index.get(key, [])
        if not rows and key[0]:
            # a message may quote only some of the ids: match on those it gives
            rows = [
                r
                for (u, c, s), rs in index.items()
                for r in rs
                if u == key[0] and key[1] in ("", c) and key[2] in ("", s)
            ]
        if not rows:
            mapped.unmapped.append(message)
            continue
        for row in rows:
            mapped.by_row[row].append(RowMessage(row, message, error))
    return mapped
