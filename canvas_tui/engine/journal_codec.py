"""How the journal stores a record and an attempt compactly, and reads them back exactly.

The journal keeps each fact once (issue 14): a row's user, course, section, role and status live
in their own columns, so the record's JSON holds only its other fields, and only those not at
their default; a source row is stored as its values when its keys are the source's columns; a
POST body is stored as what differs from the body the record itself would make, and a URL
relative to the Canvas API root. Every compact form is checked at write time to give back the
exact text (else the full text is stored), so nothing shown to an operator changes.

Journals of schema 1 stored the full forms; the readers here accept both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from canvas_tui.canvas.ids import path_segment
from canvas_tui.records import UNCHANGED, EnrollmentRecord, Provenance, SisStatus, Unchanged

_COMPACT = (",", ":")
# One encoder for every row: json.dumps with separators builds a new JSONEncoder per call, a
# third of what the load spends encoding.
_encode = json.JSONEncoder(separators=_COMPACT).encode

# ---- schema 1: the whole record as JSON ---------------------------------------------------------


def record_to_json(record: EnrollmentRecord) -> str:
    """Schema 1's form of a record (every field); kept to read and to test old journals."""
    return json.dumps(
        {
            "user": record.user,
            "course": record.course,
            "section": record.section,
            "role": record.role,
            "enrollment_type": record.enrollment_type,
            "status": str(record.status),
            "role_id": record.role_id,
            "associated_user": record.associated_user,
            # "unchanged" (a blank column) is stored as itself, so a resume or a retry re-sends
            # no false or null that the source never gave
            "start_at": _kept(record.start_at),
            "end_at": _kept(record.end_at),
            "limit_section_privileges": _kept(record.limit_section_privileges),
            "notify": record.notify,
            "warnings": list(record.warnings),
        }
    )


def _kept(value: object) -> object:
    return UNCHANGED.value if value is UNCHANGED else value


def _date_of(value: str | None) -> str | Unchanged:
    # null is a blank date in journals written before "unchanged" existed
    return UNCHANGED if value is None or value == UNCHANGED.value else value


def _flag_of(value: bool | str | None) -> bool | Unchanged:
    return UNCHANGED if value is None or value == UNCHANGED.value else bool(value)


def raw_pick(raw: Mapping[str, str], *names: str) -> str:
    """The first non-blank of these columns of a source row, else ""."""
    for name in names:
        value = raw.get(name)
        if value:
            return value
    return ""


def _old_blank_flag(data: Mapping[str, Any], provenance: Provenance) -> Unchanged | None:
    """UNCHANGED for a flag a journal from before "unchanged" stored as false for a blank
    column (such a journal also stores null for blank dates; no later one does): resuming it
    must not turn a section limit off (Course#enroll_user, app/models/course.rb)."""
    old = data["start_at"] is None or data["end_at"] is None
    given = raw_pick(provenance.raw, "limit_section_privileges")
    if old and data["limit_section_privileges"] is False and not given:
        return UNCHANGED
    return None


def record_from_json(text: str, provenance: Provenance) -> EnrollmentRecord:
    """A record from schema 1's form."""
    data = json.loads(text)
    return EnrollmentRecord(
        user=data["user"],
        course=data["course"],
        section=data["section"],
        role=data["role"],
        enrollment_type=data["enrollment_type"],
        status=SisStatus(data["status"]),
        provenance=provenance,
        role_id=data["role_id"],
        associated_user=data["associated_user"],
        start_at=_date_of(data["start_at"]),
        end_at=_date_of(data["end_at"]),
        limit_section_privileges=_old_blank_flag(data, provenance)
        or _flag_of(data["limit_section_privileges"]),
        notify=bool(data["notify"]),
        warnings=tuple(data["warnings"]),
    )


# ---- schema 2: the fields no column holds -------------------------------------------------------


def fields_to_json(record: EnrollmentRecord) -> str:
    """The record's fields that have no column of their own, each only when not at its default
    (None, "unchanged", false). Never NULL: NULL marks a row with no record to send."""
    out: dict[str, Any] = {}
    for name in ("enrollment_type", "role_id", "associated_user"):
        value = getattr(record, name)
        if value is not None:
            out[name] = value
    for name in ("start_at", "end_at", "limit_section_privileges"):
        value = getattr(record, name)
        if value is not UNCHANGED:
            out[name] = value
    if record.notify:
        out["notify"] = True
    return _encode(out) if out else "{}"


def record_from_columns(
    columns: Sequence[Any], fields: str, warnings: str | None, provenance: Provenance
) -> EnrollmentRecord:
    """A record from its row: (user, course, section, role, status), the `fields` JSON of either
    schema and the warnings column."""
    data = json.loads(fields)
    if "user" in data:  # schema 1: the whole record
        return record_from_json(fields, provenance)
    user, course, section, role, status = columns
    return EnrollmentRecord(
        user=user,
        course=course,
        section=section,
        role=role,
        enrollment_type=data.get("enrollment_type"),
        status=SisStatus(status),
        provenance=provenance,
        role_id=data.get("role_id"),
        associated_user=data.get("associated_user"),
        start_at=data.get("start_at", UNCHANGED),
        end_at=data.get("end_at", UNCHANGED),
        limit_section_privileges=data.get("limit_section_privileges", UNCHANGED),
        notify=bool(data.get("notify", False)),
        warnings=warnings_of(warnings),
    )


def warnings_to_json(warnings: Sequence[str]) -> str | None:
    return _encode(list(warnings)) if warnings else None


def warnings_of(text: str | None) -> tuple[str, ...]:
    return tuple(json.loads(text)) if text else ()


# ---- source rows --------------------------------------------------------------------------------


