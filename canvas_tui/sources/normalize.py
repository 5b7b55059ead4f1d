"""Row -> record: the one place where source values become `EnrollmentRecord`s or `RowProblem`s.

CSV and SQL sources both hand rows (sequences of strings) to a `RowNormalizer` built from the
header (or the query's columns) and a `Layout`. The rules follow Canvas's SIS importer
(../shared/CANVAS_API.md §6.5): values are stripped, status is a case-insensitive prefix match,
role words resolve like Canvas resolves them, custom role names pass through case-sensitively.
"""

from __future__ import annotations

import difflib
import re
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final, Literal, cast

from canvas_tui.records import (
    BASE_TYPES,
    LISTED,
    ROLE_WORDS,
    UNCHANGED,
    EnrollmentRecord,
    InputError,
    Provenance,
    RowProblem,
    SisStatus,
    Unchanged,
    clip,
    listing,
)

# The columns every row is read for, in the order `RowNormalizer.normalize` unpacks them.
_CORE: Final = (
    "course_id",
    "section_id",
    "user_id",
    "user_integration_id",
    "role",
    "role_id",
    "status",
)
# Every column Canvas's enrollments.csv knows; these are also the targets of a column mapping.
FIELDS: Final = (
    *_CORE,
    "associated_user_id",
    "start_date",
    "end_date",
    "limit_section_privileges",
    "notify",
    "root_account",
    "temporary_enrollment_source_user_id",
)

ID_FIELDS: Final = ("user", "course", "section")
Format = Literal["canvas", "mapped"]


class IdKind(StrEnum):
    SIS = "sis"  # the SIS id Canvas knows the object by (sis_user_id:..., sis_course_id:...)
    CANVAS = "canvas"  # Canvas's own numeric id


@dataclass(frozen=True, slots=True)
class Layout:
    """How a source's columns become record fields; shared by every kind of source.

    `format="canvas"`: columns are named as in Canvas's enrollments.csv (case-insensitive).
    `format="mapped"`: `mapping` names, for each field, the source column that holds it.
    `defaults` fill a field that is unmapped or empty; `values` translate a field's raw values
    (e.g. role "S" -> "student"); `ids` says per object whether ids are SIS ids or Canvas ids.
    """

    format: Format = "canvas"
    mapping: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    ids: Mapping[str, IdKind] = field(default_factory=dict)

    def id_kind(self, obj: str) -> IdKind:
        return self.ids.get(obj, IdKind.SIS)


# Status: Canvas's regex is anchored only at the start; the longer prefix must win over `deleted`.
_STATUS_PREFIXES: Final = (
    ("deleted_last_completed", SisStatus.DELETED_LAST_COMPLETED),
    ("active", SisStatus.ACTIVE),
    ("deleted", SisStatus.DELETED),
    ("completed", SisStatus.COMPLETED),
    ("inactive", SisStatus.INACTIVE),
)
STATUS_EXPECTED: Final = "active, inactive, completed, deleted or deleted_last_completed"
ROLE_EXPECTED: Final = (
    "student, teacher, ta, observer, designer, a custom role name (case-sensitive) or a role_id"
)
_BASE_TYPES_LOWER: Final = {t.lower(): t for t in BASE_TYPES}
_ROLE_KEYWORDS: Final = ("student", *ROLE_WORDS)
_TRUE: Final = frozenset({"true", "yes", "on", "1", "t", "y"})
_FALSE: Final = frozenset({"false", "no", "off", "0", "f", "n"})
# C0 controls, DEL and C1 controls: never part of an id (a NUL would be sent to Canvas as is).
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f]")
_MAX_ID_DIGITS: Final = 19
MAX_COLUMNS: Final = 1000  # an enrollments file has 14; a registrar's export a few hundred  # Canvas ids are 64-bit: at most 19 digits (CANVAS_API.md §3.2)


@dataclass(frozen=True, slots=True)
class RoleResolution:
    role: str  # the role to record: the SIS's word, or the base type a mis-spelling stands for
    enrollment_type: str | None
    warning: str | None


