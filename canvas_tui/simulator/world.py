"""The simulated Canvas's data: accounts, roles, courses, sections, users, enrollments, tokens.

`World.generate(seed, users=..., courses=...)` builds a deterministic world. Every world contains the
ids from Canvas's own `enrollments.csv` documentation sample (course E411208, sections 1B and 2A,
users 01103, 13834, 13aa3), SIS ids with `/`, non-ASCII names, courses in every workflow state
(available, unpublished, completed, one soft-concluded, one deleted), a custom role "Grader" based on
TaEnrollment and an inactive custom role, an admin token, an admin token without the SIS rights
(read_sis, manage_sis) and a token without permissions.
"""

from __future__ import annotations

import random
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ADMIN_TOKEN = "demo-admin-token"  # noqa: S105  (a public demo token, only the simulator accepts it)
NO_PERMISSION_TOKEN = "demo-student-token"  # noqa: S105  (valid, but its user may do almost nothing)
# An account admin whose role lacks read_sis and manage_sis: every answer omits the SIS fields.
NO_SIS_TOKEN = "demo-admin-no-sis-token"  # noqa: S105  (a public demo token, simulator only)
DEMO_TOKEN = ADMIN_TOKEN

ADMIN_USER_ID = 1
NO_PERMISSION_USER_ID = 2
ROOT_ACCOUNT_ID = 1

# Canvas-like ids of the built-in course roles.
BUILT_IN_ROLE_IDS = {
    "StudentEnrollment": 3,
    "TeacherEnrollment": 4,
    "TaEnrollment": 5,
    "DesignerEnrollment": 6,
    "ObserverEnrollment": 7,
}
GRADER_ROLE_ID = 10  # custom, based on TaEnrollment
AUDITOR_ROLE_ID = 11  # custom, based on StudentEnrollment, inactive

# A fixed "now" for generated timestamps, so a seed always yields the same world.
TIME_ZONE = "America/New_York"  # the accounts' zone (courses report it too)
GENERATED_AT = "2026-08-24T12:00:00Z"
# The SIS import that made the generated students (teachers are enrolled by hand: no import id).
PREFILL_SIS_IMPORT_ID = 1
TERM_START = "2026-08-24T00:00:00Z"
TERM_END = "2026-12-18T23:59:59Z"
PAST_END = "2025-12-19T23:59:59Z"

# Ids of Canvas's documentation sample, ../shared/fixtures/canvas_doc_enrollments.csv.
DOC_COURSE = "E411208"
DOC_SECTIONS = ("1B", "2A")
DOC_USERS = ("01103", "13834", "13aa3")

# Fixed SIS ids for tests and examples: courses in each special state, slashes, non-ASCII.
UNPUBLISHED_COURSE = "CHEM210-F26"
COMPLETED_COURSE = "HIST100-S26"
SOFT_CONCLUDED_COURSE = "PHYS150-SU26"
DELETED_COURSE = "ECON300-F26"
SLASH_COURSE = "ART/210-F26"
SLASH_SECTION = "ART/210-F26/01"
SLASH_USER = "EXT/2026/0042"
NON_ASCII_USER = "S900001"  # Zoë Ångström-Núñez

FIRST_NAMES = (
    "Ada", "Ben", "Chloé", "Dmitri", "Eva", "Farah", "Grace", "Hiro", "Ines", "José", "Kai",
    "Lena", "Łukasz", "Maya", "Nikhil", "Ömer", "Priya", "Quinn", "Renée", "Søren", "Tomás",
    "Uma", "Vikram", "Wen", "Xavier", "Yara", "Zoë", "Ngọc", "Siobhán", "Björn", "Amara", "Liam",
    "Noah", "Olivia", "Sofia", "Mateo", "Aisha", "Chen", "Fatima", "Jonas",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "García", "Nakamura", "Okafor", "Kowalski", "Johansson", "Müller", "Núñez",
    "O'Brien", "Đặng", "Ångström", "Patel", "Nguyen", "Rossi", "Dubois", "Kim", "Haddad",
    "Ivanova", "Mensah", "Larsen", "Fernández", "Schröder", "Novak", "Yilmaz", "Tanaka",
    "Walker", "Ahmed", "Costa", "Brennan", "Lindqvist",
)  # fmt: skip
DEPARTMENTS = (
    ("BIO", "Biology", "SCI"), ("CHEM", "Chemistry", "SCI"), ("PHYS", "Physics", "SCI"),
    ("MATH", "Mathematics", "SCI"), ("HIST", "History", "HUM"), ("PHIL", "Philosophy", "HUM"),
    ("ENGL", "English", "HUM"), ("ART", "Art", "HUM"), ("ECON", "Economics", "BUS"),
    ("MGMT", "Management", "BUS"), ("CS", "Computer Science", "ENG"), ("EE", "Electrical Eng.", "ENG"),
)  # fmt: skip


