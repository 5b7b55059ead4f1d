"""SIS semantics over REST: what one enrollments.csv row means as Canvas API calls.

`active` creates (idempotent per user + type + role + section, ../shared/CANVAS_API.md §2.4).
A create re-applies the section limit and the dates to an enrollment it reuses (repost.py), so an
`active` row that leaves any of them blank reads the user's enrollments first: nothing is sent
when the enrollment is already in place, otherwise the POST carries the values Canvas holds for
the blank fields. A row that states all of them is POSTed without reading.
A row without a section acts on the course's default section only (roster_match.DefaultSection),
as Canvas's `enroll_user` and SIS importer do.
`inactive` / `completed` / `deleted` look the user's enrollments in the course up (all states)
and DELETE with task=inactivate|conclude|delete, or do nothing when the enrollment is already so
(§2.7). Looking up before acting makes these safe to re-send after a crash. Effects follow Canvas's
SIS importer (§6.5): `inactive` creates an inactive enrollment when none exists;
`deleted_last_completed` deletes when the user keeps another enrollment that is not deleted (any
state: invited, inactive and completed count) with the same role and observed user in the course,
otherwise concludes; `completed` and `deleted` with no enrollment create one in that state (a
create, then a conclude or delete). Roles follow the importer too: `role_id` first, then a role
whose name equals the row's role, then the role words. An observer's student is sent as its Canvas
id (the API never resolves an SIS id there). Rule by rule, with the Canvas source of each:
docs/canvas-semantics.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from canvas_tui.canvas.client import CanvasClient
from canvas_tui.canvas.errors import CanvasError, Category
from canvas_tui.engine.plan.diff import (
    DELETE_TASKS,
    DROP_SETTLED,
    Move,
    active_in_place,
    keeps_another,
    same_role,
    settle,
)
from canvas_tui.engine.repost import PostFields, differs, post_fields
from canvas_tui.engine.roster_match import (
    ALL_STATES,
    DefaultSection,
    default_section_from,
    in_section,
)
from canvas_tui.records import EnrollmentRecord, SisStatus, sis_value, split_api_id

Observer = Callable[[Any], None]  # receives the client's AttemptEvent for every HTTP attempt

# Listing the token user's own enrollments refuses `deleted` (400 "Invalid state deleted",
# instructure/canvas-lms app/controllers/enrollments_api_controller.rb, user_index_enrollments).
OWN_STATES = tuple(s for s in ALL_STATES if s != "deleted")


@dataclass(frozen=True, slots=True)
class ActionResult:
    action: str  # create, create_inactive, create_completed, create_deleted, inactivate, ...
    enrollment_id: int | None
    message: str | None = None


def _enrollment_id(enrollment: Mapping[str, Any]) -> int | None:
    value = enrollment.get("id")
    return int(value) if value is not None else None


class EnrollmentActions:
    """Turns records into Canvas calls. One instance per run (it caches role ids)."""

    def __init__(
        self, client: CanvasClient, *, notify: bool = False, active_state: str = "active"
    ) -> None:
        self._client = client
        self._notify = notify
        self._active_state = active_state  # what `active` rows are created as (config)
        self._roles: dict[str, dict[str, str]] = {}  # account -> role name -> role id
        self._roles_lock = asyncio.Lock()
        # API id (`sis_user_id:S9`, `sis_section_id:X`) -> its Canvas id, looked up once per run
        self._canvas_ids: dict[tuple[str, str], asyncio.Task[int]] = {}
        self._defaults: dict[str, DefaultSection] = {}  # course API id -> its default section
        self._defaults_lock = asyncio.Lock()

    async def apply(self, record: EnrollmentRecord, observer: Observer | None) -> ActionResult:
        role_id = await self._role_id(record, observer)
        if record.status is SisStatus.ACTIVE:
            if not record.leaves_unchanged:
                # every field a re-POST resets is stated: nothing to read first
                return await self._create(record, role_id, self._active_state, observer)
            return await self._activate(record, role_id, observer)
        return await self._change(record, role_id, observer)

    async def post(
        self, record: EnrollmentRecord, state: str, fields: PostFields, observer: Observer | None
    ) -> ActionResult:
        """POST the record's enrollment in `state` with `fields` for the values Canvas re-applies,
        without looking anything up first: for a caller that already read the enrollment (the
        plan). The POST is idempotent like `apply`'s (§2.4)."""
        role_id = await self._role_id(record, observer)
        return await self._create(record, role_id, state, observer, fields)

    async def create_and_end(
        self,
        record: EnrollmentRecord,
        status: SisStatus,
        observer: Observer | None,
        fields: PostFields | None = None,
    ) -> ActionResult:
        """Create the record's enrollment, then conclude or delete it (`status`): what Canvas's
        importer does for a `completed` or `deleted` row without an enrollment, for a caller
        that already knows none is live (the plan)."""
        role_id = await self._role_id(record, observer)
        return await self._create_then(record, role_id, status, observer, fields)

    async def end(
        self, record: EnrollmentRecord, task: str, observer: Observer | None
    ) -> ActionResult:
        """A drop (a row gone from the source, `canvas-tui watch`): DELETE with `task` each live
        enrollment the record names that the task has not settled already, as a plan's drop
        does (plan_drop). Unlike a row's status, a drop never creates an enrollment to end it."""
        role_id = await self._role_id(record, observer)
        mine = await self._mine(record, role_id, await self._list(record, observer), observer)
        settled = DROP_SETTLED[task] | {"deleted"}
        todo = [e for e in mine if e.get("enrollment_state") not in settled]
        if not todo:
            states = ", ".join(sorted({str(e.get("enrollment_state")) for e in mine}))
            found = f"already {states}" if mine else "not in Canvas"
            return ActionResult(
                "none", _enrollment_id(mine[0]) if mine else None, f"nothing to do: {found}"
            )
        last = await self._delete_each(todo, task, observer)
        return ActionResult(task, _enrollment_id(last) or _enrollment_id(todo[-1]))

    async def _delete_each(
        self, todo: Sequence[Mapping[str, Any]], task: str, observer: Observer | None
    ) -> Mapping[str, Any]:
        """DELETE with `task` each enrollment in `todo`, in order; the last answer."""
        last: Mapping[str, Any] = {}
        for enrollment in todo:
            course_id = enrollment.get("course_id")
            if course_id is None or enrollment.get("id") is None:
                raise CanvasError(Category.BAD_REQUEST, "enrollment without course_id or id")
            last = await self._client.delete_enrollment(
                str(course_id), enrollment["id"], task, observer=observer
            )
        return last

    async def _role_id(self, record: EnrollmentRecord, observer: Observer | None) -> str | None:
        """The role id to send, chosen as Canvas's SIS importer chooses the role
        (instructure/canvas-lms lib/sis/enrollment_importer.rb): the row's role_id when the
        account has that role; else the role whose name equals the row's role, case-sensitively,
        so a custom role wins over a role word; else None, and the word's built-in type is sent.
        With a role id no type is sent: Canvas takes the role's base type (a type that differs
        is a 400)."""
        roles = await self._account_roles()
        if record.role_id is not None and (
            not roles or not record.role or record.role_id in roles.values()
        ):
            return record.role_id
        return roles.get(record.role)

    async def warm(self) -> None:
        """List the account's roles now, beside other reads (a plan's rosters), so that the
        first record does not wait a round trip for them. A failure is left for that record's
        own listing to meet and report."""
        with contextlib.suppress(CanvasError):
            await self._account_roles()

    async def _account_roles(self) -> dict[str, str]:
        """Role name -> id of the root account's usable course roles, listed once per run.
        The listing is the run's, not the first record's: it is not among a record's attempts."""
        account = "self"
        known = self._roles.get(account)
        if known is not None:
            return known
        async with self._roles_lock:
            if account not in self._roles:
                try:
                    roles = await self._client.list_roles(account)
                except CanvasError as exc:
                    if exc.fatal:
                        raise
                    roles = []  # fall back to sending the name; Canvas resolves it per course
                self._roles[account] = {
                    str(r["role"]): str(r["id"])
                    for r in roles
                    if r.get("workflow_state", "active") in ("active", "built_in") and "role" in r
                }
        return self._roles[account]

    async def _create(
        self,
        record: EnrollmentRecord,
        role_id: str | None,
        state: str,
        observer: Observer | None,
        fields: PostFields | None = None,
    ) -> ActionResult:
        created = await self._post(record, role_id, state, observer, fields)
        action = "create" if state == self._active_state else f"create_{state}"
        return ActionResult(action, _enrollment_id(created))

    async def _post(
        self,
        record: EnrollmentRecord,
        role_id: str | None,
        state: str,
        observer: Observer | None,
        fields: PostFields | None = None,
    ) -> dict[str, Any]:
        sent = fields or post_fields(record, None)
        observed = await self._observed(record, observer)
        created = await self._client.create_enrollment(
            user=record.user,
            course=record.course,
            section=record.section,
            enrollment_type=None if role_id is not None else record.enrollment_type,
            role_id=role_id,
            role=record.role if role_id is None and record.enrollment_type is None else None,
            state=state,
            notify=record.notify or self._notify,
            limit_section_privileges=sent.limit_section_privileges,
            start_at=sent.start_at,
            end_at=sent.end_at,
            associated_user=None if observed is None else str(observed),
            observer=observer,
        )
        if record.section is None and record.course is not None:
            self._learn_default(record.course, created)
        return created

    async def _create_then(
        self,
        record: EnrollmentRecord,
        role_id: str | None,
        status: SisStatus,
        observer: Observer | None,
        fields: PostFields | None = None,
    ) -> ActionResult:
        """Create inactive (never active: no moment of access), then DELETE with the status's
        task. After a crash in between, a resume finds the inactive row and only ends it.
        `fields`: what a deleted row it revives keeps of what the record leaves blank."""
        task, target = DELETE_TASKS[status]
        created = await self._post(record, role_id, "inactive", observer, fields)
        course_id, enrollment_id = created.get("course_id"), created.get("id")
        if course_id is None or enrollment_id is None:
            raise CanvasError(Category.BAD_REQUEST, "enrollment without course_id or id")
        await self._client.delete_enrollment(str(course_id), enrollment_id, task, observer=observer)
        return ActionResult(
            f"create_{target}", int(enrollment_id), f"no enrollment in Canvas: created {target}"
        )

    async def _restate_then(
        self,
        record: EnrollmentRecord,
        role_id: str | None,
        status: SisStatus,
        enrollment: Mapping[str, Any],
        observer: Observer | None,
    ) -> ActionResult:
        """An inactive or completed row whose explicit dates or flag differ from the enrollment's:
        the SIS importer sets them whatever the status (lib/sis/enrollment_importer.rb). A POST
        in state inactive carries them (it leaves an active enrollment's state alone and moves
        any other to inactive, `Course#enroll_user`, app/models/course.rb), then the DELETE
        task ends it as the row says, unless it is there already."""
        task, target = DELETE_TASKS[status]
        fields = post_fields(record, enrollment)
        posted = await self._post(record, role_id, "inactive", observer, fields)
        note = f"{differs(record, enrollment)} set"
        if posted.get("enrollment_state") == target:
            return ActionResult("update", _enrollment_id(posted), note)
        course_id, enrollment_id = posted.get("course_id"), posted.get("id")
        if course_id is None or enrollment_id is None:
            raise CanvasError(Category.BAD_REQUEST, "enrollment without course_id or id")
        await self._client.delete_enrollment(str(course_id), enrollment_id, task, observer=observer)
        return ActionResult(task, int(enrollment_id), note)

    async def _list(
        self, record: EnrollmentRecord, observer: Observer | None, *, course_wide: bool = False
    ) -> list[dict[str, Any]]:
        if record.course is not None:
            return await self._list_user(record.user, observer, course=record.course)
        found = await self._list_user(record.user, observer, section=record.section)
        if not course_wide or record.section is None:
            return found
        # the importer looks at the whole course even when the user has nothing in the section
        # (lib/sis/enrollment_importer.rb, deleted_last_completed)
        if found:
            course = found[0]["course_id"]
        else:
            course = (await self._client.get_section(record.section, observer=observer))[
                "course_id"
            ]
        return await self._list_user(record.user, observer, course=str(course))

    async def _list_user(
        self,
        user: str,
        observer: Observer | None,
        *,
        course: str | None = None,
        section: str | None = None,
    ) -> list[dict[str, Any]]:
        """The user's enrollments in a course or section, in every state Canvas will show."""
        try:
            return await self._client.list_enrollments(
                course=course,
                section=section,
                user_filter=user,
                states=ALL_STATES,
                observer=observer,
            )
        except CanvasError as error:
            if error.status != 400 or "invalid state" not in error.message.lower():
                raise
        # The row names the token's own user: Canvas lists its enrollments without deleted ones.
        # Unseen deleted rows only matter to a create, which revives them anyway (§2.4).
        return await self._client.list_enrollments(
            course=course, section=section, user_filter=user, states=OWN_STATES, observer=observer
        )

    async def _canvas_id(self, kind: str, ref: str, observer: Observer | None, what: str) -> int:
        """The Canvas id of a user or section named in any API id form, looked up once per run
        (`GET users/sis_user_id:X` answers with the id even to a token without read_sis)."""
        key = (kind, ref)
        task = self._canvas_ids.get(key)
        if task is None:
            fetch = self._client.get_user if kind == "user" else self._client.get_section

            async def lookup() -> int:
                try:
                    return int((await fetch(ref, observer=observer))["id"])
                except CanvasError as error:
                    if error.status == 404:
                        error.message = f"{what} {sis_value(ref)} not found in Canvas"
                    raise

            task = self._canvas_ids[key] = asyncio.ensure_future(lookup())
            task.add_done_callback(lambda done: self._forget_failed(key, done))
        return await asyncio.shield(task)

    def _forget_failed(self, key: tuple[str, str], done: asyncio.Task[Any]) -> None:
        """A lookup that failed for a reason other than a 404 is tried again by the next row."""
        if done.cancelled() or (
            done.exception() is not None
            and getattr(done.exception(), "status", None) != 404
            and self._canvas_ids.get(key) is done
        ):
            self._canvas_ids.pop(key, None)

    async def _observed(self, record: EnrollmentRecord, observer: Observer | None) -> int | None:
        """The Canvas id of the student an observer row observes (None: not an observer link).
        `associated_user_id` is an integer column that Canvas never resolves (an SIS id there
        is cast to 0, instructure/canvas-lms app/controllers/enrollments_api_controller.rb), and
        enrollments carry only that id; the row names the student in any API id form."""
        ref = record.associated_user
        if ref is None:
            return None
        kind, value = split_api_id(ref)
        if kind is None and value.isdigit():
            return int(value)
        return await self._canvas_id("user", ref, observer, "associated user")

    async def _section_ref(
        self, record: EnrollmentRecord, listed: list[dict[str, Any]], observer: Observer | None
    ) -> str | None:
        """The record's section in a form the listed enrollments carry: as given when they show
        SIS section ids, else its Canvas id. A token without read_sis gets no `sis_section_id`
        (instructure/canvas-lms lib/api/v1/enrollment.rb), and a field it may not read must
        never make an enrollment look missing."""
        section = record.section
        if section is None or not listed:
            return section
        kind = split_api_id(section)[0]
        if kind is None or (kind == "sis_section_id" and "sis_section_id" in listed[0]):
            return section
        return str(await self._canvas_id("section", section, observer, "section"))

    def _learn_default(self, course: str, created: Mapping[str, Any]) -> None:
        """Canvas put a course-only create in the course's default section: that one it is."""
        section = created.get("course_section_id")
        if section is not None:
            self._defaults[course] = DefaultSection(int(section))

    async def _default_section(self, course: str, observer: Observer | None) -> DefaultSection:
        """The course's default section, inferred from its sections once per run."""
        async with self._defaults_lock:
            if course not in self._defaults:
                sections = await self._client.list_course_sections(course, observer=observer)
                self._defaults[course] = default_section_from(sections)
            return self._defaults[course]

    async def _mine(
        self,
        record: EnrollmentRecord,
        role_id: str | None,
        listed: list[dict[str, Any]],
        observer: Observer | None,
    ) -> list[dict[str, Any]]:
        """The listed enrollments the record names: its role, its observed student, and its
        section, or the course's default section for a row without one."""
        observed = await self._observed(record, observer)
        candidates = [
            e
            for e in listed
            if same_role(e, record, role_id)
            # an observer row names the link to one student: a parent of two siblings in the
            # course has two observer enrollments, and only this one is the row's
            and e.get("associated_user_id") == observed
        ]
        if record.section is not None or record.course is None or not candidates:
            section = await self._section_ref(record, listed, observer)
            return [e for e in candidates if in_section(e, section, None)]
        default = await self._default_section(record.course, observer)
        mine = [e for e in candidates if default.holds(e)]
        if mine and not default.known:
            raise CanvasError(
                Category.INVALID_INPUT,
                f"{default.describe(record.course_label)}, and {record.user} has a "
                f"{record.role} enrollment in one of them; give section_id to say which "
                "section the row means",
            )
        return mine

    async def _activate(
        self, record: EnrollmentRecord, role_id: str | None, observer: Observer | None
    ) -> ActionResult:
        """An `active` row that leaves a field blank: read, then POST only what changes."""
        mine = await self._mine(record, role_id, await self._list(record, observer), observer)
        current = next(iter(active_in_place(mine, self._active_state)), None)
        if current is not None and differs(record, current) is None:
            state = current.get("enrollment_state")
            return ActionResult("none", _enrollment_id(current), f"nothing to do: already {state}")
        reused = (
            current
            or next((e for e in mine if e.get("enrollment_state") != "deleted"), None)
            or next(iter(mine), None)
        )
        fields = post_fields(record, reused)
        return await self._create(record, role_id, self._active_state, observer, fields)

    async def _change(
        self, record: EnrollmentRecord, role_id: str | None, observer: Observer | None
    ) -> ActionResult:
        listed = await self._list(
            record, observer, course_wide=record.status is SisStatus.DELETED_LAST_COMPLETED
        )
        mine = await self._mine(record, role_id, listed, observer)
        keeps = False
        if record.status is SisStatus.DELETED_LAST_COMPLETED:
            observed = await self._observed(record, observer)
            keeps = keeps_another(
                record, role_id, mine, listed, lambda e: e.get("associated_user_id") == observed
            )
        rule = settle(record, mine, keeps_another=keeps)
        status, task, target = rule.status, rule.task, rule.target
        if rule.move is Move.CREATE_INACTIVE:
            # Canvas's importer creates the enrollment inactive; a deleted row is reused, and
            # keeps what the row leaves blank
            fields = post_fields(record, rule.reused)
            return await self._create(record, role_id, "inactive", observer, fields)
        if rule.move is Move.CREATE_THEN_END:
            # The importer creates it in that state (a concluded enrollment is a past term's
            # history); a deleted row becomes completed, as a re-POST revives it.
            fields = post_fields(record, rule.reused)
            return await self._create_then(record, role_id, status, observer, fields)
        if rule.move is Move.ALREADY_GONE:
            return ActionResult("none", _enrollment_id(mine[0]), "nothing to do: already deleted")
        live, todo = rule.live, rule.todo
        note: str | None = None
        if rule.move is Move.RESTATE and rule.changed is not None:
            try:
                return await self._restate_then(record, role_id, status, rule.changed, observer)
            except CanvasError as error:
                if error.category is not Category.CONCLUDED:
                    raise
            # Canvas takes no POST into a concluded course; the state still can be set
            note = f"{differs(record, rule.changed)} not set: the course is concluded"
        if not todo:
            done = "; ".join(filter(None, (f"nothing to do: already {target}", note)))
            return ActionResult("none", _enrollment_id(live[0]), done)
        last = await self._delete_each(todo, task, observer)
        if len(todo) > 1:
            note = "; ".join(filter(None, (note, f"{len(todo)} enrollments")))
        return ActionResult(task, _enrollment_id(last) or _enrollment_id(todo[-1]), note)


Apply = Callable[[EnrollmentRecord, Observer | None], Awaitable[ActionResult]]