def resolve_role(role: str) -> RoleResolution:
    """Resolve a role value the way Canvas's SIS importer does (CANVAS_API.md §6.5)."""
    if role in BASE_TYPES:  # a role named exactly like a built-in role
        return RoleResolution(role, role, None)
    lower = role.lower()
    if lower in ROLE_WORDS:
        return RoleResolution(role, ROLE_WORDS[lower], None)
    if lower.startswith("student"):
        return RoleResolution(role, "StudentEnrollment", None)
    base = _BASE_TYPES_LOWER.get(lower)
    if base is not None:
        # e.g. TAEnrollment: Canvas would treat it as an unknown custom role and reject the row.
        return RoleResolution(
            base,
            base,
            f'role "{role}" read as {base} (Canvas role names are case-sensitive; '
            f"it would reject {role})",
        )
    close = difflib.get_close_matches(lower, _ROLE_KEYWORDS, n=1, cutoff=0.75)
    warning = (
        f'role "{role}" is not a built-in role word; it is sent as a custom role name '
        f'(did you mean "{close[0]}"?)'
        if close
        else None
    )
    return RoleResolution(role, None, warning)


def resolve_status(status: str) -> SisStatus | None:
    lower = status.lower()
    for prefix, value in _STATUS_PREFIXES:
        if lower.startswith(prefix):
            return value
    return None


def parse_bool(value: str) -> bool | None:
    lower = value.lower()
    if lower in _TRUE:
        return True
    if lower in _FALSE:
        return False
    return None