def ascii_fold(text: str) -> str:
    """`García` -> `Garcia`, for login ids built from names."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def canvas_time(value: str | None, zone: str = TIME_ZONE) -> str | None:
    """A time as Canvas stores and returns it: UTC, ISO 8601 with Z. A date or a time without
    an offset is read in the account's zone, as Canvas parses API times in Time.zone [inferred];
    text that is no time is kept as given."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is None:
        try:
            parsed = parsed.replace(tzinfo=ZoneInfo(zone))
        except ZoneInfoNotFoundError:  # no time zone database here: UTC is the honest guess
            parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class Account:
    id: int
    name: str
    sis_account_id: str | None
    parent_account_id: int | None


@dataclass(slots=True)
class Term:
    """An enrollment term (`EnrollmentTerm`); SIS imports name one for batch mode."""

    id: int
    name: str
    sis_term_id: str | None
    workflow_state: str = "active"  # active | deleted


@dataclass(slots=True)
class Role:
    id: int
    label: str  # the role's name: "StudentEnrollment" for built-ins, "Grader" for a custom role
    base_role_type: str
    account_id: int
    workflow_state: str  # built_in | active | inactive

    @property
    def built_in(self) -> bool:
        return self.workflow_state == "built_in"


@dataclass(slots=True)
class User:
    id: int
    name: str
    sortable_name: str
    short_name: str
    sis_user_id: str | None
    login_id: str
    integration_id: str | None = None
    created_at: str = GENERATED_AT


@dataclass(slots=True)
class Course:
    id: int
    name: str
    course_code: str
    sis_course_id: str | None
    account_id: int
    workflow_state: str  # available | unpublished | completed | deleted
    start_at: str | None = TERM_START
    end_at: str | None = TERM_END
    restrict_enrollments_to_course_dates: bool = False
    integration_id: str | None = None
    enrollment_term_id: int = 1

    @property
    def concluded(self) -> bool:
        """Hard (completed) or soft (end date passed with the dates restriction) conclusion."""
        if self.workflow_state == "completed":
            return True
        return bool(
            self.restrict_enrollments_to_course_dates and self.end_at and self.end_at < now_iso()
        )


@dataclass(slots=True)
class Section:
    id: int
    course_id: int
    name: str
    sis_section_id: str | None
    default: bool = False
    workflow_state: str = "active"
    integration_id: str | None = None


@dataclass(slots=True)
class Enrollment:
    id: int
    user_id: int
    course_id: int
    course_section_id: int
    type: str
    role_id: int
    workflow_state: str
    limit_privileges_to_course_section: bool = False
    associated_user_id: int | None = None
    start_at: str | None = None
    end_at: str | None = None
    created_at: str = GENERATED_AT
    updated_at: str = GENERATED_AT
    sis_import_id: int | None = None  # set when an SIS import made it; API-made rows have none
    # Fields changed outside an SIS import ("sticky"): an import leaves start_at/end_at alone
    # when either is stuck (instructure/canvas-lms lib/sticky_sis_fields.rb, before_save).
    stuck_sis_fields: set[str] = field(default_factory=set)
    completed_at: str | None = None

    @property
    def identity(self) -> tuple[int, str, int, int | None, int]:
        """What Canvas's `enroll_user` matches on to reuse a row (CANVAS_API.md §2.4)."""
        return (
            self.user_id,
            self.type,
            self.role_id,
            self.associated_user_id,
            self.course_section_id,
        )


