"""The world and fixture the SIS import channel tests share (issue 15)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from canvas_tui.canvas.governor import Governor
from canvas_tui.config import (
    CanvasConfig,
    Config,
    PlanConfig,
    Secret,
    SisImportConfig,
    SyncConfig,
)
from canvas_tui.engine.session import Session, open_session
from canvas_tui.engine.state import ImportStatus
from canvas_tui.simulator import ADMIN_TOKEN, SimConfig, Simulator, World, build_app
from canvas_tui.simulator.testing import asgi_transport
from canvas_tui.simulator.world import BUILT_IN_ROLE_IDS, Course, Enrollment, Section, User
from canvas_tui.sources import CsvSource
from tests.helpers import write_rows

TIME_SCALE = 50.0
HEADER = ["course_id", "user_id", "role", "section_id", "status", "start_date", "end_date"]


@dataclass
class Bulk:
    world: World
    app: Simulator
    course: Course
    section: Section
    users: list[User]
    tmp: Path

    def row(self, user: User, status: str = "active", start: str = "", end: str = "") -> list[str]:
        assert self.course.sis_course_id and self.section.sis_section_id and user.sis_user_id
        return [
            self.course.sis_course_id,
            user.sis_user_id,
            "student",
            self.section.sis_section_id,
            status,
            start,
            end,
        ]

    def enroll(self, user: User, state: str = "active", **fields: object) -> Enrollment:
        enrollment = self.world.add_enrollment(
            user,
            self.section,
            self.world.roles[BUILT_IN_ROLE_IDS["StudentEnrollment"]],
            state=state,
            sis_import_id=7,
        )
        for name, value in fields.items():
            setattr(enrollment, name, value)
        return enrollment

    def config(self, via: str = "sis-import", **plan: object) -> Config:
        return Config(
            canvas=CanvasConfig(base_url="http://127.0.0.1", token=Secret(ADMIN_TOKEN)),
            sync=SyncConfig(journal_dir=self.tmp / "runs", via=via),  # type: ignore[arg-type]
            plan=PlanConfig(**plan),  # type: ignore[arg-type]
            sis_import=SisImportConfig(poll_min=0.01, poll_max=0.05),
        )

    def session(self, rows: list[list[str]], config: Config, journal: str = "run") -> Session:
        (self.tmp / "runs").mkdir(exist_ok=True)
        path = write_rows(self.tmp / f"{journal}.csv", rows, HEADER)
        return open_session(
            config,
            source=CsvSource(path),
            journal_path=self.tmp / "runs" / f"{journal}.journal",
            transport=asgi_transport(self.app),
            governor=Governor(leak=10.0 * TIME_SCALE),
        )

    def imports(self) -> int:
        return len(self.app.sis_imports.imports)

    def rest_writes(self) -> int:
        by = self.app.stats()["requests_by_endpoint"]
        return sum(
            by.get(k, 0)
            for k in ("create_enrollment", "delete_enrollment", "reactivate_enrollment")
        )

    def state_of(self, user: User) -> list[str]:
        return sorted(
            e.workflow_state
            for e in self.world.enrollments.values()
            if e.user_id == user.id and e.course_section_id == self.section.id
        )


@pytest.fixture
def bulk(tmp_path: Path) -> Bulk:
    world = World.generate(7, users=300, courses=4)
    course = world.add_course("Bulk Lab", "BULK101-F26")
    section = world.add_section(course, "Bulk Lab 01", "BULK101-F26-01")
    users = [u for u in world.users.values() if u.sis_user_id and u.sis_user_id.startswith("S1")]
    app = build_app(
        SimConfig(time_scale=TIME_SCALE, sis_import_rate=400.0, sis_import_start_delay=0.5),
        world,
    )
    return Bulk(world, app, course, section, users[:80], tmp_path)


def _status(session: Session) -> ImportStatus:
    status = session.runner.snapshot().sis_import
    assert status is not None, "the run has an import"
    return status