def valid_iso8601(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def is_canvas_id(value: str) -> bool:
    return value.isascii() and value.isdigit() and len(value) <= _MAX_ID_DIGITS


def _sis_prefix(layout: Layout, kind: str) -> str | None:
    """`sis_user_id:` (course, section) when the source's ids of `kind` are SIS ids."""
    return f"sis_{kind}_id:" if layout.id_kind(kind) is IdKind.SIS else None


def _api_id(value: str, sis_prefix: str | None) -> str | None:
    """A source id as the API names it: prefixed when it is an SIS id, as is when it is a Canvas
    id; None when it should be a Canvas id and is not."""
    if sis_prefix is not None:
        return sis_prefix + value
    return value if is_canvas_id(value) else None


@dataclass(frozen=True, slots=True)
class _Slot:
    """Where one field comes from for this source: a column, a default, a value map."""

    field: str
    index: int | None  # 0-based column index, None when the field is not in the source
    label: str  # what an operator calls it: the source column, or the defaults key
    default: str
    values: Mapping[str, str] | None

    @property
    def column(self) -> int | None:
        return None if self.index is None else self.index + 1


_OPTIONAL: Final = FIELDS[len(_CORE) :]
# observed user, start, end, limit_section_privileges, notify; a blank date or flag is UNCHANGED
_Extras = tuple[str | None, str | Unchanged, str | Unchanged, bool | Unchanged, bool]
_NO_EXTRAS: Final[_Extras] = (None, UNCHANGED, UNCHANGED, UNCHANGED, False)


class FirstSeen:
    """Row identity hash -> the line that first had it: the duplicate index.

    It is the one structure that grows with the input, so it is two flat arrays (open addressing,
    12 bytes a slot, at most half full) rather than a dict of int objects (~100 bytes an entry):
    about 24 MB for a million distinct rows instead of 100 MB.
    """

    __slots__ = ("_count", "_hashes", "_lines", "_mask")

    def __init__(self, capacity: int = 1 << 12) -> None:
        """`capacity`: a power of two; it doubles once half full."""
        self._hashes, self._lines = _slots(capacity)
        self._mask = capacity - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def first(self, key: int, line: int) -> int:
        """The line `key` was first seen on; records `line` when this is the first time."""
        key = key or 1  # 0 marks an empty slot
        hashes, mask = self._hashes, self._mask
        slot = key & mask
        while True:
            found = hashes[slot]
            if found == key:
                return self._lines[slot]
            if not found:
                break
            slot = (slot + 1) & mask
        hashes[slot] = key
        self._lines[slot] = line
        self._count += 1
        if self._count * 2 > mask:
            self._grow()
        return line

    def _grow(self) -> None:
        old = zip(self._hashes, self._lines, strict=True)
        capacity = (self._mask + 1) * 2
        self._hashes, self._lines = _slots(capacity)
        self._mask = capacity - 1
        self._count = 0
        for key, line in old:
            if key:
                self.first(key, line)


def capacity_for(rows: int) -> int:
    """The `FirstSeen` capacity that holds `rows` distinct rows without growing: sized once
    from a count, a pass never holds the old and the new arrays at once (12 MiB more at a
    million rows) nor re-inserts every key."""
    capacity = 1 << 12
    while rows * 2 > capacity - 1:
        capacity *= 2
    return capacity


def _slots(capacity: int) -> tuple[array[int], array[int]]:
    """Zeroed arrays for `FirstSeen`, made by repetition: `array("q", bytes(n))` would first
    make an n-byte zero string beside them (16 MB more at a million rows, as it grows). Lines
    fit 32 bits (4 bytes a slot): a million rows' index peaks at 36 MB while it grows, not 64."""
    return array("q", [0]) * capacity, array("i", [0]) * capacity


class RowNormalizer:
    """Turns rows of one source into records or problems; remembers rows to report duplicates.

    Built once per source from its column names, so the per-row work is index lookups only.
    Raises `InputError` when the columns cannot carry an enrollment at all (no user column...).
    """

    def __init__(
        self,
        source: str,
        columns: Sequence[str],
        layout: Layout,
        *,
        header_line: int = 1,
        expected_rows: int = 0,
    ) -> None:
        """`expected_rows`: the rows an earlier pass counted, to size the duplicate index once."""
        self.source = source
        self.columns = tuple(columns)
        self.layout = layout
        self.notes: list[str] = []
        where = f"{source}:{header_line}" if header_line else source
        if len(self.columns) > MAX_COLUMNS:
            raise InputError(
                f"{where}: the header has {len(self.columns)} columns; at most {MAX_COLUMNS} "
                "are read (is the delimiter right? [source] delimiter sets it)"
            )
        index = self._column_index(where)
        slots: dict[str, _Slot] = {}
        for name in FIELDS:
            column_name = self._column_for(name, index, where)
            col = None if column_name is None else index[column_name]
            default = layout.defaults.get(name, "").strip()
            if col is None and not default:
                continue
            label = self.columns[col] if col is not None else f"[source.defaults] {name}"
            slots[name] = _Slot(name, col, label, default, layout.values.get(name))
        self._slots = slots
        self._require(where)

        # Per row, the values are stripped into a list extended by a fixed tail: first the
        # constants of fields that only have a default, then "" for fields the source lacks
        # (index -1). Every field is then one list index away, with no branches.
        width = len(self.columns)
        constants = [s for s in slots.values() if s.index is None]
        tail = [s.default for s in constants]
        self._tail = (*tail, "")
        position = {s.field: width + i for i, s in enumerate(constants)}
        position.update({s.field: s.index for s in slots.values() if s.index is not None})
        self._core = tuple(position.get(name, -1) for name in _CORE)
        self._extra = tuple(position.get(name, -1) for name in _OPTIONAL)
        self._optional = any(name in slots for name in _OPTIONAL)
        # Value maps and fill-when-empty defaults of mapped columns need a per-row pass.
        self._fixups = tuple(
            s for s in slots.values() if s.index is not None and (s.values is not None or s.default)
        )
        self._user_prefix = _sis_prefix(layout, "user")
        self._course_prefix = _sis_prefix(layout, "course")
        self._section_prefix = _sis_prefix(layout, "section")
        self._seen = FirstSeen(capacity_for(expected_rows))
        self._roles: dict[str, RoleResolution] = {}
        self._statuses: dict[str, SisStatus | None] = {}

    # -- header -----------------------------------------------------------------------------

    def _column_index(self, where: str) -> dict[str, int]:
        index: dict[str, int] = {}
        duplicates = 0
        for i, name in enumerate(self.columns):
            key = name.strip().lower() if self.layout.format == "canvas" else name.strip()
            if key in index:
                duplicates += 1
                if duplicates <= LISTED:
                    self.notes.append(
                        f"{where}: column {clip(repr(name), 80)} appears twice (columns "
                        f"{index[key] + 1} and {i + 1}); the first is used"
                    )
                continue
            index[key] = i
        if duplicates > LISTED:
            self.notes.append(f"{where}: {duplicates - LISTED} more columns appear twice")
        if self.layout.format == "canvas":
            unknown = [clip(c, 80) for c in index if c and c not in FIELDS]
            if unknown:
                self.notes.append(
                    f"{where}: ignoring column(s) Canvas does not know: {listing(unknown)}"
                )
        return index

    def _column_for(self, name: str, index: Mapping[str, int], where: str) -> str | None:
        if self.layout.format == "canvas":
            return name if name in index else None
        wanted = self.layout.mapping.get(name)
        if wanted is None:
            return None
        if wanted in index:
            return wanted
        folded = [c for c in index if c.lower() == wanted.lower()]
        if len(folded) == 1:
            return folded[0]
        close = difflib.get_close_matches(wanted, list(index), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputError(
            f"{where}: [source.mapping] {name} = {wanted!r}, but the source has no such column"
            f"{hint}; its columns are: {listing(self.columns)}"
        )

    def _require(self, where: str) -> None:
        have = self._slots
        found = listing(self.columns) or "(none)"
        how = (
            "columns named as in Canvas's enrollments.csv"
            if self.layout.format == "canvas"
            else "[source.mapping] or [source.defaults] entries"
        )
        needs = (
            (("course_id", "section_id"), "course_id or section_id"),
            (("user_id", "user_integration_id"), "user_id or user_integration_id"),
            (("role", "role_id"), "role or role_id"),
            (("status",), "status"),
        )
        for names, label in needs:
            if not any(n in have for n in names):
                raise InputError(
                    f"{where}: no {label} in the source; expected {how} (found columns: {found})"
                )

    # -- rows -------------------------------------------------------------------------------

    def raw(self, row: Sequence[str]) -> dict[str, str]:
        """The row as column -> value, extra fields keyed by position, for provenance. Only
        the first few extra fields are kept: a row of a million fields stays a small record."""
        width = len(self.columns)
        raw = dict(zip(self.columns, row, strict=False))
        for i in range(width, min(len(row), width + LISTED)):
            raw[f"column {i + 1}"] = row[i]
        if len(row) > width + LISTED:
            raw[f"columns {width + LISTED + 1}-{len(row)}"] = "(not kept)"
        return raw

    def problem(
        self,
        row: Sequence[str],
        line: int,
        message: str,
        *,
        field: str | None = None,
        column: int | None = None,
        skip: bool = False,
    ) -> RowProblem:
        provenance = Provenance(self.source, line, self.raw(row))
        return RowProblem(provenance, clip(message), field, column, skip)

    def _fix(self, row: Sequence[str], vals: list[str], line: int) -> RowProblem | None:
        for slot in self._fixups:
            index = cast(int, slot.index)
            value = vals[index]
            if not value:
                vals[index] = slot.default
            elif slot.values is not None:
                mapped = slot.values.get(value)
                if mapped is None:
                    return self.problem(
                        row,
                        line,
                        f"value {value!r} has no entry in [source.values.{slot.field}]; "
                        f"expected one of: {', '.join(sorted(slot.values))}",
                        field=slot.label,
                        column=slot.column,
                    )
                vals[index] = mapped
        return None

    def _fault(self, row: Sequence[str], line: int, field: str, message: str) -> RowProblem:
        slot = self._slots.get(field)
        if slot is None:
            return self.problem(row, line, message, field=field)
        return self.problem(row, line, message, field=slot.label, column=slot.column)

    def _label(self, *fields: str) -> str:
        return " or ".join(self._slots[f].label for f in fields if f in self._slots)

    def normalize(self, row: Sequence[str], line: int) -> EnrollmentRecord | RowProblem:
        """One row (exactly one value per column) -> a record, or the problem that stops it."""
        # The hot path: plain locals and cached resolutions; rare cases leave it early.
        vals = list(map(str.strip, row))
        vals += self._tail
        if self._fixups:
            problem = self._fix(row, vals, line)
            if problem is not None:
                return problem
        ci, si, ui, ii, ri, rii, sti = self._core
        course_id = vals[ci]
        section_id = vals[si]
        warnings: tuple[str, ...] = ()
        if not "".join(row).isprintable():  # one C-level scan keeps the common row cheap
            problem = self._control_fault(row, line, vals)
            if problem is not None:
                return problem

        if not course_id and not section_id:
            return self._fault(
                row,
                line,
                "course_id",
                "No course_id or section_id given for an enrollment; expected a course or "
                f"section id in {self._label('course_id', 'section_id')}",
            )
        course = section = None
        if course_id:
            course = _api_id(course_id, self._course_prefix)
            if course is None:
                return self._not_canvas_id(row, line, "course_id", course_id)
        if section_id:
            section = _api_id(section_id, self._section_prefix)
            if section is None:
                return self._not_canvas_id(row, line, "section_id", section_id)

        integration_id = vals[ii]
        user_id = vals[ui]
        if integration_id:
            user = "sis_integration_id:" + integration_id  # Canvas ignores user_id then
        elif user_id:
            sent = _api_id(user_id, self._user_prefix)
            if sent is None:
                return self._not_canvas_id(row, line, "user_id", user_id)
            user = sent
        else:
            return self._fault(
                row,
                line,
                "user_id",
                "No user_id given for an enrollment; expected a user id in "
                f"{self._label('user_id', 'user_integration_id')}",
            )

        role = vals[ri]
        role_id = vals[rii] or None
        if role_id is not None and not is_canvas_id(role_id):
            return self._fault(
                row,
                line,
                "role_id",
                f'Improper role_id "{role_id}" for an enrollment; expected a numeric Canvas role id',
            )
        enrollment_type: str | None = None
        if role:
            resolved = self._roles.get(role)
            if resolved is None:
                resolved = self._roles[role] = resolve_role(role)
            role, enrollment_type = resolved.role, resolved.enrollment_type
            if resolved.warning is not None:
                warnings += (resolved.warning,)
        elif role_id is None:
            return self._fault(
                row, line, "role", f'Improper role "" for an enrollment; expected {ROLE_EXPECTED}'
            )

        status_value = vals[sti]
        status = self._statuses.get(status_value)
        if status is None:
            status = self._statuses[status_value] = resolve_status(status_value)
            if status is None:
                return self._fault(
                    row,
                    line,
                    "status",
                    f'Improper status "{status_value}" for an enrollment; expected '
                    f"{STATUS_EXPECTED}",
                )
        if len(status_value) != len(status):
            warnings += (f'status "{status_value}" read as {status} (prefix match)',)

        extras = _NO_EXTRAS
        if self._optional:
            found = self._extras(row, vals, line, user_id or integration_id, enrollment_type)
            if isinstance(found, RowProblem):
                return found
            extras, more = found
            warnings += more

        # Identical enrollments are sent once; the later rows are skipped, naming the first.
        first = self._seen.first(
            hash((user, course, section, enrollment_type or role, role_id, status._value_, extras)),
            line,
        )
        if first != line:
            return self.problem(
                row, line, f"duplicate of line {first}: the same enrollment; skipped", skip=True
            )

        return EnrollmentRecord(
            user,
            course,
            section,
            role,
            enrollment_type,
            status,
            Provenance(self.source, line, dict(zip(self.columns, row, strict=False))),
            role_id,
            *extras,
            warnings,
        )

    def _extras(
        self,
        row: Sequence[str],
        vals: list[str],
        line: int,
        who: str,
        enrollment_type: str | None,
    ) -> tuple[_Extras, tuple[str, ...]] | RowProblem:
        """The optional columns: observer link, dates, flags, and ones REST cannot honour."""
        v = dict(zip(_OPTIONAL, (vals[i] for i in self._extra), strict=True))
        warnings: tuple[str, ...] = ()
        associated = None
        associated_id = v["associated_user_id"]
        problem = self._control_fault(row, line, {"associated_user_id": associated_id})
        if problem is not None:
            return problem
        if associated_id:
            if enrollment_type in ("ObserverEnrollment", None):
                associated = _api_id(associated_id, self._user_prefix)
                if associated is None:
                    return self._not_canvas_id(row, line, "associated_user_id", associated_id)
            else:
                warnings += ("associated_user_id ignored: it applies to observers only",)

        start_at = v["start_date"] or None
        end_at = v["end_date"] or None
        for name, date in (("start_date", start_at), ("end_date", end_at)):
            if date is not None and not valid_iso8601(date):
                return self._fault(
                    row,
                    line,
                    name,
                    f"Bad date format {date!r} for user {who}; expected ISO 8601 like "
                    "2026-01-15T08:00:00Z",
                )
        dates: tuple[str | Unchanged, str | Unchanged] = (UNCHANGED, UNCHANGED)
        if start_at is not None and end_at is not None:
            dates = (start_at, end_at)
        elif start_at is not None or end_at is not None:
            warnings += ("start_date/end_date ignored: Canvas applies them only when both are set",)

        # A blank flag leaves Canvas's value alone, as the SIS importer does
        # (lib/sis/enrollment_importer.rb: `if enrollment_info.limit_section_privileges`).
        limit: bool | Unchanged = UNCHANGED
        if text := v["limit_section_privileges"]:
            parsed = parse_bool(text)
            if parsed is None:
                return self._bad_flag(row, line, "limit_section_privileges", text)
            limit = parsed
        notify = False
        if text := v["notify"]:
            parsed = parse_bool(text)
            if parsed is None:
                return self._bad_flag(row, line, "notify", text)
            notify = parsed

        if v["root_account"]:
            warnings += (
                "root_account ignored: the REST API looks users up in this domain's root account",
            )
        if v["temporary_enrollment_source_user_id"]:
            warnings += ("temporary_enrollment_source_user_id ignored: not supported",)
        return (associated, *dates, limit, notify), warnings

    def _bad_flag(self, row: Sequence[str], line: int, name: str, text: str) -> RowProblem:
        return self._fault(row, line, name, f"{name} is {text!r}; expected true or false")

    def _control_fault(
        self, row: Sequence[str], line: int, vals: Sequence[str] | Mapping[str, str]
    ) -> RowProblem | None:
        """An id with a control character (NUL, ESC, a line break...) would reach Canvas as
        is, where no SIS id can hold it: the row fails, naming the field and the character.
        None when no id has one (the row's other fields may)."""
        fields = (
            vals
            if isinstance(vals, Mapping)
            else {name: vals[i] for name, i in zip(_CORE, self._core, strict=True)}
        )
        for name, value in fields.items():
            found = _CONTROL.search(value)
            if found is not None:
                return self._fault(
                    row,
                    line,
                    name,
                    f"{name} contains the control character U+{ord(found.group()):04X} at "
                    f"position {found.start() + 1}; ids may hold printable characters only",
                )
        return None

    def _not_canvas_id(self, row: Sequence[str], line: int, field: str, value: str) -> RowProblem:
        return self._fault(
            row,
            line,
            field,
            f"{value!r} is not a Canvas id; expected digits only ([source] ids says Canvas ids)",
        )
