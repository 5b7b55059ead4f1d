"""The enrollments.csv a SIS import uploads: the plan's changes, one row per record, each with the
status that leaves the enrollment as the plan wants it (CANVAS_API.md §6.5).

What a blank cell does in Canvas's importer decides what each column carries
(instructure/canvas-lms lib/sis/csv/enrollment_importer.rb, lib/sis/enrollment_importer.rb):

- `limit_section_privileges` is written only when the cell has a value, so a blank cell keeps
  Canvas's value: the column is blank when the source left it blank (`UNCHANGED`).
- `start_date` / `end_date` are parsed only when present, and the importer then sets
  `start_at = start_date`, `end_at = end_date` whatever they were: a blank cell *clears* the
  date. So a date the source left blank carries the value the enrollment holds now (read with
  the roster, `Step.fields`); the row then changes nothing there.
- Cells are stripped (`field&.strip&.presence`) and the header downcased; a row whose ids have
  outer spaces or line breaks cannot be written faithfully and stays on REST.

Rows the import cannot express stay on REST in the same run (`ImportRow.why_rest`): users,
courses or sections named by Canvas id or login id (the file takes SIS ids only), lookup steps
(decided when sent), steps on several enrollments (the importer touches one), `invited` as the
created state (the importer creates `active`), and the plan's drops (named by Canvas ids).

Rows are numbered as Canvas numbers them in its errors: 1-based, the header row being row 1
(`csv_rows` in lib/sis/csv/csv_base_importer.rb adds 2 to the 0-based data index).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from canvas_tui.engine.plan.diff import Step, Via
from canvas_tui.records import UNCHANGED, EnrollmentRecord, SisStatus, split_api_id

COLUMNS = (
    "course_id",
    "section_id",
    "user_id",
    "user_integration_id",
    "role",
    "role_id",
    "status",
    "associated_user_id",
    "start_date",
    "end_date",
    "limit_section_privileges",
    "notify",
)
FIRST_ROW = 2  # the first data row's number in Canvas's errors (the header is row 1)
# the cells taken from the source as they are (the importer strips every cell)
_IDS = (
    "course_id",
    "section_id",
    "user_id",
    "user_integration_id",
    "role",
    "role_id",
    "associated_user_id",
    "start_date",
    "end_date",
)

# the status a via leaves the enrollment in (the importer's own states, §6.5)
_STATUS_OF_VIA = {
    Via.PUT_REACTIVATE: "active",
    Via.DELETE_INACTIVATE: "inactive",
    Via.DELETE_CONCLUDE: "completed",
    Via.DELETE_DELETE: "deleted",
    Via.POST_THEN_CONCLUDE: "completed",
    Via.POST_THEN_DELETE: "deleted",
}
# the importer's role words for the base types (case-insensitive there; written lower-case)
_ROLE_WORD = {
    "StudentEnrollment": "student",
    "TeacherEnrollment": "teacher",
    "TaEnrollment": "ta",
    "ObserverEnrollment": "observer",
    "DesignerEnrollment": "designer",
}


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One record as a row of the file, or why it goes by REST instead."""

    cells: dict[str, str] | None
    why_rest: str | None = None

    @property
    def importable(self) -> bool:
        return self.cells is not None


def _rest(why: str) -> ImportRow:
    return ImportRow(None, why)


def _clean(value: str) -> bool:
    """A value the importer reads back as it is written (it strips cells; no line breaks)."""
    return value == value.strip() and "\n" not in value and "\r" not in value


