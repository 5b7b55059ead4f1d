"""The enrollment record every source produces and every other layer consumes.

Identifiers are kept in Canvas's own "API id" form (`sis_user_id:S001`, `sis_course_id:BIO-101`,
or a plain numeric Canvas id) so the client can put them straight into a path or parameter, and the
record says unambiguously which kind of id the SIS gave.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Final, Protocol


class State(StrEnum):
    """Where a record is in its life. Every input row ends in DONE, FAILED or SKIPPED."""

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


FINAL_STATES = frozenset({State.DONE, State.FAILED, State.SKIPPED})


class SisStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    COMPLETED = "completed"
    DELETED = "deleted"
    DELETED_LAST_COMPLETED = "deleted_last_completed"


class Unchanged(Enum):
    """A column the source left blank: whatever Canvas holds stays (never `False` or `None`).

    Canvas's create re-applies `limit_privileges_to_course_section` (false when absent) and the
    dates (nil when absent) to a reused enrollment (`Course#enroll_user`, app/models/course.rb),
    so a blank column must be told apart from an explicit false or an explicit "no date".
    """

    UNCHANGED = "unchanged"

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = Unchanged.UNCHANGED


BASE_TYPES = (
    "StudentEnrollment",
    "TeacherEnrollment",
    "TaEnrollment",
    "ObserverEnrollment",
    "DesignerEnrollment",
)

# Canvas's SIS importer matches these whole-word and case-insensitively; `student` is a prefix match.
ROLE_WORDS = {
    "teacher": "TeacherEnrollment",
    "ta": "TaEnrollment",
    "observer": "ObserverEnrollment",
    "designer": "DesignerEnrollment",
}

# Prefixes Canvas accepts for SIS-side identifiers (../shared/CANVAS_API.md §3.1).
SIS_PREFIXES = (
    "sis_user_id",
    "sis_login_id",
    "sis_integration_id",
    "sis_course_id",
    "sis_section_id",
)


MAX_MESSAGE = 1000  # characters of one error message kept, shown, journaled and reported
LISTED = 10  # names or values one message lists before it says how many more there are


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """`text`, cut to `limit` characters with a note of what was cut: a hostile or broken
    input must not turn into a message of megabytes (in the journal, the report, the log)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def listing(items: Sequence[str], shown: int = LISTED) -> str:
    """`a, b, c`, or the first `shown` and how many more."""
    head = ", ".join(items[:shown])
    return head if len(items) <= shown else f"{head}, … ({len(items) - shown} more)"


def api_id(kind: str | None, value: str) -> str:
    """`api_id("sis_user_id", "S1")` -> `sis_user_id:S1`; `api_id(None, "42")` -> `42`."""
    return value if kind is None else f"{kind}:{value}"


def split_api_id(ref: str) -> tuple[str | None, str]:
    """Inverse of `api_id`: `sis_user_id:a:b` -> (`sis_user_id`, `a:b`); `42` -> (None, `42`)."""
    prefix, sep, rest = ref.partition(":")
    if sep and prefix in SIS_PREFIXES:
        return prefix, rest
    return None, ref


def sis_value(ref: str | None) -> str:
    """The bare identifier, as an SIS CSV would carry it."""
    return "" if ref is None else split_api_id(ref)[1]


# Provenance and EnrollmentRecord are treated as immutable but not declared frozen: a frozen
# dataclass's __init__ sets each field through object.__setattr__, which costs 4x and dominated
# parsing 100,000 rows. `unsafe_hash` keeps them usable as keys, which nothing may then mutate.
@dataclass(slots=True, unsafe_hash=True)
class Provenance:
    """Where a record came from, precisely enough for an operator to open the file at that line."""

    source: str  # file path, or "sql:<url without password>"
    line: int  # 1-based physical line of a file (header is line 1), or 1-based row of a query
    raw: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __str__(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass(slots=True, unsafe_hash=True)
class EnrollmentRecord:
    """One validated enrollment row, normalized to what the Canvas REST API needs."""

    user: str  # API id form: "sis_user_id:S001", "sis_integration_id:X", or numeric Canvas id
    course: str | None  # "sis_course_id:BIO-101" or numeric; None when only the section is given
    section: str | None  # "sis_section_id:BIO-101-01" or numeric
    role: str  # as the SIS named it: a role word ("student") or a custom role name ("Grader")
    enrollment_type: str | None  # base type when the role resolves to one; None for custom names
    status: SisStatus
    provenance: Provenance
    role_id: str | None = None
    associated_user: str | None = None  # observers: the observed student, API id form
    # UNCHANGED: the source left the column blank, so the value in Canvas is kept (see Unchanged)
    start_at: str | Unchanged = UNCHANGED
    end_at: str | Unchanged = UNCHANGED
    limit_section_privileges: bool | Unchanged = UNCHANGED
    notify: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Identity of the enrollment the row describes; Canvas dedupes on the same fields."""
        return "|".join(
            (self.user, self.course or "", self.section or "", self.role_id or self.role)
        )

    @property
    def leaves_unchanged(self) -> tuple[str, ...]:
        """The fields a re-POST would reset that this record leaves as they are in Canvas."""
        return tuple(
            name
            for name, value in (
                ("limit_section_privileges", self.limit_section_privileges),
                ("start_at", self.start_at),
                ("end_at", self.end_at),
            )
            if value is UNCHANGED
        )

    @property
    def course_label(self) -> str:
        """What an operator calls the course: the SIS course id, else the section's."""
        return sis_value(self.course or self.section)


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A row that could not become a record. It is accounted for, never dropped.

    `skip=True` marks rows that are not errors but must not be sent (an exact duplicate of an
    earlier row): they end SKIPPED, the rest end FAILED at validation.
    """

    provenance: Provenance
    message: str
    field: str | None = None  # the column at fault, when one is
    column: int | None = None  # its 1-based position in the row
    skip: bool = False

    def __str__(self) -> str:
        where = str(self.provenance)
        if self.field is not None:
            col = f" (column {self.column})" if self.column is not None else ""
            where += f": {self.field}{col}"
        return f"{where}: {self.message}"


SourceItem = EnrollmentRecord | RowProblem


class Source(Protocol):
    """A stream of records and problems; `records + problems == data rows` always holds."""

    @property
    def description(self) -> str:
        """Human label: a path, or a database URL with the password masked."""
        ...

    def __iter__(self) -> Iterator[SourceItem]: ...


class InputError(Exception):
    """A source that cannot be read at all (missing file, bad header, unreachable database).

    Row-level faults are RowProblems instead; this is for faults that leave no rows to account for.
    """


class SourceUnavailable(InputError):
    """A source configured right that cannot be reached now: a database server that refuses the
    connection or drops it. A one-shot run ends on it as on any InputError (exit 2); `watch`
    waits it out, at start too, since a server that is down comes back (engine/watch.py)."""