def raw_to_json(raw: Mapping[str, str], columns: Sequence[str] | None) -> str:
    """The row's values alone when its keys are the source's columns, in order; else the object."""
    if columns is not None and len(raw) == len(columns) and list(raw) == list(columns):
        return _encode(list(raw.values()))
    return _encode(dict(raw))


def raw_of(text: str, columns: Sequence[str] | None) -> dict[str, str]:
    value = json.loads(text)
    if isinstance(value, list):
        return dict(zip(columns or (), value, strict=True))
    return dict(value)


# ---- attempts: URLs and POST bodies -------------------------------------------------------------

API = "/api/v1"


def url_root(url: str) -> str | None:
    """The Canvas API root of a request URL ("https://host/api/v1"), if it has one."""
    at = url.find(API + "/")
    return None if at < 0 else url[: at + len(API)]


_TEMPLATE = "~"  # a stored URL naming the record's own ids by these marks


_PLAIN = re.compile(r"[A-Za-z0-9:._~-]*")  # characters path_segment keeps as they are


def _segment(value: str) -> str:
    """The id as its URL path segment: itself when plain (the usual SIS id), else escaped."""
    return value if _PLAIN.fullmatch(value) and ".json" not in value else path_segment(value)


_MARKS: dict[tuple[str, str | None, str | None], list[tuple[str, str]]] = {}


def _marks(record: EnrollmentRecord) -> list[tuple[str, str]]:
    """(mark, text) for the ids a record's requests name: each as a path segment ({u} {c} {s})
    and as a query value ({U} {C} {S}, e.g. `user_id=sis_user_id%3AS1`)."""
    key = (record.user, record.course, record.section)
    found = _MARKS.get(key)
    if found is None:  # once per record: its GET and POST and retries share them
        if len(_MARKS) >= 1024:
            _MARKS.clear()
        found = []
        for letter, value in zip("ucs", key, strict=True):
            if value:
                segment, query = _segment(value), quote(value, safe="")
                found.append((f"{{{letter}}}", segment))
                if query != segment:
                    found.append((f"{{{letter.upper()}}}", query))
        _MARKS[key] = found
    return found


def url_to_stored(url: str, root: str | None, record: EnrollmentRecord | None = None) -> str:
    """`url` as stored: relative to `root` ("/courses/..."), and with the record's own ids as
    marks ("~/courses/{c}/enrollments") when `url_of` reads that back exactly (an id such as
    "u" could meet a mark's own letters); unchanged when under no root (full URLs start with a
    scheme, never with "/" or "~")."""
    if not root or not url.startswith(root + "/"):
        return url
    relative = url[len(root) :]
    if record is None or "{" in relative:
        return relative
    template = relative
    for mark, text in _marks(record):
        template = template.replace(text, mark)
    if template == relative:
        return relative
    stored = _TEMPLATE + template
    return stored if url_of(stored, root, record) == url else relative


def url_of(stored: str, root: str | None, record: EnrollmentRecord | None = None) -> str:
    if stored.startswith(_TEMPLATE) and record is not None:
        stored = stored[len(_TEMPLATE) :]
        for mark, segment in _marks(record):
            stored = stored.replace(mark, segment)
    return f"{root}{stored}" if root and stored.startswith("/") else stored


def templated(stored: str) -> bool:
    """Whether a stored URL needs its record to be read back."""
    return stored.startswith(_TEMPLATE)


# The order CanvasClient.create_enrollment builds a body's fields in.
_BODY_ORDER = (
    "user_id",
    "enrollment_state",
    "notify",
    "limit_privileges_to_course_section",
    "type",
    "role_id",
    "role",
    "start_at",
    "end_at",
    "associated_user_id",
    "course_section_id",
)


def _guess(record: EnrollmentRecord) -> dict[str, Any]:
    """The enrollment fields the record's own POST most often carries (active, no role id, no
    observee looked up); what a run adds to them is kept as a delta."""
    limit = record.limit_section_privileges
    return {
        "user_id": record.user,
        "enrollment_state": "active",
        "notify": record.notify,
        "limit_privileges_to_course_section": False if limit is UNCHANGED else limit,
        "type": record.enrollment_type,
        "role": record.role if record.enrollment_type is None else None,
        "start_at": None if record.start_at is UNCHANGED else record.start_at,
        "end_at": None if record.end_at is UNCHANGED else record.end_at,
        "course_section_id": record.section if record.course else None,
    }


def body_of(delta: str, record: EnrollmentRecord) -> str:
    """The POST body the record made with this delta (see `body_delta`)."""
    merged = {**_guess(record), **(json.loads(delta) if delta else {})}
    ordered = {k: merged[k] for k in _BODY_ORDER if merged.get(k) is not None}
    ordered.update({k: v for k, v in merged.items() if k not in ordered and v is not None})
    return json.dumps({"enrollment": ordered}, separators=_COMPACT)


def body_delta(body: str, record: EnrollmentRecord) -> str | None:
    """What the enrollment fields of `body` change in the record's own POST body ('' for
    nothing; a field it leaves out maps to null), or None when `body_of` would not give back
    exactly `body`: then the body is stored whole."""
    if body == body_of("", record):  # the usual case, without parsing the body
        return ""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or list(data) != ["enrollment"]:
        return None
    fields = data["enrollment"]
    if not isinstance(fields, dict):
        return None
    guess = _guess(record)
    delta: dict[str, Any] = {
        k: v for k, v in fields.items() if k not in guess or type(guess[k]) is not type(v)
    }
    delta.update(
        {k: v for k, v in fields.items() if k in guess and k not in delta and guess[k] != v}
    )
    delta.update({k: None for k, v in guess.items() if v is not None and k not in fields})
    text = json.dumps(delta, separators=_COMPACT) if delta else ""
    return text if body_of(text, record) == body else None