@dataclass(frozen=True, slots=True)
class Token:
    """A token's user and rights. `read_sis` / `manage_sis` gate the SIS fields of every answer
    (instructure/canvas-lms lib/api/v1/enrollment.rb and user.rb: `user_can_read_sis_data?`)."""

    user_id: int
    admin: bool
    read_sis: bool = True
    manage_sis: bool = True


def parse_sis_ref(ref: str) -> tuple[str | None, str]:
    """Canvas's `sis_parse_id`: `hex:sis_user_id:412f31` -> (`sis_user_id`, `A/1`); `42` -> (None, `42`).

    Returns (None, "") for anything Canvas would resolve to nothing.
    """
    ref = ref.strip()
    if ref.startswith("hex:"):
        prefix, sep, hexed = ref[4:].partition(":")
        if not sep or not (prefix.startswith("sis_") or prefix.startswith("lti_")):
            return None, ""
        try:
            return prefix, bytes.fromhex(hexed).decode("utf-8")
        except ValueError:
            return None, ""
    prefix, sep, rest = ref.partition(":")
    if sep:
        if (prefix.startswith("sis_") or prefix.startswith("lti_")) and rest:
            return prefix, rest
        return None, ""
    if ref.isdigit() and ref.isascii() and len(ref) <= 19:
        return None, ref
    return None, ""