def import_row(
    record: EnrollmentRecord,
    step: Step | None,
    *,
    active_state: str = "active",
    notify: bool = False,
) -> ImportRow:
    """The record's row in the file, or why it stays on REST. `step`: its planned step."""
    if step is None:
        return _rest("no planned step (edited, resumed or not planned)")
    via = step.via
    if via is Via.LOOKUP or via is Via.NOTHING:
        return _rest("decided when sent (a lookup)")
    if via.task is not None and not via.posts and len(step.enrollment_ids) != 1:
        return _rest("acts on several enrollments; the importer changes one")
    if via is Via.POST:
        status = "inactive" if record.status is SisStatus.INACTIVE else "active"
    else:
        status = _STATUS_OF_VIA[via]
    if status == "active" and active_state != "active":
        return _rest(f"enrollment_state {active_state}: an import creates active enrollments")
    cells = dict.fromkeys(COLUMNS, "")
    user_kind, user = split_api_id(record.user)
    if user_kind == "sis_user_id":
        cells["user_id"] = user
    elif user_kind == "sis_integration_id":
        cells["user_integration_id"] = user
    else:
        return _rest("the user is not named by an SIS id")
    if record.course is not None:
        kind, value = split_api_id(record.course)
        if kind != "sis_course_id":
            return _rest("the course is not named by an SIS id")
        cells["course_id"] = value
    if record.section is not None:
        kind, value = split_api_id(record.section)
        if kind != "sis_section_id":
            return _rest("the section is not named by an SIS id")
        cells["section_id"] = value
    if record.associated_user is not None:
        kind, value = split_api_id(record.associated_user)
        if kind != "sis_user_id":
            return _rest("the observed user is not named by an SIS id")
        cells["associated_user_id"] = value
    if record.role_id:
        cells["role_id"] = record.role_id
    elif record.enrollment_type in _ROLE_WORD and record.role.lower() in (
        _ROLE_WORD[record.enrollment_type],
        record.enrollment_type.lower(),
    ):
        cells["role"] = _ROLE_WORD[record.enrollment_type]
    else:
        cells["role"] = record.role  # a custom role's name, case-sensitive in both channels
    cells["status"] = status
    fields = step.fields
    limit = record.limit_section_privileges
    if limit is not UNCHANGED:
        cells["limit_section_privileges"] = "true" if limit else "false"
    for column, name in (("start_date", "start_at"), ("end_date", "end_at")):
        given: str | None
        value = getattr(record, name)
        if value is UNCHANGED:
            # a blank cell would clear it: carry what Canvas holds (None for a new enrollment)
            if fields is None:
                return _rest("the enrollment's dates are not known to carry")
            given = getattr(fields, name)
        else:
            given = value
        cells[column] = given or ""
    if record.notify or notify:
        cells["notify"] = "true"
    if not all(_clean(cells[c]) for c in _IDS if cells[c]):
        return _rest("an id has outer spaces or a line break the importer would not keep")
    return ImportRow(cells)


@dataclass(slots=True)
class ImportFile:
    """The file being built: its text and which record each row carries."""

    rows: list[tuple[int, int]]  # (row number as Canvas counts it, record id)
    _buffer: io.StringIO
    _writer: Any  # a csv writer (its type is private to the csv module)
    _ends: list[int]  # where each row's line ends in the text

    @classmethod
    def new(cls) -> ImportFile:
        buffer = io.StringIO()
        # "\n" line ends: Canvas's CSV reader takes them, and each row is one physical line
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        return cls([], buffer, writer, [buffer.tell()])

    def add(self, record_id: int, row: ImportRow) -> int:
        """Append a row; returns its row number."""
        cells = row.cells
        assert cells is not None, "only importable rows are written"
        number = FIRST_ROW + len(self.rows)
        self._writer.writerow([cells[c] for c in COLUMNS])
        self._ends.append(self._buffer.tell())
        self.rows.append((number, record_id))
        return number

    def without(self, record_ids: set[int]) -> ImportFile:
        """The same file without the rows of these records, renumbered."""
        if not record_ids:
            return self
        text = self._buffer.getvalue()
        out = ImportFile.new()
        for index, (_number, record_id) in enumerate(self.rows):
            if record_id not in record_ids:
                out._buffer.write(text[self._ends[index] : self._ends[index + 1]])
                out._ends.append(out._buffer.tell())
                out.rows.append((FIRST_ROW + len(out.rows), record_id))
        return out

    def __len__(self) -> int:
        return len(self.rows)

    def body(self) -> bytes:
        return self._buffer.getvalue().encode("utf-8")


def read_rows(body: bytes) -> Iterable[tuple[int, dict[str, str]]]:
    """(row number, cells) of an uploaded file, numbered as Canvas numbers them."""
    reader = csv.DictReader(io.StringIO(body.decode("utf-8")))
    for index, cells in enumerate(reader):
        yield FIRST_ROW + index, dict(cells)
