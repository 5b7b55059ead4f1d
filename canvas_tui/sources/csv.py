"""CSV sources: Canvas SIS `enrollments.csv`, or any CSV through a column mapping.

Read as Canvas reads it (../shared/CANVAS_API.md §6.5): a mandatory header row (case-insensitive
names), UTF-8 with or without a BOM, surrounding whitespace stripped, blank rows skipped. Lines are
decoded one block at a time so undecodable bytes fail only the row they are in, and every item
carries the physical line its row starts on (quoted fields may span lines).
"""

from __future__ import annotations

import codecs
import csv
import io
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Final

from canvas_tui.records import LISTED, InputError, RowProblem, SourceItem, clip
from canvas_tui.sources.normalize import Layout, RowNormalizer

_BLOCK: Final = 1 << 20
_UTF8_BOM: Final = codecs.BOM_UTF8
# The column our failures CSV (engine/report.py) ends with: a file that has it was written by us.
FAILURES_MARK: Final = "canvas_tui_category"
# A cell starting with one of these is a formula to a spreadsheet (OWASP "CSV Injection").
FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def neutralize_formula(value: str) -> str:
    """A cell for a CSV that people open in a spreadsheet: one that would start a formula gets
    a leading apostrophe (OWASP). Values that already start with apostrophes before such a
    character get one more, so `restore_formula` gives back exactly what was written."""
    return "'" + value if value.lstrip("'").startswith(FORMULA_START) else value


def restore_formula(value: str) -> str:
    """The inverse of `neutralize_formula`, for our failures CSV fed back as a source."""
    if value.startswith("'") and value.lstrip("'").startswith(FORMULA_START):
        return value[1:]
    return value


class CsvSource:
    """A CSV file streamed row by row; `notes` collects header-level remarks while iterating."""

    def __init__(
        self,
        path: str | Path,
        *,
        layout: Layout | None = None,
        encoding: str = "utf-8",
        delimiter: str = ",",
    ) -> None:
        self.path = Path(path)
        self.layout = layout or Layout()
        try:
            self.encoding = codecs.lookup(encoding).name
        except LookupError:
            raise InputError(f"unknown encoding {encoding!r} for {path}") from None
        if len(delimiter) != 1:
            raise InputError(f"the CSV delimiter must be one character, not {delimiter!r}")
        self.delimiter = delimiter
        self.notes: list[str] = []
        # Rows this says no to are passed over before they are normalized (a trace reads one
        # person's rows of 100,000 at the speed of the CSV parser); None keeps every row.
        self.keep: Callable[[list[str]], bool] | None = None
        # The rows a pass read to its end (`SourceCounts.of`): a later pass sizes its duplicate
        # index for them at once. A hint only: a file that grew since still reads right.
        self.expected_rows = 0

    @property
    def description(self) -> str:
        return str(self.path)

    def __iter__(self) -> Iterator[SourceItem]:
        label = str(self.path)
        try:
            handle = self.path.open("rb")
        except OSError as exc:
            raise InputError(f"{label}: cannot open: {exc.strerror or exc}") from None
        with handle:
            yield from self._read(handle, label)

    def _read(self, handle: BinaryIO, label: str) -> Iterator[SourceItem]:
        self.notes = []
        bad_lines: deque[tuple[int, str]] = deque()
        lines = _decode_lines(handle, self.encoding, bad_lines, self.notes)
        reader = csv.reader(lines, delimiter=self.delimiter, strict=True)

        header: list[str] | None = None
        header_line = end = 0
        while header is None:
            try:
                row = next(reader, None)
            except csv.Error as exc:
                raise InputError(f"{label}:{end + 1}: malformed header row: {exc}") from None
            start, end = end + 1, reader.line_num
            if row is None:
                raise InputError(
                    f"{label}: the file is empty; expected a header row such as "
                    "course_id,user_id,role,section_id,status"
                )
            if bad_lines and bad_lines[0][0] <= end:
                raise InputError(f"{label}:{bad_lines[0][0]}: header row: {bad_lines[0][1]}")
            if not _blank(row):
                header, header_line = row, start
        offset = 0  # lines read by an earlier reader (reader.line_num counts from its own start)
        delimiter = self.delimiter
        sniffed = _sniff(header, delimiter)
        if sniffed is not None:
            delimiter = sniffed
            header = next(csv.reader([header[0]], delimiter=delimiter))
            offset, reader = end, csv.reader(lines, delimiter=delimiter, strict=True)
            self.notes.append(
                f"{label}: read as {_DELIMITER_NAMES[delimiter]}-delimited (the header has no "
                f"{self.delimiter!r}); set [source] delimiter = {_toml_char(delimiter)} to say so"
            )
        normalizer = RowNormalizer(
            label, header, self.layout, header_line=header_line, expected_rows=self.expected_rows
        )
        self.notes.extend(normalizer.notes)
        width = len(header)
        normalize = normalizer.normalize
        # Our own failures CSV, fed back: undo its formula neutralization (other sources are
        # read as they are: their "'=x" means "'=x").
        written_by_us = FAILURES_MARK in (c.strip().lower() for c in header)
        data_rows = 0
        keep = self.keep

        while True:
            try:
                for row in reader:
                    start, end = end + 1, offset + reader.line_num
                    if written_by_us and "'" in "".join(row):
                        row = [restore_formula(v) for v in row]
                    if bad_lines and bad_lines[0][0] <= end:
                        yield self._undecodable(normalizer, row, start, end, bad_lines)
                        data_rows += 1
                        continue
                    if keep is not None and not keep(row):
                        continue
                    if not any(row):
                        continue  # blank lines are not rows (Canvas skips them too)
                    if len(row) == width:
                        item = normalize(row, start)
                        if item.__class__ is RowProblem and _blank(row):
                            continue  # whitespace only: blank as well
                    elif _blank(row):
                        continue
                    elif len(row) > width and _blank(row[width:]):
                        item = normalize(row[:width], start)  # trailing empty fields (a, b,,)
                    else:
                        item = _wrong_width(normalizer, row, start, header_line)
                    data_rows += 1
                    yield item
                break
            except csv.Error as exc:
                start, end = end + 1, offset + reader.line_num
                while bad_lines and bad_lines[0][0] <= end:
                    bad_lines.popleft()
                data_rows += 1
                yield normalizer.problem(
                    [],
                    start,
                    f"malformed CSV ({exc}); expected fields separated by {delimiter!r}, "
                    'with any " inside a field doubled and the field quoted',
                )
        if data_rows == 0:
            self.notes.append(f"{label}: header only, no data rows")

    def _undecodable(
        self,
        normalizer: RowNormalizer,
        row: list[str],
        start: int,
        end: int,
        bad_lines: deque[tuple[int, str]],
    ) -> RowProblem:
        line, message = bad_lines.popleft()
        while bad_lines and bad_lines[0][0] <= end:
            bad_lines.popleft()
        where = "" if line == start else f" (on line {line})"
        return normalizer.problem(
            row,
            start,
            f"{message}{where}; set [source] encoding to the file's encoding (e.g. cp1252)",
        )


