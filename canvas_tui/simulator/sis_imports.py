"""Canvas's SIS Import API, for enrollments files (../shared/CANVAS_API.md §6).

What each part follows in instructure/canvas-lms:
- the endpoints, their checks and error bodies: app/controllers/sis_imports_api_controller.rb;
- the batch's life (states, the strand of one import at a time per root account, abort, batch
  cleanup and its change_threshold, diffing, the 24 inlined messages, the errors file):
  app/models/sis_batch.rb;
- reading the upload (zip or CSV, UTF-8, headers, row numbers, progress by parallel chunks):
  lib/sis/csv/import_refactored.rb, lib/sis/csv/csv_base_importer.rb;
- one enrollments row: lib/sis/csv/enrollment_importer.rb, lib/sis/models/enrollment.rb,
  lib/sis/enrollment_importer.rb;
- the SisImport JSON: SisBatch#as_json and lib/api/v1/sis_import.rb.

Processing is lazy and driven by the simulator's clock: whenever a request comes in (or
`SisImports.advance` is called), every row that the configured rate allows since the import
started is applied to the world, so the REST side sees the import's effects as they happen. An
import processes `SimConfig.sis_import_rate` rows per world second, after waiting
`SimConfig.sis_import_start_delay` world seconds for its job to be picked up; imports of a root
account run one at a time, oldest first.

Only enrollments files are simulated. A file whose header Canvas would read as another kind
(users, courses, sections, terms) fails the import with a message saying so, rather than
pretending to import it.
"""

from __future__ import annotations

import csv
import io
import math
import re
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from canvas_tui.simulator import views
from canvas_tui.simulator.views import HttpError, Response
from canvas_tui.simulator.world import (
    ROOT_ACCOUNT_ID,
    Course,
    Enrollment,
    Role,
    Section,
    Token,
    User,
    World,
)

Clock = Callable[[], float]

# SIS::CSV::DiffGenerator::VALID_ENROLLMENT_DROP_STATUS / VALID_USER_REMOVE_STATUS
VALID_ENROLLMENT_DROP_STATUS = ("deleted", "completed", "inactive", "deleted_last_completed")
VALID_USER_REMOVE_STATUS = ("deleted", "suspended")
WORKFLOW_STATES = (
    "initializing",
    "created",
    "importing",
    "cleanup_batch",
    "imported",
    "imported_with_messages",
    "aborted",
    "failed",
    "failed_with_messages",
    "restoring",
    "partially_restored",
    "restored",
)
NOT_COMPLETED = frozenset({"initializing", "created", "importing", "cleanup_batch"})
SUCCEEDED = frozenset({"imported", "imported_with_messages"})
# SisBatch.abort_batch requeues the account's job 10 minutes later when imports are waiting.
ABORT_REQUEUE_SECONDS = 600.0
# ImportRefactored#process: `@total_rows <= Setting 'sis_batch_parallelism_count_threshold' (50)`
# runs every importer at once and sets no progress until the end. @total_rows starts at 1.
RUN_IMMEDIATELY_ROWS = 50
INLINED_MESSAGES = 24  # SisBatch#populate_old_warnings_and_errors
CLEANUP_BATCH = 1000  # find_in_batches in remove_non_batch_enrollments
# ImportRefactored::IMPORTERS, pluralized: the keys of data.counts.
COUNT_KEYS = (
    "change_sis_ids",
    "accounts",
    "terms",
    "abstract_courses",
    "courses",
    "sections",
    "xlists",
    "users",
    "logins",
    "enrollments",
    "admins",
    "group_categories",
    "groups",
    "group_memberships",
    "grade_publishing_results",
    "user_observers",
)
# SisBatchRollBackData::RESTORE_ORDER [inferred: the types the statistics report]
STATISTIC_TYPES = (
    "Account",
    "EnrollmentTerm",
    "AbstractCourse",
    "Course",
    "CourseSection",
    "GroupCategory",
    "Group",
    "Pseudonym",
    "CommunicationChannel",
    "Enrollment",
    "GroupMembership",
    "UserObserver",
    "AccountUser",
)
IGNORE_FILES = re.compile(r"__macosx|desktop d[bf]|\A\..*", re.IGNORECASE)
STATUS_RE = re.compile(r"\A(active|deleted|completed|inactive)", re.IGNORECASE)
TRUE_VALUES = frozenset({"true", "1", "t", "yes", "y", "on"})
MEDIA_EXTENSIONS = {
    "application/zip": "zip",
    "text/xml": "xml",
    "text/plain": "csv",
    "text/csv": "csv",
}
# SIS::CSV::EnrollmentImporter.identifying_fields: the key of a row when diffing
IDENTIFYING_FIELDS = (
    "course_id",
    "section_id",
    "user_id",
    "user_integration_id",
    "role",
    "associated_user_id",
)


def value_to_boolean(value: Any) -> bool:
    """Canvas::Plugin.value_to_boolean, for the strings a request carries."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in TRUE_VALUES


def present(value: Any) -> bool:
    return value is not None and str(value).strip() != ""


def iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


@dataclass
class Message:
    """A SisBatchError: `failure` ones are errors, the rest warnings."""

    file: str | None
    message: str
    row: int | None = None
    failure: bool = False


@dataclass(slots=True)
class Row:
    """One data row: its cells (blank ones None) and the column positions of its file's header,
    shared by the file's rows (100,000 dicts would cost the simulator's CPU in garbage
    collection)."""

    file: str
    lineno: int
    cells: tuple[str | None, ...]
    columns: dict[str, int]

    def get(self, name: str) -> str | None:
        index = self.columns.get(name)
        return None if index is None else self.cells[index]

    @property
    def values(self) -> dict[str, str | None]:
        return {column: self.cells[index] for column, index in self.columns.items()}

    @classmethod
    def of(cls, file: str, lineno: int, values: dict[str, str | None]) -> Row:
        return cls(file, lineno, tuple(values.values()), {c: i for i, c in enumerate(values)})


@dataclass
class Change:
    """One SisBatchRollBackData row: an enrollment's state before and after a save."""

    enrollment: Enrollment
    before: str  # "non-existent" for a row the import created
    after: str
    batch_mode: bool = False  # dropped by the batch mode cleanup
    restored: bool = False


@dataclass
class Upload:
    """The stored attachment: its name decides zip or CSV (ImportRefactored#prepare). A raw post
    is named `sis_import.<extension>` (the controller's set_file_attributes); messages about a
    single CSV name the upload's file name [inferred: Canvas reads a local copy of it], those
    about a zip name its member."""

    filename: str
    content_type: str
    data: bytes


@dataclass
class SisImport:
    id: int
    account_id: int
    user_id: int
    upload: Upload
    created_clock: float
    created_wall: datetime
    workflow_state: str = "initializing"
    progress: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    updated_at: datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    batch_mode: bool = False
    batch_mode_term_id: int | None = None
    change_threshold: int | None = None
    diffing_data_set_identifier: str | None = None
    diffing_remaster: bool = False
    diffing_threshold_exceeded: bool | None = None
    messages: list[Message] = field(default_factory=list)
    processing_errors: list[list[Any]] = field(default_factory=list)
    processing_warnings: list[list[Any]] = field(default_factory=list)
    errors_attachment: Attachment | None = None
    csv_attachments: list[Attachment] = field(default_factory=list)  # once it is prepared
    # processing
    phase: str = "waiting"  # waiting | importing | cleanup | done
    phase_started: float = 0.0
    rows: list[Row] = field(default_factory=list)
    done: int = 0
    chunk: int = 1
    cleanup_targets: list[Enrollment] = field(default_factory=list)
    cleanup_drop_status: str = "deleted"
    changes: list[Change] = field(default_factory=list)  # its SisBatchRollBackData
    succeeded_rows: int = 0
    enrollment_rows: list[Row] = field(default_factory=list)  # as uploaded, for diffing
    pending_deletes: list[Enrollment] = field(default_factory=list)
    roles_by_account: dict[int, list[Role]] = field(default_factory=dict)
    stop_at: int | None = None  # rows an aborted import still applies (its current chunk)
    applied: int = 0  # rows read so far, for the simulator's stats