@dataclass
class World:
    accounts: dict[int, Account] = field(default_factory=dict)
    roles: dict[int, Role] = field(default_factory=dict)
    users: dict[int, User] = field(default_factory=dict)
    courses: dict[int, Course] = field(default_factory=dict)
    sections: dict[int, Section] = field(default_factory=dict)
    enrollments: dict[int, Enrollment] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    terms: dict[int, Term] = field(default_factory=dict)
    seed: int = 0
    version: int = 0  # bumped on every enrollment write, so cached roster orderings go stale

    def __post_init__(self) -> None:
        self._users_by_sis: dict[str, User] = {}
        self._users_by_login: dict[str, User] = {}
        self._users_by_integration: dict[str, User] = {}
        self._courses_by_sis: dict[str, Course] = {}
        self._courses_by_integration: dict[str, Course] = {}
        self._sections_by_sis: dict[str, Section] = {}
        self._sections_by_integration: dict[str, Section] = {}
        self._sections_by_course: dict[int, list[Section]] = {}
        self._enrollments_by_course: dict[int, list[Enrollment]] = {}
        self._enrollments_by_user: dict[int, list[Enrollment]] = {}
        self._enrollments_by_identity: dict[tuple[int, str, int, int | None, int], Enrollment] = {}
        self._next_id = {
            "user": 100_000,
            "course": 10_000,
            "section": 20_000,
            "enrollment": 1_000_000,
        }
        for user in list(self.users.values()):
            self._index(user)
        for course in list(self.courses.values()):
            self._index(course)
        for section in list(self.sections.values()):
            self._index(section)
        for enrollment in list(self.enrollments.values()):
            self._index_enrollment(enrollment)

    # ---- building -------------------------------------------------------------------------

    def _index(self, item: User | Course | Section) -> None:
        if isinstance(item, User):
            if item.sis_user_id:
                self._users_by_sis[item.sis_user_id] = item
            self._users_by_login[item.login_id.lower()] = item
            if item.integration_id:
                self._users_by_integration[item.integration_id] = item
        elif isinstance(item, Course):
            if item.sis_course_id:
                self._courses_by_sis[item.sis_course_id] = item
            if item.integration_id:
                self._courses_by_integration[item.integration_id] = item
        else:
            if item.sis_section_id:
                self._sections_by_sis[item.sis_section_id] = item
            if item.integration_id:
                self._sections_by_integration[item.integration_id] = item
            self._sections_by_course.setdefault(item.course_id, []).append(item)

    def _index_enrollment(self, enrollment: Enrollment) -> None:
        self._enrollments_by_course.setdefault(enrollment.course_id, []).append(enrollment)
        self._enrollments_by_user.setdefault(enrollment.user_id, []).append(enrollment)
        self._enrollments_by_identity[enrollment.identity] = enrollment

    def _new_id(self, kind: str, taken: Iterable[int]) -> int:
        next_id = self._next_id[kind]
        taken_ids = taken if isinstance(taken, dict) else set(taken)
        while next_id in taken_ids:
            next_id += 1
        self._next_id[kind] = next_id + 1
        return next_id

    def add_user(
        self,
        name: str,
        sis_user_id: str | None,
        *,
        login_id: str | None = None,
        integration_id: str | None = None,
        user_id: int | None = None,
    ) -> User:
        first, _, last = name.rpartition(" ")
        uid = user_id if user_id is not None else self._new_id("user", self.users)
        user = User(
            id=uid,
            name=name,
            sortable_name=f"{last}, {first}" if first else name,
            short_name=name,
            sis_user_id=sis_user_id,
            login_id=login_id or f"user{uid}@demo.example.edu",
            integration_id=integration_id,
        )
        self.users[uid] = user
        self._index(user)
        return user

    def add_course(
        self,
        name: str,
        sis_course_id: str | None,
        *,
        account_id: int = ROOT_ACCOUNT_ID,
        workflow_state: str = "available",
        course_id: int | None = None,
        default_section: bool = True,
        end_at: str | None = TERM_END,
        restrict_enrollments_to_course_dates: bool = False,
        integration_id: str | None = None,
    ) -> Course:
        cid = course_id if course_id is not None else self._new_id("course", self.courses)
        course = Course(
            id=cid,
            name=name,
            course_code=(sis_course_id or name).split("-")[0],
            sis_course_id=sis_course_id,
            account_id=account_id,
            workflow_state=workflow_state,
            end_at=end_at,
            restrict_enrollments_to_course_dates=restrict_enrollments_to_course_dates,
            integration_id=integration_id,
        )
        self.courses[cid] = course
        self._index(course)
        if default_section:
            self.add_section(course, name, None, default=True)
        return course

    def add_section(
        self,
        course: Course,
        name: str,
        sis_section_id: str | None,
        *,
        default: bool = False,
        section_id: int | None = None,
    ) -> Section:
        sid = section_id if section_id is not None else self._new_id("section", self.sections)
        section = Section(
            id=sid, course_id=course.id, name=name, sis_section_id=sis_section_id, default=default
        )
        self.sections[sid] = section
        self._index(section)
        return section

    def add_enrollment(
        self,
        user: User,
        section: Section,
        role: Role,
        *,
        state: str = "active",
        associated_user_id: int | None = None,
        limit_privileges: bool = False,
        start_at: str | None = None,
        end_at: str | None = None,
        created_at: str | None = None,
        sis_import_id: int | None = None,
    ) -> Enrollment:
        stamp = created_at or now_iso()
        enrollment = Enrollment(
            id=self._new_id("enrollment", self.enrollments),
            user_id=user.id,
            course_id=section.course_id,
            course_section_id=section.id,
            type=role.base_role_type,
            role_id=role.id,
            workflow_state=state,
            limit_privileges_to_course_section=limit_privileges,
            associated_user_id=associated_user_id,
            start_at=start_at,
            end_at=end_at,
            created_at=stamp,
            updated_at=stamp,
            sis_import_id=sis_import_id,
        )
        self.enrollments[enrollment.id] = enrollment
        self._index_enrollment(enrollment)
        self.version += 1
        return enrollment

    # ---- lookups (Canvas `api_find`: numeric id, SIS prefixes, hex:) -----------------------

    def find_user(self, ref: str, *, current_user_id: int | None = None) -> User | None:
        if ref.strip() == "self":
            return self.users.get(current_user_id) if current_user_id is not None else None
        kind, value = parse_sis_ref(ref)
        if kind is None:
            return self.users.get(int(value)) if value else None
        if kind == "sis_user_id":
            return self._users_by_sis.get(value)
        if kind == "sis_login_id":
            return self._users_by_login.get(value.lower())
        if kind == "sis_integration_id":
            return self._users_by_integration.get(value)
        return None

    def find_course(self, ref: str, *, include_deleted: bool = False) -> Course | None:
        kind, value = parse_sis_ref(ref)
        course: Course | None
        if kind is None:
            course = self.courses.get(int(value)) if value else None
        elif kind == "sis_course_id":
            course = self._courses_by_sis.get(value)
        elif kind == "sis_integration_id":
            course = self._courses_by_integration.get(value)
        else:
            course = None
        if course is not None and course.workflow_state == "deleted" and not include_deleted:
            return None
        return course

    def find_section(self, ref: str) -> Section | None:
        kind, value = parse_sis_ref(ref)
        section: Section | None
        if kind is None:
            section = self.sections.get(int(value)) if value else None
        elif kind == "sis_section_id":
            section = self._sections_by_sis.get(value)
        elif kind == "sis_integration_id":
            section = self._sections_by_integration.get(value)
        else:
            section = None
        if section is None or section.workflow_state != "active":
            return None
        course = self.courses.get(section.course_id)
        if course is None or course.workflow_state == "deleted":
            return None
        return section

    def course_by_sis(self, sis_course_id: str) -> Course | None:
        """`root_account.all_courses.where(sis_source_id:)`: deleted courses included."""
        return self._courses_by_sis.get(sis_course_id)

    def section_by_sis(self, sis_section_id: str) -> Section | None:
        """`root_account.course_sections.where(sis_source_id:)`: any workflow state."""
        return self._sections_by_sis.get(sis_section_id)

    def user_by_sis(self, sis_user_id: str) -> User | None:
        return self._users_by_sis.get(sis_user_id)

    def user_by_integration(self, integration_id: str) -> User | None:
        return self._users_by_integration.get(integration_id)

    def find_term(self, ref: str) -> Term | None:
        """`api_find(account.enrollment_terms.active, ref)`: a numeric id or `sis_term_id:X`."""
        kind, value = parse_sis_ref(ref)
        term: Term | None
        if kind is None:
            term = self.terms.get(int(value)) if value else None
        elif kind == "sis_term_id":
            term = next((t for t in self.terms.values() if t.sis_term_id == value), None)
        else:
            term = None
        return term if term is not None and term.workflow_state == "active" else None

    def find_account(self, ref: str) -> Account | None:
        ref = ref.strip()
        if ref in ("self", "default"):
            return self.accounts.get(ROOT_ACCOUNT_ID)
        kind, value = parse_sis_ref(ref)
        if kind is None:
            return self.accounts.get(int(value)) if value else None
        if kind == "sis_account_id":
            return next((a for a in self.accounts.values() if a.sis_account_id == value), None)
        return None

    def course_roles(self, account_id: int = ROOT_ACCOUNT_ID) -> list[Role]:
        """Roles available in courses of an account: built-ins plus custom roles up the chain."""
        chain = set()
        account: Account | None = self.accounts.get(account_id)
        while account is not None:
            chain.add(account.id)
            account = (
                self.accounts.get(account.parent_account_id) if account.parent_account_id else None
            )
        return [r for r in self.roles.values() if r.built_in or r.account_id in chain]

    def built_in_role(self, base_type: str) -> Role | None:
        role_id = BUILT_IN_ROLE_IDS.get(base_type)
        return self.roles.get(role_id) if role_id is not None else None

    def sections_of(self, course_id: int) -> list[Section]:
        return [
            s for s in self._sections_by_course.get(course_id, []) if s.workflow_state == "active"
        ]

    def default_section(self, course: Course) -> Section:
        """Course#default_section (app/models/course.rb): the *active* section flagged default,
        else a new one, which takes the course's name and no SIS id."""
        sections = self._sections_by_course.get(course.id, [])
        for section in sections:
            if section.default and section.workflow_state == "active":
                return section
        return self.add_section(course, course.name, None, default=True)

    def enrollments_in_course(self, course_id: int) -> list[Enrollment]:
        return self._enrollments_by_course.get(course_id, [])

    def enrollments_of_user(self, user_id: int) -> list[Enrollment]:
        return self._enrollments_by_user.get(user_id, [])

    def find_enrollment(self, identity: tuple[int, str, int, int | None, int]) -> Enrollment | None:
        return self._enrollments_by_identity.get(identity)

    def duplicates(self) -> int:
        """How many user+course+role combinations have more than one live enrollment row."""
        counts = Counter(
            (e.user_id, e.course_id, e.role_id)
            for e in self.enrollments.values()
            if e.workflow_state != "deleted"
        )
        return sum(1 for n in counts.values() if n > 1)

    # ---- generation -----------------------------------------------------------------------

    @classmethod
    def generate(
        cls,
        seed: int = 7,
        *,
        users: int = 2000,
        courses: int = 120,
        sections_per_course: tuple[int, int] = (1, 3),
        students_per_course: int = 8,
    ) -> World:
        """A deterministic world; sizes scale to 100k users quickly (about a second)."""
        rng = random.Random(seed)
        world = cls(seed=seed)
        world._generate_accounts_and_roles()
        world._generate_fixed_people()
        world._generate_users(rng, users)
        world._generate_fixed_courses()
        world._generate_courses(rng, courses, sections_per_course)
        world._prefill_enrollments(rng, students_per_course)
        return world

    def _generate_accounts_and_roles(self) -> None:
        self.accounts[ROOT_ACCOUNT_ID] = Account(ROOT_ACCOUNT_ID, "Demo University", None, None)
        for index, (sis, name) in enumerate(
            (
                ("SCI", "Sciences"),
                ("HUM", "Humanities"),
                ("BUS", "Business"),
                ("ENG", "Engineering"),
            ),
            start=2,
        ):
            self.accounts[index] = Account(index, name, sis, ROOT_ACCOUNT_ID)
        self.terms[1] = Term(1, "Fall 2026", "F26")
        self.terms[2] = Term(2, "Spring 2027", "S27")
        self.terms[3] = Term(3, "Default Term", None)
        self.terms[4] = Term(4, "Spring 2025", "S25", workflow_state="deleted")
        for base_type, role_id in BUILT_IN_ROLE_IDS.items():
            self.roles[role_id] = Role(role_id, base_type, base_type, ROOT_ACCOUNT_ID, "built_in")
        self.roles[GRADER_ROLE_ID] = Role(
            GRADER_ROLE_ID, "Grader", "TaEnrollment", ROOT_ACCOUNT_ID, "active"
        )
        self.roles[AUDITOR_ROLE_ID] = Role(
            AUDITOR_ROLE_ID, "Auditor", "StudentEnrollment", ROOT_ACCOUNT_ID, "inactive"
        )

    def _generate_fixed_people(self) -> None:
        self.add_user("Demo Admin", None, login_id="admin@demo.example.edu", user_id=ADMIN_USER_ID)
        self.add_user(
            "Pat Student",
            "NOPERM-1",
            login_id="pat@demo.example.edu",
            user_id=NO_PERMISSION_USER_ID,
        )
        self.tokens[ADMIN_TOKEN] = Token(ADMIN_USER_ID, admin=True)
        self.tokens[NO_PERMISSION_TOKEN] = Token(NO_PERMISSION_USER_ID, admin=False)
        self.tokens[NO_SIS_TOKEN] = Token(
            ADMIN_USER_ID, admin=True, read_sis=False, manage_sis=False
        )
        fixed = (
            ("Alex Doe", DOC_USERS[0]),
            ("Sam Rivera", DOC_USERS[1]),
            ("Jordan Lee", DOC_USERS[2]),
            ("Zoë Ångström-Núñez", NON_ASCII_USER),
            ("Ngọc Đặng", "S900002"),
            ("Łukasz Schröder", "S900003"),
            ("Visiting Scholar", SLASH_USER),
        )
        for index, (name, sis) in enumerate(fixed, start=10):
            self.add_user(
                name,
                sis,
                login_id=f"{sis.lower().replace('/', '.')}@demo.example.edu",
                integration_id=f"INT-{sis}",
                user_id=index,
            )

    def _generate_users(self, rng: random.Random, count: int) -> None:
        for index in range(count):
            first = rng.choice(FIRST_NAMES)
            last = rng.choice(LAST_NAMES)
            uid = 1000 + index
            # every 97th user comes from the extension school, whose SIS ids contain slashes
            sis = (
                f"EXT/{2020 + index % 7}/{index:05d}" if index % 97 == 50 else f"S{100000 + index}"
            )
            self.add_user(
                f"{first} {last}",
                sis,
                user_id=uid,
                login_id=ascii_fold(f"{first}.{last}{uid}@demo.example.edu".lower()),
                integration_id=f"INT-{uid}" if index % 3 == 0 else None,
            )

    def _generate_fixed_courses(self) -> None:
        doc = self.add_course("Documentation Sample Course", DOC_COURSE, course_id=100)
        for index, sis in enumerate(DOC_SECTIONS):
            self.add_section(doc, f"Section {sis}", sis, section_id=200 + index)
        # (name, SIS id, workflow state, end date, restricted to course dates)
        fixed = (
            ("General Chemistry II", UNPUBLISHED_COURSE, "unpublished", TERM_END, False),
            ("World History (spring)", COMPLETED_COURSE, "completed", PAST_END, False),
            ("Physics Summer Bridge", SOFT_CONCLUDED_COURSE, "available", PAST_END, True),
            ("Intermediate Macroeconomics", DELETED_COURSE, "deleted", TERM_END, False),
            ("Studio Art: Figure", SLASH_COURSE, "available", TERM_END, False),
        )
        for index, (name, sis, state, end_at, restricted) in enumerate(fixed, start=101):
            course = self.add_course(
                name,
                sis,
                workflow_state=state,
                course_id=index,
                end_at=end_at,
                restrict_enrollments_to_course_dates=restricted,
            )
            self.add_section(
                course,
                f"{name} 01",
                f"{sis}-01" if "/" not in sis else SLASH_SECTION,
                section_id=200 + 10 * (index - 100),
            )
        self._next_id["course"] = 1000
        self._next_id["section"] = 2000

    def _generate_courses(
        self, rng: random.Random, count: int, sections_per_course: tuple[int, int]
    ) -> None:
        account_by_sis = {a.sis_account_id: a.id for a in self.accounts.values()}
        for index in range(count):
            code, dept_name, account_sis = DEPARTMENTS[index % len(DEPARTMENTS)]
            number = 100 + (index // len(DEPARTMENTS)) * 7 % 400 + index % 5
            sis = f"{code}{number}-F26"
            if sis in self._courses_by_sis:
                sis = f"{code}{number}-{index}-F26"
            roll = rng.random()
            state = "unpublished" if roll < 0.08 else "completed" if roll < 0.12 else "available"
            course = self.add_course(
                f"{dept_name} {number}",
                sis,
                workflow_state=state,
                account_id=account_by_sis[account_sis],
                integration_id=f"CINT-{index}" if index % 4 == 0 else None,
                end_at=PAST_END if state == "completed" else TERM_END,
            )
            for number_in_course in range(1, rng.randint(*sections_per_course) + 1):
                self.add_section(
                    course,
                    f"{code} {number} section {number_in_course:02d}",
                    f"{sis}-{number_in_course:02d}",
                )

    def _prefill_enrollments(self, rng: random.Random, students_per_course: int) -> None:
        """A teacher in every live course and a few students, so rosters are not empty."""
        teacher = self.roles[BUILT_IN_ROLE_IDS["TeacherEnrollment"]]
        student = self.roles[BUILT_IN_ROLE_IDS["StudentEnrollment"]]
        user_ids = [uid for uid in self.users if uid >= 1000]
        if not user_ids:
            return
        for course in list(self.courses.values()):
            if course.workflow_state == "deleted":
                continue
            sections = [s for s in self.sections_of(course.id) if s.sis_section_id] or [
                self.default_section(course)
            ]
            done_state = "completed" if course.workflow_state == "completed" else "active"
            self.add_enrollment(
                self.users[rng.choice(user_ids)],
                sections[0],
                teacher,
                state=done_state,
                created_at=GENERATED_AT,
            )
            for user_id in rng.sample(user_ids, min(students_per_course, len(user_ids))):
                self.add_enrollment(
                    self.users[user_id],
                    rng.choice(sections),
                    student,
                    state=done_state,
                    created_at=GENERATED_AT,
                    sis_import_id=PREFILL_SIS_IMPORT_ID,
                )