_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


def _toml_char(delimiter: str) -> str:
    return '"\\t"' if delimiter == "\t" else f'"{delimiter}"'


def _sniff(header: list[str], delimiter: str) -> str | None:
    """The delimiter a one-column header really uses, when splitting it by one of the usual
    ones yields Canvas's own column names (a European Excel export uses `;`)."""
    if len(header) != 1:
        return None
    lowered = header[0].lower()
    for candidate in _DELIMITER_NAMES:
        if candidate == delimiter or candidate not in lowered:
            continue
        names = {name.strip().strip('"') for name in lowered.split(candidate)}
        if len(names & {"course_id", "user_id", "section_id", "role", "status"}) >= 2:
            return candidate
    return None


def _blank(row: list[str]) -> bool:
    return not "".join(row).strip()


def _wrong_width(
    normalizer: RowNormalizer, row: list[str], line: int, header_line: int
) -> RowProblem:
    width = len(normalizer.columns)
    if len(row) > width:
        shown = [clip(repr(v), 40) for v in row[width : width + LISTED]]
        more = len(row) - width - len(shown)
        extra = ", ".join(shown) + (f", … ({more} more)" if more else "")
        return normalizer.problem(
            row,
            line,
            f"{len(row)} fields, expected {width} as in the header (line {header_line}); "
            f"extra: {extra}",
            column=width + 1,
        )
    missing = normalizer.columns[len(row) :]
    last = f"after {normalizer.columns[len(row) - 1]!r}" if row else "at once"
    return normalizer.problem(
        row,
        line,
        f"{len(row)} fields, expected {width} as in the header (line {header_line}): the row "
        f"ends {last}, so {', '.join(repr(c) for c in missing)} "
        f"{'is' if len(missing) == 1 else 'are'} missing (a lost delimiter, or a line break "
        "inside an unquoted field?)",
        field=missing[0],
        column=len(row) + 1,
    )


def _decode_lines(
    handle: BinaryIO, encoding: str, bad_lines: deque[tuple[int, str]], notes: list[str]
) -> Iterator[str]:
    """Physical lines as text (ends kept, as csv wants); undecodable lines are reported in
    `bad_lines` and yielded with replacement characters so the CSV structure survives."""
    if "\n".encode(encoding) != b"\n":  # UTF-16/32: no byte-level line splitting possible
        yield from _decode_wide(handle, encoding)
        return
    head = handle.read(len(_UTF8_BOM))
    if head == _UTF8_BOM:
        if encoding not in ("utf-8", "utf-8-sig"):
            notes.append(f"the file starts with a UTF-8 byte-order mark but encoding is {encoding}")
        head = b""
    carry = head
    lineno = 0
    while True:
        block = handle.read(_BLOCK)
        data = carry + block
        if not block:
            if data:
                yield from _decode_block(data, encoding, lineno, bad_lines)
            return
        cut = data.rfind(b"\n")
        if cut < 0:  # old-Mac line ends; never split a \r\n pair across blocks
            cut = data.rfind(b"\r", 0, len(data) - 1)
        if cut < 0:
            carry = data
            continue
        complete, carry = data[: cut + 1], data[cut + 1 :]
        yield from _decode_block(complete, encoding, lineno, bad_lines)
        lineno += complete.count(b"\n") + complete.count(b"\r") - complete.count(b"\r\n")


def _decode_block(
    data: bytes, encoding: str, lineno: int, bad_lines: deque[tuple[int, str]]
) -> Iterator[str]:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        pass
    else:
        # newline="" splits on \n, \r and \r\n only, exactly like bytes.splitlines below.
        yield from io.StringIO(text, newline="")
        return
    for number, raw in enumerate(data.splitlines(keepends=True), lineno + 1):
        try:
            yield raw.decode(encoding)
        except UnicodeDecodeError as exc:
            bad = raw[exc.start : exc.end]
            bad_lines.append(
                (number, f"undecodable bytes {bad!r} at byte {exc.start + 1}: not {encoding}")
            )
            yield raw.decode(encoding, "replace")


def _decode_wide(handle: BinaryIO, encoding: str) -> Iterator[str]:
    text = io.TextIOWrapper(handle, encoding=encoding, newline="")
    try:
        yield from text
    except UnicodeError as exc:  # no line-level recovery without byte-level line ends
        raise InputError(f"cannot decode the file as {encoding}: {exc}") from None
    finally:
        text.detach()