@dataclass
class RestoreJob:
    """The Progress of a restore_states job."""

    id: int
    batch: SisImport
    user_id: int
    changes: list[Change]
    partial: bool  # undelete_only, unconclude_only or batch_mode: partially_restored
    created_clock: float
    created_wall: datetime
    updated_wall: datetime
    workflow_state: str = "queued"  # queued | running | completed
    completion: float = 0.0
    done: int = 0


@dataclass
class Attachment:
    id: int
    uuid: str
    filename: str
    data: bytes
    verifier: str
    created_wall: datetime


class SisImports:
    """The SIS imports of one simulated Canvas. Every public method runs under the simulator's
    lock; `advance` first, so answers reflect the clock."""

    def __init__(
        self,
        world: World,
        clock: Clock,
        *,
        time_scale: float,
        rows_per_second: float,
        start_delay: float,
        enabled: bool = True,
        error_report: Callable[[], int],
    ) -> None:
        if rows_per_second <= 0:
            raise ValueError(f"sis_import_rate must be positive, not {rows_per_second}")
        if start_delay < 0:
            raise ValueError(f"sis_import_start_delay must not be negative, not {start_delay}")
        self.world = world
        self.clock = clock
        self.time_scale = time_scale
        self.rows_per_second = rows_per_second
        self.start_delay = start_delay
        self.enabled = enabled
        self._error_report = error_report
        self.imports: dict[int, SisImport] = {}
        self.attachments: dict[int, Attachment] = {}
        self._next_id = 100
        self._next_attachment_id = 9_000
        self.restores: dict[int, RestoreJob] = {}
        self._next_progress_id = 5_000
        self._free_at = 0.0  # when the account's strand may start the next import
        self._crash_next: str | None = None
        self._wall_origin = (datetime.now(UTC), clock())

    # ---- time -----------------------------------------------------------------------------

    def _wall(self, at: float) -> datetime:
        """The wall time of clock reading `at` (world time: scaled like everything else)."""
        wall, origin = self._wall_origin
        return wall + timedelta(seconds=(at - origin) * self.time_scale)

    @property
    def _rate(self) -> float:
        """Rows per clock second."""
        return self.rows_per_second * self.time_scale

    def stats(self) -> dict[str, Any]:
        """For `/__sim__/stats`: imports by state, rows applied, the rate in force."""
        by_state: dict[str, int] = {}
        for batch in self.imports.values():
            by_state[batch.workflow_state] = by_state.get(batch.workflow_state, 0) + 1
        return {
            "imports": len(self.imports),
            "by_state": by_state,
            "rows_applied": sum(b.applied for b in self.imports.values()),
            "rate_per_world_second": self.rows_per_second,
        }

    # ---- the strand -----------------------------------------------------------------------

    def crash_next(self, message: str = "simulated crash of the import job") -> None:
        """The next import to start fails outright (`failed`, data.error_message), as a job
        that raises before the importer runs does (SisBatch#process_without_send_later)."""
        self._crash_next = message

    def advance(self, now: float | None = None) -> None:
        """Apply everything the clock allows: imports one after another, then restores."""
        now = self.clock() if now is None else now
        self._advance_imports(now)
        self._advance_restores(now)

    def _advance_imports(self, now: float) -> None:
        while True:
            running = next(
                (i for i in self._ordered() if i.phase in ("importing", "cleanup")), None
            )
            if running is None:
                waiting = [i for i in self._ordered() if i.phase == "waiting"]
                if not waiting:
                    return
                batch = waiting[0]
                start = max(batch.created_clock + self.start_delay / self.time_scale, self._free_at)
                if start > now:
                    return
                self._start(batch, start)
                continue
            finished_at = self._run(running, now)
            if finished_at is None:
                return
            self._free_at = max(self._free_at, finished_at)

    def _ordered(self) -> list[SisImport]:
        return sorted(self.imports.values(), key=lambda i: (i.created_clock, i.id))

    def _start(self, batch: SisImport, at: float) -> None:
        """SisBatch#process_without_send_later, then ImportRefactored#prepare/#process."""
        batch.updated_at = self._wall(at)
        if batch.workflow_state == "aborted":  # aborted while waiting: progress 100, no run
            batch.progress = 100
            batch.phase = "done"
            return
        batch.workflow_state = "importing"
        batch.progress = 0
        batch.started_at = self._wall(at)
        batch.phase = "importing"
        batch.phase_started = at
        if self._crash_next is not None:
            message, self._crash_next = self._crash_next, None
            batch.data["error_message"] = message
            batch.data["stack_trace"] = f"{message}\n(simulated)"
            batch.workflow_state = "failed"
            batch.phase = "done"
            self._free_at = max(self._free_at, at)
            return
        try:
            files = self._files_of(batch)
        except _ImportCrash as crash:
            self._fail_with_error(batch, crash.filename, at)
            return
        rows = self._read(batch, files)
        batch.enrollment_rows = rows
        diffed = self._diff(batch, rows)
        if diffed is None:  # process_instructure_csv_zip: an empty diff just finishes
            batch.rows = []
            self._finish(batch, at, import_finished=True)
            return
        rows = diffed
        if "diffed_against_sis_batch_id" not in batch.data:
            self._keep_uploaded(batch, files, at)
        supplied = ["enrollment"] if any(f[2] == "enrollment" for f in files) else []
        batch.data["supplied_batches"] = supplied
        batch.data["counts"] = {key: 0 for key in COUNT_KEYS}
        total_rows = len(rows) + 1
        batch.data["running_immediately"] = total_rows <= RUN_IMMEDIATELY_ROWS
        batch.data["completed_importers"] = []
        # SisBatch.rows_for_parallel: 100 jobs, none under 25 rows nor over 1000
        batch.chunk = min(max(math.ceil(total_rows / 100), 25), 1000)
        batch.rows = rows
        batch.done = 0

    def _keep_uploaded(
        self, batch: SisImport, files: list[tuple[str, bytes, str]], at: float
    ) -> None:
        """ImportRefactored#prepare/#process_file: each CSV whose header names an importer
        becomes a downloadable attachment (`data.downloadable_attachment_ids`, shown as
        `csv_attachments`): a CSV upload is its own attachment, under the name it was posted
        with; a zip's members are new ones named by their base name (create_batch_attachment).
        A diffed import prepares the generated diff instead, whose files Canvas lists as
        `diffed_csv_attachments`: not simulated, so none are listed."""
        kept = batch.data.setdefault("downloadable_attachment_ids", [])
        for name, data, _kind in files:
            self._next_attachment_id += 1
            verifier = uuid.uuid4().hex  # attachment_json's default verifier is the uuid
            attachment = Attachment(
                id=self._next_attachment_id,
                uuid=verifier,
                filename=name.rsplit("/", 1)[-1],
                data=data,
                verifier=verifier,
                created_wall=self._wall(at),
            )
            self.attachments[attachment.id] = attachment
            batch.csv_attachments.append(attachment)
            kept.append(attachment.id)

    def _rows_by(self, batch: SisImport, now: float) -> int:
        """Rows of the current phase due by `now` (a hair of slack for float error)."""
        return int((now - batch.phase_started) * self._rate + 1e-9)

    def _run(self, batch: SisImport, now: float) -> float | None:
        """Work due by `now`; the clock time the import finished, or None while it runs."""
        if batch.phase == "importing":
            limit = len(batch.rows) if batch.stop_at is None else batch.stop_at
            due = min(limit, self._rows_by(batch, now))
            if due > batch.done:
                self._apply_rows(batch, due)
                batch.updated_at = self._wall(now)
            if batch.done < limit:
                return None
            ended = batch.phase_started + limit / self._rate
            if batch.stop_at is not None:  # aborted: the chunk in hand is done, nothing more
                batch.phase = "done"
                return ended
            if batch.rows:
                batch.data["counts"]["enrollments"] = batch.succeeded_rows
                batch.data["completed_importers"] = ["enrollment"]
            if not self._enter_cleanup(batch, ended):
                self._finish(batch, ended, import_finished=True)
                return ended
        if batch.phase == "cleanup":
            due = min(len(batch.cleanup_targets), self._rows_by(batch, now))
            if due > batch.done:
                self._drop(batch, due)
                batch.updated_at = self._wall(now)
            if batch.done < len(batch.cleanup_targets):
                return None
            ended = batch.phase_started + len(batch.cleanup_targets) / self._rate
            batch.data["counts"]["batch_enrollments_deleted"] = len(batch.cleanup_targets)
            self._finish(batch, ended, import_finished=True)
            return ended
        return None

    # ---- reading the upload ---------------------------------------------------------------

    def _files_of(self, batch: SisImport) -> list[tuple[str, bytes, str]]:
        """(name, bytes, kind) of each CSV the upload holds, kind being the importer its header
        picks; messages for what it cannot read."""
        upload = batch.upload
        extension = upload.filename.rsplit(".", 1)[-1].lower() if "." in upload.filename else ""
        members: list[tuple[str, bytes]] = []
        if extension == "zip":
            try:
                archive = zipfile.ZipFile(io.BytesIO(upload.data))
                infos = [i for i in archive.infolist() if not i.is_dir()]
                # SIC doc: the uncompressed files may not be 100x larger than the zip
                if sum(i.file_size for i in infos) >= 100 * max(1, len(upload.data)):
                    raise _ImportCrash(None)
                for info in infos:
                    if IGNORE_FILES.search(info.filename):
                        continue
                    members.append((info.filename, archive.read(info)))
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise _ImportCrash(None) from exc
        elif extension == "csv":
            members.append((upload.filename, upload.data))
        out: list[tuple[str, bytes, str]] = []
        for name, data in members:
            if not name.lower().endswith(".csv"):
                batch.messages.append(Message(name, "Skipping unknown file type"))
                continue
            kind = self._kind_of(batch, name, data)
            if kind is not None:
                out.append((name, data, kind))
        return out

    def _kind_of(self, batch: SisImport, name: str, data: bytes) -> str | None:
        """ImportRefactored#process_file: UTF-8, then the first row's headers pick the importer."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            batch.messages.append(Message(name, "Invalid UTF-8", failure=True))
            return None
        try:
            header = next(
                (r for r in csv.reader(io.StringIO(text, newline=""), strict=True) if r), None
            )
        except csv.Error:
            batch.messages.append(Message(name, "Malformed CSV", failure=True))
            return None
        if header is None:
            return None  # an empty file imports nothing
        columns = {h.strip().lower() for h in header}
        # the IMPORTERS order decides ties (term, course and section come before enrollment)
        others = (
            ("term", {"term_id", "name"}),
            ("course", {"course_id", "short_name"}),
            ("section", {"section_id", "name"}),
            ("user", {"user_id", "login_id"}),
        )
        for kind, needed in others[:3]:
            if needed <= columns:
                return self._unsupported(batch, name, kind)
        if {"user_id", "login_id"} <= columns:
            return self._unsupported(batch, name, "user")
        if ({"section_id", "course_id"} & columns) and (
            {"user_id", "user_integration_id"} & columns
        ):
            return "enrollment"
        batch.messages.append(
            Message(name, "Couldn't find Canvas CSV import headers", failure=True)
        )
        return None

    @staticmethod
    def _unsupported(batch: SisImport, name: str, kind: str) -> None:
        message = f"canvas-tui simulator: {kind} files are not simulated, only enrollments"
        batch.messages.append(Message(name, message, failure=True))
        return None

    def _read(self, batch: SisImport, files: list[tuple[str, bytes, str]]) -> list[Row]:
        """Every enrollments row, numbered as Canvas numbers them: the header is line 1."""
        rows: list[Row] = []
        for name, data, kind in files:
            if kind != "enrollment":
                continue
            reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""), strict=True)
            file_rows: list[Row] = []
            columns: dict[str, int] | None = None
            width = 0
            try:
                for record in reader:
                    if not record or all(not cell.strip() for cell in record):
                        continue  # skip_blanks
                    if columns is None:
                        header = [h.strip().lower() for h in record]
                        # a repeated column: CSV::Row#[] finds the first
                        columns = {}
                        for index, column in enumerate(header):
                            columns.setdefault(column, index)
                        width = len(header)
                        continue
                    record += [""] * (width - len(record))
                    cells = tuple((cell.strip() or None) for cell in record[:width])
                    file_rows.append(Row(name, reader.line_num, cells, columns))
            except csv.Error:
                batch.messages.append(Message(name, "Malformed CSV", failure=True))
                continue
            rows.extend(file_rows)
        return rows

    # ---- diffing (SisBatch#generate_diff, SIS::CSV::DiffGenerator) ------------------------

    def _diff(self, batch: SisImport, rows: list[Row]) -> list[Row] | None:
        """The rows to import; None when the diff is empty (nothing changed)."""
        identifier = batch.diffing_data_set_identifier
        if batch.diffing_remaster or not identifier:
            return rows
        chain = [
            i
            for i in self._ordered()
            if i.workflow_state in SUCCEEDED
            and i.diffing_data_set_identifier == identifier
            and i.id != batch.id
        ]
        diffed = [i for i in chain if i.diffing_remaster or "diffed_against_sis_batch_id" in i.data]
        previous = diffed[-1] if diffed else (chain[0] if chain else None)
        if previous is None:
            return rows
        current_size = _uncompressed_size(batch.upload)
        previous_size = _uncompressed_size(previous.upload)
        threshold = batch.change_threshold
        if (
            threshold is not None
            and previous_size
            and (abs(1 - current_size / previous_size) * 100 > threshold)
        ):
            batch.diffing_threshold_exceeded = True
            message = "Diffing not performed because file size difference exceeded threshold"
            batch.messages.append(Message(None, message))
            return rows
        drop_status = batch.options.get("diffing_drop_status") or "deleted"
        current = {_key(r): r for r in rows}
        before = {_key(r): r for r in previous.enrollment_rows}
        out_values: list[tuple[str, dict[str, str | None]]] = []
        for key, row in current.items():
            old = before.get(key)
            if old is None or old.values != row.values:
                out_values.append((row.file, row.values))
        for key, old in before.items():
            if key not in current:
                values = dict(old.values)
                values["status"] = drop_status
                out_values.append((old.file, values))
        if not out_values:
            return None
        row_limit = batch.options.get("diff_row_count_threshold")
        if row_limit and len(out_values) > row_limit:
            batch.diffing_threshold_exceeded = True
            message = "Diffing not performed because difference row count exceeded threshold"
            batch.messages.append(Message(None, message))
            return rows
        batch.diffing_threshold_exceeded = False
        batch.data["diffed_against_sis_batch_id"] = previous.id
        # The importer reads the generated diff file: row numbers are its lines, not the upload's.
        return [Row.of(name, index, values) for index, (name, values) in enumerate(out_values, 2)]

    # ---- one row (SIS::EnrollmentImporter) -------------------------------------------------

    def _apply_rows(self, batch: SisImport, upto: int) -> None:
        while batch.done < upto:
            row = batch.rows[batch.done]
            batch.done += 1
            batch.applied += 1
            if self._apply(batch, row):
                batch.succeeded_rows += 1
            if batch.done % batch.chunk == 0 or batch.done == len(batch.rows):
                self._flush_deletes(batch)
        if not batch.data.get("running_immediately"):
            # ImportRefactored#update_progress: the share of parallel chunks completed
            chunks = max(1, math.ceil(len(batch.rows) / batch.chunk))
            completed = batch.done // batch.chunk + (1 if batch.done == len(batch.rows) else 0)
            completed = min(completed, chunks)
            batch.progress = max(batch.progress, round(completed * 100 / chunks))

    def _flush_deletes(self, batch: SisImport) -> None:
        """SIS::EnrollmentImporter#process ends each chunk (one parallel importer's rows) by
        deleting the enrollments its rows marked `deleted`, in one batch."""
        now = iso(self._wall(self.clock())) or ""
        for enrollment in batch.pending_deletes:
            if enrollment.workflow_state == "deleted":
                continue
            batch.changes.append(Change(enrollment, enrollment.workflow_state, "deleted"))
            enrollment.workflow_state = "deleted"
            enrollment.sis_import_id = batch.id
            enrollment.updated_at = now
        if batch.pending_deletes:
            self.world.version += 1
        batch.pending_deletes = []

    def _warn(self, batch: SisImport, row: Row, message: str) -> None:
        batch.messages.append(Message(row.file, message, row.lineno))

    def _apply(self, batch: SisImport, row: Row) -> bool:
        """One enrollments row; True when Canvas would count it as processed."""
        world = self.world
        course_id = row.get("course_id")
        section_id = row.get("section_id")
        user_id = row.get("user_id")
        user_integration_id = row.get("user_integration_id")
        role_name = row.get("role")
        status = row.get("status")
        # lib/sis/csv/enrollment_importer.rb: dates go through DateTime.parse; a bad one is a
        # message, and the row goes on with the date left nil.
        start_date = end_date = None
        try:
            start_date = _parse_date(row.get("start_date"))
            end_date = _parse_date(row.get("end_date"))
        except ValueError:
            where = f"section {section_id or ''}" if not course_id else f"course {course_id}"
            self._warn(batch, row, f"Bad date format for user {user_id or ''} in {where}")
        # SIS::EnrollmentImporter::Work#add_enrollment
        if not course_id and not section_id:
            self._warn(batch, row, "No course_id or section_id given for an enrollment")
            return False
        if not user_id and not user_integration_id:
            self._warn(batch, row, "No user_id given for an enrollment")
            return False
        if not status or not STATUS_RE.match(status):
            self._warn(batch, row, f'Improper status "{status or ""}" for an enrollment')
            return False
        if batch.options.get("skip_deletes") and re.search("deleted", status, re.IGNORECASE):
            return False
        if row.get("root_account"):
            # root_account_from_id is nil in open-source Canvas: the row is dropped unreported
            return False
        user = (
            world.user_by_integration(user_integration_id)
            if user_integration_id
            else world.user_by_sis(user_id or "")
        )
        ids = f"Course ID: {course_id or ''}, Section ID: {section_id or ''}"
        if user is None:
            message = f"User not found for enrollment (User ID: {user_id or ''}, {ids})"
            self._warn(batch, row, message)
            return False
        course = world.course_by_sis(course_id) if course_id else None
        section = world.section_by_sis(section_id) if section_id else None
        if course is None and section is None:
            message = (
                "Neither course nor section existed for user enrollment "
                f"({ids}, User ID: {user_id or ''})"
            )
            self._warn(batch, row, message)
            return False
        if section_id and section is None:
            self._warn(batch, row, f"An enrollment referenced a non-existent section {section_id}")
            return False
        if course_id and course is None:
            self._warn(batch, row, f"An enrollment referenced a non-existent course {course_id}")
            return False
        if section is None:
            assert course is not None
            section = world.default_section(course)
        if course is None:
            course = world.courses[section.course_id]
        if course.id != section.course_id:
            message = (
                f"An enrollment listed a section ({section_id or ''}) and a course "
                f"({course_id or ''}) that are unrelated for user ({user_id or ''})"
            )
            self._warn(batch, row, message)
            return False
        role = self._role(batch, course, row.get("role_id"), role_name)
        enrollment_type = role.base_role_type if role else _type_of(role_name)
        if enrollment_type is None:
            self._warn(batch, row, f'Improper role "{role_name or ""}" for an enrollment')
            return False
        if role is None:
            role = world.built_in_role(enrollment_type)
            assert role is not None
        associated_user_id: int | None = None
        associated_ref = row.get("associated_user_id")
        if associated_ref and enrollment_type == "ObserverEnrollment":
            observed = world.user_by_sis(associated_ref)
            if observed is None:
                message = (
                    f"An enrollment referenced a non-existent associated user {associated_ref}"
                )
                self._warn(batch, row, message)
                return False
            associated_user_id = observed.id
        identity = (user.id, enrollment_type, role.id, associated_user_id, section.id)
        existing = world.find_enrollment(identity)
        new_state = self._target_state(status, existing, user, role, associated_user_id, section)
        saves = new_state != "deleted" or existing is None  # a delete goes by destroy_batch
        invalid = (
            self._invalid(course, section, user, associated_user_id, new_state) if saves else []
        )
        if invalid:
            # The importer builds this message with `msg += "..." + msg += ...`: Ruby reads the
            # left `msg` before the right side reassigns it, so the prefix comes out twice.
            prefix = (
                "An enrollment did not pass validation "
                f"(course: {course_id or ''}, section: {section_id or ''}, "
            )
            message = (
                f"{prefix}user: {user_id or ''}, role: {role_name or ''}, error: "
                f"{prefix}{','.join(invalid)})"
            )
            self._warn(batch, row, message)
            return False
        return self._write(
            batch,
            row,
            existing,
            user,
            section,
            role,
            associated_user_id,
            new_state,
            start_date,
            end_date,
        )

    def _target_state(
        self,
        status: str,
        existing: Enrollment | None,
        user: User,
        role: Role,
        associated_user_id: int | None,
        section: Section,
    ) -> str:
        """enrollment_status: the state the row's status gives this enrollment."""
        lowered = status.lower()
        if lowered.startswith("active"):
            return "active"
        if lowered.startswith("completed"):
            return "completed"
        if lowered.startswith("inactive"):
            return "inactive"
        if lowered.startswith("deleted_last_completed"):
            # deleted when another not-deleted enrollment of the user, with the same observee
            # and role, exists in the course; else completed (the user's last one is kept)
            others = any(
                e.user_id == user.id
                and e.associated_user_id == associated_user_id
                and e.role_id == role.id
                and e.workflow_state != "deleted"
                and (existing is None or e.id != existing.id)
                for e in self.world.enrollments_in_course(section.course_id)
            )
            return "deleted" if others else "completed"
        return "deleted"

    def _role(
        self, batch: SisImport, course: Course, role_id: str | None, role_name: str | None
    ) -> Role | None:
        """A role_id among the course account's available roles, else a role whose name is
        exactly `role` (built-ins are named StudentEnrollment, ...)."""
        roles = batch.roles_by_account.get(course.account_id)
        if roles is None:  # cached per account, as the importer caches them
            roles = batch.roles_by_account[course.account_id] = [
                r
                for r in self.world.course_roles(course.account_id)
                if r.workflow_state in ("built_in", "active")
            ]
        if role_id:
            found = next((r for r in roles if str(r.id) == role_id), None)
            if found is not None:
                return found
        return next((r for r in roles if r.label == role_name), None) if role_name else None

    def _invalid(
        self,
        course: Course,
        section: Section,
        user: User,
        associated_user_id: int | None,
        state: str,
    ) -> list[str]:
        """The model validations a save would fail, as `errors.full_messages` words them
        (app/models/enrollment.rb: cant_observe_self, cant_observe_observer, valid_course?,
        valid_section?; the order between them is inferred)."""
        errors: list[str] = []
        if associated_user_id is not None:
            if associated_user_id == user.id:
                errors.append("Associated user Cannot observe yourself")
            elif any(
                e.type == "ObserverEnrollment"
                and e.user_id == associated_user_id
                and e.associated_user_id == user.id
                and e.workflow_state != "deleted"
                for e in self.world.enrollments_in_course(course.id)
            ):
                errors.append("Associated user Cannot observe observer observing self")
        if state != "deleted" and course.workflow_state == "deleted":
            errors.append("Course is not a valid course")
        if state != "deleted" and section.workflow_state != "active":
            errors.append("Course section is not a valid section")
        return errors

    def _write(
        self,
        batch: SisImport,
        row: Row,
        existing: Enrollment | None,
        user: User,
        section: Section,
        role: Role,
        associated_user_id: int | None,
        new_state: str,
        start_date: str | None,
        end_date: str | None,
    ) -> bool:
        world = self.world
        now = iso(self._wall(self.clock())) or ""
        before_state = existing.workflow_state if existing else "non-existent"
        limit_value = row.get("limit_section_privileges")
        options = batch.options
        override = bool(options.get("override_sis_stickiness"))
        if existing is None:
            enrollment = world.add_enrollment(
                user,
                section,
                role,
                state=new_state,
                associated_user_id=associated_user_id,
                limit_privileges=value_to_boolean(limit_value) if limit_value else False,
                start_at=start_date,
                end_at=end_date,
                created_at=now,
                sis_import_id=batch.id,
            )
            if new_state == "completed":
                enrollment.completed_at = now
            if (
                override
                and options.get("add_sis_stickiness")
                and not options.get("clear_sis_stickiness")
            ):
                enrollment.stuck_sis_fields |= {
                    f for f, v in (("start_at", start_date), ("end_at", end_date)) if v
                }
            batch.changes.append(Change(enrollment, before_state, new_state))
            return True
        enrollment = existing
        before = (
            enrollment.workflow_state,
            enrollment.limit_privileges_to_course_section,
            enrollment.start_at,
            enrollment.end_at,
        )
        if new_state == "deleted":
            # deleted_status: an existing row is left as is here and deleted with the chunk's
            # batch (or only stamped with the import when it is deleted already)
            if enrollment.workflow_state == "deleted":
                enrollment.sis_import_id = batch.id
            else:
                batch.pending_deletes.append(enrollment)
            return True
        if new_state != enrollment.workflow_state or new_state == "completed":
            enrollment.workflow_state = new_state
            if new_state == "completed":
                enrollment.completed_at = now
        if limit_value:
            enrollment.limit_privileges_to_course_section = value_to_boolean(limit_value)
        stuck = set() if override else enrollment.stuck_sis_fields
        if not stuck & {"start_at", "end_at"}:
            if (
                override
                and options.get("add_sis_stickiness")
                and not options.get("clear_sis_stickiness")
            ):
                if start_date != enrollment.start_at:
                    enrollment.stuck_sis_fields.add("start_at")
                if end_date != enrollment.end_at:
                    enrollment.stuck_sis_fields.add("end_at")
            enrollment.start_at = start_date
            enrollment.end_at = end_date
        if override and options.get("clear_sis_stickiness"):
            enrollment.stuck_sis_fields.clear()
        after = (
            enrollment.workflow_state,
            enrollment.limit_privileges_to_course_section,
            enrollment.start_at,
            enrollment.end_at,
        )
        enrollment.sis_import_id = batch.id
        if after != before:
            enrollment.updated_at = now
            world.version += 1
        if after[0] != before[0]:
            batch.changes.append(Change(enrollment, before_state, new_state))
        return True

    # ---- batch mode cleanup (SisBatch#remove_previous_imports) -----------------------------

    def _enter_cleanup(self, batch: SisImport, at: float) -> bool:
        """Start the cleanup phase at `at`; False when there is none to run."""
        if not batch.batch_mode or any(m.failure for m in batch.messages):
            return False
        if "enrollment" not in batch.data.get("supplied_batches", []):
            return False
        batch.workflow_state = "cleanup_batch"
        batch.updated_at = self._wall(at)
        if batch.options.get("multi_term_batch_mode"):
            # batch_mode_terms: terms come from the import's terms.csv, which is not simulated
            self._abort_cleanup(
                batch, at, "Terms not found. Terms must be included with multi_term_batch_mode"
            )
            return False
        drop_status = batch.options.get("batch_mode_enrollment_drop_status") or "deleted"
        term_id = batch.batch_mode_term_id
        in_term = [
            e
            for e in self.world.enrollments.values()
            if e.workflow_state != "deleted"
            and e.workflow_state != (batch.options.get("batch_mode_enrollment_drop_status") or "")
            and e.sis_import_id is not None
            and self.world.courses[e.course_id].enrollment_term_id == term_id
        ]
        targets = [e for e in in_term if e.sis_import_id != batch.id]
        threshold = batch.change_threshold
        # detect_change_item: count / all_count * 100 > change_threshold aborts the cleanup
        if threshold is not None and in_term and len(targets) / len(in_term) * 100 > threshold:
            message = (
                f"{len(targets)} enrollments would be deleted and exceeds the set threshold "
                f"of {threshold}%"
            )
            self._abort_cleanup(batch, at, message)
            return False
        batch.cleanup_targets = targets
        batch.cleanup_drop_status = drop_status
        batch.phase = "cleanup"
        batch.phase_started = at
        batch.done = 0
        return True

    def _abort_cleanup(self, batch: SisImport, at: float, message: str) -> None:
        """abort_batch + batch_aborted: the batch is aborted with the message as a warning,
        then do_batch_end_work still runs (errors file, counts, progress 100, ended_at)."""
        batch.messages.append(Message(None, message))
        batch.workflow_state = "aborted"
        self._finish(batch, at, import_finished=True)

    def _drop(self, batch: SisImport, upto: int) -> None:
        now = iso(self._wall(self.clock())) or ""
        while batch.done < upto:
            enrollment = batch.cleanup_targets[batch.done]
            batch.done += 1
            before = enrollment.workflow_state
            enrollment.workflow_state = batch.cleanup_drop_status
            if batch.cleanup_drop_status == "completed":
                enrollment.completed_at = now
            enrollment.sis_import_id = batch.id
            enrollment.updated_at = now
            batch.changes.append(
                Change(enrollment, before, batch.cleanup_drop_status, batch_mode=True)
            )
            if batch.done % CLEANUP_BATCH == 0 or batch.done == len(batch.cleanup_targets):
                batch.progress = round(batch.done / len(batch.cleanup_targets) * 100)
        self.world.version += 1

    # ---- the end (SisBatch#do_batch_end_work) ---------------------------------------------

    def _finish(self, batch: SisImport, at: float, *, import_finished: bool) -> None:
        batch.phase = "done"
        has_errors = bool(batch.messages)
        if import_finished:
            import_finished = not any(m.failure for m in batch.messages)
        if batch.workflow_state != "aborted":
            if import_finished:
                batch.workflow_state = "imported_with_messages" if has_errors else "imported"
            else:
                batch.workflow_state = "failed_with_messages" if has_errors else "failed"
        if has_errors:
            self._write_errors_file(batch, at)
        self._populate_messages(batch, has_errors)
        batch.data["statistics"] = self._statistics(batch)
        if import_finished:
            batch.progress = 100
        batch.ended_at = self._wall(at)
        batch.updated_at = batch.ended_at
        self._free_at = max(self._free_at, at)

    def _fail_with_error(self, batch: SisImport, filename: str | None, at: float) -> None:
        """ImportRefactored#fail_with_error!: an error report, failed_with_messages."""
        report = self._error_report()
        message = f"Error while importing CSV. Please contact support. (Error report {report})"
        batch.messages.append(Message(filename, message, failure=True))
        batch.workflow_state = "failed_with_messages"
        batch.data.setdefault("counts", {key: 0 for key in COUNT_KEYS})
        self._finish(batch, at, import_finished=False)

    def _populate_messages(self, batch: SisImport, has_errors: bool) -> None:
        counts = batch.data.setdefault("counts", {key: 0 for key in COUNT_KEYS})
        if not has_errors:
            counts["error_count"] = 0
            counts["warning_count"] = 0
            return
        errors = [m for m in batch.messages if m.failure]
        warnings = [m for m in batch.messages if not m.failure]
        batch.processing_errors = [[m.file, m.message] for m in errors[:INLINED_MESSAGES]]
        batch.processing_warnings = [[m.file, m.message] for m in warnings[:INLINED_MESSAGES]]
        if len(errors) > INLINED_MESSAGES:
            batch.processing_errors.append(
                [
                    f"and {len(errors) - INLINED_MESSAGES} more errors that were not included",
                    "Download the error file to see all errors.",
                ]
            )
        if len(warnings) > INLINED_MESSAGES:
            batch.processing_warnings.append(
                [
                    f"and {len(warnings) - INLINED_MESSAGES} more warnings that were not included",
                    "Download the error file to see all warnings.",
                ]
            )
        counts["error_count"] = len(errors)
        counts["warning_count"] = len(warnings)

    @staticmethod
    def _statistics(batch: SisImport) -> dict[str, Any]:
        stats: dict[str, Any] = {"total_state_changes": len(batch.changes)}
        for kind in STATISTIC_TYPES:
            entry: dict[str, int] = {"created": 0, "restored": 0}
            if kind in ("Course", "Enrollment"):
                entry["concluded"] = 0
            if kind == "Enrollment":
                entry["deactivated"] = 0
            entry["deleted"] = 0
            stats[kind] = entry
        enrollment = stats["Enrollment"]
        for change in batch.changes:
            before, after = change.before, change.after
            if after == "active" and before in ("non-existent", "creation_pending"):
                enrollment["created"] += 1
            elif after == "active" and before in ("inactive", "completed", "rejected", "deleted"):
                enrollment["restored"] += 1
            if after == "completed":
                enrollment["concluded"] += 1
            if after == "inactive":
                enrollment["deactivated"] += 1
            if after == "deleted":
                enrollment["deleted"] += 1
        return stats

    def _write_errors_file(self, batch: SisImport, at: float) -> None:
        """write_errors_to_file: every message, errors and warnings, in the order they came."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["sis_import_id", "file", "message", "row"])
        for message in batch.messages:
            row = "" if message.row is None else message.row
            writer.writerow([batch.id, message.file or "", message.message, row])
        self._next_attachment_id += 1
        attachment = Attachment(
            id=self._next_attachment_id,
            uuid=uuid.uuid4().hex,
            filename=f"sis_errors_attachment_{batch.id}.csv",
            data=out.getvalue().encode("utf-8"),
            verifier=uuid.uuid4().hex,
            created_wall=self._wall(at),
        )
        self.attachments[attachment.id] = attachment
        batch.errors_attachment = attachment

    # ---- restore_states (SisBatch#restore_states_later, #restore_states_for_batch) ----------

    def _advance_restores(self, now: float) -> None:
        for job in self.restores.values():
            if job.workflow_state == "completed":
                continue
            start = job.created_clock + self.start_delay / self.time_scale
            if now < start:
                continue
            batch = job.batch
            if job.workflow_state == "queued":
                job.workflow_state = "running"
                batch.workflow_state = "restoring"
                batch.updated_at = self._wall(start)
            due = min(len(job.changes), int((now - start) * self._rate + 1e-9))
            while job.done < due:
                change = job.changes[job.done]
                job.done += 1
                # restore_sql: back to the state before the import (a row it created goes
                # to deleted), and only where that differs
                target = "deleted" if change.before == "non-existent" else change.before
                if change.enrollment.workflow_state != target:
                    change.enrollment.workflow_state = target
                    change.enrollment.updated_at = iso(self._wall(now)) or ""
                change.restored = True
            if due:
                self.world.version += 1
            total = len(job.changes)
            job.completion = job.done / total * 100 if total else 100.0
            job.updated_wall = self._wall(now)
            if job.done < total:
                continue
            ended = start + total / self._rate
            job.workflow_state = "completed"
            job.completion = 100.0
            job.updated_wall = self._wall(ended)
            batch.workflow_state = "partially_restored" if job.partial else "restored"
            batch.updated_at = self._wall(ended)
            statistics = batch.data.setdefault("statistics", self._statistics(batch))
            restored = sum(1 for c in batch.changes if c.restored)
            statistics.setdefault("Enrollment", {})["restored"] = restored

    def restore_states(
        self, account_ref: str, token: Token, ref: str, params: dict[str, Any], base_url: str
    ) -> Response:
        """restore_states: the batch's changes undone by a job; answers its Progress."""
        account_id = self._account(account_ref, token, "manage_sis")
        batch = self._find(account_id, ref)
        batch_mode = value_to_boolean(params.get("batch_mode", False))
        undelete_only = value_to_boolean(params.get("undelete_only", False))
        unconclude_only = value_to_boolean(params.get("unconclude_only", False))
        if undelete_only and unconclude_only:
            body = "cannot set both undelete_only and unconclude_only"
            return views.json_response(body, 400)
        changes = [c for c in batch.changes if not c.restored]
        if undelete_only:
            changes = [c for c in changes if c.after in ("retired", "deleted")]
        if unconclude_only:
            changes = [c for c in changes if c.after == "completed"]
        if batch_mode:
            changes = [c for c in changes if c.batch_mode]
        now = self.clock()
        self._next_progress_id += 1
        job = RestoreJob(
            id=self._next_progress_id,
            batch=batch,
            user_id=token.user_id,
            changes=changes,
            partial=undelete_only or unconclude_only or batch_mode,
            created_clock=now,
            created_wall=self._wall(now),
            updated_wall=self._wall(now),
        )
        self.restores[job.id] = job
        return views.json_response(self.progress_json(job, base_url))

    def progress(self, token: Token, ref: str, base_url: str) -> Response:
        """`GET progress/:id` for a restore job (read rights on its SIS import)."""
        job = self.restores.get(int(ref)) if ref.isdigit() else None
        if job is None:
            raise views.not_found()
        if not (token.admin and token.manage_sis):
            raise views.unauthorized()
        return views.json_response(self.progress_json(job, base_url))

    @staticmethod
    def progress_json(job: RestoreJob, base_url: str) -> dict[str, Any]:
        """lib/api/v1/progress.rb `progress_json`."""
        return {
            "id": job.id,
            "context_id": job.batch.id,
            "context_type": "SisBatch",
            "user_id": job.user_id,
            "tag": "sis_batch_state_restore",
            "completion": job.completion,
            "workflow_state": job.workflow_state,
            "created_at": iso(job.created_wall),
            "updated_at": iso(job.updated_wall),
            "message": None,
            "url": f"{base_url}/api/v1/progress/{job.id}",
        }

    # ---- the API --------------------------------------------------------------------------

    def _account(self, ref: str, token: Token, rights: str) -> int:
        """get_context, check_account, authorized_action, in that order."""
        account = self.world.find_account(ref)
        if account is None:
            raise views.not_found()
        if account.parent_account_id is not None or account.id != ROOT_ACCOUNT_ID:
            body = {"errors": ["SIS imports can only be executed on root accounts"]}
            raise HttpError(views.json_response(body, 400))
        if not self.enabled:
            body = {"errors": ["SIS imports are not enabled for this account"]}
            raise HttpError(views.json_response(body, 403))
        # import_sis / manage_sis: an account admin whose role has the SIS rights
        if not (token.admin and token.manage_sis):
            raise views.unauthorized()
        return account.id

    def create(
        self,
        *,
        account_ref: str,
        token: Token,
        params: dict[str, Any],
        files: dict[str, Upload],
        content_type: str,
        body: bytes,
        base_url: str,
    ) -> Response:
        """SisImportsApiController#create, step by step."""
        account_id = self._account(account_ref, token, "import_sis")
        import_type = params.get("import_type") or "instructure_csv"
        if import_type != "instructure_csv":
            # `raise "invalid import type parameter"`: a RuntimeError, which Canvas answers 500
            return views.internal_error(self._error_report())
        media_type, _, media_params = content_type.partition(";")
        media_type = media_type.strip().lower()
        if "attachment" in files:
            upload = files["attachment"]
        elif "attachment" in params:
            # a form field that is no file: Canvas stores its text as the attachment
            text = str(params["attachment"]).encode("utf-8")
            upload = Upload("attachment", "text/plain", text)
        elif media_type == "multipart/form-data":
            return views.json_response({"error": True, "error_message": "Missing attachment"}, 400)
        else:
            extension = params.get("extension")
            if extension:
                upload = Upload(f"sis_import.{extension}", media_type, body)
            else:
                charset = _charset(media_params)
                if charset and charset.lower() != "utf-8":
                    body_json = {"error": "Invalid content type, UTF-8 required"}
                    return views.json_response(body_json, 400)
                extension = MEDIA_EXTENSIONS.get(media_type, "zip")
                upload = Upload(f"sis_import.{extension}", media_type, body)
        term_id: int | None = None
        if value_to_boolean(params.get("batch_mode", False)):
            if present(params.get("batch_mode_term_id")):
                term = self.world.find_term(str(params["batch_mode_term_id"]))
                if term is None:
                    raise views.not_found()  # api_find raises RecordNotFound
                term_id = term.id
            if term_id is None and not params.get("multi_term_batch_mode"):
                message = "Batch mode specified, but the given batch_mode_term_id cannot be found."
                return views.json_response({"message": message}, 400)
        # SisBatch.create_with_attachment saves the batch as `initializing` first; the block's
        # early returns below leave it so, never processed.
        now = self.clock()
        self._next_id += 1
        batch = SisImport(
            id=self._next_id,
            account_id=account_id,
            user_id=token.user_id,
            upload=upload,
            created_clock=now,
            created_wall=self._wall(now),
            data={"import_type": "instructure_csv"},
        )
        batch.updated_at = batch.created_wall
        batch.phase = "initializing"
        self.imports[batch.id] = batch
        refusal = self._options(batch, params, term_id)
        if refusal is not None:
            return refusal
        batch.workflow_state = "created"
        batch.phase = "waiting"
        return views.json_response(self.json(batch, base_url))

    def _options(
        self, batch: SisImport, params: dict[str, Any], term_id: int | None
    ) -> Response | None:
        """The block given to create_with_attachment: options, and the 400s it may return."""
        threshold = params.get("change_threshold")
        batch.change_threshold = _rails_integer(threshold)
        options = batch.options
        row_threshold = params.get("diff_row_count_threshold")
        if present(row_threshold):
            value = _ruby_to_i(str(row_threshold))
            if value > 0:
                options["diff_row_count_threshold"] = value
        if term_id is not None:
            batch.batch_mode = True
            batch.batch_mode_term_id = term_id
        elif params.get("multi_term_batch_mode"):
            batch.batch_mode = True
            options["multi_term_batch_mode"] = value_to_boolean(params["multi_term_batch_mode"])
            if batch.change_threshold is None:
                message = "change_threshold is required to use multi term_batch mode."
                return views.json_response({"message": message}, 400)
        elif present(params.get("diffing_data_set_identifier")):
            identifier = str(params["diffing_data_set_identifier"])
            if len(identifier.encode("utf-8")) > 128:
                # validates_length_of :diffing_data_set_identifier, maximum: 128 [inferred body]
                raise views.validation_error(
                    "diffing_data_set_identifier",
                    "is too long (maximum is 128 characters)",
                    kind="too_long",
                )
            batch.diffing_data_set_identifier = identifier
            batch.diffing_remaster = value_to_boolean(
                params.get("diffing_remaster_data_set", False)
            )
        options["skip_deletes"] = value_to_boolean(params.get("skip_deletes", False))
        options["update_sis_id_if_login_claimed"] = value_to_boolean(
            params.get("update_sis_id_if_login_claimed", False)
        )
        if value_to_boolean(params.get("override_sis_stickiness", False)):
            options["override_sis_stickiness"] = True
            for name in ("add_sis_stickiness", "clear_sis_stickiness"):
                if value_to_boolean(params.get(name, False)):
                    options[name] = True
        for name, valid in (
            ("diffing_drop_status", VALID_ENROLLMENT_DROP_STATUS),
            ("diffing_user_remove_status", VALID_USER_REMOVE_STATUS),
            ("batch_mode_enrollment_drop_status", VALID_ENROLLMENT_DROP_STATUS),
        ):
            status_param = params.get(name)
            if present(status_param):
                given = status_param if isinstance(status_param, list) else [status_param]
                chosen = next((v for v in given if v in valid), None)
                if chosen is None:
                    return views.json_response({"message": f"Invalid {name}"}, 400)
                options[name] = chosen
        return None

    def show(self, account_ref: str, token: Token, ref: str, base_url: str) -> Response:
        account_id = self._account(account_ref, token, "manage_sis")
        batch = self._find(account_id, ref)
        return views.json_response(self.json(batch, base_url))

    def list(
        self,
        account_ref: str,
        token: Token,
        params: dict[str, Any],
        page_request: views.PageRequest,
        base_url: str,
    ) -> Response:
        """index: newest first, filters, paginated without a total (no `last` link)."""
        account_id = self._account(account_ref, token, "manage_sis")
        items = [i for i in self.imports.values() if i.account_id == account_id]
        items.sort(key=lambda i: (i.created_clock, i.id), reverse=True)
        since = _parse_time(params.get("created_since"))
        before = _parse_time(params.get("created_before"))
        if since is not None:
            items = [i for i in items if i.created_wall > since]
        if before is not None:
            items = [i for i in items if i.created_wall < before]
        wanted = params.get("workflow_state")
        states = [
            s
            for s in (wanted if isinstance(wanted, list) else [wanted] if wanted else [])
            if s in WORKFLOW_STATES
        ]
        if states:
            items = [i for i in items if i.workflow_state in states]
        page, link = _page_without_total(items, params, page_request)
        response = views.json_response({"sis_imports": [self.json(i, base_url) for i in page]})
        response.headers.append(link)
        return response

    def importing(self, account_ref: str, token: Token, base_url: str) -> Response:
        account_id = self._account(account_ref, token, "manage_sis")
        running = [
            i
            for i in self._ordered()
            if i.account_id == account_id and i.workflow_state in ("importing", "cleanup_batch")
        ]
        return views.json_response({"sis_imports": [self.json(i, base_url) for i in running]})

    def abort(self, account_ref: str, token: Token, ref: str, base_url: str) -> Response:
        """abort: `not_completed.find` (a finished import is a 404), then abort_batch."""
        account_id = self._account(account_ref, token, "import_sis")
        batch = self._find(account_id, ref)
        if batch.workflow_state not in NOT_COMPLETED:
            raise views.not_found()
        now = self.clock()
        phase = batch.phase
        batch.workflow_state = "aborted"
        batch.updated_at = self._wall(now)
        if phase == "initializing":
            batch.phase = "done"
        waiting = any(
            i.phase == "waiting" and i.workflow_state == "created" for i in self.imports.values()
        )
        # abort_batch requeues the account's job 10 minutes later when imports wait
        hold = now + ABORT_REQUEUE_SECONDS / self.time_scale if waiting else now
        if phase == "importing":
            # Each parallel importer checks for an abort only before it starts
            # (ImportRefactored#run_parallel_importer): the chunk in hand still lands. Finish
            # returns early for an aborted batch: no ended_at, no errors file, no counts.
            batch.stop_at = min(len(batch.rows), -(-batch.done // batch.chunk) * batch.chunk)
            if batch.stop_at == batch.done:
                batch.phase = "done"
            self._free_at = max(self._free_at, hold)
        elif phase == "cleanup":
            # fast_update_progress raises Aborted; remove_previous_imports rescues it and
            # do_batch_end_work goes on: errors file, counts, progress 100, ended_at.
            self._finish(batch, now, import_finished=True)
            if batch.data.get("running_immediately"):
                self._free_at = max(self._free_at, hold)
        return views.json_response(self.json(batch, base_url))

    def abort_all_pending(self, account_ref: str, token: Token) -> Response:
        account_id = self._account(account_ref, token, "import_sis")
        for batch in self.imports.values():
            if batch.account_id == account_id and batch.workflow_state in (
                "initializing",
                "created",
            ):
                batch.workflow_state = "aborted"
                batch.progress = 100
                batch.phase = "done"
        return views.json_response({"aborted": True})

    def _find(self, account_id: int, ref: str) -> SisImport:
        batch = self.imports.get(int(ref)) if ref.isdigit() else None
        if batch is None or batch.account_id != account_id:
            raise views.not_found()
        return batch

    def download(self, attachment_id: str, verifier: str | None) -> Attachment | None:
        attachment = self.attachments.get(int(attachment_id)) if attachment_id.isdigit() else None
        if attachment is None or verifier != attachment.verifier:
            return None
        return attachment

    # ---- JSON -----------------------------------------------------------------------------

    def json(self, batch: SisImport, base_url: str) -> dict[str, Any]:
        """SisBatch#as_json plus Api::V1::SisImport (errors_attachment, user, csv_attachments:
        lib/api/v1/sis_import.rb)."""
        options = batch.options
        data: dict[str, Any] = {
            "id": batch.id,
            "created_at": iso(batch.created_wall),
            "started_at": iso(batch.started_at),
            "ended_at": iso(batch.ended_at),
            "updated_at": iso(batch.updated_at),
            "progress": batch.progress,
            "workflow_state": batch.workflow_state,
            "data": batch.data,
            "batch_mode": batch.batch_mode or None,
            "batch_mode_term_id": batch.batch_mode_term_id,
            "multi_term_batch_mode": options.get("multi_term_batch_mode"),
            "override_sis_stickiness": options.get("override_sis_stickiness"),
            "add_sis_stickiness": options.get("add_sis_stickiness"),
            "update_sis_id_if_login_claimed": options.get("update_sis_id_if_login_claimed"),
            "clear_sis_stickiness": options.get("clear_sis_stickiness"),
            "diffing_data_set_identifier": batch.diffing_data_set_identifier,
            "diffing_remaster": batch.diffing_remaster or None,
            # as_json reads options[:diffed_against_sis_batch_id], which nothing writes (the
            # diff goes to data[:diffed_against_sis_batch_id]): it is always null
            "diffed_against_import_id": options.get("diffed_against_sis_batch_id"),
            "diffing_drop_status": options.get("diffing_drop_status"),
            "diffing_user_remove_status": options.get("diffing_user_remove_status"),
            "skip_deletes": options.get("skip_deletes"),
            "change_threshold": batch.change_threshold,
            "diff_row_count_threshold": options.get("diff_row_count_threshold"),
        }
        if batch.processing_errors:
            data["processing_errors"] = batch.processing_errors
        if batch.processing_warnings:
            data["processing_warnings"] = batch.processing_warnings
        if batch.diffing_data_set_identifier:
            data["diffing_threshold_exceeded"] = batch.diffing_threshold_exceeded
        if batch.errors_attachment is not None:
            data["errors_attachment"] = _attachment_json(batch.errors_attachment, base_url)
        user = self.world.users.get(batch.user_id)
        if user is not None:
            data["user"] = views.user_json(user)
        if batch.csv_attachments:
            data["csv_attachments"] = [_attachment_json(a, base_url) for a in batch.csv_attachments]
        return data


class _ImportCrash(Exception):
    def __init__(self, filename: str | None) -> None:
        super().__init__(filename)
        self.filename = filename


def _attachment_json(attachment: Attachment, base_url: str) -> dict[str, Any]:
    """Api::V1::Attachment#attachment_json with a verifier: the URL downloads without a token."""
    stamp = iso(attachment.created_wall)
    url = f"{base_url}/files/{attachment.id}/download?download_frd=1&verifier={attachment.verifier}"
    return {
        "id": attachment.id,
        "uuid": attachment.uuid,
        "folder_id": None,
        "display_name": attachment.filename,
        "filename": attachment.filename,
        "upload_status": "success",
        "content-type": "text/csv",
        "url": url,
        "size": len(attachment.data),
        "created_at": stamp,
        "updated_at": stamp,
        "unlock_at": None,
        "locked": False,
        "hidden": False,
        "lock_at": None,
        "hidden_for_user": False,
        "thumbnail_url": None,
        "modified_at": stamp,
        "mime_class": "file",
        "media_entry_id": None,
        "category": "uncategorized",
        "locked_for_user": False,
    }


def _key(row: Row) -> tuple[str | None, ...]:
    return tuple(row.get(f) for f in IDENTIFYING_FIELDS)


def _uncompressed_size(upload: Upload) -> int:
    """SisBatch#compute_file_size: a zip's uncompressed size, else the file's own."""
    try:
        with zipfile.ZipFile(io.BytesIO(upload.data)) as archive:
            return sum(i.file_size for i in archive.infolist())
    except zipfile.BadZipFile:
        return len(upload.data)


def _parse_date(value: str | None) -> str | None:
    """DateTime.parse: a time without an offset is UTC (not the account's zone, as the REST
    API's Time.zone parse would have it). Raises ValueError when it is no time. Only ISO 8601
    is read: stricter than Ruby, which also takes "Sep 1 2026" or "tuesday"."""
    if value is None:
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any) -> datetime | None:
    """CanvasTime.try_parse: nil when it is no time."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return datetime.fromisoformat(_parse_date(value) or "")
    except ValueError:
        return None


def _type_of(role: str | None) -> str | None:
    """The role keywords: teacher, ta, observer, designer whole; student as a prefix."""
    if role is None:
        return None
    lowered = role.lower()
    if lowered == "teacher":
        return "TeacherEnrollment"
    if lowered.startswith("student"):
        return "StudentEnrollment"
    if lowered == "ta":
        return "TaEnrollment"
    if lowered == "observer":
        return "ObserverEnrollment"
    if lowered == "designer":
        return "DesignerEnrollment"
    return None


def _charset(media_params: str) -> str | None:
    for part in media_params.split(";"):
        name, _, value = part.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"')
    return None


def _ruby_to_i(text: str) -> int:
    return views.ruby_to_i(text)


def _rails_integer(value: Any) -> int | None:
    if value is None:
        return None
    text = str(value)
    return _ruby_to_i(text) if text.strip() else None


def _page_without_total(
    items: list[Any], params: dict[str, Any], page_request: views.PageRequest
) -> tuple[list[Any], tuple[bytes, bytes]]:
    """Api.paginate with `total_entries: nil`: current, next (when a page is full), prev, first."""
    per_page = views.per_page_of(params)
    raw_page = params.get("page")
    page = max(1, views.ruby_to_i(raw_page)) if isinstance(raw_page, str) else 1
    page_items = items[(page - 1) * per_page : page * per_page + 1]
    more = len(page_items) > per_page
    page_items = page_items[:per_page]
    links = [("current", page_request.link(str(page), per_page))]
    if more:
        links.append(("next", page_request.link(str(page + 1), per_page)))
    if page > 1:
        links.append(("prev", page_request.link(str(page - 1), per_page)))
    links.append(("first", page_request.link("1", per_page)))
    return page_items, views.link_header(links)


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, Upload]]:
    """multipart/form-data: (fields, files). A part with a filename is a file."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    fields: dict[str, str] = {}
    files: dict[str, Upload] = {}
    if not message.is_multipart():
        return fields, files
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        filename = part.get_filename()
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if filename is not None:
            files[name] = Upload(filename, part.get_content_type(), data)
        else:
            fields[name] = data.decode("utf-8", "replace")
    return fields, files
